package endpoints

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func svc(name string, mut ...func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", Labels: map[string]string{"team": "a"}, CreationTimestamp: metav1.NewTime(t0)},
		Spec: corev1.ServiceSpec{
			Selector:  map[string]string{"app": "web"},
			ClusterIP: "10.43.0.10",
			Ports: []corev1.ServicePort{{
				Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("web"),
			}},
		},
	}
	for _, m := range mut {
		m(s)
	}
	return s
}

func pod(name, ip string, ready bool, webPort int32, mut ...func(*corev1.Pod)) *corev1.Pod {
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID("uid-" + name), Labels: map[string]string{"app": "web"}, ResourceVersion: "1"},
		Spec: corev1.PodSpec{NodeName: "node1", Containers: []corev1.Container{{
			Name: "c", Ports: []corev1.ContainerPort{{Name: "web", ContainerPort: webPort, Protocol: corev1.ProtocolTCP}},
		}}},
		Status: corev1.PodStatus{PodIP: ip, Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{
			Type: corev1.PodReady, Status: status, LastTransitionTime: metav1.NewTime(t0.Add(time.Minute)),
		}}},
	}
	for _, m := range mut {
		m(p)
	}
	return p
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
	f := &fixture{c: c, client: client, factory: factory}
	for _, o := range objs {
		f.addToCache(o)
	}
	return f
}

func (f *fixture) addToCache(o runtime.Object) {
	switch o := o.(type) {
	case *corev1.Service:
		f.factory.Core().V1().Services().Informer().GetIndexer().Add(o)
	case *corev1.Pod:
		f.factory.Core().V1().Pods().Informer().GetIndexer().Add(o)
	case *corev1.Endpoints:
		f.factory.Core().V1().Endpoints().Informer().GetIndexer().Add(o)
	}
}

func nodeName(s string) *string { return &s }

func writtenEndpoints(t *testing.T, client *fake.Clientset, verb string) *corev1.Endpoints {
	t.Helper()
	acts := client.Actions()
	if len(acts) != 1 || acts[0].GetVerb() != verb || acts[0].GetResource().Resource != "endpoints" {
		t.Fatalf("want one %s of endpoints, got %v", verb, acts)
	}
	switch a := acts[0].(type) {
	case k8stesting.CreateAction:
		return a.GetObject().(*corev1.Endpoints)
	case k8stesting.UpdateAction:
		return a.GetObject().(*corev1.Endpoints)
	}
	t.Fatalf("unexpected action type %T", acts[0])
	return nil
}

func TestReadyNotReadySplitAndNamedPorts(t *testing.T) {
	other := pod("other", "10.42.0.9", true, 8080)
	other.Labels = map[string]string{"app": "db"}
	f := newFixture(t,
		svc("web"),
		pod("a", "10.42.0.2", true, 8080),
		pod("b", "10.42.0.3", false, 8080),
		pod("c", "10.42.0.4", true, 9090), // same named port, different number
		pod("noip", "", true, 8080),
		pod("dying", "10.42.0.5", true, 8080, func(p *corev1.Pod) { now := metav1.Now(); p.DeletionTimestamp = &now }),
		pod("done", "10.42.0.6", true, 8080, func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }),
		pod("noport", "10.42.0.7", true, 8080, func(p *corev1.Pod) { p.Spec.Containers[0].Ports[0].Name = "other" }),
		other,
	)
	if err := f.c.sync(context.Background(), "ns/web"); err != nil {
		t.Fatal(err)
	}
	ep := writtenEndpoints(t, f.client, "create")
	addr := func(name, ip string) corev1.EndpointAddress {
		return corev1.EndpointAddress{IP: ip, NodeName: nodeName("node1"), TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: "ns", Name: name, UID: types.UID("uid-" + name)}}
	}
	want := []corev1.EndpointSubset{
		{
			Addresses:         []corev1.EndpointAddress{addr("a", "10.42.0.2")},
			NotReadyAddresses: []corev1.EndpointAddress{addr("b", "10.42.0.3")},
			Ports:             []corev1.EndpointPort{{Name: "http", Port: 8080, Protocol: corev1.ProtocolTCP}},
		},
		{
			Addresses: []corev1.EndpointAddress{addr("c", "10.42.0.4")},
			Ports:     []corev1.EndpointPort{{Name: "http", Port: 9090, Protocol: corev1.ProtocolTCP}},
		},
	}
	if !equality.Semantic.DeepEqual(ep.Subsets, want) {
		t.Fatalf("subsets:\n got %+v\nwant %+v", ep.Subsets, want)
	}
	if ep.Labels["team"] != "a" {
		t.Fatalf("labels %v", ep.Labels)
	}
	if _, ok := ep.Labels[corev1.IsHeadlessService]; ok {
		t.Fatal("non-headless service got headless label")
	}
	if got := ep.Annotations[corev1.EndpointsLastChangeTriggerTime]; got != t0.Format(time.RFC3339Nano) {
		t.Fatalf("trigger time %q", got)
	}
}

func TestNoUpdateWhenUnchanged(t *testing.T) {
	s := svc("web")
	p := pod("a", "10.42.0.2", true, 8080)
	f := newFixture(t, s, p)
	ctx := context.Background()
	if err := f.c.sync(ctx, "ns/web"); err != nil {
		t.Fatal(err)
	}
	created := writtenEndpoints(t, f.client, "create")
	f.addToCache(created)
	f.client.ClearActions()
	if err := f.c.sync(ctx, "ns/web"); err != nil {
		t.Fatal(err)
	}
	if len(f.client.Actions()) != 0 {
		t.Fatalf("expected no writes, got %v", f.client.Actions())
	}

	// Readiness flips: the pod moves to notReady and the trigger time advances.
	p2 := p.DeepCopy()
	p2.ResourceVersion = "2"
	p2.Status.Conditions[0].Status = corev1.ConditionFalse
	p2.Status.Conditions[0].LastTransitionTime = metav1.NewTime(t0.Add(time.Hour))
	f.addToCache(p2)
	if err := f.c.sync(ctx, "ns/web"); err != nil {
		t.Fatal(err)
	}
	ep := writtenEndpoints(t, f.client, "update")
	if len(ep.Subsets) != 1 || len(ep.Subsets[0].Addresses) != 0 || len(ep.Subsets[0].NotReadyAddresses) != 1 {
		t.Fatalf("subsets %+v", ep.Subsets)
	}
	if got := ep.Annotations[corev1.EndpointsLastChangeTriggerTime]; got != t0.Add(time.Hour).Format(time.RFC3339Nano) {
		t.Fatalf("trigger time %q", got)
	}
}

func TestHeadlessPublishNotReadyAndHostname(t *testing.T) {
	s := svc("db", func(s *corev1.Service) {
		s.Spec.ClusterIP = corev1.ClusterIPNone
		s.Spec.Ports = nil
		s.Spec.PublishNotReadyAddresses = true
	})
	f := newFixture(t, s,
		pod("db-0", "10.42.1.2", false, 0, func(p *corev1.Pod) { p.Spec.Hostname = "db-0"; p.Spec.Subdomain = "db" }),
		pod("db-1", "10.42.1.3", true, 0, func(p *corev1.Pod) { p.Spec.Hostname = "db-1"; p.Spec.Subdomain = "other" }),
		pod("db-2", "10.42.1.4", true, 0, func(p *corev1.Pod) { now := metav1.Now(); p.DeletionTimestamp = &now }),
	)
	if err := f.c.sync(context.Background(), "ns/db"); err != nil {
		t.Fatal(err)
	}
	ep := writtenEndpoints(t, f.client, "create")
	if _, ok := ep.Labels[corev1.IsHeadlessService]; !ok {
		t.Fatalf("missing headless label: %v", ep.Labels)
	}
	if len(ep.Subsets) != 1 || len(ep.Subsets[0].NotReadyAddresses) != 0 || len(ep.Subsets[0].Ports) != 0 {
		t.Fatalf("subsets %+v", ep.Subsets)
	}
	got := ep.Subsets[0].Addresses
	if len(got) != 3 || got[0].Hostname != "db-0" || got[1].Hostname != "" {
		t.Fatalf("addresses %+v", got)
	}
}

func TestServiceDeletedDeletesEndpoints(t *testing.T) {
	f := newFixture(t, &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: "gone", Namespace: "ns"}})
	if err := f.c.sync(context.Background(), "ns/gone"); err != nil {
		t.Fatal(err)
	}
	acts := f.client.Actions()
	if len(acts) != 1 || acts[0].GetVerb() != "delete" || acts[0].(k8stesting.DeleteAction).GetName() != "gone" {
		t.Fatalf("actions %v", acts)
	}
}

func TestPodUpdateEnqueuesSelectingServices(t *testing.T) {
	f := newFixture(t, svc("web"), svc("api", func(s *corev1.Service) { s.Spec.Selector = map[string]string{"app": "api"} }),
		svc("manual", func(s *corev1.Service) { s.Spec.Selector = nil }))
	old := pod("a", "10.42.0.2", false, 8080)
	cur := old.DeepCopy()
	cur.ResourceVersion = "2"
	cur.Labels = map[string]string{"app": "api"}
	f.c.podHandlers.OnUpdate(old, cur)
	got := map[string]bool{}
	for f.c.queue.Len() > 0 {
		k, _ := f.c.queue.Get()
		got[k] = true
		f.c.queue.Done(k)
	}
	if len(got) != 2 || !got["ns/web"] || !got["ns/api"] {
		t.Fatalf("enqueued %v", got)
	}
	// A resync with the same resourceVersion enqueues nothing.
	f.c.podHandlers.OnUpdate(cur, cur)
	if f.c.queue.Len() != 0 {
		t.Fatal("resync enqueued services")
	}
}
