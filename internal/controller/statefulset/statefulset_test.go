package statefulset

import (
	"context"
	"fmt"
	"strings"
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

	"skiff.dev/skiff/internal/controller/history"
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
	client.PrependReactor("create", "*", func(a core.Action) (bool, runtime.Object, error) {
		obj := a.(core.CreateAction).GetObject().(metav1.Object)
		if obj.GetUID() == "" {
			obj.SetUID(types.UID("uid-" + obj.GetName()))
		}
		return false, nil, nil
	})
	factory := informers.NewSharedInformerFactory(client, 0)
	c, err := New(Config{Clock: clocktesting.NewFakeClock(t0)}, client, factory.Apps().V1().StatefulSets(), factory.Core().V1().Pods(),
		factory.Core().V1().PersistentVolumeClaims(), factory.Apps().V1().ControllerRevisions(), record.NewFakeRecorder(100), nil)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, client: client, factory: factory, c: c}
	f.refresh()
	return f
}

// refresh makes the informer caches show what the API holds.
func (f *fixture) refresh() {
	f.t.Helper()
	ctx := context.Background()
	sets, _ := f.client.AppsV1().StatefulSets("").List(ctx, metav1.ListOptions{})
	pods, _ := f.client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	pvcs, _ := f.client.CoreV1().PersistentVolumeClaims("").List(ctx, metav1.ListOptions{})
	revs, _ := f.client.AppsV1().ControllerRevisions("").List(ctx, metav1.ListOptions{})
	var so, po, co, ro []any
	for i := range sets.Items {
		so = append(so, &sets.Items[i])
	}
	for i := range pods.Items {
		po = append(po, &pods.Items[i])
	}
	for i := range pvcs.Items {
		co = append(co, &pvcs.Items[i])
	}
	for i := range revs.Items {
		ro = append(ro, &revs.Items[i])
	}
	must(f.t, f.factory.Apps().V1().StatefulSets().Informer().GetIndexer().Replace(so, ""))
	must(f.t, f.factory.Core().V1().Pods().Informer().GetIndexer().Replace(po, ""))
	must(f.t, f.factory.Core().V1().PersistentVolumeClaims().Informer().GetIndexer().Replace(co, ""))
	must(f.t, f.factory.Apps().V1().ControllerRevisions().Informer().GetIndexer().Replace(ro, ""))
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
	if err := f.c.Sync(context.Background(), "default/web"); err != nil {
		f.t.Fatalf("sync: %v", err)
	}
}

// writes returns "verb resource[/sub] name" of every write but status updates.
func (f *fixture) writes() []string {
	var out []string
	for _, a := range f.client.Actions() {
		v := a.GetVerb()
		if v == "list" || v == "watch" || v == "get" || a.GetSubresource() == "status" {
			continue
		}
		s := v + " " + a.GetResource().Resource
		switch a := a.(type) {
		case core.CreateAction:
			s += " " + a.GetObject().(metav1.Object).GetName()
		case core.UpdateAction:
			s += " " + a.GetObject().(metav1.Object).GetName()
		case core.DeleteAction:
			s += " " + a.GetName()
		case core.PatchAction:
			s += " " + a.GetName()
		}
		out = append(out, s)
	}
	return out
}

func (f *fixture) expectWrites(want ...string) {
	f.t.Helper()
	if got := f.writes(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		f.t.Fatalf("writes:\n got  %q\n want %q", got, want)
	}
}

func (f *fixture) pod(name string) *v1.Pod {
	f.t.Helper()
	p, err := f.client.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	return p
}

// runReady marks pods Running and Ready, as a kubelet would.
func (f *fixture) runReady(names ...string) {
	f.t.Helper()
	for _, n := range names {
		p := f.pod(n)
		p.Status.Phase = v1.PodRunning
		p.Status.Conditions = []v1.PodCondition{{Type: v1.PodReady, Status: v1.ConditionTrue, LastTransitionTime: metav1.NewTime(t0.Add(-time.Hour))}}
		must(f.t, f.client.Tracker().Update(v1.SchemeGroupVersion.WithResource("pods"), p, "default"))
	}
	f.refresh()
}

func (f *fixture) set() *appsv1.StatefulSet {
	s, err := f.client.AppsV1().StatefulSets("default").Get(context.Background(), "web", metav1.GetOptions{})
	must(f.t, err)
	return s
}

func newSet(replicas int32, mutate ...func(*appsv1.StatefulSet)) *appsv1.StatefulSet {
	s := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", UID: "set-uid", Generation: 3},
		Spec: appsv1.StatefulSetSpec{
			Replicas:    &replicas,
			ServiceName: "nginx",
			Selector:    &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: v1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec:       v1.PodSpec{Containers: []v1.Container{{Name: "c", Image: "nginx:1"}}},
			},
			PodManagementPolicy: appsv1.OrderedReadyPodManagement,
			UpdateStrategy: appsv1.StatefulSetUpdateStrategy{Type: appsv1.RollingUpdateStatefulSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateStatefulSetStrategy{Partition: ptr.To[int32](0)}},
		},
	}
	for _, m := range mutate {
		m(s)
	}
	return s
}

func TestOrderedReadyCreatesOneAtATime(t *testing.T) {
	f := newFixture(t, newSet(3))
	f.sync()
	f.expectWrites("create controllerrevisions web-"+history.HashOf(&f.revisions()[0]), "create pods web-0")
	p := f.pod("web-0")
	if p.Spec.Hostname != "web-0" || p.Spec.Subdomain != "nginx" || p.Labels[appsv1.StatefulSetPodNameLabel] != "web-0" ||
		p.Labels[appsv1.PodIndexLabel] != "0" || p.Labels[appsv1.ControllerRevisionHashLabelKey] == "" {
		t.Fatalf("pod = %+v", p.ObjectMeta)
	}
	f.refresh()
	f.sync() // web-0 is not ready: wait
	f.expectWrites()
	f.runReady("web-0")
	f.sync()
	f.expectWrites("create pods web-1")
	f.runReady("web-1")
	f.sync()
	f.expectWrites("create pods web-2")
	f.runReady("web-2")
	f.sync()
	st := f.set().Status
	if st.Replicas != 3 || st.ReadyReplicas != 3 || st.AvailableReplicas != 3 || st.UpdatedReplicas != 3 || st.CurrentReplicas != 3 ||
		st.CurrentRevision != st.UpdateRevision || st.ObservedGeneration != 3 {
		t.Fatalf("status = %+v", st)
	}
}

func (f *fixture) revisions() []appsv1.ControllerRevision {
	l, _ := f.client.AppsV1().ControllerRevisions("default").List(context.Background(), metav1.ListOptions{})
	return l.Items
}

func TestParallelCreatesAll(t *testing.T) {
	f := newFixture(t, newSet(3, func(s *appsv1.StatefulSet) { s.Spec.PodManagementPolicy = appsv1.ParallelPodManagement }))
	f.sync()
	w := f.writes()
	if strings.Join(w[1:], ",") != "create pods web-0,create pods web-1,create pods web-2" {
		t.Fatalf("writes = %q", w)
	}
}

func TestOrderedScaleDownHighestFirst(t *testing.T) {
	f := newFixture(t, newSet(3))
	for i := 0; i < 3; i++ {
		f.sync()
		f.runReady(fmt.Sprintf("web-%d", i))
	}
	s := f.set()
	s.Spec.Replicas = ptr.To[int32](1)
	must(t, f.client.Tracker().Update(appsv1.SchemeGroupVersion.WithResource("statefulsets"), s, "default"))
	f.refresh()
	p := f.pod("web-2")
	f.sync()
	f.expectWrites("delete pods web-2")
	// web-2 is still terminating: web-1 waits.
	p.DeletionTimestamp = &metav1.Time{Time: t0}
	must(t, f.client.Tracker().Add(p))
	f.refresh()
	f.sync()
	f.expectWrites()
	must(t, f.client.Tracker().Delete(v1.SchemeGroupVersion.WithResource("pods"), "default", "web-2"))
	f.refresh()
	f.sync()
	f.expectWrites("delete pods web-1")
}

func TestClaimsPerOrdinalAndRetention(t *testing.T) {
	f := newFixture(t, newSet(2, func(s *appsv1.StatefulSet) {
		s.Spec.VolumeClaimTemplates = []v1.PersistentVolumeClaim{{ObjectMeta: metav1.ObjectMeta{Name: "data"}}}
		s.Spec.PersistentVolumeClaimRetentionPolicy = &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{
			WhenDeleted: appsv1.RetainPersistentVolumeClaimRetentionPolicyType,
			WhenScaled:  appsv1.DeletePersistentVolumeClaimRetentionPolicyType,
		}
	}))
	f.sync()
	w := f.writes()
	if strings.Join(w[1:], ",") != "create persistentvolumeclaims data-web-0,create pods web-0" {
		t.Fatalf("writes = %q", w)
	}
	if v := f.pod("web-0").Spec.Volumes; len(v) != 1 || v[0].PersistentVolumeClaim.ClaimName != "data-web-0" {
		t.Fatalf("volumes = %+v", v)
	}
	f.runReady("web-0")
	f.sync()
	f.expectWrites("create persistentvolumeclaims data-web-1", "create pods web-1")
	f.runReady("web-1")
	// A deleted pod is recreated on its old claim.
	must(t, f.client.Tracker().Delete(v1.SchemeGroupVersion.WithResource("pods"), "default", "web-0"))
	f.refresh()
	f.sync()
	f.expectWrites("create pods web-0")
	f.runReady("web-0")
	// Scale to 1: data-web-1 becomes owned by pod web-1 before it goes.
	s := f.set()
	s.Spec.Replicas = ptr.To[int32](1)
	must(t, f.client.Tracker().Update(appsv1.SchemeGroupVersion.WithResource("statefulsets"), s, "default"))
	f.refresh()
	f.sync()
	f.expectWrites("update persistentvolumeclaims data-web-1", "delete pods web-1")
	c, _ := f.client.CoreV1().PersistentVolumeClaims("default").Get(context.Background(), "data-web-1", metav1.GetOptions{})
	if len(c.OwnerReferences) != 1 || c.OwnerReferences[0].Kind != "Pod" || c.OwnerReferences[0].UID != "uid-web-1" {
		t.Fatalf("owners = %+v", c.OwnerReferences)
	}
}

func TestRollingUpdateWithPartition(t *testing.T) {
	f := newFixture(t, newSet(3, func(s *appsv1.StatefulSet) { s.Spec.PodManagementPolicy = appsv1.ParallelPodManagement }))
	f.sync()
	f.runReady("web-0", "web-1", "web-2")
	f.sync()
	oldRev := f.set().Status.UpdateRevision
	s := f.set()
	s.Spec.Template.Spec.Containers[0].Image = "nginx:2"
	s.Spec.UpdateStrategy.RollingUpdate.Partition = ptr.To[int32](1)
	must(t, f.client.Tracker().Update(appsv1.SchemeGroupVersion.WithResource("statefulsets"), s, "default"))
	f.refresh()
	f.sync()
	w := f.writes()
	if len(w) != 2 || !strings.HasPrefix(w[0], "create controllerrevisions") || w[1] != "delete pods web-2" {
		t.Fatalf("writes = %q", w)
	}
	st := f.set().Status
	if st.CurrentRevision != oldRev || st.UpdateRevision == oldRev {
		t.Fatalf("status = %+v", st)
	}
	f.refresh()
	f.sync()
	f.expectWrites("create pods web-2")
	if img := f.pod("web-2").Spec.Containers[0].Image; img != "nginx:2" {
		t.Fatalf("web-2 image %s", img)
	}
	f.runReady("web-2")
	f.sync()
	// web-1 is at the partition: it is replaced next; web-0, below it,
	// stays, and a recreated web-0 gets the old template.
	f.expectWrites("delete pods web-1")
	f.refresh()
	f.sync()
	f.expectWrites("create pods web-1")
	f.runReady("web-1")
	f.sync()
	f.expectWrites()
	must(t, f.client.Tracker().Delete(v1.SchemeGroupVersion.WithResource("pods"), "default", "web-0"))
	f.refresh()
	f.sync()
	f.expectWrites("create pods web-0")
	if img := f.pod("web-0").Spec.Containers[0].Image; img != "nginx:1" {
		t.Fatalf("web-0 image %s", img)
	}
}

func TestRollingUpdateMaxUnavailable(t *testing.T) {
	f := newFixture(t, newSet(4, func(s *appsv1.StatefulSet) { s.Spec.PodManagementPolicy = appsv1.ParallelPodManagement }))
	f.sync()
	f.runReady("web-0", "web-1", "web-2", "web-3")
	s := f.set()
	s.Spec.Template.Spec.Containers[0].Image = "nginx:2"
	s.Spec.UpdateStrategy.RollingUpdate.MaxUnavailable = ptr.To(intstr.FromInt32(2))
	must(t, f.client.Tracker().Update(appsv1.SchemeGroupVersion.WithResource("statefulsets"), s, "default"))
	f.refresh()
	f.sync()
	w := f.writes()
	if strings.Join(w[1:], ",") != "delete pods web-3,delete pods web-2" {
		t.Fatalf("writes = %q", w)
	}
}

func TestOnDeleteDoesNotReplace(t *testing.T) {
	f := newFixture(t, newSet(1, func(s *appsv1.StatefulSet) {
		s.Spec.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{Type: appsv1.OnDeleteStatefulSetStrategyType}
	}))
	f.sync()
	f.runReady("web-0")
	s := f.set()
	s.Spec.Template.Spec.Containers[0].Image = "nginx:2"
	must(t, f.client.Tracker().Update(appsv1.SchemeGroupVersion.WithResource("statefulsets"), s, "default"))
	f.refresh()
	f.sync()
	w := f.writes()
	if len(w) != 1 || !strings.HasPrefix(w[0], "create controllerrevisions") {
		t.Fatalf("writes = %q", w)
	}
	must(t, f.client.Tracker().Delete(v1.SchemeGroupVersion.WithResource("pods"), "default", "web-0"))
	f.refresh()
	f.sync()
	f.expectWrites("create pods web-0")
	if img := f.pod("web-0").Spec.Containers[0].Image; img != "nginx:2" {
		t.Fatalf("recreated pod image %s", img)
	}
}

func TestWhenDeletedDeleteOwnsClaimsBySet(t *testing.T) {
	f := newFixture(t, newSet(1, func(s *appsv1.StatefulSet) {
		s.Spec.VolumeClaimTemplates = []v1.PersistentVolumeClaim{{ObjectMeta: metav1.ObjectMeta{Name: "data", Labels: map[string]string{"tier": "db"}}}}
		s.Spec.PersistentVolumeClaimRetentionPolicy = &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{
			WhenDeleted: appsv1.DeletePersistentVolumeClaimRetentionPolicyType,
			WhenScaled:  appsv1.RetainPersistentVolumeClaimRetentionPolicyType,
		}
	}))
	f.sync()
	c, err := f.client.CoreV1().PersistentVolumeClaims("default").Get(context.Background(), "data-web-0", metav1.GetOptions{})
	must(t, err)
	if len(c.OwnerReferences) != 1 || c.OwnerReferences[0].Kind != "StatefulSet" || c.OwnerReferences[0].UID != "set-uid" {
		t.Fatalf("owners = %+v", c.OwnerReferences)
	}
	if c.Labels["tier"] != "db" || c.Labels["app"] != "web" {
		t.Fatalf("labels = %v", c.Labels)
	}
	// Switching the policy to Retain releases the claim.
	f.runReady("web-0")
	s := f.set()
	s.Spec.PersistentVolumeClaimRetentionPolicy.WhenDeleted = appsv1.RetainPersistentVolumeClaimRetentionPolicyType
	must(t, f.client.Tracker().Update(appsv1.SchemeGroupVersion.WithResource("statefulsets"), s, "default"))
	f.refresh()
	f.sync()
	f.expectWrites("update persistentvolumeclaims data-web-0")
	c, _ = f.client.CoreV1().PersistentVolumeClaims("default").Get(context.Background(), "data-web-0", metav1.GetOptions{})
	if len(c.OwnerReferences) != 0 {
		t.Fatalf("owners after Retain = %+v", c.OwnerReferences)
	}
}

func TestRestartsFinishedPods(t *testing.T) {
	f := newFixture(t, newSet(2))
	f.sync()
	f.runReady("web-0")
	f.sync()
	f.runReady("web-1")
	p := f.pod("web-0")
	p.Status.Phase = v1.PodFailed
	must(t, f.client.Tracker().Update(v1.SchemeGroupVersion.WithResource("pods"), p, "default"))
	f.refresh()
	f.sync()
	f.expectWrites("delete pods web-0")
	f.refresh()
	f.sync()
	f.expectWrites("create pods web-0")
}
