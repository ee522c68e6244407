package proxy

import (
	"context"
	"io"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/knftables"
)

type recordingConntrack struct {
	mu    sync.Mutex
	flows []Flow
}

func (r *recordingConntrack) Delete(_ context.Context, f []Flow) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.flows = append(r.flows, f...)
	return nil
}

type syncEvent struct {
	full     bool
	services []string
}

// TestProxierEndToEnd drives the proxier through a fake clientset: the
// initial full sync, then an EndpointSlice update that must reach nft as a
// partial sync of that one service, with its programming latency and its
// stale UDP flows reported.
func TestProxierEndToEnd(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	svcs, sl := fixture()
	client := fake.NewClientset()
	for _, s := range svcs {
		if _, err := client.CoreV1().Services("default").Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, ss := range sl {
		for _, s := range ss {
			if _, err := client.DiscoveryV1().EndpointSlices("default").Create(ctx, s, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	nft := knftables.NewFake(knftables.IPv4Family, DefaultTable)
	ct := &recordingConntrack{}
	reg := prometheus.NewRegistry()
	events := make(chan syncEvent, 10)
	factory := informers.NewSharedInformerFactory(client, 0)
	p, err := New(Config{
		NFT: nft, Conntrack: ct, Metrics: reg, ClusterCIDRs: testRules().ClusterCIDRs,
		OnSync: func(full bool, s []string) { events <- syncEvent{full, s} },
	}, client, factory, testNode, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()

	wait := func() syncEvent {
		t.Helper()
		select {
		case e := <-events:
			return e
		case <-time.After(10 * time.Second):
			t.Fatal("no sync within 10s")
		}
		return syncEvent{}
	}
	if e := wait(); !e.full {
		t.Fatalf("first sync was not full: %+v", e)
	}
	nft.RLock()
	got := nft.Dump()
	nft.RUnlock()
	want, _ := fullSync(t, testRules(), svcs, sl)
	if got != want.Dump() {
		t.Fatalf("proxier's table differs from the golden rendering:\n%s", lineDiff(want.Dump(), got))
	}

	// Remove the DNS endpoint, stamped with a trigger time.
	dns := sl["default/dns"][0].DeepCopy()
	dns.Endpoints = nil
	dns.Annotations = map[string]string{v1.EndpointsLastChangeTriggerTime: time.Now().Format(time.RFC3339Nano)}
	if _, err := client.DiscoveryV1().EndpointSlices("default").Update(ctx, dns, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e := wait()
	if e.full || len(e.services) != 1 || e.services[0] != "default/dns" {
		t.Fatalf("endpoint change synced %+v, want a partial sync of default/dns", e)
	}
	nft.RLock()
	tx := nft.LastTransaction.String()
	nft.RUnlock()
	for _, line := range strings.Split(strings.TrimSpace(tx), "\n") {
		if !strings.Contains(line, "default/dns/") && !strings.Contains(line, "10.96.0.53") && !strings.Contains(line, "hairpin { 10.244.1.3 . 10.244.1.3 }") {
			t.Errorf("partial sync touched another service: %s", line)
		}
	}
	ct.mu.Lock()
	if len(ct.flows) != 1 || ct.flows[0].EndpointIP != "10.244.1.3" || ct.flows[0].ServiceIP != "10.96.0.53" {
		t.Errorf("conntrack flows = %+v, want the UDP flow to 10.244.1.3", ct.flows)
	}
	ct.mu.Unlock()
	if n := histogramCount(t, reg, "skiff_proxy_network_programming_duration_seconds"); n != 1 {
		t.Errorf("programming latency observations = %d, want 1", n)
	}

	// Deleting a service removes its chains.
	if err := client.CoreV1().Services("default").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if e := wait(); e.full || len(e.services) != 1 {
		t.Fatalf("service delete synced %+v", e)
	}
	nft.RLock()
	for name := range nft.Table.Chains {
		if strings.Contains(name, "default/web/") {
			t.Errorf("chain %s left after service delete", name)
		}
	}
	nft.RUnlock()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func histogramCount(t *testing.T, reg *prometheus.Registry, name string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			var n uint64
			for _, m := range mf.GetMetric() {
				n += histogram(m).GetSampleCount()
			}
			return n
		}
	}
	return 0
}

func histogram(m *dto.Metric) *dto.Histogram { return m.GetHistogram() }

// TestProxierCoalesces checks that changes arriving within the min-sync
// period become one partial sync covering exactly the changed services.
func TestProxierCoalesces(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	svcs, sl := fixture()
	client := fake.NewClientset()
	for _, s := range svcs {
		if _, err := client.CoreV1().Services("default").Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	clk := clocktesting.NewFakeClock(time.Now())
	events := make(chan syncEvent, 10)
	p, err := New(Config{
		NFT: knftables.NewFake(knftables.IPv4Family, DefaultTable), Conntrack: &recordingConntrack{}, Clock: clk,
		OnSync: func(full bool, s []string) { events <- syncEvent{full, s} },
	}, client, informers.NewSharedInformerFactory(client, 0), testNode, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.Run(ctx) }()
	select {
	case <-events:
	case <-time.After(10 * time.Second):
		t.Fatal("no initial sync")
	}
	for _, name := range []string{"web", "np"} {
		if _, err := client.DiscoveryV1().EndpointSlices("default").Create(ctx, sl["default/"+name][0], metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		p.mu.Lock()
		n := len(p.dirty)
		p.mu.Unlock()
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("changes not recorded: %d dirty", n)
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case e := <-events:
		t.Fatalf("synced %+v before the min-sync period passed", e)
	case <-time.After(50 * time.Millisecond):
	}
	clk.Step(10 * time.Millisecond)
	select {
	case e := <-events:
		if e.full || strings.Join(sorted(e.services), ",") != "default/np,default/web" {
			t.Errorf("sync = %+v, want one partial sync of default/np and default/web", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no sync after the min-sync period")
	}
}

func sorted(s []string) []string {
	s = append([]string(nil), s...)
	sort.Strings(s)
	return s
}

// TestProxierShards spreads the fixture over three tables: every service
// lives in exactly one, together the shards equal the single-table
// rendering, and an endpoint change touches only its service's shard.
func TestProxierShards(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	svcs, sl := fixture()
	client := fake.NewClientset()
	for _, s := range svcs {
		if _, err := client.CoreV1().Services("default").Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, ss := range sl {
		for _, s := range ss {
			if _, err := client.DiscoveryV1().EndpointSlices("default").Create(ctx, s, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	fakes := map[string]*knftables.Fake{}
	events := make(chan syncEvent, 10)
	p, err := New(Config{
		Shards: 3, Conntrack: &recordingConntrack{}, ClusterCIDRs: testRules().ClusterCIDRs,
		NewNFT: func(table string) (knftables.Interface, error) {
			fakes[table] = knftables.NewFake(knftables.IPv4Family, table)
			return fakes[table], nil
		},
		OnSync: func(full bool, s []string) { events <- syncEvent{full, s} },
	}, client, informers.NewSharedInformerFactory(client, 0), testNode, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if got := sorted(ShardTables("", 3)); len(fakes) != 3 || strings.Join(got, ",") != "skiff-proxy-0,skiff-proxy-1,skiff-proxy-2" {
		t.Fatalf("shard tables %v, opened %d", got, len(fakes))
	}
	go func() { _ = p.Run(ctx) }()
	wait := func() syncEvent {
		t.Helper()
		select {
		case e := <-events:
			return e
		case <-time.After(10 * time.Second):
			t.Fatal("no sync within 10s")
		}
		return syncEvent{}
	}
	if e := wait(); !e.full {
		t.Fatalf("first sync was not full: %+v", e)
	}
	owner := map[string]string{} // service chain prefix -> table
	var union []string
	for table, f := range fakes {
		f.RLock()
		dump := f.Dump()
		f.RUnlock()
		for _, line := range strings.Split(strings.TrimSpace(dump), "\n") {
			// Normalise the table name so the union compares with one table.
			union = append(union, strings.Replace(line, "ip "+table, "ip "+DefaultTable, 1))
			for k := range svcs {
				if strings.Contains(line, "svc-"+k+"/") {
					if o, ok := owner[k]; ok && o != table {
						t.Errorf("service %s in both %s and %s", k, o, table)
					}
					owner[k] = table
				}
			}
		}
	}
	if len(map[string]bool{owner["default/web"]: true, owner["default/dns"]: true, owner["default/np"]: true, owner["default/lb"]: true,
		owner["default/sticky"]: true, owner["default/itp"]: true, owner["default/sctp"]: true, owner["default/term"]: true}) < 2 {
		t.Errorf("services not spread over shards: %v", owner)
	}
	single, _ := fullSync(t, testRules(), svcs, sl)
	want := strings.Split(strings.TrimSpace(single.Dump()), "\n")
	// Base objects appear once per shard; compare as sets.
	if a, b := strings.Join(uniq(union), "\n"), strings.Join(uniq(want), "\n"); a != b {
		t.Errorf("shards together differ from the single-table rendering:\n%s", lineDiff(b, a))
	}

	dnsTable := owner["default/dns"]
	before := map[string]*knftables.Transaction{}
	for table, f := range fakes {
		before[table] = f.LastTransaction
	}
	dns := sl["default/dns"][0].DeepCopy()
	dns.Endpoints = nil
	if _, err := client.DiscoveryV1().EndpointSlices("default").Update(ctx, dns, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if e := wait(); e.full {
		t.Fatalf("endpoint change caused a full sync")
	}
	for table, f := range fakes {
		f.RLock()
		changed := f.LastTransaction != before[table]
		f.RUnlock()
		if changed != (table == dnsTable) {
			t.Errorf("table %s written: %v (dns lives in %s)", table, changed, dnsTable)
		}
	}
}

func uniq(s []string) []string {
	m := map[string]bool{}
	for _, x := range s {
		m[x] = true
	}
	out := make([]string, 0, len(m))
	for x := range m {
		out = append(out, x)
	}
	sort.Strings(out)
	return out
}

func TestStaleShardTables(t *testing.T) {
	listing := "table ip skiff-proxy\ntable ip skiff-proxy-0\ntable ip skiff-proxy-7\ntable ip skiff-node\ntable ip skiff-proxy-x\n"
	if got := strings.Join(StaleShardTables(listing, "skiff-proxy", 4), ","); got != "skiff-proxy,skiff-proxy-7" {
		t.Errorf("4 shards: stale %q", got)
	}
	if got := strings.Join(StaleShardTables(listing, "skiff-proxy", 1), ","); got != "skiff-proxy-0,skiff-proxy-7" {
		t.Errorf("1 shard: stale %q", got)
	}
}
