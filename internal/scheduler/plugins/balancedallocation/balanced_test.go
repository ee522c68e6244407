package balancedallocation

import (
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"skiff.dev/skiff/internal/scheduler/framework"
	"skiff.dev/skiff/internal/scheduler/schedtest"
)

func pod(cpu, mem string) *v1.Pod {
	p := schedtest.Pod("p", "", "", nil)
	rl := v1.ResourceList{}
	if cpu != "" {
		rl[v1.ResourceCPU] = resource.MustParse(cpu)
	}
	if mem != "" {
		rl[v1.ResourceMemory] = resource.MustParse(mem)
	}
	p.Spec.Containers[0].Resources.Requests = rl
	return p
}

func TestScore(t *testing.T) {
	tests := []struct {
		name     string
		cpu, mem string
		existing []*v1.Pod
		incoming *v1.Pod
		want     int64
	}{
		{"same fraction of cpu and memory", "4", "8Gi", nil, pod("1", "2Gi"), 100},
		{"cpu only: |0.5-0|/2 = 0.25", "4", "8Gi", nil, pod("2", ""), 75},
		{"existing pods balance the incoming one", "4", "8Gi", []*v1.Pod{pod("", "4Gi")}, pod("2", ""), 100},
		{"fractions are capped at 1", "4", "8Gi", nil, pod("8", ""), 50},
		{"best-effort pod on an empty node: real requests, no defaults", "4", "8Gi", nil, pod("", ""), 100},
		{"fully unbalanced node", "4", "8Gi", []*v1.Pod{pod("4", "")}, pod("", ""), 50},
	}
	p, _ := New(nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ni := framework.NewNodeInfo(tt.existing...)
			ni.SetNode(schedtest.Node("a", tt.cpu, tt.mem, nil))
			got, st := p.(*BalancedAllocation).Score(t.Context(), framework.NewCycleState(), framework.NewPodInfo(tt.incoming), ni)
			if !st.IsSuccess() {
				t.Fatal(st)
			}
			if got != tt.want {
				t.Errorf("score %d, want %d", got, tt.want)
			}
		})
	}
}
