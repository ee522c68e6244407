// Package proxybench measures skiff's service proxy at scale: programming
// 10,000 Services with 50,000 endpoints from scratch, and the latency of
// one endpoint change with 10,000 Services present. See RESULTS.md.
//
//	go test ./bench/proxy -run XXX -bench . -benchtime 1x
//
// Benchmarks needing a real nft table run as root, each in a fresh,
// throwaway network namespace.
package proxybench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/knftables"

	"skiff.dev/skiff/internal/cputime"
	"skiff.dev/skiff/internal/network/nettest"
	"skiff.dev/skiff/internal/proxy"
	"skiff.dev/skiff/internal/proxy/nftables"
)

const (
	numServices = 10000
	epsPerSvc   = 5
	numChanges  = 200
)

func svcIP(i int) string { return fmt.Sprintf("10.96.%d.%d", i/250, 1+i%250) }
func epIP(i int) string  { return fmt.Sprintf("10.244.%d.%d", i/250, 1+i%250) }

func makeService(i int) *v1.Service {
	return &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: "svc-" + strconv.Itoa(i)},
		Spec: v1.ServiceSpec{Type: v1.ServiceTypeClusterIP, ClusterIP: svcIP(i),
			Ports: []v1.ServicePort{{Name: "http", Port: 80, Protocol: v1.ProtocolTCP, TargetPort: intstr.FromInt32(8080)}}},
	}
}

// makeSlice returns service i's slice; gen shifts its endpoints so each
// change replaces one endpoint by a new one.
func makeSlice(i, gen int) *discovery.EndpointSlice {
	sl := &discovery.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: "svc-" + strconv.Itoa(i) + "-abc",
			Labels: map[string]string{discovery.LabelServiceName: "svc-" + strconv.Itoa(i)}},
		AddressType: discovery.AddressTypeIPv4,
		Ports:       []discovery.EndpointPort{{Name: ptr.To("http"), Protocol: ptr.To(v1.ProtocolTCP), Port: ptr.To[int32](8080)}},
	}
	for j := 0; j < epsPerSvc; j++ {
		sl.Endpoints = append(sl.Endpoints, discovery.Endpoint{
			Addresses:  []string{epIP((i*epsPerSvc + j + gen) % 65000)},
			NodeName:   ptr.To("node-" + strconv.Itoa(j)),
			Conditions: discovery.EndpointConditions{Ready: ptr.To(true)},
		})
	}
	return sl
}

func rules() *proxy.Rules {
	return &proxy.Rules{NodeName: "node-0", ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}}
}

func renderAll(r *proxy.Rules) map[string]*nftables.Unit {
	units := make(map[string]*nftables.Unit, numServices)
	for i := 0; i < numServices; i++ {
		u, _ := r.Service(makeService(i), []*discovery.EndpointSlice{makeSlice(i, 0)})
		units["bench/svc-"+strconv.Itoa(i)] = u
	}
	return units
}

func deleteTable(nft knftables.Interface) {
	tx := nft.NewTransaction()
	tx.Delete(&knftables.Table{})
	_ = nft.Run(context.Background(), tx)
}

func fullSync(b *testing.B, nft knftables.Interface, table string) {
	r := rules()
	start, cpu, self := time.Now(), childCPU(), cputime.Process()
	units := renderAll(r)
	render := time.Since(start)
	a := nftables.New(nft, knftables.IPv4Family, table)
	ops, err := a.FullSync(context.Background(), r.Base(), units)
	if err != nil {
		b.Fatal(err)
	}
	total := time.Since(start)
	b.ReportMetric(float64(render.Milliseconds()), "render-ms")
	b.ReportMetric(float64(total.Milliseconds()), "total-ms")
	b.ReportMetric(float64(ops), "nft-ops")
	b.ReportMetric(float64((childCPU() - cpu).Milliseconds()), "nft-cpu-ms")
	b.ReportMetric(float64((cputime.Process() - self).Milliseconds()), "self-cpu-ms")
}

// BenchmarkFullSyncFake: rendering plus building the transaction, applied
// to knftables.Fake: the CPU part alone.
func BenchmarkFullSyncFake(b *testing.B) {
	for b.Loop() {
		fullSync(b, knftables.NewFake(knftables.IPv4Family, "skiff-bench"), "skiff-bench")
	}
}

// BenchmarkFullSyncNFT: the same into a real kernel table, from scratch.
func BenchmarkFullSyncNFT(b *testing.B) {
	nettest.InFreshNetns(b, func() error {
		for b.Loop() {
			nft, err := knftables.New(knftables.IPv4Family, "skiff-bench")
			if err != nil {
				return err
			}
			fullSync(b, nft, "skiff-bench")
			deleteTable(nft)
		}
		return nil
	})
}

func percentile(d []time.Duration, p float64) time.Duration {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[min(len(d)-1, int(float64(len(d))*p))]
}

// childCPU is the CPU time (user+system) of the finished child processes
// so far: the nft invocations, including the kernel's work on their
// commits. On a loaded machine wall latency mostly measures the run
// queue; this is what a change costs.
func childCPU() time.Duration {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_CHILDREN, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportSelfCPU reports this process's CPU per change: with netlink the
// kernel's commit work is charged here rather than to an nft child; it
// includes the benchmark's own fake API server and informers.
func reportSelfCPU(b *testing.B, before time.Duration, changes int) {
	b.ReportMetric(float64((cputime.Process()-before)/time.Duration(changes))/1e6, "self-cpu-ms/change")
}

func reportCPU(b *testing.B, before time.Duration, changes int) {
	b.ReportMetric(float64((childCPU()-before)/time.Duration(changes))/1e6, "nft-cpu-ms/change")
}

func report(b *testing.B, lat []time.Duration) {
	b.ReportMetric(float64(percentile(lat, 0.50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(percentile(lat, 1).Microseconds())/1000, "max-ms")
}

// BenchmarkEndpointChangeApplierNFT: with 10,000 services in a real table,
// replace one endpoint of a random service: render that service, diff,
// run the transaction. Latency per change.
func BenchmarkEndpointChangeApplierNFT(b *testing.B) {
	for _, nl := range []bool{false, true} {
		b.Run("netlink="+strconv.FormatBool(nl), func(b *testing.B) { benchApplier(b, nl) })
	}
}

func benchApplier(b *testing.B, netlink bool) {
	nettest.InFreshNetns(b, func() error {
		nft, err := knftables.New(knftables.IPv4Family, "skiff-bench")
		if err != nil {
			return err
		}
		defer deleteTable(nft)
		r := rules()
		a := nftables.New(nft, knftables.IPv4Family, "skiff-bench")
		if _, err := a.FullSync(context.Background(), r.Base(), renderAll(r)); err != nil {
			return err
		}
		if netlink {
			a.UseNetlink(nftables.NewNetlink("skiff-bench", 0))
		}
		for b.Loop() {
			lat := make([]time.Duration, 0, numChanges)
			cpu, self := childCPU(), cputime.Process()
			for c := 1; c <= numChanges; c++ {
				i := (c * 7919) % numServices
				start := time.Now()
				u, _ := r.Service(makeService(i), []*discovery.EndpointSlice{makeSlice(i, c)})
				if _, err := a.Update(context.Background(), map[string]*nftables.Unit{"bench/svc-" + strconv.Itoa(i): u}); err != nil {
					return err
				}
				lat = append(lat, time.Since(start))
			}
			report(b, lat)
			reportCPU(b, cpu, numChanges)
			reportSelfCPU(b, self, numChanges)
			if st := a.Stats(); netlink && (st.Netlink == 0 || st.Fallbacks > 0) {
				return fmt.Errorf("changes did not go over netlink: %+v", st)
			}
		}
		return nil
	})
}

// BenchmarkEndpointChangeProxierNFT: the whole path. 10,000 services in a
// fake clientset, the proxier running against a real table; each change
// is an EndpointSlice update through the API client, timed until the
// proxier reports the transaction applied (informer delivery, the 10 ms
// min-sync coalescing and nft included). Changes are sequential.
func BenchmarkEndpointChangeProxierNFT(b *testing.B) {
	for _, shards := range []int{1, 8} {
		for _, nl := range []bool{false, true} {
			b.Run("shards="+strconv.Itoa(shards)+"/netlink="+strconv.FormatBool(nl), func(b *testing.B) { benchProxier(b, shards, nl) })
		}
	}
}

func benchProxier(b *testing.B, shards int, netlink bool) {
	cpu0, self0 := childCPU(), cputime.Process()
	nettest.InFreshNetns(b, func() error {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var objs []kruntime.Object
		for i := 0; i < numServices; i++ {
			objs = append(objs, makeService(i), makeSlice(i, 0))
		}
		client := fake.NewClientset(objs...)
		synced := make(chan bool, 16)
		factory := informers.NewSharedInformerFactory(client, 0)
		p, err := proxy.New(proxy.Config{
			Table: "skiff-bench", Shards: shards, ClusterCIDRs: rules().ClusterCIDRs,
			// Opened here, on the thread inside the namespace; the tables
			// go with it.
			NewNFT: func(table string) (knftables.Interface, error) {
				return knftables.New(knftables.IPv4Family, table)
			},
			Netlink:   ptr.To(netlink),
			Conntrack: noConntrack{},
			OnSync:    func(full bool, _ []string) { synced <- full },
		}, client, factory, "node-0", nil, slog.New(slog.NewTextHandler(logOut(), nil)))
		if err != nil {
			return err
		}
		drive := make(chan error, 1)
		go func() {
			defer cancel()
			drive <- func() error {
				start := time.Now()
				if full := <-synced; !full {
					return fmt.Errorf("first sync was not full")
				}
				// Reported inside the loop: b.Loop's first call resets the
				// timer, which drops metrics reported before it.
				initial, initialCPU, initialSelf := time.Since(start), childCPU()-cpu0, cputime.Process()-self0
				for b.Loop() {
					lat := make([]time.Duration, 0, numChanges)
					cpu, self := childCPU(), cputime.Process()
					for c := 1; c <= numChanges; c++ {
						i := (c * 7919) % numServices
						sl := makeSlice(i, c)
						start := time.Now()
						if _, err := client.DiscoveryV1().EndpointSlices("bench").Update(ctx, sl, metav1.UpdateOptions{}); err != nil {
							return err
						}
						select {
						case <-synced:
						case <-time.After(60 * time.Second):
							return fmt.Errorf("change %d not applied within 60s", c)
						}
						lat = append(lat, time.Since(start))
					}
					report(b, lat)
					reportCPU(b, cpu, numChanges)
					reportSelfCPU(b, self, numChanges)
					b.ReportMetric(float64(initial.Milliseconds()), "initial-sync-ms")
					b.ReportMetric(float64(initialCPU.Milliseconds()), "initial-sync-nft-cpu-ms")
					b.ReportMetric(float64(initialSelf.Milliseconds()), "initial-sync-self-cpu-ms")
				}
				return nil
			}()
		}()
		// Run's syncs exec nft from this goroutine's thread, which is the
		// one inside the namespace.
		if err := p.Run(ctx); err != nil {
			return err
		}
		return <-drive
	})
}

type noConntrack struct{}

func (noConntrack) Delete(context.Context, []proxy.Flow) error { return nil }

// BenchmarkFullSyncCPU: rendering plus writing the full transaction's nft
// text (what would be piped to nft), without running it anywhere.
func BenchmarkFullSyncCPU(b *testing.B) {
	for b.Loop() {
		r := rules()
		start := time.Now()
		units := renderAll(r)
		render := time.Since(start)
		fake := &countingNFT{Fake: knftables.NewFake(knftables.IPv4Family, "skiff-bench")}
		a := nftables.New(fake, knftables.IPv4Family, "skiff-bench")
		ops, err := a.FullSync(context.Background(), r.Base(), units)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(render.Milliseconds()), "render-ms")
		b.ReportMetric(float64(time.Since(start).Milliseconds()), "total-ms")
		b.ReportMetric(float64(ops), "nft-ops")
		b.ReportMetric(float64(fake.bytes)/1e6, "nft-MB")
	}
}

// countingNFT serialises transactions instead of applying them: the Fake's
// own bookkeeping is quadratic in map elements and would dominate.
type countingNFT struct {
	*knftables.Fake
	bytes int
}

func (c *countingNFT) Run(_ context.Context, tx *knftables.Transaction) error {
	c.bytes += len(tx.String())
	return nil
}

// TestDumpFullSync writes the full-sync transaction to $DUMP (for timing
// nft by hand); skipped without it.
func TestDumpFullSync(t *testing.T) {
	path := os.Getenv("DUMP")
	if path == "" {
		t.Skip("set DUMP=file")
	}
	r := rules()
	fake := &dumpingNFT{Fake: knftables.NewFake(knftables.IPv4Family, "skiff-bench")}
	if _, err := nftables.New(fake, knftables.IPv4Family, "skiff-bench").FullSync(context.Background(), r.Base(), renderAll(r)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(fake.text), 0o644); err != nil {
		t.Fatal(err)
	}
}

type dumpingNFT struct {
	*knftables.Fake
	text string
}

func (d *dumpingNFT) Run(_ context.Context, tx *knftables.Transaction) error {
	d.text = tx.String()
	return nil
}

// logOut is where the proxier's log goes: nowhere unless PROXY_LOG is set.
func logOut() io.Writer {
	if os.Getenv("PROXY_LOG") != "" {
		return os.Stderr
	}
	return io.Discard
}
