package e2e

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"skiff.dev/skiff/test/e2e/e2eutil"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"skiff.dev/skiff/internal/agent"
	"skiff.dev/skiff/internal/images"
	"skiff.dev/skiff/internal/kubelet/cri"
	"skiff.dev/skiff/internal/network/cni"
	"skiff.dev/skiff/test/integration/framework"
)

func requireNode(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("e2e tests need root (containerd, network namespaces)")
	}
	if ps := agent.CheckPrereqs(agent.PrereqOptions{}); len(ps) > 0 {
		t.Skip("e2e tests need the node prerequisites: " + agent.FormatProblems(ps))
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("e2e tests build the built-in images with the go tool")
	}
}

// node is an agent with its private containerd, which a test can stop and
// start again on the same data dir.
type node struct {
	t      *testing.T
	c      *framework.Cluster
	cfg    agent.Config
	agent  *agent.Agent
	name   string
	bridge string
	cri    *cri.Client
	cancel context.CancelFunc
	done   chan error
}

// startNode runs an agent joined with the cluster's join token. Cleanup
// removes every sandbox through CRI while containerd still runs, then
// stops the agent (and so containerd), kills leftover shims by PID, deletes
// the bridge and the cgroup root, and unmounts whatever remains under the
// data dir.
func startNode(t *testing.T, c *framework.Cluster, name, bridge, podCIDR string) *node {
	t.Helper()
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, c.Server.PKI().CA.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	token, err := os.ReadFile(filepath.Join(c.DataDir, "token"))
	if err != nil {
		t.Fatalf("reading join token: %v", err)
	}
	cgroupRoot := "/skiff-" + name
	n := &node{t: t, c: c, name: name, bridge: bridge, cfg: agent.Config{
		Server: c.Server.URL(), Token: strings.TrimSpace(string(token)), CAFile: caFile,
		DataDir: dir, NodeName: name, PodCIDR: podCIDR, Bridge: bridge, CgroupRoot: cgroupRoot,
		KubeletPort: freeKubeletPort(t),
		// One node: no overlay device on the host, and no ingress on the
		// host's ports 80/443 (other test packages run at the same time).
		FlannelBackend: "none", Ingress: agent.IngressConfig{Disable: true},
	}}
	t.Cleanup(func() {
		_ = exec.Command("ip", "link", "del", bridge).Run()
		e2eutil.KillShims(t, dir)
		if err := agent.UnmountUnder(dir); err != nil {
			t.Logf("unmounting: %v", err)
		}
		e2eutil.RemoveCgroupTree(t, cgroupRoot)
	})
	t.Cleanup(func() {
		n.stop()
		if err := e2eutil.PurgeAgent(n.t, n.agent); err != nil {
			n.t.Error(err)
		}
	})
	n.start()
	return n
}

// start runs the agent and waits for its Node to be Ready.
func (n *node) start() {
	t := n.t
	t.Helper()
	logger := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	a, err := agent.New(n.cfg, agent.Deps{Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	n.agent = a
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel, n.done = cancel, make(chan error, 1)
	started := time.Now()
	go func() { n.done <- a.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Minute)
	for {
		select {
		case err := <-n.done:
			n.cancel = nil
			t.Fatalf("agent exited during start: %v", err)
		default:
		}
		nd, err := n.c.Client.CoreV1().Nodes().Get(context.Background(), n.name, metav1.GetOptions{})
		if err == nil && nodeReady(nd) && nd.Status.Conditions[0].LastHeartbeatTime.After(started.Add(-time.Second)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s not Ready after 10m", n.name)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("agent start to node Ready: %s", time.Since(started).Round(time.Millisecond))
	dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer dcancel()
	n.cri, err = cri.Dial(dctx, "unix://"+filepath.Join(a.ContainerdDir(), "containerd.sock"))
	if err != nil {
		t.Fatal(err)
	}
}

// purge removes every sandbox (netns, veth, IP) through a containerd of
// its own on the node's state, whatever state the agent was left in.
// stop stops the agent and its containerd; pod containers keep running.
func (n *node) stop() {
	if n.cancel == nil {
		return
	}
	if n.cri != nil {
		n.cri.Close()
		n.cri = nil
	}
	stopping := time.Now()
	n.cancel()
	n.cancel = nil
	select {
	case err := <-n.done:
		if err != nil {
			n.t.Logf("agent exited: %v", err)
		}
	case <-time.After(30 * time.Second):
		var b strings.Builder
		_ = pprof.Lookup("goroutine").WriteTo(&b, 1)
		n.t.Errorf("agent did not stop within 30s; goroutines:\n%s", b.String())
		select {
		case <-n.done:
		case <-time.After(time.Minute):
		}
	}
	n.t.Logf("agent stopped in %s", time.Since(stopping).Round(time.Millisecond))
}

func nodeReady(n *v1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == v1.NodeReady {
			return c.Status == v1.ConditionTrue
		}
	}
	return false
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func TestPodRunsServesAndCleansUp(t *testing.T) {
	requireNode(t)
	c := framework.Start(t, framework.Options{})
	n := startNode(t, c, "e2e-node-1", "skiffe2e0", "10.88.0.0/24")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	pods := c.Client.CoreV1().Pods("default")
	grace := int64(5)
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "testapp"},
		Spec: v1.PodSpec{
			NodeName:                      n.name,
			TerminationGracePeriodSeconds: &grace,
			InitContainers: []v1.Container{{
				Name: "init", Image: images.Testapp, Command: []string{"/testapp", "echo", "initialized"},
			}},
			Containers: []v1.Container{{
				Name:  "app",
				Image: images.Testapp,
				Env: []v1.EnvVar{
					{Name: "GREETING", Value: "hello"},
					{Name: "POD_NAME", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
					{Name: "MSG", Value: "$(GREETING) from $(POD_NAME)"},
				},
				Ports: []v1.ContainerPort{{ContainerPort: 8080}},
			}},
		},
	}
	w, err := pods.Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", pod.Name).String()})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	start := time.Now()
	if _, err := pods.Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var running *v1.Pod
	var runningAt time.Duration
	for running == nil {
		select {
		case ev := <-w.ResultChan():
			if ev.Type == watch.Error {
				t.Fatalf("watch error: %v", ev.Object)
			}
			p, ok := ev.Object.(*v1.Pod)
			if !ok {
				continue
			}
			if p.Status.Phase == v1.PodRunning && runningAt == 0 {
				runningAt = time.Since(start)
			}
			if p.Status.Phase == v1.PodRunning && podReady(p) && p.Status.PodIP != "" {
				running = p
			}
			if p.Status.Phase == v1.PodFailed {
				t.Fatalf("pod failed: %+v", p.Status)
			}
		case <-ctx.Done():
			p, _ := pods.Get(context.Background(), pod.Name, metav1.GetOptions{})
			t.Fatalf("pod not running and ready: %+v", p.Status)
		}
	}
	t.Logf("pod startup latency (create -> Running): %s; (create -> Running+Ready with IP): %s", runningAt, time.Since(start))

	st := running.Status
	if st.HostIP == "" || st.StartTime == nil || st.QOSClass != v1.PodQOSBestEffort {
		t.Errorf("hostIP=%q startTime=%v qos=%q", st.HostIP, st.StartTime, st.QOSClass)
	}
	if len(st.InitContainerStatuses) != 1 || st.InitContainerStatuses[0].State.Terminated == nil || st.InitContainerStatuses[0].State.Terminated.Reason != "Completed" {
		t.Errorf("init container status: %+v", st.InitContainerStatuses)
	}
	if len(st.ContainerStatuses) != 1 {
		t.Fatalf("container statuses: %+v", st.ContainerStatuses)
	}
	cs := st.ContainerStatuses[0]
	if !cs.Ready || cs.State.Running == nil || !strings.HasPrefix(cs.ContainerID, "containerd://") || cs.ImageID == "" || cs.Started == nil || !*cs.Started {
		t.Errorf("app container status: %+v", cs)
	}
	for _, want := range []v1.PodConditionType{v1.PodScheduled, v1.PodInitialized, v1.ContainersReady, v1.PodReady} {
		if !hasCondition(running, want) {
			t.Errorf("condition %s not True: %+v", want, st.Conditions)
		}
	}
	if !strings.HasPrefix(st.PodIP, "10.88.0.") {
		t.Errorf("pod IP %s not in the node's pod CIDR", st.PodIP)
	}

	body := httpGet(t, "http://"+st.PodIP+":8080/hostname")
	if body != pod.Name {
		t.Errorf("/hostname = %q, want %q", body, pod.Name)
	}
	if env := httpGet(t, "http://"+st.PodIP+":8080/env"); !strings.Contains(env, "MSG=hello from testapp\n") {
		t.Errorf("/env lacks expanded MSG:\n%s", env)
	}
	if allocated, _ := cni.Allocated(n.agent.CNIDataDir(), agent.NetworkName); len(allocated) != 1 {
		t.Errorf("host-local allocations while running: %v", allocated)
	}

	// Graceful deletion: the kubelet stops the containers, removes the
	// sandbox and deletes the object.
	if err := pods.Delete(ctx, pod.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "pod object deleted", func() bool {
		_, err := pods.Get(ctx, pod.Name, metav1.GetOptions{})
		return err != nil
	})
	sbs, err := n.cri.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(sbs.GetItems()) != 0 {
		t.Errorf("sandboxes left after deletion: %v", sbs.GetItems())
	}
	ctrs, err := n.cri.Runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(ctrs.GetContainers()) != 0 {
		t.Errorf("containers left after deletion: %v", ctrs.GetContainers())
	}
	if out, _ := exec.Command("ip", "-o", "link", "show", "master", n.bridge).CombinedOutput(); strings.TrimSpace(string(out)) != "" {
		t.Errorf("veths left on %s:\n%s", n.bridge, out)
	}
	if allocated, _ := cni.Allocated(n.agent.CNIDataDir(), agent.NetworkName); len(allocated) != 0 {
		t.Errorf("host-local allocations left: %v", allocated)
	}
	if left, _ := filepath.Glob("/sys/fs/cgroup/*/skiff-" + n.name + "/pod" + string(running.UID)); len(left) != 0 {
		t.Errorf("pod cgroups left: %v", left)
	}
}

func podReady(p *v1.Pod) bool { return hasCondition(p, v1.PodReady) }

func hasCondition(p *v1.Pod, t v1.PodConditionType) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == t {
			return c.Status == v1.ConditionTrue
		}
	}
	return false
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	var lastErr error
	for i := 0; i < 20; i++ {
		resp, err := client.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return string(b)
		}
		lastErr = err
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("GET %s: %v", url, lastErr)
	return ""
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
