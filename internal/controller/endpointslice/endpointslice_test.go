package endpointslice

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func svc() *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns", UID: "svc-uid", Labels: map[string]string{"team": "a"}},
		Spec: corev1.ServiceSpec{
			Selector:  map[string]string{"app": "web"},
			ClusterIP: "10.43.0.10",
			Ports:     []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("web")}},
		},
	}
}

func pod(name, ip string, ready bool, port int32) *corev1.Pod {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID("uid-" + name), Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{
			Name: "c", Ports: []corev1.ContainerPort{{Name: "web", ContainerPort: port, Protocol: corev1.ProtocolTCP}},
		}}},
		Status: corev1.PodStatus{PodIP: ip, Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}},
	}
}

type fixture struct {
	c       *Controller
	client  *fake.Clientset
	factory informers.SharedInformerFactory
}

func newFixture(t *testing.T, objs ...runtime.Object) *fixture {
	t.Helper()
	client := fake.NewClientset(objs...)
	factory := informers.NewSharedInformerFactory(client, 0)
	c, err := New(client, factory, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	c.newName = func(svc string) string { n++; return fmt.Sprintf("%s-%d", svc, n) }
	f := &fixture{c: c, client: client, factory: factory}
	for _, o := range objs {
		f.add(o)
	}
	return f
}

func (f *fixture) add(o runtime.Object) {
	switch o := o.(type) {
	case *corev1.Service:
		f.factory.Core().V1().Services().Informer().GetIndexer().Add(o)
	case *corev1.Pod:
		f.factory.Core().V1().Pods().Informer().GetIndexer().Add(o)
	case *discoveryv1.EndpointSlice:
		f.factory.Discovery().V1().EndpointSlices().Informer().GetIndexer().Add(o)
	}
}

// syncAndFeed runs one sync and copies the written slices into the cache,
// as the informer would.
func (f *fixture) syncAndFeed(t *testing.T) []k8stesting.Action {
	t.Helper()
	f.client.ClearActions()
	if err := f.c.sync(context.Background(), "ns/web"); err != nil {
		t.Fatal(err)
	}
	acts := f.client.Actions()
	for _, a := range acts {
		switch a := a.(type) {
		case k8stesting.CreateAction:
			f.add(a.GetObject())
		case k8stesting.UpdateAction:
			f.add(a.GetObject())
		case k8stesting.DeleteAction:
			obj, _, _ := f.factory.Discovery().V1().EndpointSlices().Informer().GetIndexer().GetByKey("ns/" + a.GetName())
			f.factory.Discovery().V1().EndpointSlices().Informer().GetIndexer().Delete(obj)
		}
	}
	return acts
}

func verbs(acts []k8stesting.Action) []string {
	var out []string
	for _, a := range acts {
		name := ""
		switch a := a.(type) {
		case k8stesting.CreateAction:
			name = a.GetObject().(*discoveryv1.EndpointSlice).Name
		case k8stesting.UpdateAction:
			name = a.GetObject().(*discoveryv1.EndpointSlice).Name
		case k8stesting.DeleteAction:
			name = a.GetName()
		}
		out = append(out, a.GetVerb()+" "+name)
	}
	return out
}

func TestSliceContents(t *testing.T) {
	dying := pod("c", "10.42.0.4", true, 8080)
	now := metav1.Now()
	dying.DeletionTimestamp = &now
	f := newFixture(t, svc(), pod("a", "10.42.0.2", true, 8080), pod("b", "10.42.0.3", false, 8080), dying, pod("noip", "", true, 8080))
	acts := f.syncAndFeed(t)
	if got := verbs(acts); len(got) != 1 || got[0] != "create web-1" {
		t.Fatalf("actions %v", got)
	}
	es := acts[0].(k8stesting.CreateAction).GetObject().(*discoveryv1.EndpointSlice)
	wantLabels := map[string]string{"team": "a", discoveryv1.LabelServiceName: "web", discoveryv1.LabelManagedBy: ControllerName}
	if !equality.Semantic.DeepEqual(es.Labels, wantLabels) {
		t.Fatalf("labels %v", es.Labels)
	}
	if es.AddressType != discoveryv1.AddressTypeIPv4 || len(es.OwnerReferences) != 1 ||
		es.OwnerReferences[0].UID != "svc-uid" || !*es.OwnerReferences[0].Controller || es.OwnerReferences[0].Kind != "Service" {
		t.Fatalf("slice meta %+v %+v", es.AddressType, es.OwnerReferences)
	}
	wantPorts := []discoveryv1.EndpointPort{{Name: new("http"), Port: new(int32(8080)), Protocol: new(corev1.ProtocolTCP)}}
	if !equality.Semantic.DeepEqual(es.Ports, wantPorts) {
		t.Fatalf("ports %+v", es.Ports)
	}
	ep := func(name, ip string, ready, serving, terminating bool) discoveryv1.Endpoint {
		return discoveryv1.Endpoint{
			Addresses:  []string{ip},
			Conditions: discoveryv1.EndpointConditions{Ready: &ready, Serving: &serving, Terminating: &terminating},
			NodeName:   new("n1"),
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: "ns", Name: name, UID: types.UID("uid-" + name)},
		}
	}
	want := []discoveryv1.Endpoint{
		ep("a", "10.42.0.2", true, true, false),
		ep("b", "10.42.0.3", false, false, false),
		ep("c", "10.42.0.4", false, true, true),
	}
	if !equality.Semantic.DeepEqual(es.Endpoints, want) {
		t.Fatalf("endpoints\n got %+v\nwant %+v", es.Endpoints, want)
	}
	// Converged: a second sync writes nothing.
	if acts := f.syncAndFeed(t); len(acts) != 0 {
		t.Fatalf("second sync wrote %v", verbs(acts))
	}
}

func TestMaxPerSliceAndMinimalChurn(t *testing.T) {
	objs := []runtime.Object{svc()}
	for i := range 250 {
		objs = append(objs, pod(fmt.Sprintf("p%03d", i), fmt.Sprintf("10.42.%d.%d", i/200, i%200+1), true, 8080))
	}
	f := newFixture(t, objs...)
	acts := f.syncAndFeed(t)
	if got := verbs(acts); len(got) != 3 {
		t.Fatalf("actions %v", got)
	}
	sizes := map[int]int{}
	for _, a := range acts {
		sizes[len(a.(k8stesting.CreateAction).GetObject().(*discoveryv1.EndpointSlice).Endpoints)]++
	}
	if sizes[100] != 2 || sizes[50] != 1 {
		t.Fatalf("slice sizes %v", sizes)
	}

	// One new pod goes into the slice with room, touching only that slice.
	f.add(pod("zzz", "10.42.9.9", true, 8080))
	acts = f.syncAndFeed(t)
	if got := verbs(acts); len(got) != 1 || got[0] != "update web-3" {
		t.Fatalf("actions %v", got)
	}
	// One removed pod touches only its slice.
	p, _ := f.factory.Core().V1().Pods().Lister().Pods("ns").Get("p000")
	f.factory.Core().V1().Pods().Informer().GetIndexer().Delete(p)
	acts = f.syncAndFeed(t)
	if got := verbs(acts); len(got) != 1 || got[0] != "update web-1" {
		t.Fatalf("actions %v", got)
	}
	if n := len(acts[0].(k8stesting.UpdateAction).GetObject().(*discoveryv1.EndpointSlice).Endpoints); n != 99 {
		t.Fatalf("slice has %d endpoints", n)
	}
}

func TestNamedPortsSplitSlicesAndPlaceholder(t *testing.T) {
	f := newFixture(t, svc(), pod("a", "10.42.0.2", true, 8080), pod("b", "10.42.0.3", true, 9090))
	acts := f.syncAndFeed(t)
	if got := verbs(acts); len(got) != 2 {
		t.Fatalf("actions %v", got)
	}
	for _, a := range acts {
		es := a.(k8stesting.CreateAction).GetObject().(*discoveryv1.EndpointSlice)
		if len(es.Endpoints) != 1 {
			t.Fatalf("slice %s has %d endpoints", es.Name, len(es.Endpoints))
		}
		wantPort := map[string]int32{"uid-a": 8080, "uid-b": 9090}[string(es.Endpoints[0].TargetRef.UID)]
		if *es.Ports[0].Port != wantPort {
			t.Fatalf("slice %s port %d, want %d", es.Name, *es.Ports[0].Port, wantPort)
		}
	}
	// All pods gone: both slices deleted, one empty placeholder created.
	idx := f.factory.Core().V1().Pods().Informer().GetIndexer()
	for _, o := range idx.List() {
		idx.Delete(o)
	}
	acts = f.syncAndFeed(t)
	if got := verbs(acts); len(got) != 3 || got[0] != "create web-3" || got[1] != "delete web-1" || got[2] != "delete web-2" {
		t.Fatalf("actions %v", got)
	}
	ph := acts[0].(k8stesting.CreateAction).GetObject().(*discoveryv1.EndpointSlice)
	if len(ph.Endpoints) != 0 || len(ph.Ports) != 0 {
		t.Fatalf("placeholder %+v", ph)
	}
	if acts := f.syncAndFeed(t); len(acts) != 0 {
		t.Fatalf("placeholder churned: %v", verbs(acts))
	}
}
