package nodeaffinity

import (
	"testing"

	v1 "k8s.io/api/core/v1"

	"skiff.dev/skiff/internal/scheduler/framework"
	"skiff.dev/skiff/internal/scheduler/schedtest"
)

func required(terms ...v1.NodeSelectorTerm) *v1.Affinity {
	return &v1.Affinity{NodeAffinity: &v1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &v1.NodeSelector{NodeSelectorTerms: terms}}}
}

func TestFilter(t *testing.T) {
	nodes := []*v1.Node{
		schedtest.Node("a", "1", "1Gi", map[string]string{"zone": "z1", "gen": "3"}),
		schedtest.Node("b", "1", "1Gi", map[string]string{"zone": "z2", "gen": "5"}),
		schedtest.Node("c", "1", "1Gi", nil),
	}
	no := "UnschedulableAndUnresolvable: " + ErrReasonPod
	tests := []struct {
		name     string
		selector map[string]string
		aff      *v1.Affinity
		want     map[string]string
	}{
		{"nodeSelector", map[string]string{"zone": "z1"}, nil, map[string]string{"a": "", "b": no, "c": no}},
		{"In", nil, required(v1.NodeSelectorTerm{MatchExpressions: []v1.NodeSelectorRequirement{{Key: "zone", Operator: v1.NodeSelectorOpIn, Values: []string{"z2"}}}}), map[string]string{"a": no, "b": "", "c": no}},
		{"NotIn matches nodes without the label", nil, required(v1.NodeSelectorTerm{MatchExpressions: []v1.NodeSelectorRequirement{{Key: "zone", Operator: v1.NodeSelectorOpNotIn, Values: []string{"z1"}}}}), map[string]string{"a": no, "b": "", "c": ""}},
		{"Exists", nil, required(v1.NodeSelectorTerm{MatchExpressions: []v1.NodeSelectorRequirement{{Key: "zone", Operator: v1.NodeSelectorOpExists}}}), map[string]string{"a": "", "b": "", "c": no}},
		{"DoesNotExist", nil, required(v1.NodeSelectorTerm{MatchExpressions: []v1.NodeSelectorRequirement{{Key: "zone", Operator: v1.NodeSelectorOpDoesNotExist}}}), map[string]string{"a": no, "c": ""}},
		{"Gt", nil, required(v1.NodeSelectorTerm{MatchExpressions: []v1.NodeSelectorRequirement{{Key: "gen", Operator: v1.NodeSelectorOpGt, Values: []string{"4"}}}}), map[string]string{"a": no, "b": "", "c": no}},
		{"Lt", nil, required(v1.NodeSelectorTerm{MatchExpressions: []v1.NodeSelectorRequirement{{Key: "gen", Operator: v1.NodeSelectorOpLt, Values: []string{"4"}}}}), map[string]string{"a": "", "b": no}},
		{"terms are ORed", nil, required(
			v1.NodeSelectorTerm{MatchExpressions: []v1.NodeSelectorRequirement{{Key: "zone", Operator: v1.NodeSelectorOpIn, Values: []string{"z1"}}}},
			v1.NodeSelectorTerm{MatchFields: []v1.NodeSelectorRequirement{{Key: "metadata.name", Operator: v1.NodeSelectorOpIn, Values: []string{"c"}}}},
		), map[string]string{"a": "", "b": no, "c": ""}},
		{"matchFields metadata.name", nil, required(v1.NodeSelectorTerm{MatchFields: []v1.NodeSelectorRequirement{{Key: "metadata.name", Operator: v1.NodeSelectorOpIn, Values: []string{"b"}}}}), map[string]string{"a": no, "b": "", "c": no}},
		{"selector and affinity both apply", map[string]string{"zone": "z1"}, required(v1.NodeSelectorTerm{MatchExpressions: []v1.NodeSelectorRequirement{{Key: "zone", Operator: v1.NodeSelectorOpIn, Values: []string{"z2"}}}}), map[string]string{"a": no, "b": no}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snap := framework.NewSnapshot(nil, nodes)
			p, _ := New(nil)
			pod := schedtest.Pod("p", "", "", nil)
			pod.Spec.NodeSelector, pod.Spec.Affinity = tt.selector, tt.aff
			got := schedtest.FilterAll(schedtest.Handle(snap, nil, p).Fwk, snap, pod)
			for n, w := range tt.want {
				if got[n] != w {
					t.Errorf("node %s: got %q, want %q", n, got[n], w)
				}
			}
		})
	}
}

func TestScorePreferred(t *testing.T) {
	nodes := []*v1.Node{
		schedtest.Node("a", "1", "1Gi", map[string]string{"zone": "z1", "ssd": "true"}),
		schedtest.Node("b", "1", "1Gi", map[string]string{"zone": "z1"}),
		schedtest.Node("c", "1", "1Gi", nil),
	}
	pod := schedtest.Pod("p", "", "", nil)
	pod.Spec.Affinity = &v1.Affinity{NodeAffinity: &v1.NodeAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []v1.PreferredSchedulingTerm{
		{Weight: 30, Preference: v1.NodeSelectorTerm{MatchExpressions: []v1.NodeSelectorRequirement{{Key: "zone", Operator: v1.NodeSelectorOpIn, Values: []string{"z1"}}}}},
		{Weight: 70, Preference: v1.NodeSelectorTerm{MatchExpressions: []v1.NodeSelectorRequirement{{Key: "ssd", Operator: v1.NodeSelectorOpExists}}}},
	}}}
	snap := framework.NewSnapshot(nil, nodes)
	p, _ := New(nil)
	got := schedtest.ScoreAll(schedtest.Handle(snap, nil, p).Fwk, snap, pod)
	if got["a"] != 100 || got["b"] != 30 || got["c"] != 0 {
		t.Errorf("scores %v, want a=100 b=30 c=0", got)
	}
}
