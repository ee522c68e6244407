package daemonset

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	core "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

type fixture struct {
	t       *testing.T
	client  *fake.Clientset
	factory informers.SharedInformerFactory
	c       *Controller
}

func newFixture(t *testing.T, objs ...runtime.Object) *fixture {
	t.Helper()
	client := fake.NewClientset(objs...)
	var n atomic.Int32
	client.PrependReactor("create", "*", func(a core.Action) (bool, runtime.Object, error) {
		obj := a.(core.CreateAction).GetObject().(metav1.Object)
		if obj.GetName() == "" && obj.GetGenerateName() != "" {
			obj.SetName(fmt.Sprintf("%s%05d", obj.GetGenerateName(), n.Add(1)))
		}
		if obj.GetUID() == "" {
			obj.SetUID(types.UID("uid-" + obj.GetName()))
		}
		obj.SetCreationTimestamp(metav1.NewTime(t0.Add(time.Duration(n.Load()) * time.Second)))
		return false, nil, nil
	})
	factory := informers.NewSharedInformerFactory(client, 0)
	c, err := New(Config{Clock: clocktesting.NewFakeClock(t0.Add(time.Hour))}, client, factory.Apps().V1().DaemonSets(), factory.Core().V1().Pods(),
		factory.Core().V1().Nodes(), factory.Apps().V1().ControllerRevisions(), record.NewFakeRecorder(100), nil)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, client: client, factory: factory, c: c}
	f.refresh()
	return f
}

func (f *fixture) refresh() {
	f.t.Helper()
	ctx := context.Background()
	dss, _ := f.client.AppsV1().DaemonSets("").List(ctx, metav1.ListOptions{})
	pods, _ := f.client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	nodes, _ := f.client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	revs, _ := f.client.AppsV1().ControllerRevisions("").List(ctx, metav1.ListOptions{})
	var a, b, c, d []any
	for i := range dss.Items {
		a = append(a, &dss.Items[i])
	}
	for i := range pods.Items {
		b = append(b, &pods.Items[i])
	}
	for i := range nodes.Items {
		c = append(c, &nodes.Items[i])
	}
	for i := range revs.Items {
		d = append(d, &revs.Items[i])
	}
	must(f.t, f.factory.Apps().V1().DaemonSets().Informer().GetIndexer().Replace(a, ""))
	must(f.t, f.factory.Core().V1().Pods().Informer().GetIndexer().Replace(b, ""))
	must(f.t, f.factory.Core().V1().Nodes().Informer().GetIndexer().Replace(c, ""))
	must(f.t, f.factory.Apps().V1().ControllerRevisions().Informer().GetIndexer().Replace(d, ""))
	f.c.expectations.Delete("default/ds")
	f.client.ClearActions()
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) sync() {
	f.t.Helper()
	if err := f.c.Sync(context.Background(), "default/ds"); err != nil {
		f.t.Fatalf("sync: %v", err)
	}
}

// podWrites returns "create <node>" / "delete <pod>" for the pod writes,
// sorted.
func (f *fixture) podWrites() []string {
	var out []string
	for _, a := range f.client.Actions() {
		if a.GetResource().Resource != "pods" {
			continue
		}
		switch a := a.(type) {
		case core.CreateAction:
			out = append(out, "create "+targetNode(a.GetObject().(*v1.Pod)))
		case core.DeleteAction:
			out = append(out, "delete "+a.GetName())
		}
	}
	slices.Sort(out)
	return out
}

func (f *fixture) expectPodWrites(want ...string) {
	f.t.Helper()
	slices.Sort(want)
	if got := f.podWrites(); strings.Join(got, ",") != strings.Join(want, ",") {
		f.t.Fatalf("pod writes:\n got  %q\n want %q", got, want)
	}
}

func (f *fixture) pods() []v1.Pod {
	l, _ := f.client.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{})
	return l.Items
}

// bindAndRun emulates the scheduler and a kubelet for every pending pod.
func (f *fixture) bindAndRun() {
	f.t.Helper()
	for _, p := range f.pods() {
		if p.Spec.NodeName != "" {
			continue
		}
		p.Spec.NodeName = targetNode(&p)
		p.Status.Phase = v1.PodRunning
		p.Status.Conditions = []v1.PodCondition{{Type: v1.PodReady, Status: v1.ConditionTrue, LastTransitionTime: metav1.NewTime(t0)}}
		must(f.t, f.client.Tracker().Update(v1.SchemeGroupVersion.WithResource("pods"), &p, "default"))
	}
	f.refresh()
}

func (f *fixture) ds() *appsv1.DaemonSet {
	d, err := f.client.AppsV1().DaemonSets("default").Get(context.Background(), "ds", metav1.GetOptions{})
	must(f.t, err)
	return d
}

func node(name string, mutate ...func(*v1.Node)) *v1.Node {
	n := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name}}}
	for _, m := range mutate {
		m(n)
	}
	return n
}

func taint(key string, effect v1.TaintEffect) func(*v1.Node) {
	return func(n *v1.Node) { n.Spec.Taints = append(n.Spec.Taints, v1.Taint{Key: key, Effect: effect}) }
}

func newDS(mutate ...func(*appsv1.DaemonSet)) *appsv1.DaemonSet {
	d := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "ds", Namespace: "default", UID: "ds-uid", Generation: 1},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "ds"}},
			Template: v1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "ds"}},
				Spec:       v1.PodSpec{Containers: []v1.Container{{Name: "c", Image: "agent:1"}}},
			},
			UpdateStrategy: appsv1.DaemonSetUpdateStrategy{Type: appsv1.RollingUpdateDaemonSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDaemonSet{MaxUnavailable: ptr.To(intstr.FromInt32(1)), MaxSurge: ptr.To(intstr.FromInt32(0))}},
		},
	}
	for _, m := range mutate {
		m(d)
	}
	return d
}

func TestOnePodPerEligibleNodeThroughScheduler(t *testing.T) {
	f := newFixture(t, newDS(func(d *appsv1.DaemonSet) {
		d.Spec.Template.Spec.NodeSelector = map[string]string{"role": "worker"}
		d.Spec.Template.Spec.Tolerations = []v1.Toleration{{Key: "dedicated", Operator: v1.TolerationOpExists}}
	}),
		node("a", func(n *v1.Node) { n.Labels["role"] = "worker" }),
		node("b"), // no label
		node("c", func(n *v1.Node) { n.Labels["role"] = "worker" }, taint("dedicated", v1.TaintEffectNoSchedule)),
		node("d", func(n *v1.Node) { n.Labels["role"] = "worker" }, taint("other", v1.TaintEffectNoSchedule)),
		node("e", func(n *v1.Node) { n.Labels["role"] = "worker" }, taint(v1.TaintNodeNotReady, v1.TaintEffectNoExecute),
			taint(v1.TaintNodeUnschedulable, v1.TaintEffectNoSchedule), taint(v1.TaintNodeDiskPressure, v1.TaintEffectNoSchedule)),
	)
	f.sync()
	f.expectPodWrites("create a", "create c", "create e")
	for _, p := range f.pods() {
		if p.Spec.NodeName != "" {
			t.Fatalf("pod %s bound by the controller", p.Name)
		}
		terms := p.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
		if len(terms) != 1 || terms[0].MatchFields[0].Key != "metadata.name" {
			t.Fatalf("affinity = %+v", terms)
		}
		keys := map[string]v1.TaintEffect{}
		for _, tol := range p.Spec.Tolerations {
			keys[tol.Key] = tol.Effect
		}
		for k, e := range map[string]v1.TaintEffect{v1.TaintNodeNotReady: v1.TaintEffectNoExecute, v1.TaintNodeUnreachable: v1.TaintEffectNoExecute,
			v1.TaintNodeDiskPressure: v1.TaintEffectNoSchedule, v1.TaintNodeMemoryPressure: v1.TaintEffectNoSchedule,
			v1.TaintNodePIDPressure: v1.TaintEffectNoSchedule, v1.TaintNodeUnschedulable: v1.TaintEffectNoSchedule} {
			if keys[k] != e {
				t.Fatalf("pod lacks toleration %s:%s: %v", k, e, p.Spec.Tolerations)
			}
		}
		if _, ok := keys[v1.TaintNodeNetworkUnavailable]; ok {
			t.Fatalf("network-unavailable toleration without hostNetwork")
		}
		if p.Labels[appsv1.ControllerRevisionHashLabelKey] == "" {
			t.Fatalf("no revision hash label")
		}
	}
	// Expectations hold while the informer lags.
	f.client.ClearActions()
	f.sync()
	f.expectPodWrites()
	f.bindAndRun()
	f.sync()
	f.expectPodWrites()
	st := f.ds().Status
	if st.DesiredNumberScheduled != 3 || st.CurrentNumberScheduled != 3 || st.NumberReady != 3 || st.NumberAvailable != 3 ||
		st.UpdatedNumberScheduled != 3 || st.NumberMisscheduled != 0 || st.ObservedGeneration != 1 {
		t.Fatalf("status = %+v", st)
	}
}

func TestNodesComeAndGo(t *testing.T) {
	f := newFixture(t, newDS(), node("a"))
	f.sync()
	f.bindAndRun()
	must(t, f.client.Tracker().Add(node("b")))
	f.refresh()
	f.sync()
	f.expectPodWrites("create b")
	f.bindAndRun()
	var onA string
	for _, p := range f.pods() {
		if p.Spec.NodeName == "a" {
			onA = p.Name
		}
	}
	must(t, f.client.Tracker().Delete(v1.SchemeGroupVersion.WithResource("nodes"), "", "a"))
	f.refresh()
	f.sync()
	f.expectPodWrites("delete " + onA)
	// A NoExecute taint the pod does not tolerate evicts it.
	n, _ := f.client.CoreV1().Nodes().Get(context.Background(), "b", metav1.GetOptions{})
	n.Spec.Taints = []v1.Taint{{Key: "evict", Effect: v1.TaintEffectNoExecute}}
	must(t, f.client.Tracker().Update(v1.SchemeGroupVersion.WithResource("nodes"), n, ""))
	f.refresh()
	f.sync()
	if w := f.podWrites(); len(w) != 1 || !strings.HasPrefix(w[0], "delete ds-") {
		t.Fatalf("writes = %v", w)
	}
}

func TestHostNetworkToleratesNetworkUnavailable(t *testing.T) {
	f := newFixture(t, newDS(func(d *appsv1.DaemonSet) { d.Spec.Template.Spec.HostNetwork = true }),
		node("a", taint(v1.TaintNodeNetworkUnavailable, v1.TaintEffectNoSchedule)))
	f.sync()
	f.expectPodWrites("create a")
}

func (f *fixture) changeImage(img string, mutate ...func(*appsv1.DaemonSet)) {
	f.t.Helper()
	d := f.ds()
	d.Spec.Template.Spec.Containers[0].Image = img
	d.Generation++
	for _, m := range mutate {
		m(d)
	}
	must(f.t, f.client.Tracker().Update(appsv1.SchemeGroupVersion.WithResource("daemonsets"), d, "default"))
	f.refresh()
}

func TestRollingUpdateMaxUnavailable(t *testing.T) {
	f := newFixture(t, newDS(), node("a"), node("b"), node("c"))
	f.sync()
	f.bindAndRun()
	f.sync()
	f.changeImage("agent:2", func(d *appsv1.DaemonSet) {
		d.Spec.UpdateStrategy.RollingUpdate.MaxUnavailable = ptr.To(intstr.FromInt32(2))
	})
	f.sync()
	if w := f.podWrites(); len(w) != 2 || !strings.HasPrefix(w[0], "delete") {
		t.Fatalf("writes = %v", w)
	}
	f.refresh()
	f.sync()
	f.expectPodWrites("create a", "create b")
	// The two new pods are not running yet: the third node must wait.
	f.refresh()
	f.sync()
	f.expectPodWrites()
	f.bindAndRun()
	f.sync()
	if w := f.podWrites(); len(w) != 1 || !strings.HasPrefix(w[0], "delete") {
		t.Fatalf("writes = %v", w)
	}
}

func TestRollingUpdateMaxSurge(t *testing.T) {
	f := newFixture(t, newDS(func(d *appsv1.DaemonSet) {
		d.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateDaemonSet{MaxUnavailable: ptr.To(intstr.FromInt32(0)), MaxSurge: ptr.To(intstr.FromInt32(1))}
	}), node("a"), node("b"))
	f.sync()
	f.bindAndRun()
	var oldA string
	for _, p := range f.pods() {
		if p.Spec.NodeName == "a" {
			oldA = p.Name
		}
	}
	f.changeImage("agent:2")
	f.sync()
	f.expectPodWrites("create a") // surge on the first node only
	f.refresh()
	f.sync()
	f.expectPodWrites()
	f.bindAndRun()
	f.sync()
	f.expectPodWrites("delete " + oldA)
	f.refresh()
	f.sync()
	f.expectPodWrites("create b")
}

func TestOnDeleteKeepsOldPods(t *testing.T) {
	f := newFixture(t, newDS(func(d *appsv1.DaemonSet) {
		d.Spec.UpdateStrategy = appsv1.DaemonSetUpdateStrategy{Type: appsv1.OnDeleteDaemonSetStrategyType}
	}), node("a"))
	f.sync()
	f.bindAndRun()
	f.changeImage("agent:2")
	f.sync()
	f.expectPodWrites()
	if st := f.ds().Status; st.UpdatedNumberScheduled != 0 || st.CurrentNumberScheduled != 1 {
		t.Fatalf("status = %+v", st)
	}
	revs, _ := f.client.AppsV1().ControllerRevisions("default").List(context.Background(), metav1.ListOptions{})
	if len(revs.Items) != 2 {
		t.Fatalf("revisions = %d, want 2", len(revs.Items))
	}
}

// TestPodHandlerOnlyForDaemonSetPods: the pod handler queues the
// DaemonSet controlling a pod and nothing for other pods, without
// allocating for them: it runs for every pod event in the cluster.
func TestPodHandlerOnlyForDaemonSetPods(t *testing.T) {
	f := newFixture(t)
	q := f.c.queue
	drain := func() []string {
		var keys []string
		for q.Len() > 0 {
			k, _ := q.Get()
			keys = append(keys, k)
			q.Done(k)
			q.Forget(k)
		}
		return keys
	}
	p := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "p", ResourceVersion: "1",
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "ds", UID: "ds-uid", Controller: ptr.To(true)}}}}
	for _, added := range []bool{true, false} {
		f.c.onPod(p, added, !added)
		if got := drain(); !slices.Equal(got, []string{"default/ds"}) {
			t.Fatalf("event (added %v) of the DaemonSet's pod queued %q", added, got)
		}
	}
	other := p.DeepCopy()
	other.OwnerReferences[0].Kind = "ReplicaSet"
	f.c.onPod(other, false, false)
	if got := drain(); len(got) != 0 {
		t.Fatalf("a ReplicaSet's pod queued %q", got)
	}
	if n := testing.AllocsPerRun(50, func() { f.c.onPod(other, false, false) }); n != 0 {
		t.Fatalf("%v allocations per event of another controller's pod", n)
	}
}
