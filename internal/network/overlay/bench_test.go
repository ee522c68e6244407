package overlay

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"
)

// peers returns n VXLAN peers with /28 pod CIDRs in 10.95.0.0/16 (this
// node holds 10.95.0.0/28) and public IPs in 10.94.0.0/16.
func benchPeers(n int) []Peer {
	out := make([]Peer, n)
	for i := range out {
		j := i + 1
		out[i] = Peer{
			Name:     fmt.Sprintf("peer-%05d", j),
			PodCIDR:  netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 95, byte(j >> 4), byte(j&15) << 4}), 28),
			PublicIP: netip.AddrFrom4([4]byte{10, 94, byte(j >> 8), byte(j)}),
			VTEPMAC:  net.HardwareAddr{0x02, 0x5a, 0, 0, byte(j >> 8), byte(j)},
		}
	}
	return out
}

// BenchmarkDesired is the pure part of one reconcile on a large cluster.
func BenchmarkDesired(b *testing.B) {
	for _, n := range []int{100, 1000, 4000} {
		peers := benchPeers(n)
		o := Options{Backend: VXLAN, Device: testDev, Self: "self", SelfCIDR: netip.MustParsePrefix("10.95.0.0/28")}
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				Desired(o, peers)
			}
		})
	}
}

// TestApplyScale programs 1,000 peers (3,000 kernel entries) from scratch,
// then re-applies the same state (the periodic resync), then removes one
// peer, and reports the times. It is a test rather than a benchmark so the
// one-off full sync is measured once, in a fresh namespace.
func TestApplyScale(t *testing.T) {
	if testing.Short() {
		t.Skip("scale test")
	}
	a, _ := twoNodes(t)
	if _, err := NewApplier(a.h).EnsureDevice(DeviceConfig{Name: testDev, LocalIP: a.ip, PodCIDR: netip.MustParsePrefix("10.95.0.0/28")}); err != nil {
		t.Fatal(err)
	}
	const n = 1000
	peers := benchPeers(n)
	o := Options{Backend: VXLAN, Device: testDev, Self: "self", SelfCIDR: netip.MustParsePrefix("10.95.0.0/28")}
	st, skipped := Desired(o, peers)
	if len(skipped) != 0 || len(st.Routes) != n {
		t.Fatalf("desired: %d routes, skipped %v", len(st.Routes), skipped)
	}
	ap := NewApplier(a.h)
	start := time.Now()
	changes, err := ap.Apply(st, testDev)
	full := time.Since(start)
	if err != nil || changes != 3*n {
		t.Fatalf("full sync: %d changes, %v", changes, err)
	}
	start = time.Now()
	changes, err = ap.Apply(st, testDev)
	noop := time.Since(start)
	if err != nil || changes != 0 {
		t.Fatalf("resync: %d changes, %v", changes, err)
	}
	st, _ = Desired(o, peers[1:])
	start = time.Now()
	changes, err = ap.Apply(st, testDev)
	one := time.Since(start)
	if err != nil || changes != 3 {
		t.Fatalf("removing one peer: %d changes, %v", changes, err)
	}
	t.Logf("%d peers: full sync %s, no-op resync %s, one peer removed %s", n, full.Round(time.Millisecond), noop.Round(time.Millisecond), one.Round(time.Millisecond))
}
