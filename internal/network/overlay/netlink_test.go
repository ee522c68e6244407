package overlay

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// The namespace tests use the 10.94.0.0/16 (node links) and 10.95.0.0/16
// (pod CIDRs) ranges and namespaces named skiffmn-ov-*; every namespace is
// deleted on cleanup, which takes its links, routes and entries with it.

const testDev = "skiffmnvx"

// testNode is one throwaway network namespace standing in for a node: an
// uplink veth to the other test node and a port-less bridge holding a "pod"
// address (the .1 of its pod CIDR).
type testNode struct {
	name    string
	ns      netns.NsHandle
	h       *netlink.Handle
	ip      netip.Addr
	podCIDR netip.Prefix
	podIP   netip.Addr
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2's ip")
	}
}

func run(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// twoNodes makes namespaces a (10.94.0.1, pods 10.95.1.0/24) and b
// (10.94.0.2, pods 10.95.2.0/24) joined by a veth.
func twoNodes(t *testing.T) (a, b *testNode) {
	requireRoot(t)
	prefix := fmt.Sprintf("skiffmn-ov-%d-%s", os.Getpid(), strings.NewReplacer("/", "-").Replace(t.Name()))
	mk := func(suffix string, i int) *testNode {
		n := &testNode{name: prefix + "-" + suffix,
			ip:      netip.AddrFrom4([4]byte{10, 94, 0, byte(i)}),
			podCIDR: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 95, byte(i), 0}), 24),
			podIP:   netip.AddrFrom4([4]byte{10, 95, byte(i), 1}),
		}
		_ = exec.Command("ip", "netns", "del", n.name).Run()
		run(t, "ip", "netns", "add", n.name)
		t.Cleanup(func() {
			if err := exec.Command("ip", "netns", "del", n.name).Run(); err != nil {
				t.Errorf("deleting netns %s: %v", n.name, err)
			}
		})
		ns, err := netns.GetFromName(n.name)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ns.Close() })
		h, err := netlink.NewHandleAt(ns)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(h.Close)
		n.ns, n.h = ns, h
		return n
	}
	a, b = mk("a", 1), mk("b", 2)
	run(t, "ip", "-n", a.name, "link", "add", "skiffmnup", "type", "veth", "peer", "name", "skiffmnup", "netns", b.name)
	for _, n := range []*testNode{a, b} {
		run(t, "ip", "-n", n.name, "link", "set", "lo", "up")
		run(t, "ip", "-n", n.name, "addr", "add", n.ip.String()+"/24", "dev", "skiffmnup")
		run(t, "ip", "-n", n.name, "link", "set", "skiffmnup", "up")
		run(t, "ip", "-n", n.name, "link", "add", "skiffmnpod", "type", "bridge")
		run(t, "ip", "-n", n.name, "addr", "add", n.podIP.String()+"/24", "dev", "skiffmnpod")
		run(t, "ip", "-n", n.name, "link", "set", "skiffmnpod", "up")
	}
	return a, b
}

// inNS runs f on a thread switched into ns; sockets f opens stay there.
func inNS(t *testing.T, ns netns.NsHandle, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			t.Error(err)
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			t.Error(err)
			return
		}
		f()
		if err := netns.Set(orig); err == nil {
			// Only a thread back in the original namespace may be reused.
			runtime.UnlockOSThread()
		}
	}()
	<-done
}

// serve listens on the node's pod IP and answers every connection with
// the node's name.
func (n *testNode) serve(t *testing.T) int {
	var l net.Listener
	inNS(t, n.ns, func() {
		var err error
		l, err = net.Listen("tcp", net.JoinHostPort(n.podIP.String(), "0"))
		if err != nil {
			t.Error(err)
		}
	})
	if l == nil {
		t.FailNow()
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, n.name)
			c.Close()
		}
	}()
	return l.Addr().(*net.TCPAddr).Port
}

// dial connects from the node's pod IP to addr and returns what it reads.
func (n *testNode) dial(t *testing.T, addr string, timeout time.Duration) (string, error) {
	var c net.Conn
	var err error
	inNS(t, n.ns, func() {
		d := net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: n.podIP.AsSlice()}}
		c, err = d.Dial("tcp", addr)
	})
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	b, err := io.ReadAll(c)
	return string(b), err
}

func (n *testNode) peer() Peer {
	return Peer{Name: n.name, PodCIDR: n.podCIDR, PublicIP: n.ip}
}

func ownedRoutes(t *testing.T, h *netlink.Handle) []netlink.Route {
	t.Helper()
	rs, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: RouteProtocol}, netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func TestVXLANDataPath(t *testing.T) {
	a, b := twoNodes(t)
	devs := map[*testNode]Device{}
	for _, n := range []*testNode{a, b} {
		d, err := NewApplier(n.h).EnsureDevice(DeviceConfig{Name: testDev, LocalIP: n.ip, PodCIDR: n.podCIDR})
		if err != nil {
			t.Fatal(err)
		}
		devs[n] = d
		l, err := n.h.LinkByName(testDev)
		if err != nil {
			t.Fatal(err)
		}
		v := l.(*netlink.Vxlan)
		if v.VxlanId != DefaultVNI || v.Port != DefaultPort || v.Learning || l.Attrs().MTU != 1450 || d.MTU != 1450 || d.UplinkMTU != 1500 {
			t.Errorf("device: vni %d port %d learning %v mtu %d (%+v)", v.VxlanId, v.Port, v.Learning, l.Attrs().MTU, d)
		}
		addrs, _ := n.h.AddrList(l, netlink.FAMILY_V4)
		if len(addrs) != 1 || addrs[0].IPNet.String() != n.podCIDR.Addr().String()+"/32" {
			t.Errorf("device addresses %v, want only %s/32", addrs, n.podCIDR.Addr())
		}
	}
	// A route someone else owns must survive our reconcile.
	run(t, "ip", "-n", a.name, "route", "add", "10.95.99.0/24", "via", "10.94.0.2")

	program := func(self *testNode, others ...*testNode) int {
		t.Helper()
		var peers []Peer
		for _, o := range others {
			p := o.peer()
			p.VTEPMAC = devs[o].MAC
			peers = append(peers, p)
		}
		st, skipped := Desired(Options{Backend: VXLAN, Device: testDev, Self: self.name, SelfCIDR: self.podCIDR}, peers)
		if len(skipped) != 0 {
			t.Fatalf("skipped %v", skipped)
		}
		n, err := NewApplier(self.h).Apply(st, testDev)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := program(a, b); n != 3 {
		t.Errorf("first apply on a made %d changes, want 3 (route, neighbour, fdb)", n)
	}
	program(b, a)
	if n := program(a, b); n != 0 {
		t.Errorf("second apply made %d changes, want 0", n)
	}

	port := b.serve(t)
	got, err := a.dial(t, net.JoinHostPort(b.podIP.String(), fmt.Sprint(port)), 5*time.Second)
	if err != nil || got != b.name {
		t.Fatalf("pod a -> pod b over vxlan: %q, %v", got, err)
	}

	// What is programmed is what Flannel programs.
	rs := ownedRoutes(t, a.h)
	if len(rs) != 1 || rs[0].Dst.String() != "10.95.2.0/24" || rs[0].Gw.String() != "10.95.2.0" || rs[0].Flags&int(netlink.FLAG_ONLINK) == 0 {
		t.Errorf("routes on a: %v", rs)
	}
	l, _ := a.h.LinkByName(testDev)
	neighs, _ := a.h.NeighList(l.Attrs().Index, netlink.FAMILY_V4)
	if len(neighs) != 1 || neighs[0].IP.String() != "10.95.2.0" || neighs[0].HardwareAddr.String() != devs[b].MAC.String() {
		t.Errorf("neighbours on a: %v", neighs)
	}
	fdb, _ := a.h.NeighList(l.Attrs().Index, unix.AF_BRIDGE)
	found := false
	for _, f := range fdb {
		if f.HardwareAddr.String() == devs[b].MAC.String() && f.IP.String() == "10.94.0.2" {
			found = true
		}
	}
	if !found {
		t.Errorf("no fdb entry %s -> 10.94.0.2 on a: %v", devs[b].MAC, fdb)
	}

	// Restarting keeps the device and so the MAC peers have programmed.
	again, err := NewApplier(a.h).EnsureDevice(DeviceConfig{Name: testDev, LocalIP: a.ip, PodCIDR: a.podCIDR})
	if err != nil || again.MAC.String() != devs[a].MAC.String() {
		t.Errorf("EnsureDevice again: mac %s want %s (%v)", again.MAC, devs[a].MAC, err)
	}

	// Someone deletes our route: the next apply restores it.
	run(t, "ip", "-n", a.name, "route", "del", "10.95.2.0/24")
	if n := program(a, b); n != 1 {
		t.Errorf("repair made %d changes, want 1", n)
	}

	// b leaves: its route, neighbour and fdb entry go, the foreign route stays.
	if n := program(a); n != 3 {
		t.Errorf("removing b made %d changes, want 3", n)
	}
	if rs := ownedRoutes(t, a.h); len(rs) != 0 {
		t.Errorf("routes left: %v", rs)
	}
	neighs, _ = a.h.NeighList(l.Attrs().Index, netlink.FAMILY_V4)
	for _, n := range neighs {
		if n.State&netlink.NUD_PERMANENT != 0 {
			t.Errorf("neighbour left: %v", n)
		}
	}
	fdb, _ = a.h.NeighList(l.Attrs().Index, unix.AF_BRIDGE)
	for _, f := range fdb {
		if f.HardwareAddr.String() == devs[b].MAC.String() {
			t.Errorf("fdb entry left: %v", f)
		}
	}
	if out, _ := exec.Command("ip", "-n", a.name, "route", "show", "10.95.99.0/24").Output(); !strings.Contains(string(out), "10.94.0.2") {
		t.Errorf("foreign route was removed")
	}
	if _, err := a.dial(t, net.JoinHostPort(b.podIP.String(), fmt.Sprint(port)), 500*time.Millisecond); err == nil {
		t.Error("pod b still reachable after its node left")
	}

	// A device with other settings (here: another VNI) is replaced.
	if _, err := NewApplier(a.h).EnsureDevice(DeviceConfig{Name: testDev, VNI: 7, LocalIP: a.ip, PodCIDR: a.podCIDR}); err != nil {
		t.Fatal(err)
	}
	if l, _ := a.h.LinkByName(testDev); l.(*netlink.Vxlan).VxlanId != 7 {
		t.Errorf("vni not updated: %d", l.(*netlink.Vxlan).VxlanId)
	}
}

func TestHostGWDataPath(t *testing.T) {
	a, b := twoNodes(t)
	for _, pair := range [][2]*testNode{{a, b}, {b, a}} {
		st, _ := Desired(Options{Backend: HostGW, Self: pair[0].name, SelfCIDR: pair[0].podCIDR}, []Peer{pair[1].peer()})
		if n, err := NewApplier(pair[0].h).Apply(st, ""); err != nil || n != 1 {
			t.Fatalf("apply: %d changes, %v", n, err)
		}
	}
	port := b.serve(t)
	got, err := a.dial(t, net.JoinHostPort(b.podIP.String(), fmt.Sprint(port)), 5*time.Second)
	if err != nil || got != b.name {
		t.Fatalf("pod a -> pod b over host-gw: %q, %v", got, err)
	}
	rs := ownedRoutes(t, a.h)
	if len(rs) != 1 || rs[0].Gw.String() != "10.94.0.2" || rs[0].Dst.String() != "10.95.2.0/24" {
		t.Errorf("routes: %v", rs)
	}
	if n, err := NewApplier(a.h).Apply(State{}, ""); err != nil || n != 1 || len(ownedRoutes(t, a.h)) != 0 {
		t.Errorf("removing the peer: %d changes, %v, left %v", n, err, ownedRoutes(t, a.h))
	}
}

// The controller announces its node, follows Node events and removes a
// deleted node's entries.
func TestControllerFollowsNodes(t *testing.T) {
	a, _ := twoNodes(t)
	bMAC := "02:5a:00:00:00:02"
	node := func(name, cidr, ip string, ann map[string]string) *corev1.Node {
		return &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: ann},
			Spec:       corev1.NodeSpec{PodCIDR: cidr},
			Status:     corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}},
		}
	}
	client := fake.NewSimpleClientset(
		node("a", "10.95.1.0/24", "10.94.0.1", nil),
		node("b", "10.95.2.0/24", "10.94.0.2", map[string]string{AnnotationVXLANMAC: bMAC, AnnotationBackend: "vxlan"}),
	)
	c, err := New(Config{NodeName: "a", Backend: VXLAN, Device: DeviceConfig{Name: testDev, LocalIP: a.ip, PodCIDR: a.podCIDR}, Resync: time.Hour},
		Deps{Client: client, Applier: NewApplier(a.h)})
	if err != nil {
		t.Fatal(err)
	}
	mtu, err := c.Prepare()
	if err != nil || mtu != 1450 {
		t.Fatalf("prepare: mtu %d, %v", mtu, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	waitFor(t, "route to b", func() bool {
		rs := ownedRoutes(t, a.h)
		return len(rs) == 1 && rs[0].Dst.String() == "10.95.2.0/24"
	})
	l, _ := a.h.LinkByName(testDev)
	waitFor(t, "node a announced", func() bool {
		n, err := client.CoreV1().Nodes().Get(ctx, "a", metav1.GetOptions{})
		return err == nil && n.Annotations[AnnotationVXLANMAC] == l.Attrs().HardwareAddr.String() &&
			n.Annotations[AnnotationPublicIP] == "10.94.0.1" && n.Annotations[AnnotationBackend] == "vxlan"
	})
	if err := client.CoreV1().Nodes().Delete(ctx, "b", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "route to b removed", func() bool { return len(ownedRoutes(t, a.h)) == 0 })
	fdb, _ := a.h.NeighList(l.Attrs().Index, unix.AF_BRIDGE)
	for _, f := range fdb {
		if f.HardwareAddr.String() == bMAC {
			t.Errorf("fdb entry of deleted node left: %v", f)
		}
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	client := fake.NewSimpleClientset()
	if _, err := New(Config{NodeName: "a", Backend: "udp"}, Deps{Client: client}); err == nil || !strings.Contains(err.Error(), "udp") {
		t.Errorf("unknown backend: %v", err)
	}
	if _, err := New(Config{NodeName: "a", Backend: VXLAN}, Deps{Client: client}); err == nil {
		t.Error("vxlan without addresses accepted")
	}
	if _, err := New(Config{NodeName: "a", Backend: None}, Deps{Client: client}); err != nil {
		t.Errorf("none needs no addresses: %v", err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
