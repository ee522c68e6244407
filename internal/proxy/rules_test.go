package proxy

import (
	"context"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	"sigs.k8s.io/knftables"

	"skiff.dev/skiff/internal/proxy/nftables"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

func units(r *Rules, svcs map[string]*v1.Service, sl map[string][]*discovery.EndpointSlice) map[string]*nftables.Unit {
	out := map[string]*nftables.Unit{}
	for k, s := range svcs {
		if u, _ := r.Service(s, sl[k]); u != nil {
			out[k] = u
		}
	}
	return out
}

func fullSync(t *testing.T, r *Rules, svcs map[string]*v1.Service, sl map[string][]*discovery.EndpointSlice) (*knftables.Fake, *nftables.Applier) {
	t.Helper()
	fake := knftables.NewFake(knftables.IPv4Family, DefaultTable)
	a := nftables.New(fake, knftables.IPv4Family, DefaultTable)
	if _, err := a.FullSync(context.Background(), r.Base(), units(r, svcs, sl)); err != nil {
		t.Fatalf("full sync: %v", err)
	}
	return fake, a
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (run with -update to create it): %v", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the rendered rules (run with -update if intended):\n%s", path, lineDiff(string(want), got))
	}
}

func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	ws, gs := map[string]bool{}, map[string]bool{}
	for _, l := range w {
		ws[l] = true
	}
	for _, l := range g {
		gs[l] = true
	}
	for _, l := range w {
		if !gs[l] {
			fmt.Fprintf(&b, "- %s\n", l)
		}
	}
	for _, l := range g {
		if !ws[l] {
			fmt.Fprintf(&b, "+ %s\n", l)
		}
	}
	return b.String()
}

func TestGoldenRuleset(t *testing.T) {
	svcs, sl := fixture()
	fake, _ := fullSync(t, testRules(), svcs, sl)
	golden(t, "ruleset.golden", fake.Dump())
}

// TestRenderSemantics spells out the rules the golden file encodes, so a
// careless -update cannot silently bless a regression.
func TestRenderSemantics(t *testing.T) {
	svcs, sl := fixture()
	fake, _ := fullSync(t, testRules(), svcs, sl)
	tbl := fake.Table
	elem := func(m string, key ...string) string {
		e := tbl.Maps[m].FindElement(key...)
		if e == nil {
			return "<none>"
		}
		return strings.Join(e.Value, " ")
	}
	rules := func(chain string) string {
		c := tbl.Chains[chain]
		if c == nil {
			return "<no chain>"
		}
		var r []string
		for _, x := range c.Rules {
			r = append(r, x.Rule)
		}
		return strings.Join(r, "\n")
	}
	for _, tc := range []struct{ name, got, want string }{
		{"clusterIP goes to service chain", elem(mapServiceIPs, "10.96.0.10", "tcp", "80"), "goto svc-default/web/tcp/http"},
		{"no endpoint chains without affinity", rules("ep-default/web/tcp/http__10.244.3.4/9090"), "<no chain>"},
		{"not-ready endpoint skipped", rules("ep-default/web/tcp/http__10.244.1.9/8080"), "<no chain>"},
		{"random balancing over ready endpoints", rules("svc-default/web/tcp/http"),
			"ip daddr 10.96.0.10 tcp dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade\n" +
				"numgen random mod 3 0 meta l4proto tcp dnat to 10.244.1.2:8080\n" +
				"numgen random mod 2 0 meta l4proto tcp dnat to 10.244.2.3:8080\n" +
				"meta l4proto tcp dnat to 10.244.3.4:9090"},
		{"udp port", elem(mapServiceIPs, "10.96.0.53", "udp", "53"), "goto svc-default/dns/udp/dns"},
		{"sctp port", elem(mapServiceIPs, "10.96.0.70", "sctp", "9999"), "goto svc-default/sctp/sctp/9999"},
		{"nodeport", elem(mapServiceNodePorts, "tcp", "30080"), "goto ext-default/np/tcp/80"},
		{"nodeport masquerades", rules("ext-default/np/tcp/80"), "jump mark-for-masquerade\ngoto svc-default/np/tcp/80"},
		{"lb ip", elem(mapServiceIPs, "10.96.100.1", "tcp", "80"), "goto ext-default/lb/tcp/80"},
		{"etp local keeps source for outside clients", rules("ext-default/lb/tcp/80"),
			"ip saddr 10.244.0.0/16 goto svc-default/lb/tcp/80\nfib saddr type local jump mark-for-masquerade\nfib saddr type local goto svc-default/lb/tcp/80\ngoto local-default/lb/tcp/80"},
		{"etp local chain has only local endpoints", rules("local-default/lb/tcp/80"), "meta l4proto tcp dnat to 10.244.1.4:8080"},
		{"affinity lookup", strings.Split(rules("svc-default/sticky/tcp/80"), "\n")[1], "ip saddr @affinity-ep-default/sticky/tcp/80__10.244.1.5/8080 goto ep-default/sticky/tcp/80__10.244.1.5/8080"},
		{"affinity update", rules("ep-default/sticky/tcp/80__10.244.2.6/8080"), "update @affinity-ep-default/sticky/tcp/80__10.244.2.6/8080 { ip saddr }\nmeta l4proto tcp dnat to 10.244.2.6:8080"},
		{"affinity balancing goes through endpoint chains", strings.Split(rules("svc-default/sticky/tcp/80"), "\n")[3], "numgen random mod 2 0 goto ep-default/sticky/tcp/80__10.244.1.5/8080"},
		{"hairpin", rules("masquerading"), "ct status dnat ip saddr . ip daddr @hairpin masquerade fully-random\nmeta mark & 0x00004000 == 0 return\nmeta mark set meta mark ^ 0x00004000\nmasquerade fully-random"},
		{"no endpoints rejects", elem(mapNoEndpointServices, "10.96.0.50", "tcp", "80"), "goto reject-chain"},
		{"no endpoints rejects nodeport", elem(mapNoEndpointNodePorts, "tcp", "30050"), "goto reject-chain"},
		{"no endpoints not in service map", elem(mapServiceIPs, "10.96.0.50", "tcp", "80"), "<none>"},
		{"itp local without local endpoints drops", elem(mapNoEndpointServices, "10.96.0.60", "tcp", "80"), "drop"},
		{"terminating serving fallback", rules("svc-default/term/tcp/80"),
			"ip daddr 10.96.0.80 tcp dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade\nmeta l4proto tcp dnat to 10.244.1.7:8080"},
		{"headless ignored", rules("svc-default/headless/tcp/80"), "<no chain>"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s:\n got: %s\nwant: %s", tc.name, tc.got, tc.want)
		}
	}
	// Hairpin pairs exist for endpoints on this node (node-a) only.
	if d := fake.Dump(); !strings.Contains(d, "hairpin { 10.244.1.2 . 10.244.1.2 }") || strings.Contains(d, "hairpin { 10.244.2.3 . 10.244.2.3 }") {
		t.Errorf("hairpin set should hold the local endpoint 10.244.1.2 and not the remote 10.244.2.3:\n%s", d)
	}
	// ExternalName services are DNS only (a CNAME): the proxy writes
	// nothing for them, even with a leftover ClusterIP.
	if strings.Contains(fake.Dump(), "extname") {
		t.Errorf("ExternalName service rendered:\n%s", fake.Dump())
	}
	ext := svcs["default/extname"].DeepCopy()
	ext.Spec.ClusterIP = "10.96.0.99"
	if u, info := testRules().Service(ext, []*discovery.EndpointSlice{slice("extname", "x", tcp8080, readyEP("10.244.1.2", "node-a"))}); u != nil || info != nil {
		t.Errorf("ExternalName service with a ClusterIP rendered: %+v", u)
	}
	if s := tbl.Sets["affinity-ep-default/sticky/tcp/80__10.244.1.5/8080"]; s == nil || s.Timeout == nil || s.Timeout.Seconds() != 600 {
		t.Errorf("affinity set missing or wrong timeout: %+v", s)
	}
}

func withoutEndpoint(sl *discovery.EndpointSlice, ip string) *discovery.EndpointSlice {
	c := sl.DeepCopy()
	c.Endpoints = slices.DeleteFunc(c.Endpoints, func(e discovery.Endpoint) bool { return e.Addresses[0] == ip })
	return c
}

// TestIncrementalTouchesOnlyChangedService asserts the transaction for an
// endpoint removal names only that service's objects, and that the table
// afterwards equals a fresh full sync of the new state.
func TestIncrementalTouchesOnlyChangedService(t *testing.T) {
	r := testRules()
	svcs, sl := fixture()
	fake, a := fullSync(t, r, svcs, sl)

	sl["default/web"] = []*discovery.EndpointSlice{withoutEndpoint(sl["default/web"][0], "10.244.1.2"), sl["default/web"][1]}
	u, _ := r.Service(svcs["default/web"], sl["default/web"])
	if _, err := a.Update(context.Background(), map[string]*nftables.Unit{"default/web": u}); err != nil {
		t.Fatalf("update: %v", err)
	}
	tx := fake.LastTransaction.String()
	golden(t, "incremental-remove-endpoint.golden", tx)
	for _, line := range strings.Split(strings.TrimSpace(tx), "\n") {
		if !strings.Contains(line, "default/web/") && !strings.Contains(line, "hairpin { 10.244.1.2 . 10.244.1.2 }") {
			t.Errorf("transaction line touches another service: %s", line)
		}
	}
	for _, want := range []string{"flush chain ip skiff-proxy svc-default/web/tcp/http", "delete element ip skiff-proxy hairpin { 10.244.1.2 . 10.244.1.2 }"} {
		if !strings.Contains(tx, want) {
			t.Errorf("transaction lacks %q:\n%s", want, tx)
		}
	}
	fresh, _ := fullSync(t, r, svcs, sl)
	if d := dumpDiff(fake, fresh); d != "" {
		t.Errorf("incremental state differs from full sync:\n%s", d)
	}

	// Nothing changed: no transaction at all.
	fake.LastTransaction = nil
	if n, err := a.Update(context.Background(), map[string]*nftables.Unit{"default/web": u}); err != nil || n != 0 || fake.LastTransaction != nil {
		t.Errorf("no-op update ran %d operations (err %v)", n, err)
	}
}

func dumpDiff(a, b *knftables.Fake) string {
	norm := func(f *knftables.Fake) string {
		l := strings.Split(f.Dump(), "\n")
		sort.Strings(l)
		return strings.Join(l, "\n")
	}
	return lineDiff(norm(a), norm(b))
}

// TestIncrementalRandomChanges applies random service and endpoint changes
// one at a time and checks, after each, that the incrementally maintained
// table equals a full sync of the same state.
func TestIncrementalRandomChanges(t *testing.T) {
	r := testRules()
	svcs, sl := fixture()
	fake, a := fullSync(t, r, svcs, sl)
	rng := rand.New(rand.NewSource(1))
	keys := make([]string, 0, len(svcs))
	for k := range svcs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for step := 0; step < 200; step++ {
		k := keys[rng.Intn(len(keys))]
		switch rng.Intn(6) {
		case 0: // delete or restore the service
			if svcs[k] != nil {
				svcs[k] = nil
			} else {
				s, _ := fixture()
				svcs[k] = s[k]
			}
		case 1: // add an endpoint
			ip := fmt.Sprintf("10.244.%d.%d", 50+rng.Intn(3), 1+rng.Intn(250))
			node := []string{"node-a", "node-b"}[rng.Intn(2)]
			sl[k] = append(sl[k], slice(strings.TrimPrefix(k, "default/"), fmt.Sprintf("x-%d", step), tcp8080, readyEP(ip, node)))
		case 2: // remove a slice
			if len(sl[k]) > 0 {
				sl[k] = sl[k][1:]
			}
		case 3: // toggle affinity
			if s := svcs[k]; s != nil {
				s = s.DeepCopy()
				if s.Spec.SessionAffinity == v1.ServiceAffinityClientIP {
					s.Spec.SessionAffinity = v1.ServiceAffinityNone
					s.Spec.SessionAffinityConfig = nil
				} else {
					affinity(int32(60 + rng.Intn(3)))(s)
				}
				svcs[k] = s
			}
		case 4: // make it a NodePort / LB
			if s := svcs[k]; s != nil && s.Spec.ClusterIP != v1.ClusterIPNone && s.Spec.Type != v1.ServiceTypeExternalName {
				s = s.DeepCopy()
				loadBalancer(int32(31000+rng.Intn(100)), fmt.Sprintf("10.96.200.%d", 1+rng.Intn(250)))(s)
				if rng.Intn(2) == 0 {
					etpLocal(s)
				}
				svcs[k] = s
			}
		case 5: // flip an endpoint's readiness
			if len(sl[k]) > 0 && len(sl[k][0].Endpoints) > 0 {
				c := sl[k][0].DeepCopy()
				e := &c.Endpoints[rng.Intn(len(c.Endpoints))]
				v := !*e.Conditions.Ready
				e.Conditions.Ready, e.Conditions.Serving = &v, &v
				sl[k][0] = c
			}
		}
		u, _ := r.Service(svcs[k], sl[k])
		mine := elementKeys(a.Applied(k), u)
		fake.LastTransaction = nil
		if _, err := a.Update(context.Background(), map[string]*nftables.Unit{k: u}); err != nil {
			t.Fatalf("step %d: update %s: %v", step, k, err)
		}
		if tx := fake.LastTransaction; tx != nil {
			for _, line := range strings.Split(strings.TrimSpace(tx.String()), "\n") {
				if !strings.Contains(line, k+"/") && !mine[elementKeyOf(line)] {
					t.Fatalf("step %d: change to %s touched: %s", step, k, line)
				}
			}
		}
		present := map[string]*v1.Service{}
		for kk, s := range svcs {
			if s != nil {
				present[kk] = s
			}
		}
		fresh, _ := fullSync(t, r, present, sl)
		if d := dumpDiff(fake, fresh); d != "" {
			t.Fatalf("step %d (%s): incremental state differs from full sync:\n%s", step, k, d)
		}
	}
}

func TestFullSyncRemovesDrift(t *testing.T) {
	r := testRules()
	svcs, sl := fixture()
	fake, a := fullSync(t, r, svcs, sl)
	delete(svcs, "default/web")
	if _, err := a.FullSync(context.Background(), r.Base(), units(r, svcs, sl)); err != nil {
		t.Fatal(err)
	}
	fresh, _ := fullSync(t, r, svcs, sl)
	if d := dumpDiff(fake, fresh); d != "" {
		t.Errorf("full sync left drift:\n%s", d)
	}
}

func TestStaleFlows(t *testing.T) {
	r := testRules()
	svcs, sl := fixture()
	_, before := r.Service(svcs["default/dns"], sl["default/dns"])
	_, after := r.Service(svcs["default/dns"], nil)
	got := staleFlows(before, after)
	if len(got) != 1 || strings.Join(got[0].Args(), " ") != "-D -p udp --orig-dst 10.96.0.53 --orig-port-dst 53 --dst-nat 10.244.1.3" {
		t.Errorf("stale flows after endpoint removal = %+v", got)
	}
	got = staleFlows(after, before)
	if len(got) != 1 || strings.Join(got[0].Args(), " ") != "-D -p udp --orig-dst 10.96.0.53 --orig-port-dst 53" {
		t.Errorf("stale flows after first endpoint = %+v", got)
	}
	_, web1 := r.Service(svcs["default/web"], sl["default/web"])
	if got := staleFlows(web1, nil); len(got) != 0 {
		t.Errorf("tcp service produced conntrack flows: %+v", got)
	}
}

// elementKeys returns the "{ a . b . c }" keys of the units' map elements.
func elementKeys(us ...*nftables.Unit) map[string]bool {
	m := map[string]bool{}
	for _, u := range us {
		if u == nil {
			continue
		}
		for _, e := range u.Elements {
			m[e.Map+" { "+strings.Join(e.Key, " . ")] = true
		}
		for _, e := range u.Shared {
			m[e.Set+" { "+strings.Join(e.Key, " . ")] = true
		}
	}
	return m
}

// elementKeyOf extracts "map { key" from an add/delete element line.
func elementKeyOf(line string) string {
	f := strings.Fields(line)
	if len(f) < 5 || f[1] != "element" {
		return ""
	}
	rest := strings.Join(f[4:], " ")
	if i := strings.Index(rest, " :"); i >= 0 {
		rest = rest[:i]
	}
	return strings.TrimSuffix(rest, " }")
}

// TestBalanceIsUniform evaluates the numgen cascade exactly: rule i of N
// is reached with what earlier rules left and takes 1/(N-i) of it.
func TestBalanceIsUniform(t *testing.T) {
	r := testRules()
	for n := 1; n <= 7; n++ {
		var eps []ep
		for i := 0; i < n; i++ {
			eps = append(eps, readyEP(fmt.Sprintf("10.244.5.%d", i+1), "node-b"))
		}
		u, _ := r.Service(service("u", "10.96.5.1"), []*discovery.EndpointSlice{slice("u", "u-a", tcp8080, eps...)})
		var chain []string
		for _, c := range u.Chains {
			if c.Name == "svc-default/u/tcp/80" {
				chain = c.Rules
			}
		}
		share := map[string]float64{}
		left := 1.0
		for _, rule := range chain {
			var k int
			switch {
			case strings.HasPrefix(rule, "numgen"):
				if _, err := fmt.Sscanf(rule, "numgen random mod %d 0 ", &k); err != nil {
					t.Fatalf("unexpected rule %q: %v", rule, err)
				}
				target := rule[len(fmt.Sprintf("numgen random mod %d 0 ", k)):]
				share[target] += left / float64(k)
				left -= left / float64(k)
			case strings.HasPrefix(rule, "meta l4proto tcp dnat to "):
				share[rule] += left
				left = 0
			}
		}
		if len(share) != n || left > 1e-9 {
			t.Fatalf("n=%d: %d targets, %.3f unrouted: %v", n, len(share), left, chain)
		}
		for target, s := range share {
			if d := s - 1/float64(n); d > 1e-9 || d < -1e-9 {
				t.Errorf("n=%d: %s gets %.4f, want %.4f", n, target, s, 1/float64(n))
			}
		}
	}
}

func TestExecConntrack(t *testing.T) {
	var got []string
	c := &ExecConntrack{Path: "conntrack", Run: func(_ context.Context, name string, args ...string) error {
		got = append(got, name+" "+strings.Join(args, " "))
		return nil
	}}
	err := c.Delete(context.Background(), []Flow{
		{Protocol: v1.ProtocolUDP, ServiceIP: "10.96.0.53", Port: 53, EndpointIP: "10.244.1.3"},
		{Protocol: v1.ProtocolUDP, Port: 30053, EndpointIP: "10.244.1.3"},
	})
	want := []string{
		"conntrack -D -p udp --orig-dst 10.96.0.53 --orig-port-dst 53 --dst-nat 10.244.1.3",
		"conntrack -D -p udp --orig-port-dst 30053 --dst-nat 10.244.1.3",
	}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("ran %q (err %v), want %q", got, err, want)
	}
}
