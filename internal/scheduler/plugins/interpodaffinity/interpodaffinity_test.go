package interpodaffinity

import (
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"skiff.dev/skiff/internal/scheduler/framework"
	"skiff.dev/skiff/internal/scheduler/schedtest"
)

func term(key string, sel map[string]string) v1.PodAffinityTerm {
	return v1.PodAffinityTerm{TopologyKey: key, LabelSelector: &metav1.LabelSelector{MatchLabels: sel}}
}

func withAffinity(p *v1.Pod, aff, anti []v1.PodAffinityTerm) *v1.Pod {
	p.Spec.Affinity = &v1.Affinity{}
	if aff != nil {
		p.Spec.Affinity.PodAffinity = &v1.PodAffinity{RequiredDuringSchedulingIgnoredDuringExecution: aff}
	}
	if anti != nil {
		p.Spec.Affinity.PodAntiAffinity = &v1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: anti}
	}
	return p
}

func TestFilter(t *testing.T) {
	nodes := []*v1.Node{
		schedtest.Node("a1", "1", "1Gi", map[string]string{"zone": "a"}),
		schedtest.Node("a2", "1", "1Gi", map[string]string{"zone": "a"}),
		schedtest.Node("b1", "1", "1Gi", map[string]string{"zone": "b"}),
		schedtest.Node("nozone", "1", "1Gi", nil),
	}
	web := map[string]string{"app": "web"}
	db := map[string]string{"app": "db"}
	antiOK := "Unschedulable: " + ErrReasonAntiAffinityRulesNotMatch
	existingNo := "Unschedulable: " + ErrReasonExistingAntiAffinityRulesNotMatch
	affNo := "UnschedulableAndUnresolvable: " + ErrReasonAffinityRulesNotMatch
	otherNS := schedtest.Pod("db-other", "b1", "", db)
	otherNS.Namespace = "other"
	tests := []struct {
		name     string
		existing []*v1.Pod
		pod      *v1.Pod
		ns       map[string]labels.Set
		want     map[string]string
	}{
		{"affinity to zone with db", []*v1.Pod{schedtest.Pod("db", "a1", "", db)},
			withAffinity(schedtest.Pod("p", "", "", web), []v1.PodAffinityTerm{term("zone", db)}, nil),
			nil, map[string]string{"a1": "", "a2": "", "b1": affNo, "nozone": affNo}},
		{"first pod of a self-affine group may go anywhere with the key", nil,
			withAffinity(schedtest.Pod("p", "", "", web), []v1.PodAffinityTerm{term("zone", web)}, nil),
			nil, map[string]string{"a1": "", "b1": "", "nozone": affNo}},
		{"anti-affinity by zone", []*v1.Pod{schedtest.Pod("w", "a1", "", web)},
			withAffinity(schedtest.Pod("p", "", "", web), nil, []v1.PodAffinityTerm{term("zone", web)}),
			nil, map[string]string{"a1": antiOK, "a2": antiOK, "b1": "", "nozone": ""}},
		{"symmetry: existing pod's anti-affinity rejects the incoming pod",
			[]*v1.Pod{withAffinity(schedtest.Pod("loner", "b1", "", db), nil, []v1.PodAffinityTerm{term("zone", web)})},
			schedtest.Pod("p", "", "", web),
			nil, map[string]string{"a1": "", "b1": existingNo, "nozone": ""}},
		{"first pod of a self-affine group still respects existing pods' anti-affinity",
			[]*v1.Pod{withAffinity(schedtest.Pod("loner", "b1", "", db), nil, []v1.PodAffinityTerm{term("zone", web)})},
			withAffinity(schedtest.Pod("p", "", "", web), []v1.PodAffinityTerm{term("zone", web)}, nil),
			nil, map[string]string{"a1": "", "b1": existingNo, "nozone": affNo}},
		{"reasons in upstream order: the pod's own anti-affinity before existing pods'",
			[]*v1.Pod{withAffinity(schedtest.Pod("w", "a1", "", web), nil, []v1.PodAffinityTerm{term("zone", web)})},
			withAffinity(schedtest.Pod("p", "", "", web), nil, []v1.PodAffinityTerm{term("zone", web)}),
			nil, map[string]string{"a1": antiOK, "a2": antiOK, "b1": ""}},
		{"reasons in upstream order: affinity first",
			[]*v1.Pod{withAffinity(schedtest.Pod("w", "a1", "", web), nil, []v1.PodAffinityTerm{term("zone", web)})},
			withAffinity(schedtest.Pod("p", "", "", web), []v1.PodAffinityTerm{term("zone", db)}, []v1.PodAffinityTerm{term("zone", web)}),
			nil, map[string]string{"a1": affNo, "b1": affNo}},
		{"anti-affinity ignores other namespaces by default", []*v1.Pod{otherNS},
			withAffinity(schedtest.Pod("p", "", "", web), nil, []v1.PodAffinityTerm{term("zone", db)}),
			nil, map[string]string{"b1": ""}},
		{"namespaceSelector selects other namespaces", []*v1.Pod{otherNS},
			withAffinity(schedtest.Pod("p", "", "", web), nil, []v1.PodAffinityTerm{func() v1.PodAffinityTerm {
				tt := term("zone", db)
				tt.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"team": "x"}}
				return tt
			}()}),
			map[string]labels.Set{"other": {"team": "x"}, "default": {}}, map[string]string{"a1": "", "b1": antiOK}},
		{"explicit namespaces list", []*v1.Pod{otherNS},
			withAffinity(schedtest.Pod("p", "", "", web), nil, []v1.PodAffinityTerm{func() v1.PodAffinityTerm {
				tt := term("zone", db)
				tt.Namespaces = []string{"other"}
				return tt
			}()}),
			nil, map[string]string{"b1": antiOK}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snap := framework.NewSnapshot(tt.existing, nodes)
			h := schedtest.Handle(snap, tt.ns)
			p, _ := New(h)
			h.Fwk = framework.NewFramework([]framework.Plugin{p}, nil, h.Par)
			got := schedtest.FilterAll(h.Fwk, snap, tt.pod)
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
		schedtest.Node("a1", "1", "1Gi", map[string]string{"zone": "a"}),
		schedtest.Node("b1", "1", "1Gi", map[string]string{"zone": "b"}),
		schedtest.Node("c1", "1", "1Gi", map[string]string{"zone": "c"}),
	}
	existing := []*v1.Pod{schedtest.Pod("cache", "a1", "", map[string]string{"app": "cache"}), schedtest.Pod("noisy", "c1", "", map[string]string{"app": "noisy"})}
	pod := schedtest.Pod("p", "", "", nil)
	pod.Spec.Affinity = &v1.Affinity{
		PodAffinity:     &v1.PodAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []v1.WeightedPodAffinityTerm{{Weight: 10, PodAffinityTerm: term("zone", map[string]string{"app": "cache"})}}},
		PodAntiAffinity: &v1.PodAntiAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []v1.WeightedPodAffinityTerm{{Weight: 10, PodAffinityTerm: term("zone", map[string]string{"app": "noisy"})}}},
	}
	snap := framework.NewSnapshot(existing, nodes)
	h := schedtest.Handle(snap, nil)
	p, _ := New(h)
	h.Fwk = framework.NewFramework([]framework.Plugin{p}, nil, h.Par)
	got := schedtest.ScoreAll(h.Fwk, snap, pod)
	if got["a1"] != 100 || got["b1"] != 50 || got["c1"] != 0 {
		t.Errorf("scores %v, want a1=100 b1=50 c1=0", got)
	}
}
