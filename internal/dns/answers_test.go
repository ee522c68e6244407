package dns

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	mdns "github.com/miekg/dns"
)

var update = flag.Bool("update", false, "rewrite testdata golden files")

type question struct {
	name  string
	qtype uint16
}

// answerCases is every question of the golden file, in order.
var answerCases = []question{
	// ClusterIP services, SRV for named ports only.
	{"web.default.svc.cluster.local.", mdns.TypeA},
	{"web.default.svc.cluster.local.", mdns.TypeAAAA}, // NODATA
	{"web.default.svc.cluster.local.", mdns.TypeTXT},  // NODATA
	{"WEB.Default.SVC.cluster.LOCAL.", mdns.TypeA},    // 0x20 case is echoed in the question
	{"_http._tcp.web.default.svc.cluster.local.", mdns.TypeSRV},
	{"_dns._udp.web.default.svc.cluster.local.", mdns.TypeSRV},
	{"_http._udp.web.default.svc.cluster.local.", mdns.TypeSRV}, // NXDOMAIN
	{"_tcp.web.default.svc.cluster.local.", mdns.TypeSRV},       // empty non-terminal: NODATA
	{"web-0.web.default.svc.cluster.local.", mdns.TypeA},        // not headless: NXDOMAIN
	{"dual.default.svc.cluster.local.", mdns.TypeA},
	{"dual.default.svc.cluster.local.", mdns.TypeAAAA},
	// Headless: ready endpoints only, names from hostnames or dashed IPs.
	{"db.default.svc.cluster.local.", mdns.TypeA},
	{"db-0.db.default.svc.cluster.local.", mdns.TypeA},
	{"db-2.db.default.svc.cluster.local.", mdns.TypeA}, // not ready: NXDOMAIN
	{"10-42-0-9.db.default.svc.cluster.local.", mdns.TypeA},
	{"_pg._tcp.db.default.svc.cluster.local.", mdns.TypeSRV},
	{"empty.default.svc.cluster.local.", mdns.TypeA}, // headless, no endpoints: NODATA
	// ExternalName.
	{"ext.default.svc.cluster.local.", mdns.TypeCNAME},
	{"ext.default.svc.cluster.local.", mdns.TypeA}, // chased upstream
	{"extin.default.svc.cluster.local.", mdns.TypeA},
	// Pods.
	{"10-42-0-5.default.pod.cluster.local.", mdns.TypeA},
	{"10-42-0-5.other.pod.cluster.local.", mdns.TypeA},   // no such pod in other
	{"10-42-3-3.default.pod.cluster.local.", mdns.TypeA}, // succeeded
	// Reverse.
	{"20.0.43.10.in-addr.arpa.", mdns.TypePTR},
	{"5.0.42.10.in-addr.arpa.", mdns.TypePTR},
	{"9.0.42.10.in-addr.arpa.", mdns.TypePTR},
	{"1.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.", mdns.TypePTR}, // fd00::21
	{"4.3.2.1.in-addr.arpa.", mdns.TypePTR},                                                     // unknown: forwarded
	// The zone itself and the nodes above the records.
	{"cluster.local.", mdns.TypeSOA},
	{"cluster.local.", mdns.TypeNS},
	{"ns.dns.cluster.local.", mdns.TypeA},
	{"svc.cluster.local.", mdns.TypeA},         // NODATA
	{"default.svc.cluster.local.", mdns.TypeA}, // NODATA
	{"nosuch.default.svc.cluster.local.", mdns.TypeA},
	{"default.pod.cluster.local.", mdns.TypeA}, // NODATA
	// What a pod in namespace default with ndots:5 and
	// "search default.svc.cluster.local svc.cluster.local cluster.local"
	// sends for "web.default.svc.cluster.local" (4 dots < 5: search first)
	// and for "web.default" and "web".
	{"web.default.svc.cluster.local.default.svc.cluster.local.", mdns.TypeA},
	{"web.default.svc.cluster.local.svc.cluster.local.", mdns.TypeA},
	{"web.default.svc.cluster.local.cluster.local.", mdns.TypeA},
	{"web.default.default.svc.cluster.local.", mdns.TypeA},
	{"web.default.svc.cluster.local.", mdns.TypeA},
	// Outside the cluster: forwarded.
	{"example.org.", mdns.TypeA},
	{"nosuch.example.org.", mdns.TypeA},
}

// render prints a response the way the golden file holds it: stable and
// independent of the message ID.
func render(q question, m *mdns.Msg) string {
	var b strings.Builder
	fmt.Fprintf(&b, ";; %s %s\n", q.name, mdns.TypeToString[q.qtype])
	flags := ""
	if m.Authoritative {
		flags += " aa"
	}
	if m.Truncated {
		flags += " tc"
	}
	fmt.Fprintf(&b, "rcode %s%s\n", mdns.RcodeToString[m.Rcode], flags)
	if len(m.Question) == 1 && m.Question[0].Name != q.name {
		fmt.Fprintf(&b, "question echoed as %s\n", m.Question[0].Name)
	}
	for _, sec := range []struct {
		name string
		rrs  []mdns.RR
	}{{"answer", m.Answer}, {"authority", m.Ns}, {"additional", m.Extra}} {
		for _, rr := range sec.rrs {
			if rr.Header().Rrtype == mdns.TypeOPT {
				continue
			}
			fmt.Fprintf(&b, "%s: %s\n", sec.name, strings.ReplaceAll(rr.String(), "\t", " "))
		}
	}
	return b.String()
}

// TestAnswers asks every question over UDP (the fast path where it applies)
// with and without EDNS0 and over TCP (always the general path): all three
// must agree with each other and with testdata/answers.golden.
func TestAnswers(t *testing.T) {
	up := startUpstream(t,
		"example.org. 300 IN A 192.0.2.1",
		"example.com. 300 IN A 192.0.2.2",
	)
	s := startServer(t, up, clusterObjects()...)
	var got strings.Builder
	for _, q := range answerCases {
		udp := render(q, query(t, "udp", s.udp, q.name, q.qtype, false))
		for _, alt := range []struct {
			how string
			m   *mdns.Msg
		}{
			{"udp+edns", query(t, "udp", s.udp, q.name, q.qtype, true)},
			{"tcp", query(t, "tcp", s.tcp, q.name, q.qtype, false)},
		} {
			if r := render(q, alt.m); r != udp {
				t.Errorf("%s %s over %s differs from udp:\n%s\nudp:\n%s", q.name, mdns.TypeToString[q.qtype], alt.how, r, udp)
			}
		}
		got.WriteString(udp + "\n")
	}
	golden := filepath.Join("testdata", "answers.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(got.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("reading golden file (run with -update to create it): %v", err)
	}
	if got.String() != string(want) {
		t.Errorf("answers differ from %s (rerun with -update and review the diff):\n%s", golden, got.String())
	}
}
