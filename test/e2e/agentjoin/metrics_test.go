package agentjoin

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/discovery"

	"skiff.dev/skiff/internal/controller/podautoscaler"
	kubeletserver "skiff.dev/skiff/internal/kubelet/server"
	"skiff.dev/skiff/test/integration/framework"
)

// fakeKubelet serves /stats/summary over TLS for the pods it is told
// about, and records the client certificate's name.
type fakeKubelet struct {
	mu      sync.Mutex
	summary kubeletserver.Summary
	callers []string
}

func (f *fakeKubelet) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		f.callers = append(f.callers, r.TLS.PeerCertificates[0].Subject.CommonName)
	}
	if r.URL.Path != "/stats/summary" {
		http.NotFound(w, r)
		return
	}
	_ = json.NewEncoder(w).Encode(f.summary)
}

func u64(v uint64) *uint64 { return &v }

// registerFakeNode creates a Node whose kubelet endpoint is the fake.
func registerFakeNode(t *testing.T, c *framework.Cluster, name string, port int) {
	t.Helper()
	ctx := context.Background()
	n, err := c.Client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	res := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("4Gi"), corev1.ResourcePods: resource.MustParse("110")}
	n.Status = corev1.NodeStatus{
		Capacity: res, Allocatable: res,
		Addresses:       []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(port)}},
		Conditions:      []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}},
	}
	if _, err := c.Client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestMetricsAPIFromKubeletSummaries: metrics.k8s.io is in discovery and
// answers `kubectl top nodes/pods` (real kubectl 1.27 and 1.33) and the
// HPA's metrics client from the kubelets' summaries, read through the node
// proxy with the API server's kubelet client certificate.
func TestMetricsAPIFromKubeletSummaries(t *testing.T) {
	c := framework.Start(t, framework.Options{})
	ctx := context.Background()
	fk := &fakeKubelet{}
	srv := httptest.NewUnstartedServer(fk)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener = l
	// Request client certificates so the test can check who calls.
	srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	port := l.Addr().(*net.TCPAddr).Port
	registerFakeNode(t, c, "metrics-node", port)

	var pods []*corev1.Pod
	for _, name := range []string{"web-1", "web-2"} {
		p, err := c.Client.CoreV1().Pods("default").Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "web"}},
			Spec:       corev1.PodSpec{NodeName: "metrics-node", Containers: []corev1.Container{{Name: "app", Image: "localhost/skiff/testapp:v1"}}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pods = append(pods, p)
	}
	now := metav1.Now()
	fk.summary = kubeletserver.Summary{
		Node: kubeletserver.NodeStats{NodeName: "metrics-node", CPU: &kubeletserver.CPUStats{Time: now, UsageNanoCores: u64(500e6)},
			Memory: &kubeletserver.MemoryStats{Time: now, WorkingSetBytes: u64(1 << 30)}},
	}
	for i, p := range pods {
		fk.summary.Pods = append(fk.summary.Pods, kubeletserver.PodStats{
			PodRef: kubeletserver.PodReference{Namespace: p.Namespace, Name: p.Name, UID: string(p.UID)},
			Containers: []kubeletserver.ContainerStats{{Name: "app",
				CPU:    &kubeletserver.CPUStats{Time: now, UsageNanoCores: u64(uint64(i+1) * 100e6)},
				Memory: &kubeletserver.MemoryStats{Time: now, WorkingSetBytes: u64(uint64(i+1) * 64 << 20)}}},
		})
	}

	// Discovery, legacy and aggregated.
	dc, err := discovery.NewDiscoveryClientForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	rl, err := dc.ServerResourcesForGroupVersion("metrics.k8s.io/v1beta1")
	if err != nil {
		t.Fatalf("discovery of metrics.k8s.io: %v", err)
	}
	if len(rl.APIResources) != 2 {
		t.Fatalf("metrics.k8s.io resources %+v", rl.APIResources)
	}
	groups, err := dc.ServerGroups()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, g := range groups.Groups {
		found = found || g.Name == "metrics.k8s.io"
	}
	if !found {
		t.Fatal("metrics.k8s.io is not in /apis")
	}

	bins := framework.KubectlBinaries()
	if len(bins) == 0 {
		t.Log("no kubectl binaries: skipping kubectl top")
	}
	for v, bin := range bins {
		out, err := c.Kubectl(t, bin, "", "top", "nodes")
		if err != nil || !strings.Contains(out, "metrics-node") || !strings.Contains(out, "500m") || !strings.Contains(out, "1024Mi") {
			t.Errorf("kubectl %s top nodes: %v\n%s", v, err, out)
		}
		out, err = c.Kubectl(t, bin, "", "top", "pods", "-l", "app=web")
		if err != nil || !strings.Contains(out, "web-1") || !strings.Contains(out, "100m") || !strings.Contains(out, "128Mi") {
			t.Errorf("kubectl %s top pods: %v\n%s", v, err, out)
		}
		out, err = c.Kubectl(t, bin, "", "top", "pod", "web-2", "--containers")
		if err != nil || !strings.Contains(out, "app") || !strings.Contains(out, "200m") {
			t.Errorf("kubectl %s top pod --containers: %v\n%s", v, err, out)
		}
	}

	// The HPA controller's client.
	mc, err := podautoscaler.NewResourceMetricsClientForKube(c.Client)
	if err != nil {
		t.Fatal(err)
	}
	ctx2, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	info, _, err := mc.GetResourceMetric(ctx2, corev1.ResourceCPU, "default", labels.SelectorFromSet(labels.Set{"app": "web"}), "")
	if err != nil {
		t.Fatalf("hpa metrics client: %v", err)
	}
	if len(info) != 2 || info["web-1"].Value != 100 || info["web-2"].Value != 200 {
		t.Fatalf("hpa metrics %+v, want web-1 100m and web-2 200m", info)
	}

	fk.mu.Lock()
	defer fk.mu.Unlock()
	if len(fk.callers) == 0 {
		t.Fatal("the kubelet saw no client certificate")
	}
	for _, cn := range fk.callers {
		if cn != kubeletserver.DefaultAllowedClient {
			t.Fatalf("the kubelet was called as %q", cn)
		}
	}
}
