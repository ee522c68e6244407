package proxy

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/knftables"

	"skiff.dev/skiff/internal/network/nettest"
	"skiff.dev/skiff/internal/proxy/nftables"
)

// servicesLab is a node namespace with two pods on routed veths (pod1
// 10.90.2.2 behind 10.90.2.1, pod2 10.90.3.2 behind 10.90.3.1) and an
// outside client (10.91.2.2, the node being 10.91.2.1 on that link).
// The proxy's table lives in the node namespace. Pods answer each TCP
// connection with "<pod> <client address>" and each UDP datagram with
// "<pod>".
type servicesLab struct {
	node, pod1, pod2, outside string
}

const (
	labPod1, labPod2         = "10.90.2.2", "10.90.3.2"
	labNodePod1, labNodePod2 = "10.90.2.1", "10.90.3.1"
	labNode, labOutside      = "10.91.2.1", "10.91.2.2"
	labLBIP                  = "10.91.99.1"
)

func newServicesLab(t *testing.T) *servicesLab {
	t.Helper()
	nettest.RequireRoot(t, "nft")
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2")
	}
	l := &servicesLab{node: nettest.RandomName("skiffg-node-"), pod1: nettest.RandomName("skiffg-p1-"), pod2: nettest.RandomName("skiffg-p2-"), outside: nettest.RandomName("skiffg-out-")}
	for _, ns := range []string{l.node, l.pod1, l.pod2, l.outside} {
		nettest.Run(t, "ip", "netns", "add", ns)
		t.Cleanup(func() {
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
				t.Errorf("deleting netns %s: %v: %s", ns, err, out)
			}
		})
		nettest.Run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	link := func(peerNS, nodeDev, nodeAddr, peerAddr string) {
		nettest.Run(t, "ip", "-n", l.node, "link", "add", nodeDev, "type", "veth", "peer", "name", "eth0", "netns", peerNS)
		nettest.Run(t, "ip", "-n", l.node, "addr", "add", nodeAddr+"/24", "dev", nodeDev)
		nettest.Run(t, "ip", "-n", peerNS, "addr", "add", peerAddr+"/24", "dev", "eth0")
		nettest.Run(t, "ip", "-n", l.node, "link", "set", nodeDev, "up")
		nettest.Run(t, "ip", "-n", peerNS, "link", "set", "eth0", "up")
		nettest.Run(t, "ip", "-n", peerNS, "route", "add", "default", "via", nodeAddr)
	}
	link(l.pod1, "veth-p1", labNodePod1, labPod1)
	link(l.pod2, "veth-p2", labNodePod2, labPod2)
	link(l.outside, "veth-out", labNode, labOutside)
	nettest.Run(t, "ip", "netns", "exec", l.node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	// Service addresses need a route for locally generated packets to
	// reach the nat output hook.
	nettest.Run(t, "ip", "-n", l.node, "route", "add", "10.91.10.0/24", "dev", "veth-out")
	for ns, name := range map[string]string{l.pod1: "pod1", l.pod2: "pod2"} {
		ip := labPod1
		if name == "pod2" {
			ip = labPod2
		}
		servePod(t, ns, name, ip)
	}
	return l
}

func servePod(t *testing.T, ns, name, ip string) {
	t.Helper()
	var ln net.Listener
	var pc net.PacketConn
	if err := nettest.InNetns(ns, func() (err error) {
		if ln, err = net.Listen("tcp", ip+":8080"); err != nil {
			return err
		}
		pc, err = net.ListenPacket("udp", ip+":5353")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close(); pc.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, name+" "+c.RemoteAddr().(*net.TCPAddr).IP.String())
			c.Close()
		}
	}()
	go func() {
		buf := make([]byte, 512)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo([]byte(name), from)
		}
	}()
}

// ask connects from ns to addr n times and returns the answers.
func ask(ns, addr string, n int) ([]string, error) {
	var out []string
	err := nettest.InNetns(ns, func() error {
		for range n {
			c, err := net.DialTimeout("tcp", addr, 2*time.Second)
			if err != nil {
				return fmt.Errorf("connecting to %s: %w", addr, err)
			}
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			b, err := io.ReadAll(c)
			c.Close()
			if err != nil {
				return err
			}
			out = append(out, string(b))
		}
		return nil
	})
	return out, err
}

func askUDP(ns, addr string) (string, error) {
	var got string
	err := nettest.InNetns(ns, func() error {
		c, err := net.Dial("udp", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write([]byte("hi")); err != nil {
			return err
		}
		buf := make([]byte, 64)
		n, err := c.Read(buf)
		got = string(buf[:n])
		return err
	})
	return got, err
}

func distinct(answers []string) map[string]int {
	m := map[string]int{}
	for _, a := range answers {
		m[a]++
	}
	return m
}

// TestNetnsServiceFeatures drives the proxy feature list through
// a real kernel: random balancing, named targetPorts, UDP, ClientIP
// affinity, hairpin, masquerade of non-pod clients, NodePort on every
// node address, load balancer addresses, externalTrafficPolicy and
// internalTrafficPolicy Local. (SCTP is covered by the golden file: Go
// has no SCTP sockets to test it with; reject is TestNetnsClusterIP's.)
func TestNetnsServiceFeatures(t *testing.T) {
	l := newServicesLab(t)
	p1, p2 := readyEP(labPod1, "node-x"), readyEP(labPod2, "node-y")
	named := []slicePort{{"http", v1.ProtocolTCP, 8080}}
	httpPort := ports(v1.ServicePort{Name: "http", Port: 80, Protocol: v1.ProtocolTCP, TargetPort: intstr.FromString("http")})
	svcs := map[string]*v1.Service{
		"default/web":    service("web", "10.91.10.1", httpPort),
		"default/self":   service("self", "10.91.10.2"),
		"default/sticky": service("sticky", "10.91.10.3", affinity(60)),
		"default/np":     service("np", "10.91.10.4", nodePort(30401)),
		"default/local":  service("local", "10.91.10.5", nodePort(30402), etpLocal),
		"default/itp":    service("itp", "10.91.10.6", itpLocal),
		"default/udp":    service("udp", "10.91.10.7", ports(v1.ServicePort{Name: "dns", Port: 53, Protocol: v1.ProtocolUDP, TargetPort: intstr.FromInt32(5353)})),
		"default/lb":     service("lb", "10.91.10.8", loadBalancer(30403, labLBIP)),
	}
	sl := map[string][]*discovery.EndpointSlice{
		"default/web":    {slice("web", "web-a", named, p1, p2)},
		"default/self":   {slice("self", "self-a", tcp8080, p1)},
		"default/sticky": {slice("sticky", "sticky-a", tcp8080, p1, p2)},
		"default/np":     {slice("np", "np-a", tcp8080, p2)},
		"default/local":  {slice("local", "local-a", tcp8080, p1, p2)}, // p1 is on this node
		"default/itp":    {slice("itp", "itp-a", tcp8080, readyEP(labPod1, "node-y"), readyEP(labPod2, "node-x"))},
		"default/udp":    {slice("udp", "udp-a", []slicePort{{"dns", v1.ProtocolUDP, 5353}}, p2)},
		"default/lb":     {slice("lb", "lb-a", tcp8080, p1)},
	}
	r := &Rules{NodeName: "node-x", ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.90.0.0/16")}}
	table := nettest.RandomName("skiffg-proxy-")
	ctx := context.Background()
	if err := nettest.InNetns(l.node, func() error {
		nft, err := knftables.New(knftables.IPv4Family, table)
		if err != nil {
			return err
		}
		_, err = nftables.New(nft, knftables.IPv4Family, table).FullSync(ctx, r.Base(), units(r, svcs, sl))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "exec", l.node, "nft", "delete", "table", "ip", table).Run() })
	nettest.Run(t, "ip", "-n", l.outside, "route", "add", labLBIP+"/32", "via", labNode)

	check := func(what string, got []string, err error, want func(map[string]int) bool) {
		t.Helper()
		if err != nil {
			t.Errorf("%s: %v", what, err)
			return
		}
		if !want(distinct(got)) {
			t.Errorf("%s: answers %v", what, distinct(got))
		}
	}
	only := func(answer string) func(map[string]int) bool {
		return func(m map[string]int) bool { return len(m) == 1 && m[answer] > 0 }
	}

	// Random balancing over both endpoints, named targetPort resolved per
	// slice; pod-to-service traffic keeps the pod's address (except when
	// it lands on the client itself: hairpin, below).
	got, err := ask(l.pod1, "10.91.10.1:80", 40)
	check("pod1 to ClusterIP web", got, err, func(m map[string]int) bool {
		return len(m) == 2 && m["pod1 "+labNodePod1] > 0 && m["pod2 "+labPod1] > 0
	})
	// Hairpin: pod1 reaching itself through a service sees a node address.
	got, err = ask(l.pod1, "10.91.10.2:80", 3)
	check("pod1 to itself through ClusterIP self (hairpin)", got, err, only("pod1 "+labNodePod1))
	// A client outside the cluster CIDR is masqueraded so replies come back.
	got, err = ask(l.outside, "10.91.10.2:80", 1)
	check("outside to ClusterIP (masqueraded)", got, err, only("pod1 "+labNodePod1))
	// ClientIP affinity: every connection of one client to one endpoint.
	got, err = ask(l.pod2, "10.91.10.3:80", 20)
	check("pod2 to ClusterIP sticky (affinity)", got, err, func(m map[string]int) bool { return len(m) == 1 })
	// NodePort on every node address, masqueraded (externalTrafficPolicy Cluster).
	for _, addr := range []string{labNode, labNodePod1} {
		got, err = ask(l.outside, net.JoinHostPort(addr, "30401"), 1)
		check("outside to NodePort on "+addr, got, err, only("pod2 "+labNodePod2))
	}
	// externalTrafficPolicy Local: only this node's endpoint, client address kept.
	got, err = ask(l.outside, net.JoinHostPort(labNode, "30402"), 10)
	check("outside to NodePort with externalTrafficPolicy Local", got, err, only("pod1 "+labOutside))
	// internalTrafficPolicy Local: only this node's endpoint (pod2 here).
	got, err = ask(l.pod1, "10.91.10.6:80", 10)
	check("pod1 to ClusterIP with internalTrafficPolicy Local", got, err, only("pod2 "+labPod1))
	// A load balancer address is served like a NodePort.
	got, err = ask(l.outside, labLBIP+":80", 1)
	check("outside to the load balancer address", got, err, only("pod1 "+labNodePod1))
	// UDP.
	if ans, err := askUDP(l.pod1, "10.91.10.7:53"); err != nil || ans != "pod2" {
		t.Errorf("pod1 to UDP ClusterIP: %q %v", ans, err)
	}
	// The UDP flow above left a conntrack entry steering 10.91.10.7:53 to
	// pod2; when pod2 goes, the proxy deletes it over netlink.
	flow := Flow{Protocol: v1.ProtocolUDP, ServiceIP: "10.91.10.7", Port: 53, EndpointIP: labPod2}
	if err := nettest.InNetns(l.node, func() error {
		if n := countFlows("10.91.10.7"); n == 0 {
			return fmt.Errorf("no conntrack entry for the UDP service flow to delete")
		}
		if err := (NetlinkConntrack{}).Delete(ctx, []Flow{flow}); err != nil {
			return err
		}
		if n := countFlows("10.91.10.7"); n != 0 {
			return fmt.Errorf("%d conntrack entries to 10.91.10.7 left after Delete", n)
		}
		return nil
	}); err != nil {
		t.Errorf("conntrack: %v", err)
	}
	if t.Failed() {
		out, _ := exec.Command("ip", "netns", "exec", l.node, "nft", "list", "table", "ip", table).CombinedOutput()
		t.Logf("table:\n%s", strings.TrimSpace(string(out)))
	}
}

// countFlows counts the conntrack entries (of the calling thread's
// namespace) whose original destination is dst.
func countFlows(dst string) int {
	flows, err := netlink.ConntrackTableList(netlink.ConntrackTable, unix.AF_INET)
	if err != nil {
		return -1
	}
	n := 0
	for _, f := range flows {
		if f.Forward.DstIP.String() == dst {
			n++
		}
	}
	return n
}
