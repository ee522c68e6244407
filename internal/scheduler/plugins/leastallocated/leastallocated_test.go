package leastallocated

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
		cpu, mem string // node allocatable
		existing []*v1.Pod
		incoming *v1.Pod
		want     int64
	}{
		{"empty node, half-size pod", "4", "8Gi", nil, pod("2", "4Gi"), 50},
		{"existing pods count", "4", "8Gi", []*v1.Pod{pod("1", "2Gi")}, pod("1", "2Gi"), 50},
		{"cpu and memory averaged", "4", "8Gi", nil, pod("4", ""), (0 + 97) / 2},
		{"best-effort pod uses the non-zero defaults (100m, 200Mi)", "4", "8Gi", nil, pod("", ""), (97 + 97) / 2},
		// The existing pod counts with the 200Mi memory default: (8Gi-4Gi-200Mi)/8Gi = 47%.
		{"over capacity scores 0 for that resource", "1", "8Gi", []*v1.Pod{pod("1", "")}, pod("1", "4Gi"), (0 + 47) / 2},
		{"empty node, tiny pod", "100", "100Gi", nil, pod("1m", "1Mi"), 99},
	}
	p, _ := New(nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ni := framework.NewNodeInfo(tt.existing...)
			ni.SetNode(schedtest.Node("a", tt.cpu, tt.mem, nil))
			got, st := p.(*LeastAllocated).Score(t.Context(), framework.NewCycleState(), framework.NewPodInfo(tt.incoming), ni)
			if !st.IsSuccess() {
				t.Fatal(st)
			}
			if got != tt.want {
				t.Errorf("score %d, want %d", got, tt.want)
			}
		})
	}
}

func TestPrefersEmptierNode(t *testing.T) {
	busy := framework.NewNodeInfo(pod("3", "6Gi"))
	busy.SetNode(schedtest.Node("busy", "4", "8Gi", nil))
	idle := framework.NewNodeInfo()
	idle.SetNode(schedtest.Node("idle", "4", "8Gi", nil))
	p := &LeastAllocated{}
	pi := framework.NewPodInfo(pod("500m", "1Gi"))
	b, _ := p.Score(t.Context(), nil, pi, busy)
	i, _ := p.Score(t.Context(), nil, pi, idle)
	if i <= b {
		t.Fatalf("idle node scored %d, busy %d: want idle higher", i, b)
	}
}
