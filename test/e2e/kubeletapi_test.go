package e2e

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"skiff.dev/skiff/internal/images"
	"skiff.dev/skiff/test/integration/framework"
)

// TestKubectlLogsExecPortForward runs testapp and drives the kubelet API
// through the API server with real kubectl: logs, logs -f, exec and
// port-forward.
func TestKubectlLogsExecPortForward(t *testing.T) {
	requireNode(t)
	bins := framework.KubectlBinaries()
	if len(bins) == 0 {
		t.Skip("no kubectl binaries")
	}
	c := framework.Start(t, framework.Options{})
	n := startNode(t, c, "e2e-kapi-1", "skiffe2e3", "10.88.3.0/24")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	grace := int64(1)
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "testapp"},
		Spec: v1.PodSpec{
			NodeName: n.name, TerminationGracePeriodSeconds: &grace,
			Containers: []v1.Container{{Name: "app", Image: images.Testapp, Ports: []v1.ContainerPort{{ContainerPort: 8080}}}},
		},
	}
	if _, err := c.Client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Minute, "pod running", func() bool {
		p, err := c.Client.CoreV1().Pods("default").Get(ctx, pod.Name, metav1.GetOptions{})
		return err == nil && p.Status.Phase == v1.PodRunning && podReady(p)
	})

	for v, bin := range bins {
		t.Run("kubectl-"+v, func(t *testing.T) {
			out, err := c.Kubectl(t, bin, "", "logs", pod.Name)
			if err != nil || !strings.Contains(out, "testapp serving http") {
				t.Errorf("kubectl logs: %v: %q", err, out)
			}
			out, err = c.Kubectl(t, bin, "", "logs", "--timestamps", "--tail=1", pod.Name)
			if err != nil || !strings.Contains(out, "Z ") || !strings.Contains(out, "testapp serving http") || strings.Count(out, "\n") != 1 {
				t.Errorf("kubectl logs --timestamps --tail=1: %v: %q", err, out)
			}

			// logs -f: the first line arrives and the stream stays open.
			cmd := exec.Command(bin, "--kubeconfig", c.Kubeconfig, "logs", "-f", pod.Name)
			cmd.Env = append(os.Environ(), "KUBECONFIG=", "HOME="+c.DataDir)
			stdout, _ := cmd.StdoutPipe()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			line := make(chan string, 1)
			go func() {
				l, _ := bufio.NewReader(stdout).ReadString('\n')
				line <- l
			}()
			select {
			case l := <-line:
				if !strings.Contains(l, "testapp serving http") {
					t.Errorf("kubectl logs -f first line: %q", l)
				}
			case <-time.After(30 * time.Second):
				t.Error("kubectl logs -f: no line in 30s")
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			select {
			case err := <-exited:
				t.Errorf("kubectl logs -f ended while the container runs: %v", err)
			case <-time.After(500 * time.Millisecond):
			}
			_ = cmd.Process.Kill()
			<-exited

			out, err = c.Kubectl(t, bin, "", "exec", pod.Name, "--", "hostname")
			if err != nil || strings.TrimSpace(out) != pod.Name {
				t.Errorf("kubectl exec hostname: %v: %q", err, out)
			}
			out, err = c.Kubectl(t, bin, "hello from stdin\n", "exec", "-i", pod.Name, "--", "cat")
			if err != nil || out != "hello from stdin\n" {
				t.Errorf("kubectl exec -i cat: %v: %q", err, out)
			}

			port := freeLocalPort(t)
			pf := exec.Command(bin, "--kubeconfig", c.Kubeconfig, "port-forward", "pod/"+pod.Name, strconv.Itoa(port)+":8080")
			pf.Env = append(os.Environ(), "KUBECONFIG=", "HOME="+c.DataDir)
			pfOut, _ := pf.StdoutPipe()
			pf.Stderr = testWriter{t}
			if err := pf.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = pf.Process.Kill(); _ = pf.Wait() }()
			ready := make(chan struct{})
			go func() {
				r := bufio.NewReader(pfOut)
				l, _ := r.ReadString('\n')
				t.Logf("port-forward: %s", strings.TrimSpace(l))
				close(ready)
				_, _ = io.Copy(io.Discard, r)
			}()
			select {
			case <-ready:
			case <-time.After(30 * time.Second):
				t.Fatal("kubectl port-forward did not start")
			}
			resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(port) + "/hostname")
			if err != nil {
				t.Fatalf("GET through port-forward: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.TrimSpace(string(body)) != pod.Name {
				t.Errorf("GET /hostname through port-forward = %q", body)
			}
		})
	}

	// A container name that does not exist is a BadRequest Status.
	out, err := c.Kubectl(t, bins[firstKey(bins)], "", "logs", pod.Name, "-c", "nope")
	if err == nil || !strings.Contains(out, "container nope is not valid for pod testapp") {
		t.Errorf("kubectl logs -c nope: %v: %q", err, out)
	}
}

func firstKey(m map[string]string) string {
	for k := range m {
		return k
	}
	return ""
}

func freeLocalPort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
