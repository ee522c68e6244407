package policy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"sigs.k8s.io/knftables"

	"skiff.dev/skiff/internal/network/nettest"
)

// simNode is a node in a network namespace: a bridge, and pods as network
// namespaces hanging off it by veths, as the bridge CNI plugin wires them.
type simNode struct {
	t      *testing.T
	ns     string
	subnet string // "10.96.N"
	suffix string
}

func newSimNode(t *testing.T) *simNode {
	suffix := nettest.RandomName("")[:6]
	n := &simNode{t: t, ns: "skiffnp-node-" + suffix, subnet: fmt.Sprintf("10.96.%d", 100+rand.IntN(100)), suffix: suffix}
	nettest.AddNetns(n.t, n.ns)
	nettest.Run(t, "ip", "-n", n.ns, "link", "add", "skiffnpbr", "type", "bridge")
	nettest.Run(t, "ip", "-n", n.ns, "addr", "add", n.subnet+".1/24", "dev", "skiffnpbr")
	nettest.Run(t, "ip", "-n", n.ns, "link", "set", "skiffnpbr", "up")
	nettest.Run(t, "ip", "-n", n.ns, "link", "set", "lo", "up")
	// What the agent ensures: bridged IPv4 traffic passes the IP hooks.
	nettest.Run(t, "ip", "netns", "exec", n.ns, "sh", "-c", "echo 1 > /proc/sys/net/bridge/bridge-nf-call-iptables")
	return n
}

// addPod creates a pod namespace with address subnet.host and returns the
// namespace's name and the address.
func (n *simNode) addPod(role string, host int) (string, string) {
	name := "skiffnp-" + role + "-" + n.suffix
	ip := fmt.Sprintf("%s.%d", n.subnet, host)
	nettest.AddNetns(n.t, name)
	veth := "skiffnp" + role
	nettest.Run(n.t, "ip", "-n", n.ns, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", name)
	nettest.Run(n.t, "ip", "-n", n.ns, "link", "set", veth, "master", "skiffnpbr", "up")
	nettest.Run(n.t, "ip", "-n", name, "addr", "add", ip+"/24", "dev", "eth0")
	nettest.Run(n.t, "ip", "-n", name, "link", "set", "eth0", "up")
	nettest.Run(n.t, "ip", "-n", name, "link", "set", "lo", "up")
	nettest.Run(n.t, "ip", "-n", name, "route", "add", "default", "via", n.subnet+".1")
	return name, ip
}

// echoServer answers each line with the line, on every port, in netns.
func echoServer(t *testing.T, netns, ip string, ports ...int) {
	for _, p := range ports {
		var ln net.Listener
		if err := nettest.InNetns(netns, func() (err error) {
			ln, err = net.Listen("tcp", fmt.Sprintf("%s:%d", ip, p))
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
				go func() {
					defer c.Close()
					r := bufio.NewReader(c)
					for {
						l, err := r.ReadString('\n')
						if err != nil {
							return
						}
						if _, err := c.Write([]byte(l)); err != nil {
							return
						}
					}
				}()
			}
		}()
	}
}

// udpEchoServer answers each datagram with itself.
func udpEchoServer(t *testing.T, netns, addr string) {
	var pc net.PacketConn
	if err := nettest.InNetns(netns, func() (err error) {
		pc, err = net.ListenPacket("udp", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
}

// udpAnswered reports whether a datagram from netns to addr is echoed.
func udpAnswered(netns, addr string, timeout time.Duration) (bool, error) {
	var c net.Conn
	if err := nettest.InNetns(netns, func() (err error) {
		c, err = net.Dial("udp", addr)
		return err
	}); err != nil {
		return false, err
	}
	defer c.Close()
	if _, err := c.Write([]byte("ping")); err != nil {
		return false, err
	}
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 16)
	n, err := c.Read(buf)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return string(buf[:n]) == "ping", nil
}

func dialFrom(netns, addr string, timeout time.Duration) (c net.Conn, err error) {
	err = nettest.InNetns(netns, func() error {
		c, err = net.DialTimeout("tcp", addr, timeout)
		return err
	})
	return c, err
}

// echo sends one line on c and reads it back.
func echo(c net.Conn, msg string) error {
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write([]byte(msg + "\n")); err != nil {
		return fmt.Errorf("writing: %w", err)
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("reading: %w", err)
	}
	if got != msg+"\n" {
		return fmt.Errorf("echo answered %q, want %q", got, msg)
	}
	return nil
}

// TestNetnsPolicy enforces policies on real traffic: pods are network
// namespaces on a bridge in a "node" namespace, where the controller runs
// (with a fake API) and programs the real kernel.
func TestNetnsPolicy(t *testing.T) {
	nettest.RequireRoot(t, "nft", "ip")
	node := newSimNode(t)
	webNS, webIP := node.addPod("web", 10)
	clientNS, clientIP := node.addPod("client", 20)
	otherNS, otherIP := node.addPod("other", 30)
	echoServer(t, webNS, webIP, 8080, 9090)
	echoServer(t, clientNS, clientIP, 7070)
	udpEchoServer(t, webNS, webIP+":5353")
	web8080, web9090 := webIP+":8080", webIP+":9090"

	podObj := func(name, ip string, lbls map[string]string, opts ...podOpt) *v1.Pod {
		return pod("default", name, "sim-node", ip, lbls, opts...)
	}
	client := fake.NewSimpleClientset(
		ns("default", nil),
		podObj("web", webIP, map[string]string{"app": "web"}, port("http", 8080, v1.ProtocolTCP)),
		podObj("client", clientIP, map[string]string{"role": "client"}),
		podObj("other", otherIP, map[string]string{"role": "other"}),
	)
	synced := make(chan *Ruleset, 100)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		// The controller's goroutine stays in the node's namespace: the nft
		// processes it starts inherit it. Its table goes with the netns.
		done <- nettest.InNetns(node.ns, func() error {
			nft, err := knftables.New(knftables.IPv4Family, DefaultTable)
			if err != nil {
				return fmt.Errorf("opening nftables: %w", err)
			}
			c, err := New(Config{NodeName: "sim-node", MinSyncPeriod: time.Millisecond}, Deps{
				Client: client, NFT: nft, OnSync: func(_ bool, rs *Ruleset) { synced <- rs },
			})
			if err != nil {
				return err
			}
			return c.Run(ctx)
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("controller: %v", err)
		}
	})
	waitSync := func(what string, ok func(*Ruleset) bool) {
		t.Helper()
		deadline := time.After(15 * time.Second)
		for {
			select {
			case rs := <-synced:
				if ok(rs) {
					return
				}
			case <-deadline:
				t.Fatalf("timed out waiting for a sync with %s", what)
			}
		}
	}
	allowed := func(from, addr string) {
		t.Helper()
		c, err := dialFrom(from, addr, 3*time.Second)
		if err != nil {
			t.Fatalf("%s → %s: want allowed, got %v", from, addr, err)
		}
		defer c.Close()
		if err := echo(c, "hi"); err != nil {
			t.Fatalf("%s → %s: %v", from, addr, err)
		}
	}
	blocked := func(from, addr string) {
		t.Helper()
		c, err := dialFrom(from, addr, 700*time.Millisecond)
		if err == nil {
			c.Close()
			t.Fatalf("%s → %s: want blocked, connected", from, addr)
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("%s → %s: want a timeout (dropped), got %v", from, addr, err)
		}
	}
	apiCtx := context.Background()
	create := func(p *networkingv1.NetworkPolicy) {
		t.Helper()
		if _, err := client.NetworkingV1().NetworkPolicies(p.Namespace).Create(apiCtx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	remove := func(name string) {
		t.Helper()
		if err := client.NetworkingV1().NetworkPolicies("default").Delete(apiCtx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	waitSync("the initial table", func(*Ruleset) bool { return true })
	allowed(clientNS, web8080) // no policy selects web

	// Default deny: nothing reaches web but the node itself.
	create(policy("default", "deny", sel("app", "web"), nil))
	waitSync("web isolated", func(rs *Ruleset) bool { return rs.Ingress[webIP] != "" })
	blocked(clientNS, web8080)
	blocked(otherNS, web8080)
	allowed(node.ns, web8080)
	// Isolation is for new connections to web: web's own connections out,
	// and their replies, pass.
	allowed(webNS, clientIP+":7070")

	// Allow the client, on 8080 only, live.
	create(policy("default", "allow-client", sel("app", "web"), func(s *networkingv1.NetworkPolicySpec) {
		s.Ingress = []networkingv1.NetworkPolicyIngressRule{{
			From:  []networkingv1.NetworkPolicyPeer{podPeer(sel("role", "client"))},
			Ports: []networkingv1.NetworkPolicyPort{numPort(v1.ProtocolTCP, 8080)},
		}}
	}))
	waitSync("the allow rule", func(rs *Ruleset) bool { return rs.Sets["peers-default/allow-client/in/0"] != nil })
	allowed(clientNS, web8080)
	blocked(clientNS, web9090)
	blocked(otherNS, web8080)

	// Through a service address DNATed as the proxy does (at prerouting):
	// the policy sees the pod's address and port.
	const svc = "10.96.250.1"
	nettest.Run(t, "ip", "netns", "exec", node.ns, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward")
	nat := exec.Command("ip", "netns", "exec", node.ns, "nft", "-f", "-")
	nat.Stdin = strings.NewReader("table ip skiffnp-svc {\n chain prerouting {\n type nat hook prerouting priority dstnat;\n" +
		" ip daddr " + svc + " tcp dport 80 dnat to " + web8080 + "\n }\n" +
		" chain postrouting {\n type nat hook postrouting priority srcnat;\n" +
		" ct status dnat ip saddr " + webIP + " ip daddr " + webIP + " masquerade\n }\n}\n")
	if out, err := nat.CombinedOutput(); err != nil {
		t.Fatalf("adding the service DNAT: %v: %s", err, out)
	}
	allowed(clientNS, svc+":80")
	blocked(otherNS, svc+":80")
	// A pod cannot block itself: web reaches itself through the service
	// (hairpin, masqueraded after the filter, as the proxy does).
	nettest.Run(t, "ip", "-n", node.ns, "link", "set", "skiffnpweb", "type", "bridge_slave", "hairpin", "on")
	allowed(webNS, svc+":80")

	// An established connection survives an unrelated update, and even
	// the removal of the rule that allowed it; new connections do not.
	conn, err := dialFrom(clientNS, web8080, 3*time.Second)
	if err != nil {
		t.Fatalf("opening the long-lived connection: %v", err)
	}
	defer conn.Close()
	if err := echo(conn, "before"); err != nil {
		t.Fatal(err)
	}
	create(policy("default", "unrelated", sel("app", "nothing-here"), nil))
	waitSync("the unrelated policy", func(rs *Ruleset) bool { return true })
	if err := echo(conn, "after an unrelated update"); err != nil {
		t.Fatalf("established connection broken by an unrelated policy update: %v", err)
	}
	remove("allow-client")
	waitSync("the allow rule gone", func(rs *Ruleset) bool { return rs.Sets["peers-default/allow-client/in/0"] == nil })
	blocked(clientNS, web8080)
	if err := echo(conn, "after the allow rule went"); err != nil {
		t.Fatalf("established connection broken by a policy update: %v", err)
	}

	// Egress: other may only reach web's named port "http".
	remove("deny")
	create(policy("default", "other-egress", sel("role", "other"), func(s *networkingv1.NetworkPolicySpec) {
		s.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
	}))
	waitSync("other egress-isolated", func(rs *Ruleset) bool { return rs.Egress[otherIP] != "" && rs.Ingress[webIP] == "" })
	blocked(otherNS, web8080)
	allowed(clientNS, web9090) // web is no longer isolated
	create(policy("default", "other-to-web", sel("role", "other"), func(s *networkingv1.NetworkPolicySpec) {
		s.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
		s.Egress = []networkingv1.NetworkPolicyEgressRule{{
			To:    []networkingv1.NetworkPolicyPeer{podPeer(sel("app", "web"))},
			Ports: []networkingv1.NetworkPolicyPort{namedPortRef(v1.ProtocolTCP, "http")},
		}}
	}))
	waitSync("other's egress to web", func(rs *Ruleset) bool { return rs.Sets["named-default/other-to-web/eg/0"] != nil })
	allowed(otherNS, web8080)
	blocked(otherNS, web9090)
	if ok, err := udpAnswered(otherNS, webIP+":5353", 700*time.Millisecond); err != nil || ok {
		t.Fatalf("UDP from other to web before any UDP rule: answered=%v err=%v, want dropped", ok, err)
	}

	// UDP: the request is allowed by port, the answer as a reply.
	p, err := client.NetworkingV1().NetworkPolicies("default").Get(apiCtx, "other-to-web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Spec.Egress[0].Ports = append(p.Spec.Egress[0].Ports, numPort(v1.ProtocolUDP, 5353))
	if _, err := client.NetworkingV1().NetworkPolicies("default").Update(apiCtx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSync("the UDP rule", func(rs *Ruleset) bool {
		return slices.ContainsFunc(rs.Chains[rs.Egress[otherIP]], func(r string) bool { return strings.Contains(r, "udp th dport 5353") })
	})
	if ok, err := udpAnswered(otherNS, webIP+":5353", 3*time.Second); err != nil || !ok {
		t.Fatalf("UDP from other to web with a UDP rule: answered=%v err=%v", ok, err)
	}
}
