package proxy

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

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
