package podtopologyspread

import (
	"maps"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"skiff.dev/skiff/internal/scheduler/framework"
	"skiff.dev/skiff/internal/scheduler/schedtest"
)

func spread(p *v1.Pod, c v1.TopologySpreadConstraint) *v1.Pod {
	if c.LabelSelector == nil {
		c.LabelSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}
	}
	if c.WhenUnsatisfiable == "" {
		c.WhenUnsatisfiable = v1.DoNotSchedule
	}
	p.Spec.TopologySpreadConstraints = append(p.Spec.TopologySpreadConstraints, c)
	return p
}

func TestFilter(t *testing.T) {
	web := map[string]string{"app": "web"}
	nodes := []*v1.Node{
		schedtest.Node("a1", "1", "1Gi", map[string]string{"zone": "a"}),
		schedtest.Node("b1", "1", "1Gi", map[string]string{"zone": "b", "pool": "x"}),
		schedtest.Node("nozone", "1", "1Gi", nil),
	}
	existing := []*v1.Pod{schedtest.Pod("w1", "a1", "", web), schedtest.Pod("w2", "a1", "", web)}
	skew := "Unschedulable: " + ErrReasonConstraintsNotMatch
	missing := "UnschedulableAndUnresolvable: " + ErrReasonNodeLabelNotMatch
	honor := v1.NodeInclusionPolicyHonor
	ignore := v1.NodeInclusionPolicyIgnore
	tests := []struct {
		name string
		pod  *v1.Pod
		want map[string]string
	}{
		{"maxSkew 1: zone a has 2, b has 0", spread(schedtest.Pod("p", "", "", web), v1.TopologySpreadConstraint{MaxSkew: 1, TopologyKey: "zone"}),
			map[string]string{"a1": skew, "b1": "", "nozone": missing}},
		{"maxSkew 3 allows zone a", spread(schedtest.Pod("p", "", "", web), v1.TopologySpreadConstraint{MaxSkew: 3, TopologyKey: "zone"}),
			map[string]string{"a1": "", "b1": ""}},
		{"pod not matching its own selector adds no skew", spread(schedtest.Pod("p", "", "", nil), v1.TopologySpreadConstraint{MaxSkew: 2, TopologyKey: "zone"}),
			map[string]string{"a1": "", "b1": ""}},
		{"minDomains above the domain count makes the minimum 0", spread(schedtest.Pod("p", "", "", web), v1.TopologySpreadConstraint{MaxSkew: 2, TopologyKey: "zone", MinDomains: ptr(int32(3))}),
			// zone a: 2+1-0 = 3 > 2; b: 0+1-0 = 1
			map[string]string{"a1": skew, "b1": ""}},
		{"nodeAffinityPolicy Honor: only zone b counts, min 0 there", func() *v1.Pod {
			p := spread(schedtest.Pod("p", "", "", web), v1.TopologySpreadConstraint{MaxSkew: 1, TopologyKey: "zone", NodeAffinityPolicy: &honor})
			p.Spec.NodeSelector = map[string]string{"pool": "x"}
			return p
		}(), map[string]string{"b1": ""}},
		{"nodeAffinityPolicy Ignore counts zone a too", func() *v1.Pod {
			p := spread(schedtest.Pod("p", "", "", web), v1.TopologySpreadConstraint{MaxSkew: 1, TopologyKey: "zone", NodeAffinityPolicy: &ignore})
			p.Spec.NodeSelector = map[string]string{"pool": "x"}
			return p
		}(), map[string]string{"a1": skew, "b1": ""}},
		{"matchLabelKeys narrows the selector", func() *v1.Pod {
			p := spread(schedtest.Pod("p", "", "", map[string]string{"app": "web", "rev": "2"}), v1.TopologySpreadConstraint{MaxSkew: 1, TopologyKey: "zone", MatchLabelKeys: []string{"rev"}})
			return p
		}(), map[string]string{"a1": "", "b1": ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snap := framework.NewSnapshot(existing, nodes)
			h := schedtest.Handle(snap, nil)
			p := New(h, Args{}, Listers{})
			got := schedtest.FilterAll(framework.NewFramework([]framework.Plugin{p}, nil, h.Par), snap, tt.pod)
			for n, w := range tt.want {
				if got[n] != w {
					t.Errorf("node %s: got %q, want %q", n, got[n], w)
				}
			}
		})
	}
}

func TestNodeTaintsPolicyHonor(t *testing.T) {
	web := map[string]string{"app": "web"}
	tainted := schedtest.Node("b1", "1", "1Gi", map[string]string{"zone": "b"})
	tainted.Spec.Taints = []v1.Taint{{Key: "k", Effect: v1.TaintEffectNoSchedule}}
	nodes := []*v1.Node{schedtest.Node("a1", "1", "1Gi", map[string]string{"zone": "a"}), tainted}
	existing := []*v1.Pod{schedtest.Pod("w1", "a1", "", web)}
	honor := v1.NodeInclusionPolicyHonor
	pod := spread(schedtest.Pod("p", "", "", web), v1.TopologySpreadConstraint{MaxSkew: 1, TopologyKey: "zone", NodeTaintsPolicy: &honor})
	snap := framework.NewSnapshot(existing, nodes)
	h := schedtest.Handle(snap, nil)
	got := schedtest.FilterAll(framework.NewFramework([]framework.Plugin{New(h, Args{}, Listers{})}, nil, h.Par), snap, pod)
	// Tainted zone b is not a domain, so zone a's min is its own count: 1+1-1 = 1 <= 1.
	if got["a1"] != "" {
		t.Errorf("a1: got %q, want fit (tainted domain excluded)", got["a1"])
	}
	pod.Spec.TopologySpreadConstraints[0].NodeTaintsPolicy = nil
	got = schedtest.FilterAll(framework.NewFramework([]framework.Plugin{New(h, Args{}, Listers{})}, nil, h.Par), snap, pod)
	if got["a1"] == "" {
		t.Errorf("a1: fits although the (ignored-taint) zone b has 0 pods")
	}
}

func TestScoreSpreadsSoftConstraint(t *testing.T) {
	web := map[string]string{"app": "web"}
	nodes := []*v1.Node{
		schedtest.Node("a1", "1", "1Gi", map[string]string{"zone": "a"}),
		schedtest.Node("b1", "1", "1Gi", map[string]string{"zone": "b"}),
	}
	existing := []*v1.Pod{schedtest.Pod("w1", "a1", "", web), schedtest.Pod("w2", "a1", "", web)}
	pod := spread(schedtest.Pod("p", "", "", web), v1.TopologySpreadConstraint{MaxSkew: 1, TopologyKey: "zone", WhenUnsatisfiable: v1.ScheduleAnyway})
	snap := framework.NewSnapshot(existing, nodes)
	h := schedtest.Handle(snap, nil)
	got := schedtest.ScoreAll(framework.NewFramework([]framework.Plugin{New(h, Args{}, Listers{})}, nil, h.Par), snap, pod)
	if got["b1"] != 100 || got["a1"] >= got["b1"] {
		t.Errorf("scores %v: want the empty zone b preferred at 100", got)
	}
}

func ptr[T any](v T) *T { return &v }

// TestSystemDefaultsScoreNodesWithoutZone: under upstream's system
// defaults, nodes without a zone label still spread by hostname; with the
// same constraints configured explicitly, such nodes are ignored (0).
func TestSystemDefaultsScoreNodesWithoutZone(t *testing.T) {
	app := map[string]string{"app": "a"}
	nodes := []*v1.Node{
		schedtest.Node("h1", "1", "1Gi", nil),
		schedtest.Node("h2", "1", "1Gi", nil),
		schedtest.Node("h3", "1", "1Gi", map[string]string{v1.LabelTopologyZone: "z1"}),
	}
	existing := []*v1.Pod{schedtest.Pod("e1", "h1", "", app), schedtest.Pod("e2", "h1", "", app), schedtest.Pod("e3", "h3", "", app)}
	pod := schedtest.Pod("p", "", "", app)
	for _, tc := range []struct {
		name     string
		defaults []v1.TopologySpreadConstraint
		want     map[string]int64
	}{
		// zone domains among the nodes: "" (h1, h2) and z1, weight ln 4;
		// hostname weight ln 5. h1: 2*ln5+2 = 5; h2: 2; h3: (1*ln4+4) +
		// (1*ln5+2) = 9. Normalized 100*(9+2-s)/9.
		{"system defaults", nil, map[string]int64{"h1": 66, "h2": 100, "h3": 22}},
		{"configured defaults", SystemDefaultConstraints, map[string]int64{"h1": 0, "h2": 0, "h3": 100}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			snap := framework.NewSnapshot(existing, nodes)
			h := schedtest.Handle(snap, nil)
			for _, scan := range []bool{false, true} {
				p := New(h, Args{DefaultConstraints: tc.defaults}, rsListers(t, app))
				p.scanOnly = scan
				got := schedtest.ScoreAll(framework.NewFramework([]framework.Plugin{p}, nil, h.Par), snap, pod)
				if !maps.Equal(got, tc.want) {
					t.Errorf("scan only %v: scores %v, want %v", scan, got, tc.want)
				}
			}
		})
	}
}
