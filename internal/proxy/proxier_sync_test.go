package proxy

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"sigs.k8s.io/knftables"
)

// discardNFT accepts every transaction without applying it (the Fake's
// own bookkeeping is quadratic in map elements and would dominate) and
// hands the first one's text to first.
type discardNFT struct {
	*knftables.Fake
	first chan string
}

func (d discardNFT) Run(_ context.Context, tx *knftables.Transaction) error {
	select {
	case d.first <- tx.String():
	default:
	}
	return nil
}

// TestProxierFirstSyncHasEveryService: the initial full sync waits until
// the event handlers have seen the whole initial listing. Waiting on the
// informers' own HasSynced let it start with the services delivered so
// far (about a third at 10k), the rest following as a huge partial sync.
func TestProxierFirstSyncHasEveryService(t *testing.T) {
	const n = 10000 // at 3,000 the old wait still usually won the race
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	objs := make([]kruntime.Object, 0, 2*n)
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("s%d", i)
		objs = append(objs, service(name, fmt.Sprintf("10.96.%d.%d", i/250, 1+i%250)),
			slice(name, name+"-a", tcp8080, readyEP(fmt.Sprintf("10.244.%d.%d", i/250, 1+i%250), "node-b")))
	}
	client := fake.NewClientset(objs...)
	events := make(chan syncEvent, 100)
	first := make(chan string, 1)
	p, err := New(Config{
		NFT: discardNFT{knftables.NewFake(knftables.IPv4Family, DefaultTable), first}, Conntrack: &recordingConntrack{},
		OnSync: func(full bool, s []string) { events <- syncEvent{full, s} },
	}, client, informers.NewSharedInformerFactory(client, 0), testNode, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.Run(ctx) }()
	select {
	case e := <-events:
		if !e.full || len(e.services) != n {
			t.Fatalf("first sync: full=%v with %d services, want a full sync of all %d", e.full, len(e.services), n)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("no sync within 60s")
	}
	// A service rendered before its slice arrived has no endpoints: its
	// ClusterIP goes to no-endpoint-services instead of service-ips.
	tx := <-first
	if got := strings.Count(tx, "add element ip "+DefaultTable+" service-ips "); got != n {
		t.Errorf("the first sync gave %d of %d services their endpoints (%d without)", got, n,
			strings.Count(tx, "add element ip "+DefaultTable+" no-endpoint-services "))
	}
}

func counterValue(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestProxierCountsTransactions: every applied transaction is counted by
// the writer that applied it (nft here: the Fake has no netlink).
func TestProxierCountsTransactions(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := fake.NewClientset(service("web", "10.96.0.10"), slice("web", "web-a", tcp8080, readyEP("10.244.1.2", "node-b")))
	reg := prometheus.NewRegistry()
	events := make(chan syncEvent, 10)
	p, err := New(Config{
		NFT: knftables.NewFake(knftables.IPv4Family, DefaultTable), Conntrack: &recordingConntrack{}, Metrics: reg,
		OnSync: func(full bool, s []string) { events <- syncEvent{full, s} },
	}, client, informers.NewSharedInformerFactory(client, 0), testNode, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.Run(ctx) }()
	wait := func() {
		t.Helper()
		select {
		case <-events:
		case <-time.After(10 * time.Second):
			t.Fatal("no sync within 10s")
		}
	}
	wait()
	if got := counterValue(t, reg, "skiff_proxy_transactions_total", "writer", "nft"); got != 1 {
		t.Fatalf("after the full sync, nft transactions = %v, want 1", got)
	}
	sl := slice("web", "web-a", tcp8080, readyEP("10.244.1.3", "node-b"))
	if _, err := client.DiscoveryV1().EndpointSlices("default").Update(ctx, sl, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	wait()
	if got := counterValue(t, reg, "skiff_proxy_transactions_total", "writer", "nft"); got != 2 {
		t.Errorf("after a change, nft transactions = %v, want 2", got)
	}
	if got := counterValue(t, reg, "skiff_proxy_transactions_total", "writer", "netlink"); got != 0 {
		t.Errorf("netlink transactions = %v with a Fake, want 0", got)
	}
}
