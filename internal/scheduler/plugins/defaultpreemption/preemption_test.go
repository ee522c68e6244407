package defaultpreemption

import (
	"context"
	"slices"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"skiff.dev/skiff/internal/scheduler/framework"
	"skiff.dev/skiff/internal/scheduler/plugins/noderesourcesfit"
	"skiff.dev/skiff/internal/scheduler/schedtest"
)

var t0 = time.Unix(1000, 0)

func prioPod(name, node, cpu string, prio int32, started time.Duration, lbls map[string]string) *v1.Pod {
	p := schedtest.Pod(name, node, cpu, lbls)
	p.Spec.Priority = &prio
	st := metav1.NewTime(t0.Add(started))
	p.Status.StartTime = &st
	return p
}

func names(pods []*v1.Pod) []string {
	out := []string{}
	for _, p := range pods {
		out = append(out, p.Name)
	}
	return out
}

func TestSelectVictimsOnNode(t *testing.T) {
	protected := map[string]string{"pdb": "yes"}
	pdb := &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "b", Namespace: "default"},
		Spec:   policyv1.PodDisruptionBudgetSpec{Selector: &metav1.LabelSelector{MatchLabels: protected}, MinAvailable: &intstr.IntOrString{IntVal: 1}},
		Status: policyv1.PodDisruptionBudgetStatus{DisruptionsAllowed: 0}}
	tests := []struct {
		name           string
		existing       []*v1.Pod
		preemptor      *v1.Pod
		pdbs           []*policyv1.PodDisruptionBudget
		wantCandidate  bool
		wantVictims    []string
		wantViolations int
	}{
		{
			name:      "lowest priority pod is evicted, the next is reprieved",
			existing:  []*v1.Pod{prioPod("low1", "n", "1", 1, 0, nil), prioPod("low2", "n", "1", 2, 0, nil), prioPod("high", "n", "2", 100, 0, nil)},
			preemptor: prioPod("pre", "", "1", 50, 0, nil), wantCandidate: true, wantVictims: []string{"low1"},
		},
		{
			name:      "both lower pods must go",
			existing:  []*v1.Pod{prioPod("low1", "n", "1", 1, 0, nil), prioPod("low2", "n", "1", 2, 0, nil), prioPod("high", "n", "2", 100, 0, nil)},
			preemptor: prioPod("pre", "", "2", 50, 0, nil), wantCandidate: true, wantVictims: []string{"low2", "low1"},
		},
		{
			name:      "equal priority is never a victim",
			existing:  []*v1.Pod{prioPod("same", "n", "4", 50, 0, nil)},
			preemptor: prioPod("pre", "", "1", 50, 0, nil), wantCandidate: false,
		},
		{
			name:      "evicting every lower pod is not enough",
			existing:  []*v1.Pod{prioPod("low", "n", "1", 1, 0, nil), prioPod("high", "n", "3", 100, 0, nil)},
			preemptor: prioPod("pre", "", "2", 50, 0, nil), wantCandidate: false,
		},
		{
			name:      "among equal priorities the later-started pod is evicted first",
			existing:  []*v1.Pod{prioPod("old", "n", "2", 1, 0, nil), prioPod("young", "n", "2", 1, time.Hour, nil)},
			preemptor: prioPod("pre", "", "2", 50, 0, nil), wantCandidate: true, wantVictims: []string{"young"},
		},
		{
			name:      "PDB-protected pods are reprieved first",
			existing:  []*v1.Pod{prioPod("guarded", "n", "2", 1, 0, protected), prioPod("free", "n", "2", 2, 0, nil)},
			preemptor: prioPod("pre", "", "2", 50, 0, nil), pdbs: []*policyv1.PodDisruptionBudget{pdb},
			wantCandidate: true, wantVictims: []string{"free"},
		},
		{
			name:      "a PDB violation is counted when unavoidable",
			existing:  []*v1.Pod{prioPod("guarded", "n", "2", 1, 0, protected), prioPod("free", "n", "2", 2, 0, nil)},
			preemptor: prioPod("pre", "", "4", 50, 0, nil), pdbs: []*policyv1.PodDisruptionBudget{pdb},
			wantCandidate: true, wantVictims: []string{"guarded", "free"}, wantViolations: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snap := framework.NewSnapshot(tt.existing, []*v1.Node{schedtest.Node("n", "4", "8Gi", nil)})
			fit, _ := noderesourcesfit.New(nil)
			h := schedtest.Handle(snap, nil, fit)
			pl := New(h, nil)
			pi := framework.NewPodInfo(tt.preemptor)
			state := framework.NewCycleState()
			if _, st := h.Fwk.RunPreFilterPlugins(context.Background(), state, pi, snap); !st.IsSuccess() {
				t.Fatal(st)
			}
			c, ok := pl.SelectVictimsOnNode(context.Background(), state, pi, snap.NodeInfoMap["n"], tt.pdbs)
			if ok != tt.wantCandidate {
				t.Fatalf("candidate %v, want %v (victims %v)", ok, tt.wantCandidate, names(c.Victims))
			}
			if !ok {
				return
			}
			if got := names(c.Victims); !slices.Equal(got, tt.wantVictims) {
				t.Errorf("victims %v, want %v", got, tt.wantVictims)
			}
			if c.PDBViolations != tt.wantViolations {
				t.Errorf("PDB violations %d, want %d", c.PDBViolations, tt.wantViolations)
			}
			// The node itself is untouched: victims were chosen on a copy.
			if len(snap.NodeInfoMap["n"].Pods) != len(tt.existing) {
				t.Errorf("selecting victims changed the snapshot")
			}
		})
	}
}

func TestPickOne(t *testing.T) {
	v := func(name string, prio int32, started time.Duration) *v1.Pod {
		return prioPod(name, "", "1", prio, started, nil)
	}
	tests := []struct {
		name string
		cs   []Candidate
		want string
	}{
		{"fewest PDB violations first", []Candidate{
			{Node: "a", Victims: []*v1.Pod{v("x", 1, 0)}, PDBViolations: 1},
			{Node: "b", Victims: []*v1.Pod{v("y", 9, 0), v("z", 9, 0)}},
		}, "b"},
		{"then the lowest highest-priority victim", []Candidate{
			{Node: "a", Victims: []*v1.Pod{v("x", 5, 0)}},
			{Node: "b", Victims: []*v1.Pod{v("y", 3, 0), v("z", 3, 0)}},
		}, "b"},
		{"then the lowest sum of priorities", []Candidate{
			{Node: "a", Victims: []*v1.Pod{v("x", 5, 0), v("y", 4, 0)}},
			{Node: "b", Victims: []*v1.Pod{v("z", 5, 0), v("w", 1, 0)}},
		}, "b"},
		{"negative priorities still sum as upstream (fewer victims lower sum)", []Candidate{
			{Node: "a", Victims: []*v1.Pod{v("x", -5, 0), v("y", -5, 0)}},
			{Node: "b", Victims: []*v1.Pod{v("z", -5, 0)}},
		}, "b"},
		{"then the fewest victims", []Candidate{
			{Node: "a", Victims: []*v1.Pod{v("x", 1, 0), v("y", 0, 0), v("w", 0, 0)}},
			{Node: "b", Victims: []*v1.Pod{v("z", 1, 0)}},
		}, "b"},
		{"then the latest-started highest-priority victims", []Candidate{
			{Node: "a", Victims: []*v1.Pod{v("x", 1, 0)}},
			{Node: "b", Victims: []*v1.Pod{v("y", 1, time.Hour)}},
		}, "b"},
		{"full tie: the first", []Candidate{
			{Node: "a", Victims: []*v1.Pod{v("x", 1, 0)}},
			{Node: "b", Victims: []*v1.Pod{v("y", 1, 0)}},
		}, "a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := PickOne(tt.cs).Node; got != tt.want {
				t.Fatalf("picked %s, want %s", got, tt.want)
			}
		})
	}
}

func TestPostFilterNominatesAndDeletesVictims(t *testing.T) {
	existing := []*v1.Pod{
		prioPod("big-low", "n1", "4", 10, 0, nil),
		prioPod("small-lower", "n2", "2", 1, 0, nil), prioPod("small-high", "n2", "2", 100, 0, nil),
	}
	snap := framework.NewSnapshot(existing, []*v1.Node{schedtest.Node("n1", "4", "8Gi", nil), schedtest.Node("n2", "4", "8Gi", nil)})
	fit, _ := noderesourcesfit.New(nil)
	h := schedtest.Handle(snap, nil, fit)
	client := fake.NewClientset(existing[0], existing[1], existing[2])
	h.Client = client
	pl := New(h, nil)
	pre := prioPod("pre", "", "2", 50, 0, nil)
	pi := framework.NewPodInfo(pre)
	state := framework.NewCycleState()
	h.Fwk.RunPreFilterPlugins(context.Background(), state, pi, snap)
	filtered := framework.NodeToStatus{
		"n1": framework.NewStatus(framework.Unschedulable, "Insufficient cpu"),
		"n2": framework.NewStatus(framework.Unschedulable, "Insufficient cpu"),
	}
	res, st := pl.PostFilter(context.Background(), state, pi, filtered)
	if !st.IsSuccess() {
		t.Fatal(st)
	}
	// n2 only loses a priority-1 pod; n1 would lose a priority-10 pod.
	if res.NominatedNodeName != "n2" {
		t.Fatalf("nominated %q, want n2", res.NominatedNodeName)
	}
	var deleted []string
	for _, a := range client.Actions() {
		if d, ok := a.(k8stesting.DeleteAction); ok {
			deleted = append(deleted, d.GetName())
		}
	}
	if !slices.Equal(deleted, []string{"small-lower"}) {
		t.Fatalf("deleted %v, want [small-lower]", deleted)
	}
}

func TestPostFilterRespectsPreemptNever(t *testing.T) {
	snap := framework.NewSnapshot(nil, []*v1.Node{schedtest.Node("n1", "1", "1Gi", nil)})
	h := schedtest.Handle(snap, nil)
	pre := prioPod("pre", "", "2", 50, 0, nil)
	never := v1.PreemptNever
	pre.Spec.PreemptionPolicy = &never
	_, st := New(h, nil).PostFilter(context.Background(), framework.NewCycleState(), framework.NewPodInfo(pre), framework.NodeToStatus{})
	if st.Code() != framework.Unschedulable {
		t.Fatalf("got %v, want Unschedulable", st)
	}
}

func TestPostFilterNoCandidatesMessage(t *testing.T) {
	snap := framework.NewSnapshot([]*v1.Pod{prioPod("high", "n1", "1", 100, 0, nil)},
		[]*v1.Node{schedtest.Node("n1", "1", "1Gi", nil), schedtest.Node("n2", "1", "1Gi", nil)})
	fit, _ := noderesourcesfit.New(nil)
	h := schedtest.Handle(snap, nil, fit)
	pre := prioPod("pre", "", "1", 50, 0, nil)
	pi := framework.NewPodInfo(pre)
	state := framework.NewCycleState()
	h.Fwk.RunPreFilterPlugins(context.Background(), state, pi, snap)
	filtered := framework.NodeToStatus{
		"n1": framework.NewStatus(framework.Unschedulable, "Insufficient cpu"),
		"n2": framework.NewStatus(framework.UnschedulableAndUnresolvable, "node(s) had untolerated taint(s)"),
	}
	_, st := New(h, nil).PostFilter(context.Background(), state, pi, filtered)
	want := "preemption: 0/2 nodes are available: 1 No preemption victims found for incoming pod, 1 Preemption is not helpful for scheduling."
	if st.Code() != framework.Unschedulable || st.Message() != want {
		t.Fatalf("got %v %q, want Unschedulable %q", st.Code(), st.Message(), want)
	}
}
