package deployment

import (
	"context"
	"fmt"
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
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"

	"skiff.dev/skiff/internal/controller/controllertest"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

type fixture struct {
	t       *testing.T
	client  *fake.Clientset
	factory informers.SharedInformerFactory
	c       *Controller
	clock   *clocktesting.FakeClock
	created atomic.Int64
	// conflicts counts the writes the fake API refused with 409.
	conflicts func() int
}

// newFixture builds a controller over a fake clientset whose informer
// caches are filled by refresh (no watches), so every test step is
// deterministic.
func newFixture(t *testing.T, objs ...runtime.Object) *fixture {
	t.Helper()
	f := &fixture{t: t, client: fake.NewClientset(objs...), clock: clocktesting.NewFakeClock(t0)}
	f.conflicts = controllertest.ResourceVersions(f.client)
	// The fake tracker neither assigns uids nor creation timestamps.
	f.client.PrependReactor("create", "*", func(a core.Action) (bool, runtime.Object, error) {
		obj := a.(core.CreateAction).GetObject().(metav1.Object)
		if obj.GetName() == "" && obj.GetGenerateName() != "" {
			obj.SetName(fmt.Sprintf("%s%05d", obj.GetGenerateName(), f.created.Add(1)))
		}
		if obj.GetUID() == "" {
			obj.SetUID(types.UID("uid-" + obj.GetName()))
		}
		if ts := obj.GetCreationTimestamp(); ts.IsZero() {
			obj.SetCreationTimestamp(metav1.NewTime(f.clock.Now().Add(time.Duration(f.created.Add(1)) * time.Millisecond)))
		}
		return false, nil, nil
	})
	f.factory = informers.NewSharedInformerFactory(f.client, 0)
	var err error
	f.c, err = New(Config{Clock: f.clock}, f.client, f.factory.Apps().V1().Deployments(), f.factory.Apps().V1().ReplicaSets(), f.factory.Core().V1().Pods(), record.NewFakeRecorder(1000), nil)
	if err != nil {
		t.Fatal(err)
	}
	f.refresh()
	return f
}

// refresh makes the informer caches equal to the fake API's contents.
func (f *fixture) refresh() {
	ctx := context.Background()
	ds, _ := f.client.AppsV1().Deployments("").List(ctx, metav1.ListOptions{})
	rss, _ := f.client.AppsV1().ReplicaSets("").List(ctx, metav1.ListOptions{})
	pods, _ := f.client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	replace := func(idx cache.Indexer, objs []any) {
		if err := idx.Replace(objs, ""); err != nil {
			f.t.Fatal(err)
		}
	}
	var o []any
	for i := range ds.Items {
		o = append(o, &ds.Items[i])
	}
	replace(f.factory.Apps().V1().Deployments().Informer().GetIndexer(), o)
	o = nil
	for i := range rss.Items {
		o = append(o, &rss.Items[i])
	}
	replace(f.factory.Apps().V1().ReplicaSets().Informer().GetIndexer(), o)
	o = nil
	for i := range pods.Items {
		o = append(o, &pods.Items[i])
	}
	replace(f.factory.Core().V1().Pods().Informer().GetIndexer(), o)
	f.client.ClearActions()
}

func (f *fixture) sync() {
	f.t.Helper()
	if err := f.c.Sync(context.Background(), "default/web"); err != nil {
		f.t.Fatal(err)
	}
}

// actions returns "verb resource[/subresource]" for every write.
func (f *fixture) actions() []string {
	var out []string
	for _, a := range f.client.Actions() {
		switch a.GetVerb() {
		case "list", "watch", "get":
			continue
		}
		s := a.GetVerb() + " " + a.GetResource().Resource
		if a.GetSubresource() != "" {
			s += "/" + a.GetSubresource()
		}
		if d, ok := a.(core.DeleteAction); ok {
			s += " " + d.GetName()
		}
		out = append(out, s)
	}
	return out
}

func (f *fixture) expectActions(want ...string) {
	f.t.Helper()
	if got := f.actions(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		f.t.Fatalf("actions:\n got  %q\n want %q", got, want)
	}
}

func (f *fixture) deployment() *appsv1.Deployment {
	d, err := f.client.AppsV1().Deployments("default").Get(context.Background(), "web", metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	return d
}

func (f *fixture) update(mut func(d *appsv1.Deployment)) {
	d := f.deployment()
	mut(d)
	d.Generation++
	if _, err := f.client.AppsV1().Deployments("default").Update(context.Background(), d, metav1.UpdateOptions{}); err != nil {
		f.t.Fatal(err)
	}
	f.refresh()
}

// replicaSets returns the ReplicaSets sorted by creation.
func (f *fixture) replicaSets() []*appsv1.ReplicaSet {
	l, _ := f.client.AppsV1().ReplicaSets("default").List(context.Background(), metav1.ListOptions{})
	out := make([]*appsv1.ReplicaSet, len(l.Items))
	for i := range l.Items {
		out[i] = &l.Items[i]
	}
	sortByCreation(out)
	return out
}

func sortByCreation(rss []*appsv1.ReplicaSet) {
	for i := 1; i < len(rss); i++ {
		for j := i; j > 0 && byCreation(rss).Less(j, j-1); j-- {
			rss[j], rss[j-1] = rss[j-1], rss[j]
		}
	}
}

// settle plays the ReplicaSet controller: every ReplicaSet gets status
// replicas equal to spec, with available(rs) of them available.
func (f *fixture) settle(available func(rs *appsv1.ReplicaSet) int32) {
	for _, rs := range f.replicaSets() {
		rs.Status.Replicas = *rs.Spec.Replicas
		rs.Status.ReadyReplicas = available(rs)
		rs.Status.AvailableReplicas = available(rs)
		rs.Status.ObservedGeneration = rs.Generation
		if _, err := f.client.AppsV1().ReplicaSets("default").UpdateStatus(context.Background(), rs, metav1.UpdateOptions{}); err != nil {
			f.t.Fatal(err)
		}
	}
	f.refresh()
}

func allAvailable(rs *appsv1.ReplicaSet) int32 { return *rs.Spec.Replicas }

func sizes(rss []*appsv1.ReplicaSet) string {
	var s []string
	for _, rs := range rss {
		s = append(s, fmt.Sprintf("%s=%d", rs.Spec.Template.Spec.Containers[0].Image, *rs.Spec.Replicas))
	}
	return strings.Join(s, " ")
}

func newDeployment(replicas int32, surge, unavailable intstr.IntOrString) *appsv1.Deployment {
	ten := int32(10)
	deadline := int32(600)
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", UID: "uid-web", Generation: 1},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: v1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec:       v1.PodSpec{Containers: []v1.Container{{Name: "c", Image: "v1"}}},
			},
			Strategy: appsv1.DeploymentStrategy{
				Type:          appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: &surge, MaxUnavailable: &unavailable},
			},
			RevisionHistoryLimit:    &ten,
			ProgressDeadlineSeconds: &deadline,
		},
	}
}

func setImage(image string) func(*appsv1.Deployment) {
	return func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].Image = image }
}

func cond(d *appsv1.Deployment, t appsv1.DeploymentConditionType) appsv1.DeploymentCondition {
	if c := getCondition(d.Status, t); c != nil {
		return *c
	}
	return appsv1.DeploymentCondition{}
}
