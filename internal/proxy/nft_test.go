package proxy

import (
	"context"
	"fmt"
	"strings"
	"testing"

	discovery "k8s.io/api/discovery/v1"
	"sigs.k8s.io/knftables"

	"skiff.dev/skiff/internal/network/nettest"
	"skiff.dev/skiff/internal/proxy/nftables"
)

// TestRealNFT applies the fixture to a real kernel table, reads it back,
// then applies incremental changes (removals exercise the order of
// element deletes and chain deletes, which the Fake does not check).
func TestRealNFT(t *testing.T) {
	nettest.RequireRoot(t, "nft")
	table := nettest.RandomName("skiffg-")
	ctx := context.Background()
	nettest.InFreshNetns(t, func() (err error) {
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
		svcs, sl := fixture()
		a := nftables.New(nft, knftables.IPv4Family, table)
		if _, err := a.FullSync(ctx, r.Base(), units(r, svcs, sl)); err != nil {
			return err
		}
		out, err := nettest.ListTable(ctx, "ip", table)
		if err != nil {
			return err
		}
		for _, want := range []string{
			"chain svc-default/web/tcp/http",
			"numgen random mod 3 0 meta l4proto tcp dnat to 10.244.1.2:8080",
			"10.244.1.2 . 10.244.1.2",
			"10.96.0.10 . tcp . 80 : goto svc-default/web/tcp/http",
			"tcp . 30080 : goto ext-default/np/tcp/80",
			"10.96.0.50 . tcp . 80 : goto reject-chain",
			"set affinity-ep-default/sticky/tcp/80__10.244.1.5/8080",
			"timeout 10m",
			"dnat to 10.244.3.4:9090",
			"sctp . 9999",
			"masquerade fully-random",
			"type nat hook prerouting priority dstnat",
		} {
			if !strings.Contains(out, want) {
				return fmt.Errorf("nft list table lacks %q:\n%s", want, out)
			}
		}

		// Remove an endpoint, a whole service, and affinity; add a service.
		sl["default/web"] = []*discovery.EndpointSlice{withoutEndpoint(sl["default/web"][0], "10.244.2.3"), sl["default/web"][1]}
		sticky := svcs["default/sticky"].DeepCopy()
		sticky.Spec.SessionAffinity = "None"
		sticky.Spec.SessionAffinityConfig = nil
		changes := map[string]*nftables.Unit{"default/lb": nil}
		changes["default/web"], _ = r.Service(svcs["default/web"], sl["default/web"])
		changes["default/sticky"], _ = r.Service(sticky, sl["default/sticky"])
		extra := service("extra", "10.96.0.90", nodePort(30090))
		changes["default/extra"], _ = r.Service(extra, []*discovery.EndpointSlice{slice("extra", "extra-a", tcp8080, readyEP("10.244.9.9", "node-a"))})
		if _, err := a.Update(ctx, changes); err != nil {
			return fmt.Errorf("incremental update: %w", err)
		}
		out, err = nettest.ListTable(ctx, "ip", table)
		if err != nil {
			return err
		}
		for _, gone := range []string{"10.244.2.3", "default/lb/", "affinity-"} {
			if strings.Contains(out, gone) {
				return fmt.Errorf("table still mentions %q after update:\n%s", gone, out)
			}
		}
		if !strings.Contains(out, "tcp . 30090 : goto ext-default/extra/tcp/80") {
			return fmt.Errorf("new service missing:\n%s", out)
		}
		// A full sync over an existing table (flush paths) must also apply.
		if _, err := a.FullSync(ctx, r.Base(), units(r, svcs, sl)); err != nil {
			return fmt.Errorf("second full sync: %w", err)
		}
		return nil
	})
}
