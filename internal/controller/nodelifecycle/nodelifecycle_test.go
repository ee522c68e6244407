package nodelifecycle

import (
	"context"
	"io"
	"log/slog"
	"sort"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	testingclock "k8s.io/utils/clock/testing"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func readyNode(name string, status corev1.ConditionStatus, hb time.Time) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{
			{Type: corev1.NodeReady, Status: status, LastHeartbeatTime: metav1.NewTime(hb)},
			{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse, LastHeartbeatTime: metav1.NewTime(hb)},
			{Type: corev1.NodeDiskPressure, Status: corev1.ConditionFalse, LastHeartbeatTime: metav1.NewTime(hb)},
			{Type: corev1.NodePIDPressure, Status: corev1.ConditionFalse, LastHeartbeatTime: metav1.NewTime(hb)},
		}},
	}
}

func lease(node string, renew time.Time) *coordinationv1.Lease {
	r := metav1.NewMicroTime(renew)
	return &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: node, Namespace: LeaseNamespace},
		Spec:       coordinationv1.LeaseSpec{RenewTime: &r},
	}
}

func podOn(name, node string, tols ...corev1.Toleration) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID("uid-" + name)},
		Spec:       corev1.PodSpec{NodeName: node, Tolerations: tols},
		Status:     corev1.PodStatus{Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
	}
}

func secs(n int64) *int64 { return &n }

type fixture struct {
	c       *Controller
	clock   *testingclock.FakeClock
	client  *fake.Clientset
	factory informers.SharedInformerFactory
}

func newFixture(t *testing.T, objs ...runtime.Object) *fixture {
	t.Helper()
	clk := testingclock.NewFakeClock(t0)
	client := fake.NewClientset(objs...)
	factory := informers.NewSharedInformerFactory(client, 0)
	c, err := New(Config{Clock: clk}, client, factory, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{c: c, clock: clk, client: client, factory: factory}
	for _, o := range objs {
		f.put(o)
	}
	return f
}

func (f *fixture) put(o runtime.Object) {
	switch o := o.(type) {
	case *corev1.Node:
		f.factory.Core().V1().Nodes().Informer().GetIndexer().Update(o)
	case *corev1.Pod:
		f.factory.Core().V1().Pods().Informer().GetIndexer().Update(o)
	case *coordinationv1.Lease:
		f.factory.Coordination().V1().Leases().Informer().GetIndexer().Update(o)
	}
}

func (f *fixture) syncNode(t *testing.T, name string) []k8stesting.Action {
	t.Helper()
	f.client.ClearActions()
	if err := f.c.syncNode(context.Background(), name); err != nil {
		t.Fatal(err)
	}
	return f.client.Actions()
}

func (f *fixture) syncPod(t *testing.T, key string) []k8stesting.Action {
	t.Helper()
	f.client.ClearActions()
	if err := f.c.syncPod(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	return f.client.Actions()
}

func describe(acts []k8stesting.Action) []string {
	var out []string
	for _, a := range acts {
		s := a.GetVerb() + " " + a.GetResource().Resource
		if a.GetSubresource() != "" {
			s += "/" + a.GetSubresource()
		}
		switch a := a.(type) {
		case k8stesting.UpdateAction:
			s += " " + a.GetObject().(interface{ GetName() string }).GetName()
		case k8stesting.DeleteAction:
			s += " " + a.GetName()
		}
		out = append(out, s)
	}
	return out
}

func TestStaleLeaseTaintsAndEvicts(t *testing.T) {
	unreachable300 := corev1.Toleration{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: secs(300)}
	f := newFixture(t,
		readyNode("n1", corev1.ConditionTrue, t0.Add(-10*time.Second)),
		lease("n1", t0.Add(-5*time.Second)),
		podOn("none", "n1"),
		podOn("tol300", "n1", unreachable300),
		podOn("forever", "n1", corev1.Toleration{Operator: corev1.TolerationOpExists}),
		podOn("elsewhere", "n2"),
	)
	if acts := f.syncNode(t, "n1"); len(acts) != 0 {
		t.Fatalf("healthy node: %v", describe(acts))
	}
	// The lease is renewed 30s later: the grace period restarts from there.
	f.clock.Step(30 * time.Second)
	f.put(lease("n1", t0.Add(30*time.Second)))
	if acts := f.syncNode(t, "n1"); len(acts) != 0 {
		t.Fatalf("renewed node: %v", describe(acts))
	}
	f.clock.Step(50 * time.Second)
	if acts := f.syncNode(t, "n1"); len(acts) != 0 {
		t.Fatalf("node within grace period: %v", describe(acts))
	}
	f.clock.Step(time.Second)
	taintedAt := f.clock.Now()
	acts := f.syncNode(t, "n1")
	got := describe(acts)
	if len(got) != 5 || got[0] != "update nodes/status n1" || got[4] != "update nodes n1" {
		t.Fatalf("stale node actions %v", got)
	}
	podUpdates := got[1:4]
	sort.Strings(podUpdates)
	if podUpdates[0] != "update pods/status forever" || podUpdates[1] != "update pods/status none" || podUpdates[2] != "update pods/status tol300" {
		t.Fatalf("pod status updates %v", podUpdates)
	}
	status := acts[0].(k8stesting.UpdateAction).GetObject().(*corev1.Node)
	for _, cnd := range status.Status.Conditions {
		if cnd.Status != corev1.ConditionUnknown || cnd.Reason != "NodeStatusUnknown" || cnd.Message != "Kubelet stopped posting node status." || !cnd.LastTransitionTime.Time.Equal(taintedAt) {
			t.Fatalf("condition %+v", cnd)
		}
	}
	pod := acts[1].(k8stesting.UpdateAction).GetObject().(*corev1.Pod)
	if pod.Status.Conditions[0].Status != corev1.ConditionFalse {
		t.Fatalf("pod condition %+v", pod.Status.Conditions)
	}
	tainted := acts[4].(k8stesting.UpdateAction).GetObject().(*corev1.Node)
	if len(tainted.Spec.Taints) != 2 {
		t.Fatalf("taints %+v", tainted.Spec.Taints)
	}
	for _, tn := range tainted.Spec.Taints {
		if tn.Key != corev1.TaintNodeUnreachable {
			t.Fatalf("taint %+v", tn)
		}
		if tn.Effect == corev1.TaintEffectNoExecute && (tn.TimeAdded == nil || !tn.TimeAdded.Time.Equal(taintedAt)) {
			t.Fatalf("NoExecute taint timeAdded %v", tn.TimeAdded)
		}
	}
	f.put(tainted)
	// A second sync of the same state writes nothing but re-marks nothing either.
	for _, p := range []string{"none", "tol300", "forever"} {
		obj, _ := f.client.Tracker().Get(corev1.SchemeGroupVersion.WithResource("pods"), "ns", p)
		f.put(obj)
	}
	if acts := f.syncNode(t, "n1"); len(acts) != 0 {
		t.Fatalf("converged node: %v", describe(acts))
	}

	// Eviction: no toleration -> now; 300s -> later; forever -> never.
	acts = f.syncPod(t, "ns/none")
	if got := describe(acts); len(got) != 1 || got[0] != "delete pods none" {
		t.Fatalf("evicting untolerating pod: %v", got)
	}
	del := acts[0].(k8stesting.DeleteActionImpl)
	if del.DeleteOptions.Preconditions == nil || *del.DeleteOptions.Preconditions.UID != "uid-none" {
		t.Fatalf("delete without uid precondition: %+v", del.DeleteOptions)
	}
	if acts := f.syncPod(t, "ns/tol300"); len(acts) != 0 {
		t.Fatalf("tolerating pod evicted early: %v", describe(acts))
	}
	if at, ok := f.c.timed.Scheduled("ns/tol300"); !ok || !at.Equal(taintedAt.Add(300*time.Second)) {
		t.Fatalf("tol300 scheduled at %v %v", at, ok)
	}
	if acts := f.syncPod(t, "ns/forever"); len(acts) != 0 || f.c.timed.Len() != 1 {
		t.Fatalf("forever pod: %v, timed %d", describe(acts), f.c.timed.Len())
	}
	if acts := f.syncPod(t, "ns/elsewhere"); len(acts) != 0 {
		t.Fatalf("pod on other node: %v", describe(acts))
	}

	f.clock.Step(299 * time.Second)
	f.c.fireDue()
	if f.c.evictQueue.Len() != 0 {
		t.Fatal("eviction fired before 300s")
	}
	f.clock.Step(time.Second)
	f.c.fireDue()
	if f.c.evictQueue.Len() != 1 {
		t.Fatalf("eviction queue has %d keys", f.c.evictQueue.Len())
	}
	key, _ := f.c.evictQueue.Get()
	if got := describe(f.syncPod(t, key)); len(got) != 1 || got[0] != "delete pods tol300" {
		t.Fatalf("evicting after 300s: %v", got)
	}

	// The kubelet comes back: conditions Ready=True, lease renewed -> taints removed.
	back := readyNode("n1", corev1.ConditionTrue, f.clock.Now())
	back.Spec.Taints = tainted.Spec.Taints
	f.put(back)
	f.put(lease("n1", f.clock.Now()))
	acts = f.syncNode(t, "n1")
	if got := describe(acts); len(got) != 1 || got[0] != "update nodes n1" {
		t.Fatalf("recovered node: %v", got)
	}
	if tn := acts[0].(k8stesting.UpdateAction).GetObject().(*corev1.Node).Spec.Taints; len(tn) != 0 {
		t.Fatalf("taints left %+v", tn)
	}
}

func TestNotReadyTaints(t *testing.T) {
	n := readyNode("n1", corev1.ConditionFalse, t0)
	n.Spec.Unschedulable = true
	n.Spec.Taints = []corev1.Taint{{Key: "dedicated", Value: "gpu", Effect: corev1.TaintEffectNoSchedule}}
	f := newFixture(t, n, lease("n1", t0))
	acts := f.syncNode(t, "n1")
	if got := describe(acts); len(got) != 1 || got[0] != "update nodes n1" {
		t.Fatalf("actions %v", got)
	}
	var keys []string
	for _, tn := range acts[0].(k8stesting.UpdateAction).GetObject().(*corev1.Node).Spec.Taints {
		keys = append(keys, tn.Key+":"+string(tn.Effect))
	}
	sort.Strings(keys)
	want := []string{"dedicated:NoSchedule", "node.kubernetes.io/not-ready:NoExecute", "node.kubernetes.io/not-ready:NoSchedule", "node.kubernetes.io/unschedulable:NoSchedule"}
	if len(keys) != len(want) {
		t.Fatalf("taints %v", keys)
	}
	for i := range want {
		if keys[i] != want[i] {
			t.Fatalf("taints %v, want %v", keys, want)
		}
	}
}

func TestEvictionDeadline(t *testing.T) {
	added := metav1.NewTime(t0)
	unreach := corev1.Taint{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoExecute, TimeAdded: &added}
	notReady := corev1.Taint{Key: corev1.TaintNodeNotReady, Effect: corev1.TaintEffectNoExecute, TimeAdded: &added}
	noSched := corev1.Taint{Key: "x", Effect: corev1.TaintEffectNoSchedule}
	now := t0.Add(10 * time.Second)
	cases := []struct {
		name   string
		tols   []corev1.Toleration
		taints []corev1.Taint
		evict  bool
		at     time.Time
	}{
		{name: "no NoExecute taints", taints: []corev1.Taint{noSched}},
		{name: "untolerated", taints: []corev1.Taint{unreach}, evict: true, at: t0},
		{name: "tolerated 300s from timeAdded", taints: []corev1.Taint{unreach},
			tols: []corev1.Toleration{{Key: unreach.Key, Operator: corev1.TolerationOpExists, TolerationSeconds: secs(300)}}, evict: true, at: t0.Add(300 * time.Second)},
		{name: "longest matching toleration wins", taints: []corev1.Taint{unreach},
			tols: []corev1.Toleration{
				{Key: unreach.Key, Operator: corev1.TolerationOpExists, TolerationSeconds: secs(30)},
				{Key: unreach.Key, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: secs(60)},
			}, evict: true, at: t0.Add(60 * time.Second)},
		{name: "earliest taint deadline wins", taints: []corev1.Taint{unreach, notReady},
			tols: []corev1.Toleration{
				{Key: unreach.Key, Operator: corev1.TolerationOpExists, TolerationSeconds: secs(300)},
				{Key: notReady.Key, Operator: corev1.TolerationOpExists, TolerationSeconds: secs(100)},
			}, evict: true, at: t0.Add(100 * time.Second)},
		{name: "forever", taints: []corev1.Taint{unreach}, tols: []corev1.Toleration{{Operator: corev1.TolerationOpExists}}},
		{name: "wrong effect does not tolerate", taints: []corev1.Taint{unreach},
			tols: []corev1.Toleration{{Key: unreach.Key, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}, evict: true, at: t0},
		{name: "value mismatch", taints: []corev1.Taint{{Key: "k", Value: "a", Effect: corev1.TaintEffectNoExecute}},
			tols: []corev1.Toleration{{Key: "k", Value: "b"}}, evict: true, at: now},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			at, evict := evictionDeadline(tc.tols, tc.taints, now)
			if evict != tc.evict || (evict && !at.Equal(tc.at)) {
				t.Fatalf("got (%v, %v), want (%v, %v)", at, evict, tc.at, tc.evict)
			}
		})
	}
}

func TestTimedQueue(t *testing.T) {
	q := newTimedQueue()
	q.Schedule("a", t0.Add(2*time.Second))
	q.Schedule("b", t0.Add(time.Second))
	q.Schedule("a", t0.Add(3*time.Second)) // moved later
	q.Schedule("c", t0.Add(time.Second))
	q.Cancel("c")
	if next, _ := q.Next(); !next.Equal(t0.Add(time.Second)) {
		t.Fatalf("next %v", next)
	}
	if due := q.PopDue(t0.Add(2 * time.Second)); len(due) != 1 || due[0] != "b" {
		t.Fatalf("due %v", due)
	}
	if due := q.PopDue(t0.Add(3 * time.Second)); len(due) != 1 || due[0] != "a" {
		t.Fatalf("due %v", due)
	}
	if q.Len() != 0 {
		t.Fatalf("len %d", q.Len())
	}
}

// TestEvictionInputsChanged: a pod update re-checks the pod's eviction
// only when something evictionDeadline or syncPod reads changed; a status
// update (most pod events) does not.
func TestEvictionInputsChanged(t *testing.T) {
	base := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default", UID: "u1", ResourceVersion: "1"},
		Spec: corev1.PodSpec{NodeName: "n1", Tolerations: []corev1.Toleration{
			{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: secs(300)},
		}},
	}
	now := metav1.NewTime(t0)
	for _, tc := range []struct {
		name   string
		mutate func(p *corev1.Pod)
		want   bool
	}{
		{"status only", func(p *corev1.Pod) { p.Status.Phase = corev1.PodRunning; p.ResourceVersion = "2" }, false},
		{"labels", func(p *corev1.Pod) { p.Labels = map[string]string{"a": "b"} }, false},
		{"bound", func(p *corev1.Pod) { p.Spec.NodeName = "n2" }, true},
		{"being deleted", func(p *corev1.Pod) { p.DeletionTimestamp = &now }, true},
		{"recreated", func(p *corev1.Pod) { p.UID = "u2" }, true},
		{"toleration seconds", func(p *corev1.Pod) { p.Spec.Tolerations[0].TolerationSeconds = secs(30) }, true},
		{"toleration forever", func(p *corev1.Pod) { p.Spec.Tolerations[0].TolerationSeconds = nil }, true},
		{"toleration added", func(p *corev1.Pod) {
			p.Spec.Tolerations = append(p.Spec.Tolerations, corev1.Toleration{Operator: corev1.TolerationOpExists})
		}, true},
		{"toleration effect", func(p *corev1.Pod) { p.Spec.Tolerations[0].Effect = corev1.TaintEffectNoSchedule }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cur := base.DeepCopy()
			tc.mutate(cur)
			if got := evictionInputsChanged(base, cur); got != tc.want {
				t.Fatalf("evictionInputsChanged = %v, want %v", got, tc.want)
			}
		})
	}
}
