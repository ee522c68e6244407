package dns

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestFastPathMatchesGeneralPath checks that the fast path takes the common
// queries, and that its bytes equal what the general path packs.
func TestFastPathMatchesGeneralPath(t *testing.T) {
	s := startServer(t, nil, clusterObjects()...)
	ix := s.index.Load()
	for _, c := range []struct {
		name  string
		qtype uint16
		edns  bool
		fast  bool
	}{
		{"web.default.svc.cluster.local.", mdns.TypeA, false, true},
		{"web.default.svc.cluster.local.", mdns.TypeA, true, true},
		{"web.default.svc.cluster.local.", mdns.TypeAAAA, false, true}, // NODATA
		{"_pg._tcp.db.default.svc.cluster.local.", mdns.TypeSRV, true, true},
		{"5.0.42.10.in-addr.arpa.", mdns.TypePTR, false, true},
		{"web.default.svc.cluster.local.", mdns.TypeTXT, false, false},  // type not packed
		{"nosuch.default.svc.cluster.local.", mdns.TypeA, false, false}, // NXDOMAIN
		{"ext.default.svc.cluster.local.", mdns.TypeA, false, false},    // chased upstream
		{"Web.default.svc.cluster.local.", mdns.TypeA, false, false},    // mixed case
		{"example.org.", mdns.TypeA, false, false},                      // forwarded
	} {
		req := new(mdns.Msg)
		req.SetQuestion(c.name, c.qtype)
		if c.edns {
			req.SetEdns0(4096, false)
		}
		wire, err := req.Pack()
		if err != nil {
			t.Fatal(err)
		}
		got, _, ok := s.answerFast(ix, wire, nil)
		if ok != c.fast {
			t.Errorf("%s %s: fast path taken = %v, want %v", c.name, mdns.TypeToString[c.qtype], ok, c.fast)
		}
		if !ok {
			continue
		}
		want := s.answer(context.Background(), req, true)
		want.Compress = true
		wantWire, err := want.Pack()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, wantWire) {
			var gm mdns.Msg
			_ = gm.Unpack(got)
			t.Errorf("%s %s: fast path answer differs from general path\nfast:\n%v\ngeneral:\n%v", c.name, mdns.TypeToString[c.qtype], &gm, want)
		}
	}
}

func TestFastPathRejectsMalformedQueries(t *testing.T) {
	s := startServer(t, nil, clusterObjects()...)
	ix := s.index.Load()
	req := new(mdns.Msg)
	req.SetQuestion("web.default.svc.cluster.local.", mdns.TypeA)
	wire, _ := req.Pack()
	for i := 0; i < len(wire); i++ { // every truncation
		if _, _, ok := s.answerFast(ix, wire[:i], nil); ok {
			t.Errorf("answered a query truncated to %d bytes", i)
		}
	}
	resp := bytes.Clone(wire)
	resp[2] |= 0x80 // a response, not a query
	if _, _, ok := s.answerFast(ix, resp, nil); ok {
		t.Error("answered a response")
	}
	trailing := append(bytes.Clone(wire), 0)
	if _, _, ok := s.answerFast(ix, trailing, nil); ok {
		t.Error("answered a query with trailing garbage")
	}
}

func TestTruncatesLargeHeadlessAnswersOverUDP(t *testing.T) {
	var eps []ep
	for i := range 60 {
		eps = append(eps, ep{ip: "10.42.9." + strconv.Itoa(i+1), ready: true})
	}
	objs := append(clusterObjects(), service("default", "big", v1.ClusterIPNone), slice("default", "big", "big-1", eps))
	s := startServer(t, nil, objs...)
	m := query(t, "udp", s.udp, "big.default.svc.cluster.local.", mdns.TypeA, false)
	if !m.Truncated || len(m.Answer) >= 60 {
		t.Errorf("udp answer without edns: tc=%v, %d records; want truncated", m.Truncated, len(m.Answer))
	}
	m = query(t, "tcp", s.tcp, "big.default.svc.cluster.local.", mdns.TypeA, false)
	if m.Truncated || len(m.Answer) != 60 {
		t.Errorf("tcp answer: tc=%v, %d records; want all 60", m.Truncated, len(m.Answer))
	}
}

// TestFollowsInformers changes the cluster under a running server.
func TestFollowsInformers(t *testing.T) {
	s := startServer(t, nil, clusterObjects()...)
	ctx := context.Background()
	name := "late.default.svc.cluster.local."
	if m := query(t, "udp", s.udp, name, mdns.TypeA, false); m.Rcode != mdns.RcodeNameError {
		t.Fatalf("before create: rcode %s, want NXDOMAIN", mdns.RcodeToString[m.Rcode])
	}
	if _, err := s.client.CoreV1().Services("default").Create(ctx, service("default", "late", "10.43.0.99"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		m := query(t, "udp", s.udp, name, mdns.TypeA, false)
		return len(m.Answer) == 1 && m.Answer[0].(*mdns.A).A.String() == "10.43.0.99"
	})
	if err := s.client.CoreV1().Services("default").Delete(ctx, "late", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return query(t, "udp", s.udp, name, mdns.TypeA, false).Rcode == mdns.RcodeNameError })
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestNewValidatesConfig(t *testing.T) {
	if _, err := New(Config{}, nil, nil); err == nil {
		t.Error("New without listen addresses succeeded")
	}
	if _, err := New(Config{ListenAddrs: []string{"127.0.0.1:0"}, ResolvConf: "/nonexistent/resolv.conf"}, nil, nil); err == nil {
		t.Error("New with an unreadable resolv.conf succeeded")
	}
}

func TestUpstreamsFromResolvConfSkipOurselves(t *testing.T) {
	path := t.TempDir() + "/resolv.conf"
	if err := os.WriteFile(path, []byte("nameserver 127.0.0.1\nnameserver 127.0.0.2\nsearch example\noptions ndots:5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := upstreams(Config{ResolvConf: path, ListenAddrs: []string{"127.0.0.1:53"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != "127.0.0.2:53" {
		t.Errorf("upstreams = %v, want [127.0.0.2:53]", got)
	}
}
