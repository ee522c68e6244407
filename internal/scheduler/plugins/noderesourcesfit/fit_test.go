package noderesourcesfit

import (
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"skiff.dev/skiff/internal/scheduler/framework"
	"skiff.dev/skiff/internal/scheduler/schedtest"
)

func TestFilter(t *testing.T) {
	gpuNode := schedtest.Node("gpu", "4", "4Gi", nil)
	gpuNode.Status.Allocatable["example.com/gpu"] = resource.MustParse("2")
	twoPods := schedtest.Node("tiny", "4", "4Gi", nil)
	twoPods.Status.Allocatable[v1.ResourcePods] = resource.MustParse("1")
	nodes := []*v1.Node{schedtest.Node("n", "4", "4Gi", nil), gpuNode, twoPods}
	existing := []*v1.Pod{schedtest.Pod("e1", "n", "3", nil), schedtest.Pod("e2", "tiny", "", nil)}
	gpuPod := schedtest.Pod("g", "", "", nil)
	gpuPod.Spec.Containers[0].Resources.Requests = v1.ResourceList{"example.com/gpu": resource.MustParse("1")}
	memPod := schedtest.Pod("m", "", "2", nil)
	memPod.Spec.Containers[0].Resources.Requests[v1.ResourceMemory] = resource.MustParse("16Gi")
	tests := []struct {
		name string
		pod  *v1.Pod
		want map[string]string
	}{
		{"cpu", schedtest.Pod("p", "", "2", nil), map[string]string{"n": "Unschedulable: Insufficient cpu", "gpu": "", "tiny": "Unschedulable: Too many pods"}},
		{"extended resource", gpuPod, map[string]string{"n": "UnschedulableAndUnresolvable: Insufficient example.com/gpu", "gpu": "", "tiny": "UnschedulableAndUnresolvable: Too many pods, Insufficient example.com/gpu"}},
		{"larger than any node is unresolvable", memPod, map[string]string{"n": "UnschedulableAndUnresolvable: Insufficient cpu, Insufficient memory", "gpu": "UnschedulableAndUnresolvable: Insufficient memory", "tiny": "UnschedulableAndUnresolvable: Too many pods, Insufficient memory"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snap := framework.NewSnapshot(existing, nodes)
			p, _ := New(nil)
			got := schedtest.FilterAll(schedtest.Handle(snap, nil, p).Fwk, snap, tt.pod)
			for n, w := range tt.want {
				if got[n] != w {
					t.Errorf("node %s: got %q, want %q", n, got[n], w)
				}
			}
		})
	}
}
