package servicealloc

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func mustAddr(t *testing.T, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// fakeStore stands in for the services store: tests decide whether a
// write "happened" by calling put.
type fakeStore struct {
	mu   sync.Mutex
	svcs map[string]corev1.Service
	err  error
}

func (f *fakeStore) List(context.Context) ([]corev1.Service, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	keys := make([]string, 0, len(f.svcs))
	for k := range f.svcs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]corev1.Service, 0, len(keys))
	for _, k := range keys {
		s := f.svcs[k]
		out = append(out, *s.DeepCopy())
	}
	return out, nil
}

func (f *fakeStore) put(svc *corev1.Service) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.svcs[svc.Namespace+"/"+svc.Name] = *svc.DeepCopy()
}

func (f *fakeStore) remove(svc *corev1.Service) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.svcs, svc.Namespace+"/"+svc.Name)
}

type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time       { return c.t }
func (c *fakeClock) Step(d time.Duration) { c.t = c.t.Add(d) }
func zeroRand(int) int                    { return 0 }
func newFake() (*fakeStore, *fakeClock) {
	return &fakeStore{svcs: map[string]corev1.Service{}}, &fakeClock{t: time.Unix(1000, 0)}
}
func intp[T any](v T) *T                     { return &v }
func svcIPs(s *corev1.Service) (string, int) { return s.Spec.ClusterIP, len(s.Spec.ClusterIPs) }

type env struct {
	t     *testing.T
	a     *Allocator
	store *fakeStore
	clock *fakeClock
}

func newEnv(t *testing.T, cidr, ports string, seed ...corev1.Service) *env {
	t.Helper()
	store, clock := newFake()
	for i := range seed {
		store.put(&seed[i])
	}
	a, err := New(Config{ServiceCIDR: cidr, NodePortRange: ports, List: store.List, Now: clock.Now, Rand: zeroRand, Grace: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, a: a, store: store, clock: clock}
}

var uidSeq atomic.Int64

func svc(name string, typ corev1.ServiceType, mutate ...func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, UID: types.UID(fmt.Sprintf("uid-%d", uidSeq.Add(1)))},
		Spec:       corev1.ServiceSpec{Type: typ, Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}},
	}
	if typ == corev1.ServiceTypeLoadBalancer || typ == corev1.ServiceTypeNodePort {
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
	}
	for _, m := range mutate {
		m(s)
	}
	return s
}

// create admits and stores svc.
func (e *env) create(s *corev1.Service) *corev1.Service {
	e.t.Helper()
	if err := e.a.Admit(context.Background(), s, nil); err != nil {
		e.t.Fatalf("admitting %s: %v", s.Name, err)
	}
	e.store.put(s)
	return s
}

// update admits next against old and stores it.
func (e *env) update(next, old *corev1.Service) *corev1.Service {
	e.t.Helper()
	if err := e.a.Admit(context.Background(), next, old); err != nil {
		e.t.Fatalf("admitting update of %s: %v", next.Name, err)
	}
	e.store.put(next)
	return next
}

func (e *env) delete(s *corev1.Service) {
	e.store.remove(s)
	e.a.Release(s)
}

func (e *env) repair() {
	e.t.Helper()
	if err := e.a.Repair(context.Background()); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) usage(ips, ports int) {
	e.t.Helper()
	gi, gp := e.a.Usage()
	if gi != ips || gp != ports {
		e.t.Fatalf("usage: %d ips, %d node ports; want %d, %d", gi, gp, ips, ports)
	}
}

func TestAllocateClusterIP(t *testing.T) {
	e := newEnv(t, "10.43.0.0/16", "")
	s := e.create(svc("a", corev1.ServiceTypeClusterIP))
	ip := mustAddr(t, s.Spec.ClusterIP)
	if !netip.MustParsePrefix("10.43.0.0/16").Contains(ip) || len(s.Spec.ClusterIPs) != 1 || s.Spec.ClusterIPs[0] != s.Spec.ClusterIP {
		t.Fatalf("clusterIP %q clusterIPs %v", s.Spec.ClusterIP, s.Spec.ClusterIPs)
	}
	// Dynamic allocation starts above the static band (256 for a /16).
	if off, _ := e.a.ips.Offset(ip); off < 256 {
		t.Errorf("dynamic IP %s in the static band", ip)
	}
	if s.Spec.Ports[0].NodePort != 0 {
		t.Errorf("ClusterIP service got node port %d", s.Spec.Ports[0].NodePort)
	}
	e.usage(1, 0)
}

func TestRequestedIP(t *testing.T) {
	e := newEnv(t, "10.43.0.0/16", "")
	k := e.create(svc("kubernetes", corev1.ServiceTypeClusterIP, func(s *corev1.Service) { s.Spec.ClusterIP = "10.43.0.1" }))
	if ip, n := svcIPs(k); ip != "10.43.0.1" || n != 1 {
		t.Fatalf("got %s (%d)", ip, n)
	}
	tests := []struct {
		name, ip, want string
	}{
		{"taken", "10.43.0.1", `spec.clusterIPs: Invalid value: ["10.43.0.1"]: failed to allocate IP 10.43.0.1: provided IP is already allocated`},
		{"outside", "10.44.0.5", `spec.clusterIPs: Invalid value: ["10.44.0.5"]: failed to allocate IP 10.44.0.5: the provided IP (10.44.0.5) is not in the valid range. The range of valid IPs is 10.43.0.0/16`},
		{"network address", "10.43.0.0", "is not in the valid range"},
		{"broadcast", "10.43.255.255", "is not in the valid range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := e.a.Admit(context.Background(), svc("x", corev1.ServiceTypeClusterIP, func(s *corev1.Service) { s.Spec.ClusterIP = tt.ip }), nil)
			if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want invalid containing %q", err, tt.want)
			}
		})
	}
	// clusterIPs alone is honoured too.
	s := e.create(svc("b", corev1.ServiceTypeClusterIP, func(s *corev1.Service) { s.Spec.ClusterIPs = []string{"10.43.0.10"} }))
	if s.Spec.ClusterIP != "10.43.0.10" {
		t.Errorf("clusterIP %q", s.Spec.ClusterIP)
	}
	e.usage(2, 0)
}

func TestHeadlessAndExternalNameGetNoIP(t *testing.T) {
	e := newEnv(t, "10.43.0.0/16", "")
	h := e.create(svc("h", corev1.ServiceTypeClusterIP, func(s *corev1.Service) { s.Spec.ClusterIP = corev1.ClusterIPNone }))
	if h.Spec.ClusterIP != "None" || len(h.Spec.ClusterIPs) != 1 || h.Spec.ClusterIPs[0] != "None" {
		t.Errorf("headless: %q %v", h.Spec.ClusterIP, h.Spec.ClusterIPs)
	}
	x := e.create(svc("x", corev1.ServiceTypeExternalName, func(s *corev1.Service) { s.Spec.ExternalName = "example.com"; s.Spec.Ports = nil }))
	if x.Spec.ClusterIP != "" || len(x.Spec.ClusterIPs) != 0 {
		t.Errorf("external name: %q %v", x.Spec.ClusterIP, x.Spec.ClusterIPs)
	}
	e.usage(0, 0)
}

func TestNodePorts(t *testing.T) {
	e := newEnv(t, "10.43.0.0/16", "30000-30009")
	s := e.create(svc("np", corev1.ServiceTypeNodePort, func(s *corev1.Service) {
		s.Spec.Ports = []corev1.ServicePort{
			{Name: "dns-udp", Port: 53, Protocol: corev1.ProtocolUDP},
			{Name: "dns-tcp", Port: 53, Protocol: corev1.ProtocolTCP},
			{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, NodePort: 30005},
		}
	}))
	p := s.Spec.Ports
	if p[0].NodePort == 0 || p[0].NodePort != p[1].NodePort {
		t.Errorf("TCP and UDP of one port should share a node port: %d %d", p[0].NodePort, p[1].NodePort)
	}
	if p[2].NodePort != 30005 {
		t.Errorf("requested node port not honoured: %d", p[2].NodePort)
	}
	e.usage(1, 2)

	tests := []struct {
		name   string
		mutate func(*corev1.Service)
		want   string
	}{
		{"taken", func(s *corev1.Service) { s.Spec.Ports[0].NodePort = 30005 }, "spec.ports[0].nodePort: Invalid value: 30005: provided port is already allocated"},
		{"out of range", func(s *corev1.Service) { s.Spec.Ports[0].NodePort = 30010 },
			"spec.ports[0].nodePort: Invalid value: 30010: provided port is not in the valid range. The range of valid ports is 30000-30009"},
		{"twice in one service", func(s *corev1.Service) {
			s.Spec.Ports = []corev1.ServicePort{{Name: "a", Port: 1, NodePort: 30007}, {Name: "b", Port: 2, NodePort: 30007}}
		}, "spec.ports[1].nodePort: Invalid value: 30007: provided port is already allocated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := e.a.Admit(context.Background(), svc("bad", corev1.ServiceTypeNodePort, tt.mutate), nil)
			if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want %q", err, tt.want)
			}
		})
	}
	// A refused request allocated nothing (its IP was rolled back).
	e.usage(1, 2)

	// Exhaustion: 8 ports left.
	for i := 0; i < 8; i++ {
		e.create(svc(fmt.Sprintf("fill-%d", i), corev1.ServiceTypeNodePort))
	}
	err := e.a.Admit(context.Background(), svc("full", corev1.ServiceTypeNodePort), nil)
	if !apierrors.IsInternalError(err) || !strings.Contains(err.Error(), "failed to allocate a nodePort: range is full") {
		t.Fatalf("got %v", err)
	}
	e.usage(9, 10)
}

func TestLoadBalancerPorts(t *testing.T) {
	e := newEnv(t, "10.43.0.0/16", "")
	lb := e.create(svc("lb", corev1.ServiceTypeLoadBalancer))
	if lb.Spec.Ports[0].NodePort == 0 || lb.Spec.HealthCheckNodePort != 0 {
		t.Errorf("LoadBalancer: nodePort %d hc %d", lb.Spec.Ports[0].NodePort, lb.Spec.HealthCheckNodePort)
	}
	local := e.create(svc("local", corev1.ServiceTypeLoadBalancer, func(s *corev1.Service) {
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	}))
	if local.Spec.HealthCheckNodePort == 0 || local.Spec.HealthCheckNodePort == local.Spec.Ports[0].NodePort {
		t.Errorf("Local LoadBalancer: nodePort %d hc %d", local.Spec.Ports[0].NodePort, local.Spec.HealthCheckNodePort)
	}
	none := e.create(svc("none", corev1.ServiceTypeLoadBalancer, func(s *corev1.Service) { s.Spec.AllocateLoadBalancerNodePorts = intp(false) }))
	if none.Spec.Ports[0].NodePort != 0 {
		t.Errorf("allocateLoadBalancerNodePorts=false got %d", none.Spec.Ports[0].NodePort)
	}
	e.usage(3, 3)
	err := e.a.Admit(context.Background(), svc("hc", corev1.ServiceTypeLoadBalancer, func(s *corev1.Service) {
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		s.Spec.HealthCheckNodePort = local.Spec.HealthCheckNodePort
	}), nil)
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "spec.healthCheckNodePort") || !strings.Contains(err.Error(), "provided port is already allocated") {
		t.Fatalf("got %v", err)
	}
	err = e.a.Admit(context.Background(), svc("hc2", corev1.ServiceTypeNodePort, func(s *corev1.Service) { s.Spec.HealthCheckNodePort = 31000 }), nil)
	if !apierrors.IsInvalid(err) {
		t.Fatalf("healthCheckNodePort on a NodePort service: got %v", err)
	}
	e.usage(3, 3)
}

func TestReleaseOnDelete(t *testing.T) {
	e := newEnv(t, "10.43.0.0/16", "")
	s := e.create(svc("a", corev1.ServiceTypeLoadBalancer, func(s *corev1.Service) {
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	}))
	e.usage(1, 2)
	e.delete(s)
	e.usage(0, 0)
	// The freed IP can be requested at once.
	e.create(svc("b", corev1.ServiceTypeClusterIP, func(x *corev1.Service) { x.Spec.ClusterIP = s.Spec.ClusterIP }))
}

func TestLateDeleteDoesNotFreeRecreatedService(t *testing.T) {
	e := newEnv(t, "10.43.0.0/16", "")
	old := e.create(svc("a", corev1.ServiceTypeClusterIP, func(s *corev1.Service) { s.Spec.ClusterIP = "10.43.0.7" }))
	e.store.remove(old) // gone from storage; AfterDelete not yet run
	e.create(svc("a", corev1.ServiceTypeClusterIP, func(s *corev1.Service) { s.Spec.ClusterIP = "10.43.0.7" }))
	e.a.Release(old)
	if !e.a.IPAllocated("10.43.0.7") {
		t.Fatal("a late delete freed the re-created service's IP")
	}
}

func TestTypeChanges(t *testing.T) {
	e := newEnv(t, "10.43.0.0/16", "")
	c := e.create(svc("a", corev1.ServiceTypeClusterIP))
	ip := c.Spec.ClusterIP

	// ClusterIP -> NodePort allocates a port and keeps the IP.
	np := c.DeepCopy()
	np.Spec.Type = corev1.ServiceTypeNodePort
	np.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
	np = e.update(np, c)
	port := np.Spec.Ports[0].NodePort
	if port == 0 || np.Spec.ClusterIP != ip {
		t.Fatalf("after ClusterIP->NodePort: port %d ip %s", port, np.Spec.ClusterIP)
	}
	e.usage(1, 1)

	// Re-applying without the node port keeps it (by port name).
	re := np.DeepCopy()
	re.Spec.Ports[0].NodePort = 0
	re = e.update(re, np)
	if re.Spec.Ports[0].NodePort != port {
		t.Fatalf("node port changed on re-apply: %d -> %d", port, re.Spec.Ports[0].NodePort)
	}

	// NodePort -> ClusterIP clears the port; it is freed once stored.
	back := re.DeepCopy()
	back.Spec.Type = corev1.ServiceTypeClusterIP
	back.Spec.ExternalTrafficPolicy = ""
	back = e.update(back, re)
	if back.Spec.Ports[0].NodePort != 0 {
		t.Fatalf("node port kept on ClusterIP: %d", back.Spec.Ports[0].NodePort)
	}
	e.usage(1, 1) // pending release until repair sees the store
	e.repair()
	e.usage(1, 0)

	// ClusterIP -> ExternalName drops the IP; back allocates one.
	ext := back.DeepCopy()
	ext.Spec.Type = corev1.ServiceTypeExternalName
	ext.Spec.ExternalName = "example.com"
	ext = e.update(ext, back)
	if ext.Spec.ClusterIP != "" || ext.Spec.ClusterIPs != nil || ext.Spec.IPFamilies != nil {
		t.Fatalf("ExternalName kept %q %v", ext.Spec.ClusterIP, ext.Spec.ClusterIPs)
	}
	e.repair()
	e.usage(0, 0)
	again := ext.DeepCopy()
	again.Spec.Type = corev1.ServiceTypeClusterIP
	again.Spec.ExternalName = ""
	again = e.update(again, ext)
	if again.Spec.ClusterIP == "" {
		t.Fatal("ExternalName->ClusterIP got no IP")
	}
	e.usage(1, 0)
}

func TestFailedUpdateKeepsDroppedValues(t *testing.T) {
	e := newEnv(t, "10.43.0.0/16", "")
	np := e.create(svc("a", corev1.ServiceTypeNodePort))
	port := int(np.Spec.Ports[0].NodePort)
	back := np.DeepCopy()
	back.Spec.Type = corev1.ServiceTypeClusterIP
	back.Spec.ExternalTrafficPolicy = ""
	if err := e.a.Admit(context.Background(), back, np); err != nil {
		t.Fatal(err)
	}
	// The write did not happen: the stored service still holds the port.
	e.clock.Step(time.Hour)
	e.repair()
	if !e.a.PortAllocated(port) {
		t.Fatal("a failed update released a port the stored service holds")
	}
}

func TestUpdateRetriesReuseAllocation(t *testing.T) {
	e := newEnv(t, "10.43.0.0/16", "")
	c := e.create(svc("a", corev1.ServiceTypeClusterIP, func(s *corev1.Service) {
		s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: "https", Port: 443})
	}))
	var got []int32
	for attempt := 0; attempt < 5; attempt++ {
		// GuaranteedUpdate re-runs admission with a fresh copy each time.
		next := c.DeepCopy()
		next.Spec.Type = corev1.ServiceTypeNodePort
		next.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
		if err := e.a.Admit(context.Background(), next, c); err != nil {
			t.Fatal(err)
		}
		got = append(got, next.Spec.Ports[0].NodePort, next.Spec.Ports[1].NodePort)
	}
	for i := 2; i < len(got); i++ {
		if got[i] != got[i%2] {
			t.Fatalf("retries allocated different ports: %v", got)
		}
	}
	e.usage(1, 2)
}

func TestCreateRetryReusesRequestedValues(t *testing.T) {
	e := newEnv(t, "10.43.0.0/16", "")
	ctx := context.Background()
	// A create that failed after admission (say, validation) leaves its
	// values pending; the same client retrying gets them, others do not.
	first := svc("a", corev1.ServiceTypeNodePort, func(s *corev1.Service) { s.Spec.ClusterIP = "10.43.0.9"; s.Spec.Ports[0].NodePort = 30100 })
	if err := e.a.Admit(ctx, first, nil); err != nil {
		t.Fatal(err)
	}
	if err := e.a.Admit(ctx, svc("b", corev1.ServiceTypeClusterIP, func(s *corev1.Service) { s.Spec.ClusterIP = "10.43.0.9" }), nil); err == nil {
		t.Fatal("another service got a pending IP")
	}
	e.create(svc("a", corev1.ServiceTypeNodePort, func(s *corev1.Service) { s.Spec.ClusterIP = "10.43.0.9"; s.Spec.Ports[0].NodePort = 30100 }))
	e.usage(1, 1)
}

func TestRepairFreesLeakedPending(t *testing.T) {
	e := newEnv(t, "10.43.0.0/16", "")
	ctx := context.Background()
	leaked := svc("leak", corev1.ServiceTypeNodePort)
	if err := e.a.Admit(ctx, leaked, nil); err != nil { // never stored
		t.Fatal(err)
	}
	kept := e.create(svc("kept", corev1.ServiceTypeNodePort))
	e.usage(2, 2)
	e.repair() // young: kept, its create may be in flight
	e.usage(2, 2)
	e.clock.Step(29 * time.Second)
	e.repair()
	e.usage(2, 2)
	e.clock.Step(2 * time.Second)
	e.repair()
	e.usage(1, 1)
	if !e.a.IPAllocated(kept.Spec.ClusterIP) || e.a.IPAllocated(leaked.Spec.ClusterIP) {
		t.Fatal("repair freed the wrong allocation")
	}
}

func TestRepairSkipsChangesDuringListing(t *testing.T) {
	store, clock := newFake()
	var a *Allocator
	var during func()
	list := func(ctx context.Context) ([]corev1.Service, error) {
		out, err := store.List(ctx)
		if during != nil {
			during()
		}
		return out, err
	}
	a, err := New(Config{List: list, Now: clock.Now, Rand: zeroRand})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, a: a, store: store, clock: clock}
	s := e.create(svc("a", corev1.ServiceTypeClusterIP))
	e.repair()
	clock.Step(time.Hour)
	// While repair lists (seeing "a"), "a" is deleted and its IP handed to
	// "b", whose write is still in flight: repair must not take the IP
	// back for "a" nor free it.
	during = func() {
		during = nil
		e.delete(s)
		if err := a.Admit(context.Background(), svc("b", corev1.ServiceTypeClusterIP, func(x *corev1.Service) { x.Spec.ClusterIP = s.Spec.ClusterIP }), nil); err != nil {
			t.Error(err)
		}
	}
	e.repair()
	if got, ok := a.ip.ownerOf(mustOffset(t, a, s.Spec.ClusterIP)); !ok || got.key != "default/b" {
		t.Fatalf("owner after racing repair: %+v %v", got, ok)
	}
}

func mustOffset(t *testing.T, a *Allocator, ip string) int {
	off, ok := a.ips.Offset(mustAddr(t, ip))
	if !ok {
		t.Fatalf("%s out of range", ip)
	}
	return off
}

func TestRebuildFromStore(t *testing.T) {
	stored := []corev1.Service{
		*svc("kubernetes", corev1.ServiceTypeClusterIP, func(s *corev1.Service) { s.Spec.ClusterIP = "10.43.0.1"; s.Spec.ClusterIPs = []string{"10.43.0.1"} }),
		*svc("np", corev1.ServiceTypeNodePort, func(s *corev1.Service) {
			s.Spec.ClusterIP = "10.43.7.7"
			s.Spec.Ports[0].NodePort = 30080
		}),
	}
	e := newEnv(t, "10.43.0.0/16", "", stored...)
	// The first admission loads the store before allocating.
	err := e.a.Admit(context.Background(), svc("x", corev1.ServiceTypeNodePort, func(s *corev1.Service) { s.Spec.Ports[0].NodePort = 30080 }), nil)
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated") {
		t.Fatalf("got %v", err)
	}
	if !e.a.IPAllocated("10.43.0.1") || !e.a.IPAllocated("10.43.7.7") {
		t.Fatal("stored IPs not loaded")
	}
	// Re-creating the kubernetes service at start (bootstrap) must not be
	// refused by the allocator: storage answers AlreadyExists.
	if err := e.a.Admit(context.Background(), svc("kubernetes", corev1.ServiceTypeClusterIP, func(s *corev1.Service) { s.Spec.ClusterIP = "10.43.0.1" }), nil); err != nil {
		t.Fatalf("re-admitting the kubernetes service: %v", err)
	}
	e.usage(2, 1)
}

func TestLoadFailureIsAnError(t *testing.T) {
	e := newEnv(t, "10.43.0.0/16", "")
	e.store.err = fmt.Errorf("etcd down")
	err := e.a.Admit(context.Background(), svc("a", corev1.ServiceTypeClusterIP), nil)
	if !apierrors.IsInternalError(err) || !strings.Contains(err.Error(), "etcd down") {
		t.Fatalf("got %v", err)
	}
}

func TestConcurrentAdmit(t *testing.T) {
	e := newEnv(t, "10.43.0.0/24", "") // 254 addresses, 16 static
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[string]string{}
	for g := 0; g < 10; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				s := svc(fmt.Sprintf("s-%d-%d", g, i), corev1.ServiceTypeNodePort)
				if err := e.a.Admit(context.Background(), s, nil); err != nil {
					t.Error(err)
					return
				}
				e.store.put(s)
				mu.Lock()
				if other, dup := seen[s.Spec.ClusterIP]; dup {
					t.Errorf("%s given to %s and %s", s.Spec.ClusterIP, other, s.Name)
				}
				seen[s.Spec.ClusterIP] = s.Name
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	e.usage(250, 250)
}
