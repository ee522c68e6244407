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

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/knftables"

	"skiff.dev/skiff/internal/network/nettest"
	"skiff.dev/skiff/internal/proxy/nftables"
)

func hostPortPod(name, node, ip string, created int64, ports ...v1.ContainerPort) *v1.Pod {
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, CreationTimestamp: metav1.NewTime(time.Unix(created, 0))},
		Spec:       v1.PodSpec{NodeName: node, Containers: []v1.Container{{Name: "c", Ports: ports}}},
		Status:     v1.PodStatus{Phase: v1.PodRunning, PodIP: ip},
	}
}

func TestHostPortsOf(t *testing.T) {
	web := hostPortPod("web", testNode, "10.244.1.2", 1,
		v1.ContainerPort{ContainerPort: 8080, HostPort: 80},
		v1.ContainerPort{ContainerPort: 53, HostPort: 5353, Protocol: v1.ProtocolUDP, HostIP: "192.0.2.1"},
		v1.ContainerPort{ContainerPort: 9000}) // no hostPort
	late := hostPortPod("late", testNode, "10.244.1.3", 2, v1.ContainerPort{ContainerPort: 8080, HostPort: 80})
	other := hostPortPod("other", "node-b", "10.244.2.2", 1, v1.ContainerPort{ContainerPort: 8080, HostPort: 81})
	noIP := hostPortPod("pending", testNode, "", 1, v1.ContainerPort{ContainerPort: 8080, HostPort: 82})
	done := hostPortPod("done", testNode, "10.244.1.4", 1, v1.ContainerPort{ContainerPort: 8080, HostPort: 83})
	done.Status.Phase = v1.PodSucceeded
	hostNet := hostPortPod("hostnet", testNode, "192.0.2.1", 1, v1.ContainerPort{ContainerPort: 84, HostPort: 84})
	hostNet.Spec.HostNetwork = true

	got := HostPortsOf(testNode, []*v1.Pod{late, other, noIP, done, hostNet, web})
	want := []HostPort{
		{Protocol: v1.ProtocolTCP, HostPort: 80, PodIP: "10.244.1.2", PodPort: 8080, Pod: "default/web"},
		{Protocol: v1.ProtocolUDP, HostIP: "192.0.2.1", HostPort: 5353, PodIP: "10.244.1.2", PodPort: 53, Pod: "default/web"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("HostPortsOf:\n got %v\nwant %v", got, want)
	}
}

func testNodeRules() *NodeRules {
	return &NodeRules{PodCIDR: netip.MustParsePrefix("10.244.1.0/24"), ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}}
}

func TestGoldenNodeTable(t *testing.T) {
	hps := []HostPort{
		{Protocol: v1.ProtocolTCP, HostPort: 80, PodIP: "10.244.1.2", PodPort: 8080},
		{Protocol: v1.ProtocolUDP, HostIP: "192.0.2.1", HostPort: 5353, PodIP: "10.244.1.2", PodPort: 53},
		{Protocol: v1.ProtocolSCTP, HostPort: 9999, PodIP: "10.244.1.3", PodPort: 9999},
	}
	fake := knftables.NewFake(knftables.IPv4Family, DefaultNodeTable)
	a := nftables.New(fake, knftables.IPv4Family, DefaultNodeTable)
	if _, err := a.FullSync(context.Background(), testNodeRules().Table(hps), nil); err != nil {
		t.Fatal(err)
	}
	dump := fake.Dump()
	golden(t, "node.golden", dump)
	for _, want := range []string{
		// Egress: pods to anything outside the pod networks leave as the node.
		"ip saddr 10.244.1.0/24 ip daddr != 10.244.0.0/16 masquerade fully-random",
		// hostPort on every node address but loopback, and on one address.
		"fib daddr type local ip daddr != 127.0.0.0/8 tcp dport 80 dnat to 10.244.1.2:8080",
		"ip daddr 192.0.2.1 udp dport 5353 dnat to 10.244.1.2:53",
		// A pod reaching its own hostPort is masqueraded, once per pod.
		"ct status dnat ip saddr 10.244.1.2 ip daddr 10.244.1.2 masquerade",
	} {
		if !strings.Contains(dump, want) {
			t.Errorf("node table lacks %q:\n%s", want, dump)
		}
	}
	if strings.Count(dump, "ip saddr 10.244.1.2 ip daddr 10.244.1.2") != 1 {
		t.Errorf("hairpin rule for 10.244.1.2 not written exactly once:\n%s", dump)
	}
	// Removing the hostPorts leaves only the masquerade rule.
	if _, err := a.FullSync(context.Background(), testNodeRules().Table(nil), nil); err != nil {
		t.Fatal(err)
	}
	if dump := fake.Dump(); strings.Contains(dump, "dnat") || !strings.Contains(dump, "masquerade fully-random") {
		t.Errorf("after removing hostPorts:\n%s", dump)
	}
}

// netnsLab is a node namespace routing between a pod namespace (veth,
// 10.90.<n>.0/24) and an "outside" namespace (veth, 10.91.<n>.0/24) that
// has no route back to the pod network: only masqueraded traffic from
// the pod can get an answer from outside.
type netnsLab struct {
	node, pod, outside string
	podIP, nodePodSide string
	nodeIP, outsideIP  string
}

func newNetnsLab(t *testing.T, n int) *netnsLab {
	t.Helper()
	nettest.RequireRoot(t, "nft")
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2")
	}
	l := &netnsLab{
		node: nettest.RandomName("skiffg-node-"), pod: nettest.RandomName("skiffg-pod-"), outside: nettest.RandomName("skiffg-out-"),
		podIP: fmt.Sprintf("10.90.%d.2", n), nodePodSide: fmt.Sprintf("10.90.%d.1", n),
		nodeIP: fmt.Sprintf("10.91.%d.1", n), outsideIP: fmt.Sprintf("10.91.%d.2", n),
	}
	for _, ns := range []string{l.node, l.pod, l.outside} {
		nettest.Run(t, "ip", "netns", "add", ns)
		t.Cleanup(func() {
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
				t.Errorf("deleting netns %s: %v: %s", ns, err, out)
			}
		})
	}
	nettest.Run(t, "ip", "-n", l.node, "link", "add", "veth-pod", "type", "veth", "peer", "name", "eth0", "netns", l.pod)
	nettest.Run(t, "ip", "-n", l.node, "link", "add", "veth-out", "type", "veth", "peer", "name", "eth0", "netns", l.outside)
	nettest.Run(t, "ip", "-n", l.node, "addr", "add", l.nodePodSide+"/24", "dev", "veth-pod")
	nettest.Run(t, "ip", "-n", l.node, "addr", "add", l.nodeIP+"/24", "dev", "veth-out")
	nettest.Run(t, "ip", "-n", l.pod, "addr", "add", l.podIP+"/24", "dev", "eth0")
	nettest.Run(t, "ip", "-n", l.outside, "addr", "add", l.outsideIP+"/24", "dev", "eth0")
	for _, a := range [][]string{{l.node, "veth-pod"}, {l.node, "veth-out"}, {l.node, "lo"}, {l.pod, "eth0"}, {l.pod, "lo"}, {l.outside, "eth0"}, {l.outside, "lo"}} {
		nettest.Run(t, "ip", "-n", a[0], "link", "set", a[1], "up")
	}
	nettest.Run(t, "ip", "-n", l.pod, "route", "add", "default", "via", l.nodePodSide)
	nettest.Run(t, "ip", "netns", "exec", l.node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	return l
}

// serveWho starts a TCP server in ns that answers each connection with
// the client's address.
func serveWho(t *testing.T, ns, addr string) {
	t.Helper()
	var ln net.Listener
	if err := nettest.InNetns(ns, func() (err error) {
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, c.RemoteAddr().(*net.TCPAddr).IP.String())
			c.Close()
		}
	}()
}

// askWho connects from ns to addr and returns what the server said.
func askWho(ns, addr string) (string, error) {
	var got string
	err := nettest.InNetns(ns, func() error {
		c, err := net.DialTimeout("tcp", addr, 3*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		b, err := io.ReadAll(c)
		got = string(b)
		return err
	})
	return got, err
}

// withNodeTable writes the node table into l.node for hps and removes
// it when the test ends.
func (l *netnsLab) withNodeTable(t *testing.T, r *NodeRules, hps []HostPort) {
	t.Helper()
	table := nettest.RandomName("skiffg-node-")
	ctx := context.Background()
	err := nettest.InNetns(l.node, func() error {
		nft, err := knftables.New(knftables.IPv4Family, table)
		if err != nil {
			return err
		}
		_, err = nftables.New(nft, knftables.IPv4Family, table).FullSync(ctx, r.Table(hps), nil)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// The table disappears with the namespace; deleting it explicitly
	// keeps the cleanup honest if the namespace outlives the test.
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "exec", l.node, "nft", "delete", "table", "ip", table).Run() })
}

// TestNetnsEgressMasqueradeAndHostPort checks on a real kernel that a
// pod's traffic leaves the cluster masqueraded (the outside namespace has
// no route back to pods, so an unmasqueraded connection would hang), that
// a hostPort is reachable from outside with the client's address kept,
// from the node itself, and from the pod itself (hairpin).
func TestNetnsEgressMasqueradeAndHostPort(t *testing.T) {
	l := newNetnsLab(t, 1)
	serveWho(t, l.outside, l.outsideIP+":7000")
	serveWho(t, l.pod, l.podIP+":8080")

	// Before the table: no masquerade, so no answer from outside.
	if got, err := askWho(l.pod, l.outsideIP+":7000"); err == nil {
		t.Fatalf("without the node table the pod reached outside as %q; the lab is not testing masquerade", got)
	}
	r := &NodeRules{PodCIDR: netip.MustParsePrefix("10.90.1.0/24"), ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.90.0.0/16")}}
	l.withNodeTable(t, r, []HostPort{{Protocol: v1.ProtocolTCP, HostPort: 30999, PodIP: l.podIP, PodPort: 8080}})

	if got, err := askWho(l.pod, l.outsideIP+":7000"); err != nil || got != l.nodeIP {
		t.Errorf("pod to outside: got %q, %v; want the node's address %s", got, err, l.nodeIP)
	}
	// Pod-to-node traffic on the pod network is not NATed.
	serveWho(t, l.node, l.nodePodSide+":7001")
	if got, err := askWho(l.pod, l.nodePodSide+":7001"); err != nil || got != l.podIP {
		t.Errorf("pod to node over the pod network: got %q, %v; want the pod's own address", got, err)
	}
	hp := net.JoinHostPort(l.nodeIP, "30999")
	if got, err := askWho(l.outside, hp); err != nil || got != l.outsideIP {
		t.Errorf("outside to hostPort: got %q, %v; want the client's address %s", got, err, l.outsideIP)
	}
	if got, err := askWho(l.node, hp); err != nil || got != l.nodeIP {
		t.Errorf("node to its own hostPort: got %q, %v", got, err)
	}
	if got, err := askWho(l.pod, hp); err != nil || got != l.nodeIP && got != l.nodePodSide {
		t.Errorf("pod to its own hostPort (hairpin): got %q, %v; want a node address", got, err)
	}
	// Loopback is not a hostPort address (as upstream's portmap).
	if got, err := askWho(l.node, "127.0.0.1:30999"); err == nil {
		t.Errorf("127.0.0.1:hostPort answered %q", got)
	}
}
