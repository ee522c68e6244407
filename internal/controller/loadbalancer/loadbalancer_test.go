package loadbalancer

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
)

func TestParsePool(t *testing.T) {
	for _, tc := range []struct {
		in      string
		size    int
		first   string
		wantErr bool
	}{
		{in: "192.0.2.0/30", size: 2, first: "192.0.2.1"},
		{in: "192.0.2.7/32", size: 1, first: "192.0.2.7"},
		{in: "192.0.2.10-192.0.2.12, 198.51.100.0/31", size: 5, first: "192.0.2.10"},
		{in: "192.0.2.12-192.0.2.10", wantErr: true},
		{in: "192.0.2.0/24,192.0.2.5-192.0.2.6", wantErr: true}, // overlap
		{in: "2001:db8::/120", wantErr: true},
		{in: "10.0.0.0/8", wantErr: true}, // too large
		{in: "nonsense", wantErr: true},
		{in: " , ", wantErr: true},
	} {
		p, err := ParsePool(tc.in)
		if tc.wantErr {
			if err == nil {
				t.Errorf("ParsePool(%q) succeeded, want an error", tc.in)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParsePool(%q): %v", tc.in, err)
			continue
		}
		if p.Size() != tc.size || p.at(0).String() != tc.first {
			t.Errorf("ParsePool(%q): size %d first %s, want %d %s", tc.in, p.Size(), p.at(0), tc.size, tc.first)
		}
	}
}

func TestPoolAllocation(t *testing.T) {
	p, err := ParsePool("192.0.2.1-192.0.2.3")
	if err != nil {
		t.Fatal(err)
	}
	a, _ := p.Allocate("ns/a", netip.Addr{})
	b, _ := p.Allocate("ns/b", netip.MustParseAddr("192.0.2.3"))
	if a.String() != "192.0.2.1" || b.String() != "192.0.2.3" {
		t.Fatalf("got %s %s", a, b)
	}
	if again, _ := p.Allocate("ns/a", netip.Addr{}); again != a {
		t.Errorf("a second allocation for the same owner moved it: %s", again)
	}
	if _, err := p.Allocate("ns/c", b); err == nil {
		t.Error("took an address another service holds")
	}
	if _, err := p.Allocate("ns/c", netip.MustParseAddr("192.0.2.9")); err == nil {
		t.Error("took an address outside the pool")
	}
	c, _ := p.Allocate("ns/c", netip.Addr{})
	if c.String() != "192.0.2.2" {
		t.Errorf("third = %s", c)
	}
	if _, err := p.Allocate("ns/d", netip.Addr{}); err != ErrPoolExhausted {
		t.Errorf("full pool: %v", err)
	}
	p.Release("ns/a")
	if d, err := p.Allocate("ns/d", netip.Addr{}); err != nil || d != a {
		t.Errorf("after release: %s %v", d, err)
	}
	if p.Used() != 3 {
		t.Errorf("used = %d", p.Used())
	}
}

type harness struct {
	c       *Controller
	client  *fake.Clientset
	factory informers.SharedInformerFactory
}

func newHarness(t *testing.T, cfg Config, objs ...runtime.Object) *harness {
	t.Helper()
	client := fake.NewClientset(objs...)
	factory := informers.NewSharedInformerFactory(client, 0)
	c, err := New(cfg, client, factory, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		switch o := o.(type) {
		case *corev1.Service:
			_ = factory.Core().V1().Services().Informer().GetIndexer().Add(o)
		case *corev1.Node:
			_ = factory.Core().V1().Nodes().Informer().GetIndexer().Add(o)
		}
	}
	if err := c.rebuild(); err != nil {
		t.Fatal(err)
	}
	return &harness{c: c, client: client, factory: factory}
}

// sync runs the controller for key and mirrors the result into the cache,
// as the informer would.
func (h *harness) sync(t *testing.T, key string) *corev1.Service {
	t.Helper()
	ctx := context.Background()
	if err := h.c.sync(ctx, key); err != nil {
		t.Fatalf("sync %s: %v", key, err)
	}
	ns, name := splitKey(key)
	svc, err := h.client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil
	}
	_ = h.factory.Core().V1().Services().Informer().GetIndexer().Update(svc)
	return svc
}

func (h *harness) put(t *testing.T, svc *corev1.Service) {
	t.Helper()
	ctx := context.Background()
	if _, err := h.client.CoreV1().Services(svc.Namespace).Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
		if _, err := h.client.CoreV1().Services(svc.Namespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	_ = h.factory.Core().V1().Services().Informer().GetIndexer().Add(svc)
}

func (h *harness) remove(t *testing.T, svc *corev1.Service) {
	t.Helper()
	_ = h.client.CoreV1().Services(svc.Namespace).Delete(context.Background(), svc.Name, metav1.DeleteOptions{})
	_ = h.factory.Core().V1().Services().Informer().GetIndexer().Delete(svc)
}

func splitKey(k string) (string, string) {
	for i := range k {
		if k[i] == '/' {
			return k[:i], k[i+1:]
		}
	}
	return "", k
}

func lbService(name string, opts ...func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", CreationTimestamp: metav1.NewTime(time.Unix(1000, 0))},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, ClusterIP: "10.43.0.50",
			Ports: []corev1.ServicePort{{Port: 80, NodePort: 30080, Protocol: corev1.ProtocolTCP}}},
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

func ips(s *corev1.Service) []string {
	if s == nil {
		return nil
	}
	var out []string
	for _, i := range s.Status.LoadBalancer.Ingress {
		out = append(out, i.IP)
	}
	return out
}

func node(name, ip string, ready bool) *corev1.Node {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.NodeStatus{
		Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}, {Type: corev1.NodeHostName, Address: name}},
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: st}},
	}}
}

func TestNodeAddressMode(t *testing.T) {
	h := newHarness(t, Config{},
		node("a", "192.0.2.20", true), node("b", "192.0.2.10", true), node("c", "192.0.2.30", false),
		lbService("web"),
		lbService("other", func(s *corev1.Service) { s.Spec.LoadBalancerClass = ptr("example.com/lb") }),
		lbService("plain", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeClusterIP }))
	got := h.sync(t, "default/web")
	if fmt.Sprint(ips(got)) != "[192.0.2.10 192.0.2.20]" {
		t.Fatalf("ingress = %v, want the Ready nodes' InternalIPs", ips(got))
	}
	if m := got.Status.LoadBalancer.Ingress[0].IPMode; m == nil || *m != corev1.LoadBalancerIPModeVIP {
		t.Errorf("ipMode = %v", m)
	}
	h.client.ClearActions()
	h.sync(t, "default/web")
	if n := countUpdates(h.client); n != 0 {
		t.Errorf("second sync wrote %d times, want nothing", n)
	}
	if got := h.sync(t, "default/other"); len(ips(got)) != 0 {
		t.Errorf("service of another loadBalancerClass got %v", ips(got))
	}
	if got := h.sync(t, "default/plain"); len(ips(got)) != 0 {
		t.Errorf("ClusterIP service got %v", ips(got))
	}
	// A node becoming Ready joins the ingress.
	_ = h.factory.Core().V1().Nodes().Informer().GetIndexer().Update(node("c", "192.0.2.30", true))
	if got := h.sync(t, "default/web"); fmt.Sprint(ips(got)) != "[192.0.2.10 192.0.2.20 192.0.2.30]" {
		t.Errorf("after node c became Ready: %v", ips(got))
	}
}

func countUpdates(c *fake.Clientset) int {
	n := 0
	for _, a := range c.Actions() {
		if a.GetVerb() == "update" {
			n++
		}
	}
	return n
}

func ptr[T any](v T) *T { return &v }

func TestPoolModeAllocatesReleasesAndHonoursRequests(t *testing.T) {
	h := newHarness(t, Config{AddressPool: "192.0.2.100-192.0.2.101"},
		lbService("a"), lbService("b", func(s *corev1.Service) { s.Spec.LoadBalancerIP = "192.0.2.101" }), lbService("c"))
	b := h.sync(t, "default/b")
	if fmt.Sprint(ips(b)) != "[192.0.2.101]" {
		t.Fatalf("b asked for .101, got %v", ips(b))
	}
	a := h.sync(t, "default/a")
	if fmt.Sprint(ips(a)) != "[192.0.2.100]" {
		t.Fatalf("a = %v", ips(a))
	}
	// Pool exhausted: c waits without an address...
	if c := h.sync(t, "default/c"); len(ips(c)) != 0 {
		t.Fatalf("c got %v from an exhausted pool", ips(c))
	}
	// ...until a changes type: its status is cleared, its address freed,
	// and c is queued again.
	a.Spec.Type = corev1.ServiceTypeClusterIP
	h.put(t, a)
	if a = h.sync(t, "default/a"); len(ips(a)) != 0 {
		t.Errorf("a, now ClusterIP, keeps ingress %v", ips(a))
	}
	if h.c.queue.Len() != 1 {
		t.Fatalf("queue length %d after release, want c requeued", h.c.queue.Len())
	}
	if c := h.sync(t, "default/c"); fmt.Sprint(ips(c)) != "[192.0.2.100]" {
		t.Errorf("c after release = %v", ips(c))
	}
	// Deleting b frees .101 for a new service.
	h.remove(t, b)
	h.sync(t, "default/b")
	h.put(t, lbService("d"))
	if d := h.sync(t, "default/d"); fmt.Sprint(ips(d)) != "[192.0.2.101]" {
		t.Errorf("d = %v", ips(d))
	}
	// A request outside the pool is refused, not honoured.
	h.put(t, lbService("e", func(s *corev1.Service) { s.Spec.LoadBalancerIP = "198.51.100.1" }))
	if e := h.sync(t, "default/e"); len(ips(e)) != 0 {
		t.Errorf("e got %v", ips(e))
	}
}

func TestPoolModeRelearnsAddressesOnRestart(t *testing.T) {
	withIP := func(ip string, created int64) func(*corev1.Service) {
		return func(s *corev1.Service) {
			s.CreationTimestamp = metav1.NewTime(time.Unix(created, 0))
			s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: ip}}
		}
	}
	// old and dup both claim .1 (a race in an earlier leader): the older
	// keeps it; fresh must not be given .1 or .2.
	h := newHarness(t, Config{AddressPool: "192.0.2.1-192.0.2.3"},
		lbService("old", withIP("192.0.2.1", 1)), lbService("dup", withIP("192.0.2.1", 2)),
		lbService("other", withIP("192.0.2.2", 3)), lbService("fresh"))
	if got := h.sync(t, "default/fresh"); fmt.Sprint(ips(got)) != "[192.0.2.3]" {
		t.Errorf("fresh = %v, want the one free address", ips(got))
	}
	if got := h.sync(t, "default/old"); fmt.Sprint(ips(got)) != "[192.0.2.1]" {
		t.Errorf("old = %v", ips(got))
	}
	if got := h.sync(t, "default/dup"); len(ips(got)) != 0 {
		t.Errorf("dup = %v: the pool is full, it must lose the address old holds", ips(got))
	}
}

// TestConcurrentSyncsNeverShareAnAddress runs many services through
// several workers at once.
func TestConcurrentSyncsNeverShareAnAddress(t *testing.T) {
	var objs []runtime.Object
	for i := range 40 {
		objs = append(objs, lbService(fmt.Sprintf("s%d", i)))
	}
	h := newHarness(t, Config{AddressPool: "192.0.2.0/26"}, objs...) // 62 addresses
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			if err := h.c.sync(context.Background(), fmt.Sprintf("default/s%d", i)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	seen := map[string]string{}
	for i := range 40 {
		name := fmt.Sprintf("s%d", i)
		s, _ := h.client.CoreV1().Services("default").Get(context.Background(), name, metav1.GetOptions{})
		got := ips(s)
		if len(got) != 1 {
			t.Fatalf("%s ingress %v", name, got)
		}
		if o, dup := seen[got[0]]; dup {
			t.Fatalf("%s and %s share %s", o, name, got[0])
		}
		seen[got[0]] = name
	}
}

func TestNewRejectsBadPool(t *testing.T) {
	client := fake.NewClientset()
	if _, err := New(Config{AddressPool: "192.0.2.0/33"}, client, informers.NewSharedInformerFactory(client, 0), nil, nil); err == nil {
		t.Error("New accepted a bad pool")
	}
}
