package dns

import (
	"context"
	"net"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	clocktesting "k8s.io/utils/clock/testing"
)

func newTestForwarder(t *testing.T, size int, ups ...string) (*forwarder, *clocktesting.FakeClock) {
	t.Helper()
	m, err := newMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	clk := clocktesting.NewFakeClock(epoch)
	return newForwarder(ups, time.Second, size, clk, m), clk
}

func ask(t *testing.T, f *forwarder, name string, qtype uint16) *mdns.Msg {
	t.Helper()
	m, err := f.exchange(context.Background(), mdns.Question{Name: name, Qtype: qtype, Qclass: mdns.ClassINET})
	if err != nil {
		t.Fatalf("exchange %s: %v", name, err)
	}
	return m
}

func TestForwardCacheHonoursTTL(t *testing.T) {
	up := startUpstream(t, "example.org. 30 IN A 192.0.2.1")
	f, clk := newTestForwarder(t, 100, up.addr)

	if m := ask(t, f, "example.org.", mdns.TypeA); len(m.Answer) != 1 || m.Answer[0].Header().Ttl != 30 {
		t.Fatalf("first answer = %v, want one A with ttl 30", m.Answer)
	}
	clk.Step(12 * time.Second)
	m := ask(t, f, "Example.ORG.", mdns.TypeA) // the cache ignores case
	if got := up.queries.Load(); got != 1 {
		t.Fatalf("upstream asked %d times, want 1 (second answer from cache)", got)
	}
	if ttl := m.Answer[0].Header().Ttl; ttl != 18 {
		t.Errorf("cached ttl after 12s = %d, want 18", ttl)
	}
	// A hit must not share records with the cache: mutating it is safe.
	m.Answer[0].Header().Ttl = 999
	if m := ask(t, f, "example.org.", mdns.TypeA); m.Answer[0].Header().Ttl != 18 {
		t.Errorf("cache entry was mutated through a returned message: ttl %d", m.Answer[0].Header().Ttl)
	}
	clk.Step(18 * time.Second)
	ask(t, f, "example.org.", mdns.TypeA)
	if got := up.queries.Load(); got != 2 {
		t.Fatalf("upstream asked %d times after expiry, want 2", got)
	}
}

func TestForwardCachesNegativeAnswersForSOAMinimum(t *testing.T) {
	up := startUpstream(t) // NXDOMAIN with SOA ttl 900, minimum 60
	f, clk := newTestForwarder(t, 100, up.addr)
	if m := ask(t, f, "nosuch.example.", mdns.TypeA); m.Rcode != mdns.RcodeNameError {
		t.Fatalf("rcode %s, want NXDOMAIN", mdns.RcodeToString[m.Rcode])
	}
	clk.Step(59 * time.Second)
	ask(t, f, "nosuch.example.", mdns.TypeA)
	if got := up.queries.Load(); got != 1 {
		t.Fatalf("upstream asked %d times within the negative ttl, want 1", got)
	}
	clk.Step(time.Second)
	ask(t, f, "nosuch.example.", mdns.TypeA)
	if got := up.queries.Load(); got != 2 {
		t.Fatalf("upstream asked %d times after the negative ttl, want 2", got)
	}
}

func TestForwardCacheIsBounded(t *testing.T) {
	up := startUpstream(t, "a.example. 300 IN A 192.0.2.1", "b.example. 300 IN A 192.0.2.2", "c.example. 300 IN A 192.0.2.3")
	f, _ := newTestForwarder(t, 2, up.addr)
	for _, n := range []string{"a.example.", "b.example.", "a.example.", "c.example."} {
		ask(t, f, n, mdns.TypeA)
	}
	if n := f.cache.len(); n != 2 {
		t.Fatalf("cache holds %d entries, want 2", n)
	}
	before := up.queries.Load()
	ask(t, f, "a.example.", mdns.TypeA) // recently used: kept
	ask(t, f, "c.example.", mdns.TypeA)
	if got := up.queries.Load() - before; got != 0 {
		t.Errorf("a and c asked upstream %d times, want 0", got)
	}
	ask(t, f, "b.example.", mdns.TypeA) // least recently used: evicted
	if got := up.queries.Load() - before; got != 1 {
		t.Errorf("b asked upstream %d times, want 1", got)
	}
}

func TestForwardFailsOverToNextUpstream(t *testing.T) {
	// A loopback port nobody listens on: the kernel refuses at once.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := pc.LocalAddr().String()
	pc.Close()
	up := startUpstream(t, "example.org. 30 IN A 192.0.2.1")
	f, _ := newTestForwarder(t, 100, dead, up.addr)
	for i := range 3 { // whichever upstream the rotation starts with
		if m := ask(t, f, "example.org.", mdns.TypeA); len(m.Answer) != 1 {
			t.Fatalf("attempt %d: answer %v", i, m.Answer)
		}
		f.cache = newAnswerCache(100, clocktesting.NewFakeClock(epoch))
	}

	f, _ = newTestForwarder(t, 100, dead)
	if _, err := f.exchange(context.Background(), mdns.Question{Name: "example.org.", Qtype: mdns.TypeA, Qclass: mdns.ClassINET}); err == nil {
		t.Fatal("exchange with no live upstream succeeded")
	}
	if got := counterValue(t, f.metrics.forwardErrors); got != 1 {
		t.Errorf("forward errors = %v, want 1", got)
	}
}

func TestServerForwardsAndCountsQueries(t *testing.T) {
	up := startUpstream(t, "example.org. 30 IN A 192.0.2.1")
	s := startServer(t, up, clusterObjects()...)
	for range 3 {
		if m := query(t, "udp", s.udp, "example.org.", mdns.TypeA, false); len(m.Answer) != 1 || m.Rcode != mdns.RcodeSuccess || !m.RecursionAvailable || m.Authoritative {
			t.Fatalf("forwarded answer: %v", m)
		}
	}
	if got := up.queries.Load(); got != 1 {
		t.Errorf("upstream asked %d times, want 1", got)
	}
	query(t, "udp", s.udp, "web.default.svc.cluster.local.", mdns.TypeA, false)
	query(t, "udp", s.udp, "nosuch.default.svc.cluster.local.", mdns.TypeA, false)
	for _, c := range []struct {
		rcode string
		want  float64
	}{{"NOERROR", 4}, {"NXDOMAIN", 1}} {
		if got := counterValue(t, s.metrics.queries[0][rcodeSlot(c.rcode)]); got != c.want {
			t.Errorf("queries{type=A,rcode=%s} = %v, want %v", c.rcode, got, c.want)
		}
	}
	mfs, err := s.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	registered := false
	for _, mf := range mfs {
		registered = registered || mf.GetName() == "skiff_dns_queries_total"
	}
	if !registered {
		t.Error("skiff_dns_queries_total not registered on the configured registry")
	}
}

func rcodeSlot(name string) int {
	for i, rc := range metricRcodes {
		if mdns.RcodeToString[rc] == name {
			return i
		}
	}
	return len(metricRcodes)
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
