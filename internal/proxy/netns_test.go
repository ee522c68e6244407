package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"syscall"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	"sigs.k8s.io/knftables"

	"skiff.dev/skiff/internal/network/nettest"
	"skiff.dev/skiff/internal/proxy/nftables"
)

// nodeAndPod makes a "node" and a "pod" network namespace (removed when
// the test ends) joined by a veth pair on 10.90.THIRD.0/24 (node .1, pod
// .2), routes 10.91.THIRD.0/24 (service IPs) out of the node's veth so the
// output path reaches the nat hook, and serves "hello from ADDR" on
// 10.90.THIRD.2:8080 in the pod until the test ends.
func nodeAndPod(t *testing.T, nodePrefix, podPrefix string, third int) (node, pod string) {
	t.Helper()
	node, pod = nettest.RandomName(nodePrefix), nettest.RandomName(podPrefix)
	nettest.AddNetns(t, node)
	nettest.AddNetns(t, pod)
	nodeIP, podIP := fmt.Sprintf("10.90.%d.1/24", third), fmt.Sprintf("10.90.%d.2", third)
	nettest.Run(t, "ip", "-n", node, "link", "add", "veth-node", "type", "veth", "peer", "name", "veth-pod", "netns", pod)
	nettest.Run(t, "ip", "-n", node, "addr", "add", nodeIP, "dev", "veth-node")
	nettest.Run(t, "ip", "-n", pod, "addr", "add", podIP+"/24", "dev", "veth-pod")
	for _, a := range [][]string{{node, "veth-node"}, {node, "lo"}, {pod, "veth-pod"}, {pod, "lo"}} {
		nettest.Run(t, "ip", "-n", a[0], "link", "set", a[1], "up")
	}
	nettest.Run(t, "ip", "-n", node, "route", "add", fmt.Sprintf("10.91.%d.0/24", third), "dev", "veth-node")

	var ln net.Listener
	if err := nettest.InNetns(pod, func() (err error) {
		ln, err = net.Listen("tcp", podIP+":8080")
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
			_, _ = io.WriteString(c, "hello from "+c.LocalAddr().String())
			c.Close()
		}
	}()
	return node, pod
}

// TestNetnsClusterIP connects to a ClusterIP through the real kernel: a
// "node" namespace holding skiff's table and a "pod" namespace with a TCP
// server, joined by a veth pair created directly inside the namespaces (no
// host link ever exists). Deleting the namespaces removes the links.
func TestNetnsClusterIP(t *testing.T) {
	nettest.RequireRoot(t, "nft")
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2")
	}
	node, _ := nodeAndPod(t, "skiffg-node-", "skiffg-pod-", 77)

	table := nettest.RandomName("skiffg-")
	ctx := context.Background()
	err := nettest.InNetns(node, func() (err error) {
		nft, err := knftables.New(knftables.IPv4Family, table)
		if err != nil {
			return fmt.Errorf("opening nftables: %w", err)
		}
		defer func() {
			tx := nft.NewTransaction()
			tx.Delete(&knftables.Table{})
			if derr := nft.Run(ctx, tx); derr != nil && err == nil {
				err = fmt.Errorf("deleting table %s: %w", table, derr)
			}
		}()
		r := testRules()
		r.NodeName = "node-x"
		svcs := map[string]*v1.Service{
			"default/web":   service("web", "10.91.77.10"),
			"default/empty": service("empty", "10.91.77.50"),
		}
		sl := map[string][]*discovery.EndpointSlice{
			"default/web": {slice("web", "web-a", tcp8080, readyEP("10.90.77.2", "node-y"))},
		}
		a := nftables.New(nft, knftables.IPv4Family, table)
		if _, err := a.FullSync(ctx, r.Base(), units(r, svcs, sl)); err != nil {
			return err
		}
		d := net.Dialer{Timeout: 3 * time.Second}
		c, err := d.Dial("tcp", "10.91.77.10:80")
		if err != nil {
			return fmt.Errorf("connecting to the ClusterIP: %w", err)
		}
		b, _ := io.ReadAll(c)
		c.Close()
		if string(b) != "hello from 10.90.77.2:8080" {
			return fmt.Errorf("ClusterIP answered %q", b)
		}
		// No endpoints: refused at once (TCP reset), not a timeout.
		start := time.Now()
		_, err = d.Dial("tcp", "10.91.77.50:80")
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("service without endpoints: want connection refused, got %v after %v", err, time.Since(start))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
