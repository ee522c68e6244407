package multinode

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"skiff.dev/skiff/internal/network/overlay"
)

// Pods on three nodes reach each other by pod IP, from inside their own
// network namespaces, with full-size packets, and the callee sees the
// caller's pod IP (no NAT on the way).
func TestPodToPodAcrossNodes(t *testing.T) {
	c := getCluster(t)
	ns := namespace(t, c)
	var want []string
	for _, n := range c.nodes {
		want = append(want, "pod-"+strings.TrimPrefix(n.name, "skiffmn-"))
	}
	pods := runPods(t, c, ns,
		testappPod(want[0], c.nodes[0].name, nil),
		testappPod(want[1], c.nodes[1].name, nil),
		testappPod(want[2], c.nodes[2].name, nil),
	)
	for i, p := range pods {
		cidr := netip.MustParsePrefix(c.nodes[i].podCIDR)
		if ip, err := netip.ParseAddr(p.Status.PodIP); err != nil || !cidr.Contains(ip) {
			t.Errorf("pod %s has IP %s, outside its node's pod CIDR %s", p.Name, p.Status.PodIP, cidr)
		}
	}

	// Every pod reaches every other pod's IP from inside its own netns.
	for _, from := range pods {
		fromNS := podNetns(t, c, from)
		for _, to := range pods {
			if to.Name == from.Name {
				continue
			}
			eventually(t, 30*time.Second, fromNS, url(to.Status.PodIP, 8080, "/hostname"), to.Name)
		}
	}
	// And every node reaches the pods on the others.
	for _, n := range c.nodes {
		for _, to := range pods {
			eventually(t, 30*time.Second, n.nodeNetns(), url(to.Status.PodIP, 8080, "/hostname"), to.Name)
		}
	}

	// No NAT: a listener in pod 2's netns sees pod 1's IP as the peer.
	var l net.Listener
	if err := inNetns(podNetns(t, c, pods[1]), func() (err error) {
		l, err = net.Listen("tcp", net.JoinHostPort(pods[1].Status.PodIP, "0"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	peer := make(chan string, 1)
	go func() {
		conn, err := l.Accept()
		if err != nil {
			peer <- err.Error()
			return
		}
		peer <- conn.RemoteAddr().(*net.TCPAddr).IP.String()
		conn.Close()
	}()
	if err := inNetns(podNetns(t, c, pods[0]), func() error {
		conn, err := net.DialTimeout("tcp", l.Addr().String(), 5*time.Second)
		if err == nil {
			conn.Close()
		}
		return err
	}); err != nil {
		t.Fatalf("dialing pod to pod: %v", err)
	}
	select {
	case got := <-peer:
		if got != pods[0].Status.PodIP {
			t.Errorf("callee saw peer %s, want the caller's pod IP %s", got, pods[0].Status.PodIP)
		}
	case <-time.After(5 * time.Second):
		t.Error("no connection accepted")
	}

	// Full-size segments both ways through the overlay: a 256 KiB body
	// echoed back fails if the pod MTU left no room for encapsulation.
	body := bytes.Repeat([]byte("0123456789abcdef"), 16<<10)
	resp, err := httpClientIn(podNetns(t, c, pods[0]), 10*time.Second).Post(url(pods[1].Status.PodIP, 8080, "/echo"), "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("posting 256 KiB pod to pod: %v", err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(got, body) {
		t.Errorf("echo of 256 KiB: status %d, %d bytes back, %v", resp.StatusCode, len(got), err)
	}

	// The pod's interface MTU leaves room for the VXLAN header.
	wantMTU := overlay.PodMTU(suite.backend, 1500)
	if mtu := linkMTU(t, podNetns(t, c, pods[0]), "eth0"); mtu != wantMTU {
		t.Errorf("pod eth0 mtu %d, want %d", mtu, wantMTU)
	}

	// Each node routes the two other pod CIDRs (route protocol of the
	// overlay), onlink over the vxlan device or via the peer's node IP.
	for _, n := range c.nodes {
		out, err := exec.Command("ip", "-n", n.netns, "route", "show", "proto", fmt.Sprint(overlay.RouteProtocol)).CombinedOutput()
		if err != nil {
			t.Fatalf("listing routes of %s: %v: %s", n.name, err, out)
		}
		for _, peer := range c.nodes {
			if peer == n {
				continue
			}
			if !strings.Contains(string(out), peer.podCIDR) {
				t.Errorf("%s has no route to %s:\n%s", n.name, peer.podCIDR, out)
			}
		}
	}
}

func linkMTU(t *testing.T, nsPath, name string) int {
	t.Helper()
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatalf("link %s in %s: %v", name, nsPath, err)
	}
	return l.Attrs().MTU
}

// A node joining (here: a Node object only, with the annotations an agent
// would publish) gets routes on every node; deleting it removes them.
func TestOverlayFollowsNodes(t *testing.T) {
	c := getCluster(t)
	const ghostCIDR = "10.93.99.0/24"
	ghost := &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "skiffmn-ghost", Annotations: map[string]string{
			overlay.AnnotationBackend:  string(suite.backend),
			overlay.AnnotationPublicIP: "10.92.0.99",
			overlay.AnnotationVXLANMAC: "02:5a:5a:00:00:99",
		}},
		Spec: v1.NodeSpec{PodCIDR: ghostCIDR, PodCIDRs: []string{ghostCIDR}},
	}
	nodes := c.client.CoreV1().Nodes()
	if _, err := nodes.Create(context.Background(), ghost, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nodes.Delete(context.Background(), ghost.Name, metav1.DeleteOptions{}) })
	routed := func(n *node) bool {
		out, _ := exec.Command("ip", "-n", n.netns, "route", "show", ghostCIDR, "proto", fmt.Sprint(overlay.RouteProtocol)).Output()
		return strings.Contains(string(out), ghostCIDR)
	}
	waitAll := func(what string, want bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for _, n := range c.nodes {
			for routed(n) != want {
				if time.Now().After(deadline) {
					t.Fatalf("%s on %s: timed out", what, n.name)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
	waitAll("route to the new node", true)
	if err := nodes.Delete(context.Background(), ghost.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitAll("route to the deleted node removed", false)
}
