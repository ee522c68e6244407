package policy

import (
	"context"
	"fmt"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/knftables"

	"skiff.dev/skiff/internal/network/nettest"
)

// TestRealNFT has the kernel accept the fixture's full table and a series
// of incremental transactions (the fake checks references but not nft's
// syntax or the kernel's rules on deleting sets in use).
func TestRealNFT(t *testing.T) {
	nettest.RequireRoot(t, "nft", "ip")
	table := nettest.RandomName("skiffnp-")
	ctx := context.Background()
	nettest.InFreshNetns(t, func() (err error) {
		nft, err := knftables.New(knftables.IPv4Family, table)
		if err != nil {
			return fmt.Errorf("opening nftables: %w", err)
		}
		a := NewApplier(nft, table)
		defer func() {
			if derr := a.Delete(ctx); derr != nil && err == nil {
				err = derr
			}
		}()
		in := fixture()
		if _, _, err := a.Apply(ctx, Compute(in), true); err != nil {
			return err
		}
		out, err := nettest.ListTable(ctx, "ip", table)
		if err != nil {
			return err
		}
		for _, want := range []string{
			"ct state established,related accept",
			"ip saddr vmap @egress-pods",
			"10.96.1.30 : jump ingress-default/db-1",
			"tcp dport 9000-9100 return",
			"ip saddr 192.168.0.0/16 ip saddr != { 192.168.1.0-192.168.2.255 }",
			"ip daddr . meta l4proto . th dport @named-default/client/eg/0 return",
			"10.96.2.10 . tcp . 8081",
			"sctp dport 7777 return",
		} {
			if !strings.Contains(out, want) {
				return fmt.Errorf("nft list table lacks %q:\n%s", want, out)
			}
		}
		// Incremental: new peers, a changed policy, a deleted policy whose
		// sets are still referenced until its chains go, then nothing.
		in.Pods = append(in.Pods, pod("default", "client-3", "node-b", "10.96.2.22", map[string]string{"role": "client"}))
		in.Policies[0] = policy("default", "db-deny", nil, func(s *networkingv1.NetworkPolicySpec) {
			s.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
		})
		if _, full, err := a.Apply(ctx, Compute(in), false); err != nil || full {
			return fmt.Errorf("first incremental apply: full=%v: %w", full, err)
		}
		in.Policies = in.Policies[3:]
		in.Pods = append(in.Pods, pod("default", "db-3", localNode, "10.96.1.31", map[string]string{"app": "db"}, port("sql", 5, v1.ProtocolTCP)))
		if _, full, err := a.Apply(ctx, Compute(in), false); err != nil || full {
			return fmt.Errorf("second incremental apply: full=%v: %w", full, err)
		}
		in.Policies = nil
		if _, full, err := a.Apply(ctx, Compute(in), false); err != nil || full {
			return fmt.Errorf("removing every policy: full=%v: %w", full, err)
		}
		out, err = nettest.ListTable(ctx, "ip", table)
		if err != nil {
			return err
		}
		if strings.Contains(out, "peers-") || strings.Contains(out, "jump") {
			return fmt.Errorf("objects left after every policy was deleted:\n%s", out)
		}
		// A full rebuild over an existing table applies too, with names
		// as odd as the API allows: dots, and a namespace and policy name
		// whose set name would pass nft's length limit.
		in = fixture()
		longNS, longPol := strings.Repeat("n", 63), strings.Repeat("p.", 126)+"p"
		in.Pods = append(in.Pods, pod(longNS, "web.v1-0", localNode, "10.96.1.77", map[string]string{"app": "x"}),
			pod(longNS, "peer", "node-b", "10.96.2.77", map[string]string{"role": "y"}))
		in.Policies = append(in.Policies, policy(longNS, longPol, nil, func(s *networkingv1.NetworkPolicySpec) {
			s.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{podPeer(sel("role", "y"))}}}
		}))
		if _, _, err := a.Apply(ctx, Compute(in), true); err != nil {
			return fmt.Errorf("full sync over the existing table: %w", err)
		}
		out, err = nettest.ListTable(ctx, "ip", table)
		if err != nil {
			return err
		}
		if !strings.Contains(out, "10.96.1.77 : jump ingress-"+longNS+"/web.v1-0") || !strings.Contains(out, "10.96.2.77") {
			return fmt.Errorf("long or dotted names not programmed:\n%s", out)
		}
		return nil
	})
}
