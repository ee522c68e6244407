package replicaset

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"skiff.dev/skiff/internal/controller"
)

// fullCounts is what the tally must agree with: the pods of rs in the
// indexer, walked as the full sync path does.
func fullCounts(t *testing.T, c *Controller, rs *appsv1.ReplicaSet, sel labels.Selector) (podSummary, avail, int32, bool) {
	t.Helper()
	owned, orphans, err := controller.PodsControlledOrOrphaned(c.podIndexer, rs.Namespace, rs.UID)
	if err != nil {
		t.Fatal(err)
	}
	var claimed []*v1.Pod
	var mismatched int32
	for _, p := range controller.FilterActivePods(owned) {
		if sel.Matches(labels.Set(p.Labels)) {
			claimed = append(claimed, p)
		} else {
			mismatched++
		}
	}
	adoptable := false
	for _, p := range controller.FilterActivePods(orphans) {
		adoptable = adoptable || sel.Matches(labels.Set(p.Labels))
	}
	var av avail
	if rs.Spec.MinReadySeconds > 0 {
		av.next, av.waiting = nextAvailable(claimed, rs.Spec.MinReadySeconds, c.clock.Now())
	}
	sum := summarize(rs, claimed, c.clock.Now())
	av.n = sum.available
	return sum, av, mismatched, adoptable
}

// TestTallyMatchesPods drives the pod handlers with random adds, updates
// (labels, owner, phase, readiness, deletion) and deletes (some reported
// with a stale final state), changes the selectors and template labels of
// the ReplicaSets, and checks after every step that the tally's counts,
// pods to release and orphans to adopt equal a walk of the indexer.
func TestTallyMatchesPods(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { tallyScenario(t, seed) })
	}
}

func tallyScenario(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 17))
	a, b, cc := newRS("a", 5), newRS("b", 5), newRS("c", 5)
	b.Spec.Selector.MatchLabels = map[string]string{"app": "b", "tier": "web"} // requires the whole template
	cc.Spec.Selector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpIn, Values: []string{"a", "c"}}}}
	other := newRS("a", 5) // same name and selector, another namespace
	other.Namespace, other.UID = "other", "uid-other-a"
	rss := []*appsv1.ReplicaSet{a, b, cc, other}
	f := newFixture(t, false, a, b, cc, other)
	f.c.updateBatch = time.Hour // nothing delayed comes back during the test
	pods := f.factory.Core().V1().Pods().Informer().GetIndexer()
	rsIndexer := f.factory.Apps().V1().ReplicaSets().Informer().GetIndexer()

	labelSets := []map[string]string{
		{"app": "a", "tier": "web"}, {"app": "a"}, {"app": "b", "tier": "web"}, {"app": "b"},
		{"app": "c", "tier": "web"}, {"app": "c", "tier": "db"}, {"app": "x"}, nil,
	}
	owners := []func(*v1.Pod){
		func(p *v1.Pod) { p.OwnerReferences = nil },
		ownedBy(a), ownedBy(b), ownedBy(cc), ownedBy(other),
		func(p *v1.Pod) { // controlled by something else
			tr := true
			p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "Job", Name: "j", UID: "uid-job", Controller: &tr}}
		},
		func(p *v1.Pod) { // a non-controller owner only: still an orphan
			p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: "cm", UID: "uid-a"}}
		},
	}
	mutate := func(p *v1.Pod) {
		switch rng.IntN(6) {
		case 0:
			p.Labels = labelSets[rng.IntN(len(labelSets))]
		case 1:
			owners[rng.IntN(len(owners))](p)
		case 2:
			p.Status.Phase = []v1.PodPhase{v1.PodPending, v1.PodRunning, v1.PodSucceeded, v1.PodFailed, v1.PodUnknown}[rng.IntN(5)]
		case 3:
			st := []v1.ConditionStatus{v1.ConditionTrue, v1.ConditionFalse}[rng.IntN(2)]
			var since metav1.Time // sometimes unset
			if rng.IntN(5) > 0 {
				since = metav1.NewTime(f.clock.Now().Add(time.Duration(rng.IntN(40)-30) * time.Second))
			}
			p.Status.Conditions = []v1.PodCondition{{Type: v1.PodScheduled, Status: v1.ConditionTrue}, {Type: v1.PodReady, Status: st, LastTransitionTime: since}}
		case 4:
			p.Status.Conditions = nil
		case 5:
			ts := metav1.NewTime(now)
			p.DeletionTimestamp = &ts
		}
	}
	var live []*v1.Pod
	rv := 0
	for step := range 400 {
		rv++
		switch op := rng.IntN(10); {
		case op < 4 || len(live) == 0: // add
			ns := "default"
			if rng.IntN(5) == 0 {
				ns = "other"
			}
			p := newPod(fmt.Sprintf("p%d", step), labelSets[rng.IntN(len(labelSets))], now)
			p.Namespace, p.ResourceVersion = ns, fmt.Sprint(rv)
			owners[rng.IntN(len(owners))](p)
			for range rng.IntN(3) {
				mutate(p)
			}
			if err := pods.Add(p); err != nil {
				t.Fatal(err)
			}
			f.c.addPod(p)
			live = append(live, p)
		case op < 8: // update
			i := rng.IntN(len(live))
			old := live[i]
			cur := old.DeepCopy()
			cur.ResourceVersion = fmt.Sprint(rv)
			mutate(cur)
			if err := pods.Update(cur); err != nil {
				t.Fatal(err)
			}
			f.c.updatePod(old, cur)
			live[i] = cur
		case op < 9: // delete
			i := rng.IntN(len(live))
			p := live[i]
			live = append(live[:i], live[i+1:]...)
			if err := pods.Delete(p); err != nil {
				t.Fatal(err)
			}
			var ev any = p
			if rng.IntN(2) == 0 {
				// A missed delete: the final state may be older than the
				// last update the handler saw.
				stale := p.DeepCopy()
				owners[rng.IntN(len(owners))](stale)
				stale.Labels = labelSets[rng.IntN(len(labelSets))]
				ev = cache.DeletedFinalStateUnknown{Key: p.Namespace + "/" + p.Name, Obj: stale}
			}
			f.c.deletePod(ev)
		default: // the spec a ReplicaSet's pods are classified against
			rs := rss[rng.IntN(len(rss))]
			if rng.IntN(3) == 0 {
				rs.Spec.MinReadySeconds = []int32{0, 1, 5, 20}[rng.IntN(4)]
			} else if rng.IntN(2) == 0 {
				rs.Spec.Template.Labels = labelSets[rng.IntN(len(labelSets))]
			} else {
				rs.Spec.Selector = &metav1.LabelSelector{MatchLabels: labelSets[rng.IntN(len(labelSets)-1)]}
			}
			if err := rsIndexer.Update(rs); err != nil {
				t.Fatal(err)
			}
		}
		if rng.IntN(10) == 0 {
			f.clock.Step(time.Duration(rng.IntN(3000)) * time.Millisecond)
		}
		for _, rs := range rss {
			sel, err := metav1.LabelSelectorAsSelector(rs.Spec.Selector)
			if err != nil {
				t.Fatal(err)
			}
			n, av, adoptable := f.c.tally.summary(rs, sel, f.clock.Now())
			want, wantAv, wantMismatched, wantAdoptable := fullCounts(t, f.c, rs, sel)
			got := podSummary{replicas: n.replicas, fullyLabeled: n.fullyLabeled, ready: n.ready, available: av.n}
			if got != want || av != wantAv || n.mismatched != wantMismatched || adoptable != wantAdoptable {
				t.Fatalf("step %d, %s/%s (minReadySeconds %d): tally %+v %+v (mismatched %d, adoptable %v), pods say %+v %+v (mismatched %d, adoptable %v)",
					step, rs.Namespace, rs.Name, rs.Spec.MinReadySeconds, got, av, n.mismatched, adoptable, want, wantAv, wantMismatched, wantAdoptable)
			}
		}
	}
	// The tally forgets what was deleted.
	for _, p := range live {
		if err := pods.Delete(p); err != nil {
			t.Fatal(err)
		}
		f.c.deletePod(p)
	}
	if len(f.c.tally.owners) != 0 || len(f.c.tally.where) != 0 {
		t.Fatalf("after deleting every pod the tally holds %d owners, %d pods", len(f.c.tally.owners), len(f.c.tally.where))
	}
}

// TestTallyOrphanAdoptionRace: the indexer already shows an orphan as
// adopted by the ReplicaSet while the pod handler has not seen that
// update yet. The sync must not count from the tally (which still sees
// an orphan to adopt) while trusting the indexer about orphans: it would
// miss the pod and create one too many.
func TestTallyOrphanAdoptionRace(t *testing.T) {
	rs := newRS("web", 3)
	p1 := newPod("web-1", rs.Spec.Template.Labels, now, ownedBy(rs), running("n1", now))
	p2 := newPod("web-2", rs.Spec.Template.Labels, now, ownedBy(rs), running("n1", now))
	orphan := newPod("web-3", rs.Spec.Template.Labels, now, running("n1", now))
	rs.Status = appsv1.ReplicaSetStatus{Replicas: 3, FullyLabeledReplicas: 3, ReadyReplicas: 3, AvailableReplicas: 3, ObservedGeneration: rs.Generation}
	f := newFixture(t, false, rs, p1, p2, orphan)
	adopted := orphan.DeepCopy()
	ownedBy(rs)(adopted)
	if err := f.factory.Core().V1().Pods().Informer().GetIndexer().Update(adopted); err != nil {
		t.Fatal(err)
	}
	if err := f.c.Sync(context.Background(), "default/web"); err != nil {
		t.Fatal(err)
	}
	f.expectActions() // three pods: nothing to create, status unchanged
}

// TestTallyFastPathWritesLikeFullPath runs the same syncs with the tally
// and with a walk of the pods and wants the same API writes: a scale-up
// (creations and status), a converged ReplicaSet (nothing) and a
// ReplicaSet with pods of mixed readiness and labels.
func TestTallyFastPathWritesLikeFullPath(t *testing.T) {
	for _, tc := range []struct {
		name     string
		replicas int32
		pods     func(rs *appsv1.ReplicaSet) []*v1.Pod
	}{
		{"scale up", 5, func(rs *appsv1.ReplicaSet) []*v1.Pod {
			return []*v1.Pod{newPod("web-1", rs.Spec.Template.Labels, now, ownedBy(rs), running("n1", now))}
		}},
		{"converged", 2, func(rs *appsv1.ReplicaSet) []*v1.Pod {
			return []*v1.Pod{
				newPod("web-1", rs.Spec.Template.Labels, now, ownedBy(rs), running("n1", now)),
				newPod("web-2", rs.Spec.Template.Labels, now, ownedBy(rs), running("n1", now)),
			}
		}},
		{"mixed", 4, func(rs *appsv1.ReplicaSet) []*v1.Pod {
			done := newPod("web-4", rs.Spec.Template.Labels, now, ownedBy(rs))
			done.Status.Phase = v1.PodSucceeded
			return []*v1.Pod{
				newPod("web-1", rs.Spec.Template.Labels, now, ownedBy(rs), running("n1", now)),
				newPod("web-2", map[string]string{"app": "web"}, now, ownedBy(rs), running("n1", now)),
				newPod("web-3", rs.Spec.Template.Labels, now, ownedBy(rs)),
				done,
				newPod("job-1", rs.Spec.Template.Labels, now, func(p *v1.Pod) {
					tr := true
					p.OwnerReferences = []metav1.OwnerReference{{Kind: "Job", Name: "j", UID: types.UID("uid-j"), Controller: &tr}}
				}),
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var writes [2][]string
			var statuses [2]appsv1.ReplicaSetStatus
			for i, noTally := range []bool{false, true} {
				rs := newRS("web", tc.replicas)
				rs.Status.ObservedGeneration = rs.Generation
				if tc.name == "converged" {
					rs.Status = appsv1.ReplicaSetStatus{Replicas: 2, FullyLabeledReplicas: 2, ReadyReplicas: 2, AvailableReplicas: 2, ObservedGeneration: rs.Generation}
				}
				objs := []runtime.Object{rs}
				for _, p := range tc.pods(rs) {
					objs = append(objs, p)
				}
				f := newFixture(t, false, objs...)
				f.c.noTally = noTally
				if err := f.c.Sync(context.Background(), "default/web"); err != nil {
					t.Fatal(err)
				}
				if fast := f.c.fastSyncs.Load(); fast != map[bool]int64{false: 1, true: 0}[noTally] {
					t.Fatalf("noTally=%v: %d syncs took the fast path", noTally, fast)
				}
				writes[i] = f.actions()
				if len(writes[i]) > 0 && writes[i][len(writes[i])-1] == "update replicasets/status" {
					statuses[i] = lastStatus(t, f)
				}
			}
			if fmt.Sprint(writes[0]) != fmt.Sprint(writes[1]) || fmt.Sprintf("%+v", statuses[0]) != fmt.Sprintf("%+v", statuses[1]) {
				t.Fatalf("tally: %q %+v\nwalk:  %q %+v", writes[0], statuses[0], writes[1], statuses[1])
			}
		})
	}
}

// TestSameRefAndLabels: the handlers' comparisons agree with
// reflect.DeepEqual, which they replace.
func TestSameRefAndLabels(t *testing.T) {
	tr, fa := true, false
	refs := []*metav1.OwnerReference{
		nil,
		{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "a", UID: "u"},
		{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "a", UID: "u", Controller: &tr},
		{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "a", UID: "u", Controller: &fa},
		{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "a", UID: "u", Controller: &tr, BlockOwnerDeletion: &tr},
		{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "a", UID: "v", Controller: &tr},
		{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "b", UID: "u", Controller: &tr},
		{APIVersion: "v1", Kind: "ReplicaSet", Name: "a", UID: "u", Controller: &tr},
		{APIVersion: "apps/v1", Kind: "Deployment", Name: "a", UID: "u", Controller: &tr},
	}
	for _, a := range refs {
		for _, b := range refs {
			var b2 *metav1.OwnerReference
			if b != nil {
				b2 = b.DeepCopy() // equal values behind other pointers
			}
			if got, want := sameRef(a, b2), reflect.DeepEqual(a, b2); got != want {
				t.Errorf("sameRef(%+v, %+v) = %v, want %v", a, b2, got, want)
			}
		}
	}
	sets := []map[string]string{nil, {}, {"a": "1"}, {"a": "2"}, {"b": "1"}, {"a": "1", "b": "1"}}
	for _, a := range sets {
		for _, b := range sets {
			if got, want := sameLabels(a, b), reflect.DeepEqual(a, b); got != want {
				t.Errorf("sameLabels(%v, %v) = %v, want %v", a, b, got, want)
			}
		}
	}
}

// TestTallyAvailabilityBoundary: a pod ready for exactly minReadySeconds
// is available (as controller.IsPodAvailable), one ready a second less
// is the next to become available, in one second.
func TestTallyAvailabilityBoundary(t *testing.T) {
	rs := newRS("web", 3)
	rs.Spec.MinReadySeconds = 10
	objs := []runtime.Object{rs,
		newPod("web-1", rs.Spec.Template.Labels, now, ownedBy(rs), running("n1", now.Add(-10*time.Second))),
		newPod("web-2", rs.Spec.Template.Labels, now, ownedBy(rs), running("n1", now.Add(-9*time.Second))),
		newPod("web-3", rs.Spec.Template.Labels, now, ownedBy(rs), running("n1", now.Add(-30*time.Second))),
	}
	f := newFixture(t, false, objs...)
	sel, _ := metav1.LabelSelectorAsSelector(rs.Spec.Selector)
	n, av, _ := f.c.tally.summary(rs, sel, now)
	if n.ready != 3 || av.n != 2 || !av.waiting || av.next != time.Second {
		t.Fatalf("ready %d, available %d, next in %v (%v); want 3, 2, 1s (true)", n.ready, av.n, av.next, av.waiting)
	}
	if _, av, _ = f.c.tally.summary(rs, sel, now.Add(time.Second)); av.n != 3 || av.waiting {
		t.Fatalf("a second later: available %d, waiting %v; want 3, false", av.n, av.waiting)
	}
}
