package metricsapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"

	kubeletserver "skiff.dev/skiff/internal/kubelet/server"
)

func u(v uint64) *uint64 { return &v }

var ts = metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))

func cstats(name string, cpu *uint64, mem uint64) kubeletserver.ContainerStats {
	return kubeletserver.ContainerStats{Name: name, CPU: &kubeletserver.CPUStats{Time: ts, UsageNanoCores: cpu}, Memory: &kubeletserver.MemoryStats{WorkingSetBytes: u(mem)}}
}

func testAPI(t *testing.T) *API {
	nodes := []corev1.Node{
		{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{"zone": "a"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "n2", Labels: map[string]string{"zone": "b"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "down"}},
	}
	pod := func(ns, name, node, app string) corev1.Pod {
		return corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + name), Labels: map[string]string{"app": app}}, Spec: corev1.PodSpec{NodeName: node}}
	}
	pods := []corev1.Pod{pod("ns", "web-1", "n1", "web"), pod("ns", "web-2", "n2", "web"), pod("ns", "db", "n1", "db"),
		pod("ns", "fresh", "n1", "web"), pod("other", "x", "n2", "web"), pod("ns", "pending", "", "web")}
	sums := map[string]*kubeletserver.Summary{
		"n1": {Node: kubeletserver.NodeStats{NodeName: "n1", CPU: &kubeletserver.CPUStats{Time: ts, UsageNanoCores: u(250e6)}, Memory: &kubeletserver.MemoryStats{WorkingSetBytes: u(1 << 30)}},
			Pods: []kubeletserver.PodStats{
				{PodRef: kubeletserver.PodReference{Namespace: "ns", Name: "web-1", UID: "uid-web-1"}, Containers: []kubeletserver.ContainerStats{cstats("app", u(5e6), 10<<20), cstats("side", u(1e6), 2<<20)}},
				{PodRef: kubeletserver.PodReference{Namespace: "ns", Name: "db", UID: "uid-db"}, Containers: []kubeletserver.ContainerStats{cstats("db", u(2e6), 50<<20)}},
				{PodRef: kubeletserver.PodReference{Namespace: "ns", Name: "fresh", UID: "uid-fresh"}, Containers: []kubeletserver.ContainerStats{cstats("app", nil, 1<<20)}},
				// A previous pod of the same name: another UID.
				{PodRef: kubeletserver.PodReference{Namespace: "ns", Name: "web-2", UID: "stale"}, Containers: []kubeletserver.ContainerStats{cstats("app", u(1), 1)}},
			}},
		"n2": {Node: kubeletserver.NodeStats{NodeName: "n2", CPU: &kubeletserver.CPUStats{Time: ts}, Memory: &kubeletserver.MemoryStats{WorkingSetBytes: u(1)}},
			Pods: []kubeletserver.PodStats{
				{PodRef: kubeletserver.PodReference{Namespace: "ns", Name: "web-2", UID: "uid-web-2"}, Containers: []kubeletserver.ContainerStats{cstats("app", u(7e6), 3<<20)}},
				{PodRef: kubeletserver.PodReference{Namespace: "other", Name: "x", UID: "uid-x"}, Containers: []kubeletserver.ContainerStats{cstats("app", u(1e6), 1<<20)}},
			}},
	}
	a, err := New(Config{
		Nodes: func(context.Context) ([]corev1.Node, error) { return nodes, nil },
		Pods: func(_ context.Context, ns string) ([]corev1.Pod, error) {
			var out []corev1.Pod
			for _, p := range pods {
				if ns == "" || p.Namespace == ns {
					out = append(out, p)
				}
			}
			return out, nil
		},
		Summary: func(_ context.Context, n *corev1.Node) (*kubeletserver.Summary, error) {
			if s := sums[n.Name]; s != nil {
				return s, nil
			}
			return nil, errors.New("connection refused")
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func get(t *testing.T, a *API, path string, want int, into any) {
	t.Helper()
	rec := httptest.NewRecorder()
	a.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/apis/metrics.k8s.io/v1beta1"+path, nil))
	if rec.Code != want {
		t.Fatalf("GET %s: %d %s, want %d", path, rec.Code, rec.Body, want)
	}
	if into != nil {
		if err := json.Unmarshal(rec.Body.Bytes(), into); err != nil {
			t.Fatal(err)
		}
	}
}

func TestNodeMetrics(t *testing.T) {
	a := testAPI(t)
	var l metricsv1beta1.NodeMetricsList
	get(t, a, "/nodes", 200, &l)
	// n2 has no CPU rate yet and "down" does not answer: only n1.
	if l.Kind != "NodeMetricsList" || len(l.Items) != 1 || l.Items[0].Name != "n1" {
		t.Fatalf("nodes %+v", l)
	}
	cpu, mem := l.Items[0].Usage[corev1.ResourceCPU], l.Items[0].Usage[corev1.ResourceMemory]
	if cpu.MilliValue() != 250 || mem.Value() != 1<<30 || l.Items[0].Window.Duration != 10*time.Second {
		t.Fatalf("n1 usage cpu %s memory %s window %s", cpu.String(), mem.String(), l.Items[0].Window.Duration)
	}
	var one metricsv1beta1.NodeMetrics
	get(t, a, "/nodes/n1", 200, &one)
	if one.Kind != "NodeMetrics" || one.Name != "n1" {
		t.Fatalf("node n1 %+v", one)
	}
	get(t, a, "/nodes/n2", 404, nil)
	get(t, a, "/nodes?labelSelector=zone%3Db", 200, &l)
	if len(l.Items) != 0 {
		t.Fatalf("zone=b: %+v", l.Items)
	}
	get(t, a, "/nodes?labelSelector=zone%3D%3D%3D", 400, nil)
}

func TestPodMetrics(t *testing.T) {
	a := testAPI(t)
	var l metricsv1beta1.PodMetricsList
	get(t, a, "/namespaces/ns/pods", 200, &l)
	var names []string
	for _, p := range l.Items {
		names = append(names, p.Name)
	}
	// fresh has no CPU rate yet; the stale web-2 summary entry is not
	// the current pod; pending has no node.
	if len(names) != 3 || names[0] != "db" || names[1] != "web-1" || names[2] != "web-2" {
		t.Fatalf("pods %v", names)
	}
	web1 := l.Items[1]
	if len(web1.Containers) != 2 || web1.Containers[0].Usage.Cpu().MilliValue() != 5 || web1.Containers[1].Usage.Memory().Value() != 2<<20 {
		t.Fatalf("web-1 %+v", web1.Containers)
	}
	get(t, a, "/namespaces/ns/pods?labelSelector=app%3Dweb", 200, &l)
	if len(l.Items) != 2 {
		t.Fatalf("app=web: %d pods", len(l.Items))
	}
	get(t, a, "/pods", 200, &l)
	if len(l.Items) != 4 {
		t.Fatalf("all namespaces: %d pods", len(l.Items))
	}
	var one metricsv1beta1.PodMetrics
	get(t, a, "/namespaces/ns/pods/db", 200, &one)
	if one.Kind != "PodMetrics" || one.Name != "db" || one.Namespace != "ns" {
		t.Fatalf("db %+v", one)
	}
	get(t, a, "/namespaces/ns/pods/fresh", 404, nil)
	get(t, a, "/namespaces/ns/pods?fieldSelector=metadata.name%3Dweb-2", 200, &l)
	if len(l.Items) != 1 || l.Items[0].Name != "web-2" {
		t.Fatalf("metadata.name=web-2: %+v", l.Items)
	}
	get(t, a, "/namespaces/ns/pods?fieldSelector=spec.nodeName%3Dn1", 400, nil)
	get(t, a, "/namespaces/ns/services", 404, nil)
	get(t, a, "/pods?watch=true", 405, nil)
	rec := httptest.NewRecorder()
	a.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/apis/metrics.k8s.io/v1beta1/pods", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %d", rec.Code)
	}
}
