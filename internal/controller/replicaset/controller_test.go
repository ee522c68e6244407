package replicaset

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	core "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"

	"skiff.dev/skiff/internal/controller/controllertest"
)

var now = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

type fixture struct {
	t       testing.TB
	client  *fake.Clientset
	factory informers.SharedInformerFactory
	c       *Controller
	clock   *clocktesting.FakeClock
	// conflicts counts the writes the fake API refused with 409.
	conflicts func() int
}

// nameGenerator emulates the API server's generateName and uid assignment,
// which the fake object tracker lacks.
func nameGenerator(client *fake.Clientset) {
	var n atomic.Int32
	client.PrependReactor("create", "*", func(a core.Action) (bool, runtime.Object, error) {
		obj := a.(core.CreateAction).GetObject().(metav1.Object)
		if obj.GetName() == "" && obj.GetGenerateName() != "" {
			obj.SetName(fmt.Sprintf("%s%05d", obj.GetGenerateName(), n.Add(1)))
		}
		if obj.GetUID() == "" {
			obj.SetUID(types.UID("uid-" + obj.GetName()))
		}
		return false, nil, nil
	})
}

func newFixture(t testing.TB, rc bool, objs ...runtime.Object) *fixture {
	t.Helper()
	client := fake.NewClientset(objs...)
	conflicts := controllertest.ResourceVersions(client)
	nameGenerator(client)
	factory := informers.NewSharedInformerFactory(client, 0)
	clk := clocktesting.NewFakeClock(now)
	cfg := Config{Clock: clk}
	var c *Controller
	var err error
	if rc {
		c, err = NewReplicationManager(cfg, client, factory.Core().V1().ReplicationControllers(), factory.Core().V1().Pods(), record.NewFakeRecorder(100), nil)
	} else {
		c, err = NewReplicaSetController(cfg, client, factory.Apps().V1().ReplicaSets(), factory.Core().V1().Pods(), record.NewFakeRecorder(100), nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		var err error
		switch o := o.(type) {
		case *appsv1.ReplicaSet:
			err = factory.Apps().V1().ReplicaSets().Informer().GetIndexer().Add(o)
		case *v1.ReplicationController:
			err = factory.Core().V1().ReplicationControllers().Informer().GetIndexer().Add(o)
		case *v1.Pod:
			err = factory.Core().V1().Pods().Informer().GetIndexer().Add(o)
			// What the pod informer's add event would record.
			c.tally.observe(o)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	// Every sync that reads the tally checks it against the indexer.
	c.verifyTally = true
	client.ClearActions()
	return &fixture{t: t, client: client, factory: factory, c: c, clock: clk, conflicts: conflicts}
}

// actions returns "verb resource[/subresource] [name]" for every write.
func (f *fixture) actions() []string {
	var out []string
	for _, a := range f.client.Actions() {
		if a.GetVerb() == "list" || a.GetVerb() == "watch" || a.GetVerb() == "get" {
			continue
		}
		s := a.GetVerb() + " " + a.GetResource().Resource
		if a.GetSubresource() != "" {
			s += "/" + a.GetSubresource()
		}
		switch a := a.(type) {
		case core.DeleteAction:
			s += " " + a.GetName()
		case core.PatchAction:
			s += " " + a.GetName()
		}
		out = append(out, s)
	}
	return out
}

func (f *fixture) expectActions(want ...string) {
	f.t.Helper()
	got := f.actions()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		f.t.Fatalf("actions:\n got  %q\n want %q", got, want)
	}
}

func newRS(name string, replicas int32) *appsv1.ReplicaSet {
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("uid-" + name), Generation: 2},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: v1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name, "tier": "web"}},
				Spec:       v1.PodSpec{Containers: []v1.Container{{Name: "c", Image: "nginx"}}},
			},
		},
	}
}

type podOpt func(*v1.Pod)

func ownedBy(rs *appsv1.ReplicaSet) podOpt {
	return func(p *v1.Pod) {
		t := true
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID, Controller: &t}}
	}
}

func running(node string, readySince time.Time) podOpt {
	return func(p *v1.Pod) {
		p.Spec.NodeName = node
		p.Status.Phase = v1.PodRunning
		p.Status.Conditions = []v1.PodCondition{{Type: v1.PodReady, Status: v1.ConditionTrue, LastTransitionTime: metav1.NewTime(readySince)}}
	}
}

func newPod(name string, lbls map[string]string, created time.Time, opts ...podOpt) *v1.Pod {
	p := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("uid-" + name), Labels: lbls, CreationTimestamp: metav1.NewTime(created)}}
	p.Status.Phase = v1.PodPending
	for _, o := range opts {
		o(p)
	}
	return p
}

func lastStatus(t testing.TB, f *fixture) appsv1.ReplicaSetStatus {
	t.Helper()
	for i := len(f.client.Actions()) - 1; i >= 0; i-- {
		if u, ok := f.client.Actions()[i].(core.UpdateAction); ok && u.GetSubresource() == "status" {
			return u.GetObject().(*appsv1.ReplicaSet).Status
		}
	}
	t.Fatal("no status update")
	return appsv1.ReplicaSetStatus{}
}

func TestCreatesMissingPods(t *testing.T) {
	rs := newRS("web", 3)
	f := newFixture(t, false, rs)
	if err := f.c.Sync(context.Background(), "default/web"); err != nil {
		t.Fatal(err)
	}
	f.expectActions("create pods", "create pods", "create pods", "update replicasets/status")
	pods, _ := f.client.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{})
	for _, p := range pods.Items {
		ref := metav1.GetControllerOf(&p)
		if ref == nil || ref.UID != rs.UID || ref.Kind != "ReplicaSet" || !*ref.BlockOwnerDeletion {
			t.Fatalf("pod %s has controller ref %+v", p.Name, ref)
		}
		if p.GenerateName != "web-" || p.Labels["tier"] != "web" {
			t.Fatalf("pod %s: generateName %q labels %v", p.Name, p.GenerateName, p.Labels)
		}
	}
	if st := lastStatus(t, f); st.Replicas != 0 || st.ObservedGeneration != 2 {
		t.Fatalf("status %+v", st)
	}
}

func TestExpectationsPreventOverCreation(t *testing.T) {
	f := newFixture(t, false, newRS("web", 3))
	ctx := context.Background()
	if err := f.c.Sync(ctx, "default/web"); err != nil {
		t.Fatal(err)
	}
	// The ReplicaSet informer catches up with the status write; the pod
	// informer has not seen the three pods yet.
	cur, _ := f.client.AppsV1().ReplicaSets("default").Get(ctx, "web", metav1.GetOptions{})
	_ = f.factory.Apps().V1().ReplicaSets().Informer().GetIndexer().Update(cur)
	f.client.ClearActions()
	if err := f.c.Sync(ctx, "default/web"); err != nil {
		t.Fatal(err)
	}
	f.expectActions()
	// The informer reports two of them: still waiting for the third.
	pods, _ := f.client.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
	for i := range pods.Items[:2] {
		_ = f.factory.Core().V1().Pods().Informer().GetIndexer().Add(&pods.Items[i])
		f.c.addPod(&pods.Items[i])
	}
	if err := f.c.Sync(ctx, "default/web"); err != nil {
		t.Fatal(err)
	}
	f.expectActions("update replicasets/status") // status.replicas 2, no create
	f.client.ClearActions()
	// After the expectations time out the controller acts on what it sees.
	// The status it would write (two replicas) is what its last write
	// already said: the cache still holds the older version (status 0),
	// but the controller works from its own write, so no second write
	// (which the API server would refuse as a conflict).
	f.clock.Step(6 * time.Minute)
	if err := f.c.Sync(ctx, "default/web"); err != nil {
		t.Fatal(err)
	}
	f.expectActions("create pods")
	if f.conflicts() != 0 {
		t.Fatalf("%d writes conflicted", f.conflicts())
	}
}

func TestScaleDownDeletesLeastValuablePods(t *testing.T) {
	rs := newRS("web", 2)
	lbl := map[string]string{"app": "web", "tier": "web"}
	objs := []runtime.Object{rs,
		newPod("old-ready", lbl, now.Add(-time.Hour), ownedBy(rs), running("n1", now.Add(-time.Hour))),
		newPod("unassigned", lbl, now.Add(-2*time.Hour), ownedBy(rs)),
		newPod("new-ready", lbl, now.Add(-time.Minute), ownedBy(rs), running("n1", now.Add(-time.Minute))),
		newPod("older-ready", lbl, now.Add(-3*time.Hour), ownedBy(rs), running("n2", now.Add(-time.Hour))),
	}
	f := newFixture(t, false, objs...)
	if err := f.c.Sync(context.Background(), "default/web"); err != nil {
		t.Fatal(err)
	}
	got := f.actions()
	if len(got) != 3 || got[2] != "update replicasets/status" {
		t.Fatalf("actions %q", got)
	}
	deleted := map[string]bool{got[0]: true, got[1]: true}
	if !deleted["delete pods unassigned"] || !deleted["delete pods new-ready"] {
		t.Fatalf("deleted %q, want unassigned and new-ready", got[:2])
	}
	if st := lastStatus(t, f); st.Replicas != 4 || st.ReadyReplicas != 3 || st.AvailableReplicas != 3 || st.FullyLabeledReplicas != 4 {
		t.Fatalf("status %+v", st)
	}
	if _, dels := f.c.Expectations().Pending("default/web"); dels != 2 {
		t.Fatalf("pending deletions %d", dels)
	}
}

func TestAdoptsOrphansAndReleasesMismatches(t *testing.T) {
	rs := newRS("web", 2)
	objs := []runtime.Object{rs,
		newPod("orphan", map[string]string{"app": "web"}, now, running("n1", now)),
		newPod("relabelled", map[string]string{"app": "other"}, now, ownedBy(rs)),
		newPod("foreign", map[string]string{"app": "web"}, now, ownedBy(newRS("other", 1))),
	}
	f := newFixture(t, false, objs...)
	if err := f.c.Sync(context.Background(), "default/web"); err != nil {
		t.Fatal(err)
	}
	got := f.actions()
	want := map[string]bool{"patch pods orphan": true, "patch pods relabelled": true}
	// Order of the claims follows the lister; the create and status come after.
	if len(got) != 4 || !want[got[0]] || !want[got[1]] || got[0] == got[1] || got[2] != "create pods" || got[3] != "update replicasets/status" {
		t.Fatalf("actions %q", got)
	}
	orphan, _ := f.client.CoreV1().Pods("default").Get(context.Background(), "orphan", metav1.GetOptions{})
	if ref := metav1.GetControllerOf(orphan); ref == nil || ref.UID != rs.UID {
		t.Fatalf("orphan not adopted: %+v", orphan.OwnerReferences)
	}
	relabelled, _ := f.client.CoreV1().Pods("default").Get(context.Background(), "relabelled", metav1.GetOptions{})
	if len(relabelled.OwnerReferences) != 0 {
		t.Fatalf("relabelled not released: %+v", relabelled.OwnerReferences)
	}
}

func TestNoAdoptionWhenControllerRecreated(t *testing.T) {
	rs := newRS("web", 1)
	stale := rs.DeepCopy()
	stale.UID = "uid-stale"
	f := newFixture(t, false, rs, newPod("orphan", map[string]string{"app": "web"}, now))
	// The cache still holds an older incarnation of the ReplicaSet.
	_ = f.factory.Apps().V1().ReplicaSets().Informer().GetIndexer().Update(stale)
	err := f.c.Sync(context.Background(), "default/web")
	if err == nil || !strings.Contains(err.Error(), "recreated") {
		t.Fatalf("err = %v, want a refusal to adopt", err)
	}
	f.expectActions()
}

func TestReplicaFailureOnCreateError(t *testing.T) {
	f := newFixture(t, false, newRS("web", 5))
	calls := 0
	f.client.PrependReactor("create", "pods", func(core.Action) (bool, runtime.Object, error) {
		calls++
		return true, nil, apierrors.NewForbidden(v1.Resource("pods"), "", fmt.Errorf("exceeded quota"))
	})
	err := f.c.Sync(context.Background(), "default/web")
	if err == nil {
		t.Fatal("want error")
	}
	if calls != 1 {
		t.Fatalf("slow start must stop after the first failed batch, made %d calls", calls)
	}
	st := lastStatus(t, f)
	if len(st.Conditions) != 1 || st.Conditions[0].Type != appsv1.ReplicaSetReplicaFailure || st.Conditions[0].Reason != "FailedCreate" || !strings.Contains(st.Conditions[0].Message, "exceeded quota") {
		t.Fatalf("conditions %+v", st.Conditions)
	}
	if adds, _ := f.c.Expectations().Pending("default/web"); adds != 0 {
		t.Fatalf("failed creations must not stay expected, pending %d", adds)
	}
}

func TestReplicaFailureClearedOnSuccess(t *testing.T) {
	rs := newRS("web", 0)
	rs.Status.Conditions = []appsv1.ReplicaSetCondition{{Type: appsv1.ReplicaSetReplicaFailure, Status: v1.ConditionTrue, Reason: "FailedCreate"}}
	rs.Status.ObservedGeneration = 2
	f := newFixture(t, false, rs)
	if err := f.c.Sync(context.Background(), "default/web"); err != nil {
		t.Fatal(err)
	}
	f.expectActions("update replicasets/status")
	if st := lastStatus(t, f); len(st.Conditions) != 0 {
		t.Fatalf("conditions %+v", st.Conditions)
	}
}

func TestMinReadySeconds(t *testing.T) {
	rs := newRS("web", 2)
	rs.Spec.MinReadySeconds = 10
	lbl := map[string]string{"app": "web", "tier": "web"}
	f := newFixture(t, false, rs,
		newPod("a", lbl, now, ownedBy(rs), running("n", now.Add(-20*time.Second))),
		newPod("b", lbl, now, ownedBy(rs), running("n", now.Add(-4*time.Second))))
	if err := f.c.Sync(context.Background(), "default/web"); err != nil {
		t.Fatal(err)
	}
	if st := lastStatus(t, f); st.ReadyReplicas != 2 || st.AvailableReplicas != 1 {
		t.Fatalf("status %+v", st)
	}
	if d, ok := nextAvailable([]*v1.Pod{newPod("b", lbl, now, running("n", now.Add(-4*time.Second)))}, 10, now); !ok || d != 6*time.Second {
		t.Fatalf("requeue after %v %v, want 6s", d, ok)
	}
}

func TestSteadyStateWritesNothing(t *testing.T) {
	rs := newRS("web", 1)
	lbl := map[string]string{"app": "web", "tier": "web"}
	rs.Status = appsv1.ReplicaSetStatus{Replicas: 1, FullyLabeledReplicas: 1, ReadyReplicas: 1, AvailableReplicas: 1, ObservedGeneration: 2}
	f := newFixture(t, false, rs, newPod("a", lbl, now, ownedBy(rs), running("n", now)))
	if err := f.c.Sync(context.Background(), "default/web"); err != nil {
		t.Fatal(err)
	}
	f.expectActions()
}

func TestMissingObjectIsNotAnError(t *testing.T) {
	f := newFixture(t, false)
	if err := f.c.Sync(context.Background(), "default/gone"); err != nil {
		t.Fatal(err)
	}
	f.expectActions()
}

func TestReplicationController(t *testing.T) {
	two := int32(2)
	rc := &v1.ReplicationController{
		ObjectMeta: metav1.ObjectMeta{Name: "legacy", Namespace: "default", UID: "uid-legacy", Generation: 1},
		Spec: v1.ReplicationControllerSpec{
			Replicas: &two,
			Template: &v1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "legacy"}}},
		},
	}
	f := newFixture(t, true, rc)
	if err := f.c.Sync(context.Background(), "default/legacy"); err != nil {
		t.Fatal(err)
	}
	f.expectActions("create pods", "create pods", "update replicationcontrollers/status")
	pods, _ := f.client.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{})
	for _, p := range pods.Items {
		ref := metav1.GetControllerOf(&p)
		if ref == nil || ref.Kind != "ReplicationController" || ref.APIVersion != "v1" || ref.UID != rc.UID {
			t.Fatalf("pod %s ref %+v", p.Name, ref)
		}
	}
	got, _ := f.client.CoreV1().ReplicationControllers("default").Get(context.Background(), "legacy", metav1.GetOptions{})
	if got.Status.ObservedGeneration != 1 {
		t.Fatalf("rc status %+v", got.Status)
	}
}

func TestBurstCap(t *testing.T) {
	f := newFixture(t, false, newRS("web", 10))
	f.c.burst = 4
	if err := f.c.Sync(context.Background(), "default/web"); err != nil {
		t.Fatal(err)
	}
	f.expectActions("create pods", "create pods", "create pods", "create pods", "update replicasets/status")
}

// TestPodStatusUpdatesBatched: status changes of many pods are coalesced
// into one delayed sync of their ReplicaSet; a label change syncs at once.
func TestPodStatusUpdatesBatched(t *testing.T) {
	rs := newRS("web", 10)
	var pods []*v1.Pod
	objs := []runtime.Object{rs}
	for i := range 10 {
		p := newPod(fmt.Sprintf("web-%d", i), rs.Spec.Template.Labels, now, ownedBy(rs))
		p.ResourceVersion = "1"
		pods = append(pods, p)
		objs = append(objs, p)
	}
	f := newFixture(t, false, objs...)
	f.c.updateBatch = 200 * time.Millisecond
	start := time.Now()
	for _, p := range pods {
		cur := p.DeepCopy()
		cur.ResourceVersion = "2"
		running("n1", now)(cur)
		f.c.updatePod(p, cur)
	}
	if n := f.c.queue.Len(); n != 0 && time.Since(start) < f.c.updateBatch {
		t.Fatalf("status changes enqueued %d keys at once, want them delayed", n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for f.c.queue.Len() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := f.c.queue.Len(); n != 1 {
		t.Fatalf("after the batch period: %d keys queued, want 1 (one sync for all ten pods)", n)
	}
	key, _ := f.c.queue.Get()
	f.c.queue.Done(key)
	f.c.queue.Forget(key)

	relabeled := pods[0].DeepCopy()
	relabeled.ResourceVersion = "3"
	relabeled.Labels = map[string]string{"app": "web"}
	f.c.updatePod(pods[0], relabeled)
	if n := f.c.queue.Len(); n != 1 {
		t.Fatalf("a label change queued %d keys at once, want 1", n)
	}
}

// TestPodCreationsBatchedUntilLastObserved: while creations issued by a
// sync are still unobserved, each new pod delays the ReplicaSet's sync
// (one sync for many pods instead of one O(pods) sync each); the pod that
// satisfies the expectations syncs it at once.
func TestPodCreationsBatchedUntilLastObserved(t *testing.T) {
	rs := newRS("web", 3)
	f := newFixture(t, false, rs)
	f.c.updateBatch = time.Hour // nothing delayed comes back during the test
	f.c.expectations.ExpectCreations("default/web", 3)
	for i := range 3 {
		f.c.addPod(newPod(fmt.Sprintf("web-%d", i), rs.Spec.Template.Labels, now, ownedBy(rs)))
		want := 0
		if i == 2 {
			want = 1
		}
		if n := f.c.queue.Len(); n != want {
			t.Fatalf("after pod %d of 3: %d keys queued, want %d", i+1, n, want)
		}
	}
	if adds, _ := f.c.expectations.Pending("default/web"); adds != 0 {
		t.Fatalf("%d creations still expected, want 0", adds)
	}
	// With nothing expected (a pod created by someone else), at once.
	key, _ := f.c.queue.Get()
	f.c.queue.Done(key)
	f.c.addPod(newPod("web-x", rs.Spec.Template.Labels, now, ownedBy(rs)))
	if n := f.c.queue.Len(); n != 1 {
		t.Fatalf("an unexpected pod queued %d keys, want 1", n)
	}
}

// TestFullyLabeledReplicas: pods missing a template label the selector
// does not require are not fully labeled; when the selector requires every
// template label, every claimed pod is.
func TestFullyLabeledReplicas(t *testing.T) {
	for _, tc := range []struct {
		name       string
		selector   map[string]string
		podLabels  []map[string]string
		want       int32
		allLabeled bool
	}{
		{"selector narrower than the template", map[string]string{"app": "web"},
			[]map[string]string{{"app": "web", "tier": "web"}, {"app": "web"}, {"app": "web", "tier": "db"}}, 1, false},
		{"selector equal to the template", map[string]string{"app": "web", "tier": "web"},
			[]map[string]string{{"app": "web", "tier": "web"}, {"app": "web", "tier": "web", "x": "y"}}, 2, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := newRS("web", int32(len(tc.podLabels)))
			rs.Spec.Selector.MatchLabels = tc.selector
			if got := selectorRequiresTemplate(rs); got != tc.allLabeled {
				t.Fatalf("selectorRequiresTemplate = %v, want %v", got, tc.allLabeled)
			}
			objs := []runtime.Object{rs}
			for i, l := range tc.podLabels {
				objs = append(objs, newPod(fmt.Sprintf("web-%d", i), l, now, ownedBy(rs), running("n1", now)))
			}
			f := newFixture(t, false, objs...)
			if err := f.c.Sync(context.Background(), "default/web"); err != nil {
				t.Fatal(err)
			}
			st := lastStatus(t, f)
			if st.FullyLabeledReplicas != tc.want || st.Replicas != int32(len(tc.podLabels)) {
				t.Fatalf("status %+v, want fullyLabeledReplicas %d of %d", st, tc.want, len(tc.podLabels))
			}
		})
	}
}

// TestPodUpdatesThatChangeNothingSynced: an update that changes nothing a
// sync reads of the pod (bound to a node, a container restarted while
// still ready) queues no sync; becoming ready, losing readiness, a
// label or owner change still do.
func TestPodUpdatesThatChangeNothingSynced(t *testing.T) {
	rs := newRS("web", 1)
	p := newPod("web-0", rs.Spec.Template.Labels, now, ownedBy(rs))
	p.ResourceVersion = "1"
	f := newFixture(t, false, rs, p)
	f.c.updateBatch = -1 // every sync at once
	queued := func() int {
		n := 0
		for f.c.queue.Len() > 0 {
			k, _ := f.c.queue.Get()
			f.c.queue.Done(k)
			f.c.queue.Forget(k)
			n++
		}
		return n
	}
	step := func(name string, from *v1.Pod, mutate func(*v1.Pod), want int) *v1.Pod {
		t.Helper()
		cur := from.DeepCopy()
		cur.ResourceVersion += "1"
		mutate(cur)
		f.c.updatePod(from, cur)
		if got := queued(); got != want {
			t.Fatalf("%s: %d syncs queued, want %d", name, got, want)
		}
		return cur
	}
	bound := step("bound", p, func(p *v1.Pod) { p.Spec.NodeName = "n1" }, 0)
	ready := step("ready", bound, running("n1", now), 1)
	restarted := step("restarted, still ready", ready, func(p *v1.Pod) {
		p.Status.ContainerStatuses = []v1.ContainerStatus{{Name: "c", RestartCount: 1, Ready: true}}
	}, 0)
	notReady := step("not ready", restarted, func(p *v1.Pod) { p.Status.Conditions[0].Status = v1.ConditionFalse }, 1)
	relabeled := step("relabeled", notReady, func(p *v1.Pod) { p.Labels = map[string]string{"app": "other"} }, 1)
	step("orphaned", relabeled, func(p *v1.Pod) { p.OwnerReferences = nil }, 1)
}
