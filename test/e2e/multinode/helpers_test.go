package multinode

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"skiff.dev/skiff/internal/images"
	"skiff.dev/skiff/internal/kubelet/cri"
)

// namespace creates a namespace for one scenario; deleting it at the end
// removes the scenario's pods and services.
func namespace(t *testing.T, c *cluster) string {
	t.Helper()
	name := "mn-" + strings.ToLower(strings.TrimPrefix(t.Name(), "Test"))
	if len(name) > 60 {
		name = name[:60]
	}
	ctx := context.Background()
	if _, err := c.client.CoreV1().Namespaces().Create(ctx, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = c.client.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	return name
}

// testappPod is a testapp pod pinned to node, Ready when /readyz says so.
func testappPod(name, node string, labels map[string]string) *v1.Pod {
	grace := int64(1)
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: v1.PodSpec{
			NodeName:                      node,
			TerminationGracePeriodSeconds: &grace,
			Containers: []v1.Container{{
				Name: "app", Image: images.Testapp, ImagePullPolicy: v1.PullNever,
				Ports: []v1.ContainerPort{{Name: "http", ContainerPort: 8080}},
				ReadinessProbe: &v1.Probe{
					ProbeHandler:  v1.ProbeHandler{HTTPGet: &v1.HTTPGetAction{Path: "/readyz", Port: intstr.FromInt32(8080)}},
					PeriodSeconds: 1,
				},
			}},
		},
	}
}

// runPods creates pods and waits until all are Running, Ready and have IPs.
func runPods(t *testing.T, c *cluster, ns string, pods ...*v1.Pod) []*v1.Pod {
	t.Helper()
	ctx := context.Background()
	for _, p := range pods {
		if _, err := c.client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating pod %s: %v", p.Name, err)
		}
	}
	out := make([]*v1.Pod, len(pods))
	deadline := time.Now().Add(2 * time.Minute)
	for i, p := range pods {
		for {
			got, err := c.client.CoreV1().Pods(ns).Get(ctx, p.Name, metav1.GetOptions{})
			if err == nil && got.Status.Phase == v1.PodRunning && got.Status.PodIP != "" && podReady(got) {
				out[i] = got
				break
			}
			if err == nil && got.Status.Phase == v1.PodFailed {
				t.Fatalf("pod %s failed: %+v", p.Name, got.Status)
			}
			if time.Now().After(deadline) {
				t.Fatalf("pod %s not running and ready with an IP after 2m: %v %+v", p.Name, err, got.Status)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return out
}

func podReady(p *v1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == v1.PodReady {
			return c.Status == v1.ConditionTrue
		}
	}
	return false
}

func (c *cluster) node(name string) *node {
	for _, n := range c.nodes {
		if n.name == name {
			return n
		}
	}
	return nil
}

// podNetns is the path of a running pod's network namespace, found
// through its node's containerd: the sandbox's pause process.
func podNetns(t *testing.T, c *cluster, p *v1.Pod) string {
	t.Helper()
	n := c.node(p.Spec.NodeName)
	if n == nil {
		t.Fatalf("pod %s is on unknown node %q", p.Name, p.Spec.NodeName)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client, err := cri.Dial(ctx, "unix://"+filepath.Join(n.dir, "agent", "containerd", "containerd.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	resp, err := client.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{
		State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, sb := range resp.GetItems() {
		if sb.GetMetadata().GetUid() != string(p.UID) {
			continue
		}
		st, err := client.Runtime.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: sb.GetId(), Verbose: true})
		if err != nil {
			t.Fatal(err)
		}
		var info struct {
			Pid int `json:"pid"`
		}
		if err := json.Unmarshal([]byte(st.GetInfo()["info"]), &info); err != nil || info.Pid == 0 {
			t.Fatalf("sandbox of %s: no pid in verbose info (%v): %s", p.Name, err, st.GetInfo()["info"])
		}
		return fmt.Sprintf("/proc/%d/ns/net", info.Pid)
	}
	t.Fatalf("no ready sandbox for pod %s on %s", p.Name, n.name)
	return ""
}

func url(ip string, port int32, path string) string {
	if strings.Contains(ip, ":") {
		ip = "[" + ip + "]"
	}
	return fmt.Sprintf("http://%s:%d%s", ip, port, path)
}
