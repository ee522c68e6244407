package tainttoleration

import (
	"testing"

	v1 "k8s.io/api/core/v1"

	"skiff.dev/skiff/internal/scheduler/framework"
	"skiff.dev/skiff/internal/scheduler/schedtest"
)

func tainted(name string, taints ...v1.Taint) *v1.Node {
	n := schedtest.Node(name, "1", "1Gi", nil)
	n.Spec.Taints = taints
	return n
}

func TestFilterAndScore(t *testing.T) {
	nodes := []*v1.Node{
		tainted("clean"),
		tainted("noschedule", v1.Taint{Key: "k", Value: "v", Effect: v1.TaintEffectNoSchedule}),
		tainted("noexecute", v1.Taint{Key: "k", Value: "v", Effect: v1.TaintEffectNoExecute}),
		tainted("prefer", v1.Taint{Key: "k", Value: "v", Effect: v1.TaintEffectPreferNoSchedule}),
	}
	bad := "UnschedulableAndUnresolvable: " + ErrReasonNotMatch
	tests := []struct {
		name string
		tols []v1.Toleration
		want map[string]string
	}{
		{"no tolerations", nil, map[string]string{"clean": "", "noschedule": bad, "noexecute": bad, "prefer": ""}},
		{"equal toleration for NoSchedule only", []v1.Toleration{{Key: "k", Operator: v1.TolerationOpEqual, Value: "v", Effect: v1.TaintEffectNoSchedule}},
			map[string]string{"noschedule": "", "noexecute": bad}},
		{"wrong value", []v1.Toleration{{Key: "k", Value: "x"}}, map[string]string{"noschedule": bad}},
		{"exists with empty effect tolerates all effects", []v1.Toleration{{Key: "k", Operator: v1.TolerationOpExists}},
			map[string]string{"noschedule": "", "noexecute": ""}},
		{"empty key exists tolerates everything", []v1.Toleration{{Operator: v1.TolerationOpExists}}, map[string]string{"noschedule": "", "noexecute": ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snap := framework.NewSnapshot(nil, nodes)
			p, _ := New(nil)
			pod := schedtest.Pod("p", "", "", nil)
			pod.Spec.Tolerations = tt.tols
			got := schedtest.FilterAll(schedtest.Handle(snap, nil, p).Fwk, snap, pod)
			for n, w := range tt.want {
				if got[n] != w {
					t.Errorf("node %s: got %q, want %q", n, got[n], w)
				}
			}
		})
	}
	snap := framework.NewSnapshot(nil, nodes)
	p, _ := New(nil)
	scores := schedtest.ScoreAll(schedtest.Handle(snap, nil, p).Fwk, snap, schedtest.Pod("p", "", "", nil))
	if scores["clean"] != 100 || scores["prefer"] != 0 {
		t.Errorf("PreferNoSchedule scores = %v, want clean 100, prefer 0", scores)
	}
}
