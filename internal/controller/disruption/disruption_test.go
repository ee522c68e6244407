package disruption

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	clocktesting "k8s.io/utils/clock/testing"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func ptr[T any](v T) *T { return &v }

func budget(minA, maxU *intstr.IntOrString) *policyv1.PodDisruptionBudget {
	return &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: "b", Namespace: "ns", Generation: 3},
		Spec: policyv1.PodDisruptionBudgetSpec{
			MinAvailable: minA, MaxUnavailable: maxU,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
		},
	}
}

func pod(name string, ready bool, owner *metav1.OwnerReference) *corev1.Pod {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", Labels: map[string]string{"app": "web"}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}},
	}
	if owner != nil {
		p.OwnerReferences = []metav1.OwnerReference{*owner}
	}
	return p
}

func ctrlRef(kind, name, uid string) *metav1.OwnerReference {
	return &metav1.OwnerReference{APIVersion: "apps/v1", Kind: kind, Name: name, UID: types.UID(uid), Controller: ptr(true)}
}

type fixture struct {
	c      *Controller
	client *fake.Clientset
	clock  *clocktesting.FakeClock
}

func newFixture(t *testing.T, objs ...runtime.Object) *fixture {
	t.Helper()
	client := fake.NewClientset(objs...)
	f := informers.NewSharedInformerFactory(client, 0)
	clk := clocktesting.NewFakeClock(t0)
	c, err := New(Config{Clock: clk}, client, f, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		var err error
		switch o := o.(type) {
		case *policyv1.PodDisruptionBudget:
			err = f.Policy().V1().PodDisruptionBudgets().Informer().GetIndexer().Add(o)
		case *corev1.Pod:
			err = f.Core().V1().Pods().Informer().GetIndexer().Add(o)
		case *appsv1.ReplicaSet:
			err = f.Apps().V1().ReplicaSets().Informer().GetIndexer().Add(o)
		case *appsv1.Deployment:
			err = f.Apps().V1().Deployments().Informer().GetIndexer().Add(o)
		case *appsv1.StatefulSet:
			err = f.Apps().V1().StatefulSets().Informer().GetIndexer().Add(o)
		case *corev1.ReplicationController:
			err = f.Core().V1().ReplicationControllers().Informer().GetIndexer().Add(o)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	client.ClearActions()
	return &fixture{c: c, client: client, clock: clk}
}

// syncStatus runs Sync and returns the status written (nil when nothing
// was written).
func (f *fixture) syncStatus(t *testing.T) *policyv1.PodDisruptionBudgetStatus {
	t.Helper()
	if err := f.c.Sync(context.Background(), "ns/b"); err != nil {
		t.Fatalf("sync: %v", err)
	}
	var out *policyv1.PodDisruptionBudgetStatus
	for _, a := range f.client.Actions() {
		u, ok := a.(k8stesting.UpdateAction)
		if !ok || a.GetSubresource() != "status" || a.GetResource().Resource != "poddisruptionbudgets" {
			t.Fatalf("unexpected action %v", a)
		}
		out = &u.GetObject().(*policyv1.PodDisruptionBudget).Status
	}
	return out
}

func TestBudgets(t *testing.T) {
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "rs", Namespace: "ns", UID: "rs-uid",
		OwnerReferences: []metav1.OwnerReference{*ctrlRef("Deployment", "d", "d-uid")}}, Spec: appsv1.ReplicaSetSpec{Replicas: ptr[int32](4)}}
	rsOld := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "rs-old", Namespace: "ns", UID: "rs-old-uid",
		OwnerReferences: []metav1.OwnerReference{*ctrlRef("Deployment", "d", "d-uid")}}, Spec: appsv1.ReplicaSetSpec{Replicas: ptr[int32](1)}}
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "d", Namespace: "ns", UID: "d-uid"}, Spec: appsv1.DeploymentSpec{Replicas: ptr[int32](5)}}
	ss := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "ss", Namespace: "ns", UID: "ss-uid"}, Spec: appsv1.StatefulSetSpec{Replicas: ptr[int32](4)}}
	rsRef := ctrlRef("ReplicaSet", "rs", "rs-uid")
	rsOldRef := ctrlRef("ReplicaSet", "rs-old", "rs-old-uid")
	ssRef := ctrlRef("StatefulSet", "ss", "ss-uid")
	intOr := intstr.FromInt32
	pct := intstr.FromString

	tests := []struct {
		name                                string
		pdb                                 *policyv1.PodDisruptionBudget
		objs                                []runtime.Object
		expected, desired, healthy, allowed int32
		reason                              string
	}{
		{
			name:     "minAvailable int counts pods",
			pdb:      budget(ptr(intOr(2)), nil),
			objs:     []runtime.Object{pod("a", true, nil), pod("b", true, nil), pod("c", true, nil), pod("d", false, nil)},
			expected: 4, desired: 2, healthy: 3, allowed: 1, reason: reasonSufficient,
		},
		{
			name:     "minAvailable not met",
			pdb:      budget(ptr(intOr(3)), nil),
			objs:     []runtime.Object{pod("a", true, nil), pod("b", false, nil)},
			expected: 2, desired: 3, healthy: 1, allowed: 0, reason: reasonInsufficient,
		},
		{
			name: "maxUnavailable uses the deployment's scale across its replica sets",
			pdb:  budget(nil, ptr(intOr(1))),
			objs: []runtime.Object{rs, rsOld, dep, pod("a", true, rsRef), pod("b", true, rsRef), pod("c", true, rsRef),
				pod("d", true, rsRef), pod("e", true, rsOldRef)},
			expected: 5, desired: 4, healthy: 5, allowed: 1, reason: reasonSufficient,
		},
		{
			name:     "minAvailable percent of a statefulset rounds up",
			pdb:      budget(ptr(pct("50%")), nil),
			objs:     []runtime.Object{ss, pod("a", true, ssRef), pod("b", true, ssRef), pod("c", false, ssRef)},
			expected: 4, desired: 2, healthy: 2, allowed: 0, reason: reasonInsufficient,
		},
		{
			name:     "maxUnavailable percent rounds up",
			pdb:      budget(nil, ptr(pct("30%"))),
			objs:     []runtime.Object{ss, pod("a", true, ssRef), pod("b", true, ssRef), pod("c", true, ssRef), pod("d", true, ssRef)},
			expected: 4, desired: 2, healthy: 4, allowed: 2, reason: reasonSufficient,
		},
		{
			name:   "maxUnavailable with an orphan pod fails",
			pdb:    budget(nil, ptr(intOr(1))),
			objs:   []runtime.Object{pod("a", true, nil)},
			reason: reasonSyncFailed,
		},
		{
			name:     "no pods allow nothing",
			pdb:      budget(ptr(intOr(0)), nil),
			expected: 0, desired: 0, healthy: 0, allowed: 0, reason: reasonInsufficient,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, append([]runtime.Object{tt.pdb}, tt.objs...)...)
			st := f.syncStatus(t)
			if st == nil {
				t.Fatal("no status written")
			}
			if st.ExpectedPods != tt.expected || st.DesiredHealthy != tt.desired || st.CurrentHealthy != tt.healthy || st.DisruptionsAllowed != tt.allowed {
				t.Errorf("got expected=%d desired=%d healthy=%d allowed=%d, want %d %d %d %d", st.ExpectedPods, st.DesiredHealthy,
					st.CurrentHealthy, st.DisruptionsAllowed, tt.expected, tt.desired, tt.healthy, tt.allowed)
			}
			if st.ObservedGeneration != 3 {
				t.Errorf("observedGeneration = %d, want 3", st.ObservedGeneration)
			}
			if len(st.Conditions) != 1 || st.Conditions[0].Type != policyv1.DisruptionAllowedCondition || st.Conditions[0].Reason != tt.reason {
				t.Errorf("conditions = %+v, want reason %s", st.Conditions, tt.reason)
			}
		})
	}
}

func TestDisruptedPods(t *testing.T) {
	pdb := budget(ptr(intstr.FromInt32(1)), nil)
	pdb.Status.DisruptedPods = map[string]metav1.Time{
		"a":    metav1.NewTime(t0.Add(-30 * time.Second)), // recent: still counted as disrupted
		"b":    metav1.NewTime(t0.Add(-3 * time.Minute)),  // expired: counted again
		"gone": metav1.NewTime(t0),                        // pod deleted: dropped
	}
	f := newFixture(t, pdb, pod("a", true, nil), pod("b", true, nil), pod("c", true, nil))
	st := f.syncStatus(t)
	if st == nil {
		t.Fatal("no status written")
	}
	if len(st.DisruptedPods) != 1 || !st.DisruptedPods["a"].Time.Equal(t0.Add(-30*time.Second)) {
		t.Errorf("disruptedPods = %v, want only a", st.DisruptedPods)
	}
	if st.CurrentHealthy != 2 || st.DisruptionsAllowed != 1 {
		t.Errorf("healthy=%d allowed=%d, want 2 and 1", st.CurrentHealthy, st.DisruptionsAllowed)
	}
	if n := f.c.queue.Len(); n != 0 {
		t.Errorf("queue has %d keys before the recheck time", n)
	}
	// The recheck is scheduled for when a's entry expires.
	f.clock.Step(DeletionTimeout)
	deadline := time.Now().Add(5 * time.Second)
	for f.c.queue.Len() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if f.c.queue.Len() != 1 {
		t.Errorf("budget not requeued when the disrupted entry expires")
	}
}

func TestNoWriteWhenUnchanged(t *testing.T) {
	pdb := budget(ptr(intstr.FromInt32(1)), nil)
	f := newFixture(t, pdb, pod("a", true, nil))
	st := f.syncStatus(t)
	pdb2 := pdb.DeepCopy()
	pdb2.Status = *st
	f2 := newFixture(t, pdb2, pod("a", true, nil))
	if st2 := f2.syncStatus(t); st2 != nil {
		t.Errorf("status rewritten although unchanged: %+v", st2)
	}
}

// TestPodEventsQueueMatchingBudgets: a pod event queues the budgets of
// the pod's namespace that select it (old labels too on a relabel), and
// nothing (without allocating) in a namespace without budgets.
func TestPodEventsQueueMatchingBudgets(t *testing.T) {
	other := budget(nil, nil)
	other.Name, other.Spec.Selector = "api", &metav1.LabelSelector{MatchLabels: map[string]string{"app": "api"}}
	none := budget(nil, nil)
	none.Name, none.Spec.Selector = "none", nil
	elsewhere := budget(nil, nil)
	elsewhere.Namespace = "elsewhere"
	f := newFixture(t, budget(nil, nil), other, none, elsewhere)
	drain := func() []string {
		var keys []string
		for f.c.queue.Len() > 0 {
			k, _ := f.c.queue.Get()
			keys = append(keys, k)
			f.c.queue.Done(k)
			f.c.queue.Forget(k)
		}
		slices.Sort(keys)
		return keys
	}
	p := pod("p", true, nil)
	f.c.onPod(p)
	if got := drain(); !slices.Equal(got, []string{"ns/b"}) {
		t.Fatalf("pod event queued %q", got)
	}
	relabeled := p.DeepCopy()
	relabeled.Labels = map[string]string{"app": "api"}
	f.c.onPod(cache.DeletedFinalStateUnknown{Obj: relabeled})
	if got := drain(); !slices.Equal(got, []string{"ns/api"}) {
		t.Fatalf("tombstone queued %q", got)
	}
	lone := p.DeepCopy()
	lone.Namespace = "quiet"
	f.c.onPod(lone)
	if got := drain(); len(got) != 0 {
		t.Fatalf("pod of a namespace without budgets queued %q", got)
	}
	if n := testing.AllocsPerRun(50, func() { f.c.onPod(lone) }); n != 0 {
		t.Fatalf("%v allocations per event of a pod no budget can select", n)
	}
}
