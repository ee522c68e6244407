package dns

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	clocktesting "k8s.io/utils/clock/testing"
)

var epoch = time.Unix(1700000000, 0)

func service(ns, name, clusterIP string, ports ...v1.ServicePort) *v1.Service {
	s := &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       v1.ServiceSpec{Type: v1.ServiceTypeClusterIP, ClusterIP: clusterIP, Ports: ports},
	}
	if clusterIP != "" {
		s.Spec.ClusterIPs = []string{clusterIP}
	}
	return s
}

func port(name string, proto v1.Protocol, p int32) v1.ServicePort {
	return v1.ServicePort{Name: name, Protocol: proto, Port: p}
}

type ep struct {
	ip       string
	hostname string
	ready    bool
}

func slice(ns, svc, name string, eps []ep, ports ...discovery.EndpointPort) *discovery.EndpointSlice {
	s := &discovery.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{discovery.LabelServiceName: svc}},
		AddressType: discovery.AddressTypeIPv4,
		Ports:       ports,
	}
	for _, e := range eps {
		d := discovery.Endpoint{Addresses: []string{e.ip}, Conditions: discovery.EndpointConditions{Ready: &e.ready}}
		if e.hostname != "" {
			d.Hostname = &e.hostname
		}
		s.Endpoints = append(s.Endpoints, d)
	}
	return s
}

func slicePort(name string, proto v1.Protocol, p int32) discovery.EndpointPort {
	return discovery.EndpointPort{Name: &name, Protocol: &proto, Port: &p}
}

func pod(ns, name, ip string, phase v1.PodPhase) *v1.Pod {
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Status:     v1.PodStatus{Phase: phase, PodIP: ip, PodIPs: []v1.PodIP{{IP: ip}}},
	}
}

// clusterObjects is the cluster every answer test runs against.
func clusterObjects() []runtime.Object {
	dual := service("default", "dual", "10.43.0.21", port("http", v1.ProtocolTCP, 80))
	dual.Spec.ClusterIPs = []string{"10.43.0.21", "fd00::21"}
	db := service("default", "db", v1.ClusterIPNone, port("pg", v1.ProtocolTCP, 5432))
	empty := service("default", "empty", v1.ClusterIPNone)
	ext := service("default", "ext", "")
	ext.Spec.Type, ext.Spec.ExternalName = v1.ServiceTypeExternalName, "example.com"
	extIn := service("default", "extin", "")
	extIn.Spec.Type, extIn.Spec.ExternalName = v1.ServiceTypeExternalName, "web.default.svc.cluster.local"
	return []runtime.Object{
		service("kube-system", "kube-dns", "10.43.0.10", port("dns", v1.ProtocolUDP, 53), port("dns-tcp", v1.ProtocolTCP, 53)),
		service("default", "web", "10.43.0.20", port("http", v1.ProtocolTCP, 80), port("dns", v1.ProtocolUDP, 53), port("", v1.ProtocolTCP, 8080)),
		dual, db, empty, ext, extIn,
		slice("default", "db", "db-abc", []ep{
			{ip: "10.42.0.5", hostname: "db-0", ready: true},
			{ip: "10.42.1.6", hostname: "db-1", ready: true},
			{ip: "10.42.2.7", hostname: "db-2", ready: false},
			{ip: "10.42.0.9", ready: true},
		}, slicePort("pg", v1.ProtocolTCP, 5432)),
		// A slice of a ClusterIP service: no per-endpoint names.
		slice("default", "web", "web-abc", []ep{{ip: "10.42.0.77", hostname: "web-0", ready: true}}, slicePort("http", v1.ProtocolTCP, 8080)),
		pod("default", "db-0", "10.42.0.5", v1.PodRunning),
		pod("default", "done", "10.42.3.3", v1.PodSucceeded),
	}
}

// upstream is a fake resolver on loopback: it answers A questions from
// records and NXDOMAIN (with an SOA) otherwise, and counts questions.
type upstream struct {
	addr    string
	queries atomic.Int64
	mu      sync.Mutex
	records map[string][]mdns.RR // lowercase name → answer
}

func startUpstream(t *testing.T, records ...string) *upstream {
	t.Helper()
	u := &upstream{records: map[string][]mdns.RR{}}
	for _, s := range records {
		rr, err := mdns.NewRR(s)
		if err != nil {
			t.Fatalf("parsing upstream record %q: %v", s, err)
		}
		u.records[rr.Header().Name] = append(u.records[rr.Header().Name], rr)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u.addr = pc.LocalAddr().String()
	started := make(chan struct{})
	srv := &mdns.Server{PacketConn: pc, Handler: mdns.HandlerFunc(u.serve), NotifyStartedFunc: func() { close(started) }}
	go func() { _ = srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = srv.Shutdown() })
	return u
}

func (u *upstream) serve(w mdns.ResponseWriter, r *mdns.Msg) {
	u.queries.Add(1)
	m := new(mdns.Msg)
	m.SetReply(r)
	q := r.Question[0]
	u.mu.Lock()
	for _, rr := range u.records[q.Name] {
		if rr.Header().Rrtype == q.Qtype {
			m.Answer = append(m.Answer, mdns.Copy(rr))
		}
	}
	_, exists := u.records[q.Name]
	u.mu.Unlock()
	if len(m.Answer) == 0 {
		if !exists {
			m.Rcode = mdns.RcodeNameError
		}
		soa, _ := mdns.NewRR("com. 900 IN SOA a.gtld-servers.net. nstld.verisign-grs.com. 1 1800 900 604800 60")
		m.Ns = []mdns.RR{soa}
	}
	_ = w.WriteMsg(m)
}

type testServer struct {
	*Server
	udp, tcp string
	client   *fake.Clientset
	clock    *clocktesting.FakeClock
	reg      *prometheus.Registry
}

// startServer runs a Server on loopback against objs, forwarding to up.
func startServer(t *testing.T, up *upstream, objs ...runtime.Object) *testServer {
	t.Helper()
	return startServerWith(t, nil, up, objs...)
}

// startServerWith is startServer with cfg adjusted by tune first.
func startServerWith(t *testing.T, tune func(*Config), up *upstream, objs ...runtime.Object) *testServer {
	t.Helper()
	client := fake.NewClientset(objs...)
	factory := informers.NewSharedInformerFactory(client, 0)
	clk := clocktesting.NewFakeClock(epoch)
	reg := prometheus.NewRegistry()
	cfg := Config{ListenAddrs: []string{"127.0.0.1:0"}, Clock: clk, Metrics: reg, UpstreamTimeout: time.Second, MinSyncPeriod: time.Millisecond}
	if up != nil {
		cfg.Upstreams = []string{up.addr}
	} else {
		cfg.Upstreams = []string{"127.0.0.1:1"} // nothing listens; never leaves loopback
	}
	if tune != nil {
		tune(&cfg)
	}
	s, err := New(cfg, factory, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	select {
	case <-s.Ready():
	case err := <-done:
		t.Fatalf("run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("server not ready after 10s")
	}
	return &testServer{Server: s, udp: s.UDPAddrs()[0].String(), tcp: s.TCPAddrs()[0].String(), client: client, clock: clk, reg: reg}
}

func query(t *testing.T, network, addr, name string, qtype uint16, edns bool) *mdns.Msg {
	t.Helper()
	m := new(mdns.Msg)
	m.SetQuestion(name, qtype)
	if edns {
		m.SetEdns0(1232, false)
	}
	c := &mdns.Client{Net: network, Timeout: 3 * time.Second}
	resp, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("query %s %s over %s: %v", name, mdns.TypeToString[qtype], network, err)
	}
	if resp.Id != m.Id {
		t.Fatalf("query %s: response id %d, want %d", name, resp.Id, m.Id)
	}
	return resp
}
