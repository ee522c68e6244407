package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	discovery "k8s.io/api/discovery/v1"
	"sigs.k8s.io/knftables"

	"skiff.dev/skiff/internal/network/nettest"
	"skiff.dev/skiff/internal/proxy/nftables"
)

var elementsBlock = regexp.MustCompile(`(?s)elements = \{([^}]*)\}`)

// normalTable makes two listings comparable: the table name replaced and
// the elements of each set sorted (the kernel lists a hash set in its own
// order, which depends on the order of insertion).
func normalTable(listing, table string) string {
	listing = strings.ReplaceAll(listing, table, "TABLE")
	return elementsBlock.ReplaceAllStringFunc(listing, func(b string) string {
		body := elementsBlock.FindStringSubmatch(b)[1]
		var items []string
		for _, it := range strings.Split(body, ",") {
			if it = strings.Join(strings.Fields(it), " "); it != "" {
				items = append(items, it)
			}
		}
		sort.Strings(items)
		return "elements = { " + strings.Join(items, ", ") + " }"
	})
}

// TestNetlinkMatchesNFT proves the netlink writer programs exactly what
// nft would: two real tables get the same changes, one through nft only
// and one through the netlink writer (with its nft fallback), and `nft
// list` of the two must be identical after each step. The fixture covers
// every rule form the proxy renders (NodePort, LoadBalancer with Local
// policy, SCTP, UDP, no-endpoint rejects, terminating endpoints), and
// ClientIP affinity, which netlink leaves to nft.
func TestNetlinkMatchesNFT(t *testing.T) {
	nettest.RequireRoot(t, "nft")
	ctx := context.Background()
	nettest.InFreshNetns(t, func() (err error) {
		viaNFT, viaNL := nettest.RandomName("skiffg-nft-"), nettest.RandomName("skiffg-nl-")
		open := func(table string) (*nftables.Applier, error) {
			nft, err := knftables.New(knftables.IPv4Family, table)
			if err != nil {
				return nil, fmt.Errorf("opening nftables: %w", err)
			}
			return nftables.New(nft, knftables.IPv4Family, table), nil
		}
		ref, err := open(viaNFT)
		if err != nil {
			return err
		}
		nl, err := open(viaNL)
		if err != nil {
			return err
		}
		nl.UseNetlink(nftables.NewNetlink(viaNL, 0))
		defer func() {
			for _, table := range []string{viaNFT, viaNL} {
				// The namespace goes with the thread anyway; this only
				// reports a table that could not be deleted.
				nft, _ := knftables.New(knftables.IPv4Family, table)
				tx := nft.NewTransaction()
				tx.Delete(&knftables.Table{})
				if derr := nft.Run(ctx, tx); derr != nil && err == nil {
					err = fmt.Errorf("deleting table %s: %w", table, derr)
				}
			}
		}()
		r := testRules()
		// Both start from the bare skeleton (full syncs always run nft).
		for _, a := range []*nftables.Applier{ref, nl} {
			if _, err := a.FullSync(ctx, r.Base(), nil); err != nil {
				return err
			}
		}
		compare := func(step string) error {
			a, err := nettest.ListTable(ctx, "ip", viaNFT)
			if err != nil {
				return err
			}
			b, err := nettest.ListTable(ctx, "ip", viaNL)
			if err != nil {
				return err
			}
			if na, nb := normalTable(a, viaNFT), normalTable(b, viaNL); na != nb {
				return fmt.Errorf("%s: netlink table differs from nft's:\n%s", step, lineDiff(na, nb))
			}
			return nil
		}
		apply := func(changes map[string]*nftables.Unit) error {
			if _, err := ref.Update(ctx, changes); err != nil {
				return fmt.Errorf("nft update: %w", err)
			}
			if _, err := nl.Update(ctx, changes); err != nil {
				return fmt.Errorf("netlink update: %w", err)
			}
			return nil
		}

		// Step 1: every fixture service added, one transaction each.
		svcs, sl := fixture()
		all := units(r, svcs, sl)
		// A cluster CIDR that is not byte-aligned (a masked compare).
		r12 := testRules()
		r12.ClusterCIDRs = []netip.Prefix{netip.MustParsePrefix("10.240.0.0/12")}
		all["default/web12"], _ = r12.Service(service("web12", "10.96.0.12"), []*discovery.EndpointSlice{
			slice("web12", "web12-a", tcp8080, readyEP("10.244.5.5", "node-a"), readyEP("10.244.5.6", "node-b"))})
		for _, k := range sortedKeys(all) {
			if err := apply(map[string]*nftables.Unit{k: all[k]}); err != nil {
				return fmt.Errorf("adding %s: %w", k, err)
			}
		}
		if err := compare("services added"); err != nil {
			return err
		}
		st := nl.Stats()
		if st.Netlink == 0 || st.Fallbacks != 1 || st.NFT != 2 {
			return fmt.Errorf("after adding, stats %+v: want most transactions over netlink and only the skeleton's full sync and the affinity service through nft", st)
		}

		// Step 2: an endpoint removed, a service deleted, one losing all its
		// endpoints (reject elements replace the goto), in one transaction.
		sl["default/web"] = []*discovery.EndpointSlice{withoutEndpoint(sl["default/web"][0], "10.244.2.3"), sl["default/web"][1]}
		changes := map[string]*nftables.Unit{"default/lb": nil}
		changes["default/web"], _ = r.Service(svcs["default/web"], sl["default/web"])
		changes["default/np"], _ = r.Service(svcs["default/np"], nil)
		if err := apply(changes); err != nil {
			return err
		}
		if err := compare("endpoints changed"); err != nil {
			return err
		}
		if got := nl.Stats(); got.Netlink != st.Netlink+1 || got.Fallbacks != st.Fallbacks {
			return fmt.Errorf("the change did not go over netlink: stats %+v, before %+v", got, st)
		}

		// Step 3: the affinity service dropped (its sets go: nft again).
		if err := apply(map[string]*nftables.Unit{"default/sticky": nil, "default/web": nil}); err != nil {
			return err
		}
		if err := compare("affinity service removed"); err != nil {
			return err
		}

		// Step 4: a transaction too big for one netlink batch (hundreds of
		// operations) goes through nft instead of failing.
		st = nl.Stats()
		many := map[string]*nftables.Unit{}
		for i := 0; i < 80; i++ {
			name := fmt.Sprintf("bulk-%d", i)
			many["default/"+name], _ = r.Service(service(name, fmt.Sprintf("10.96.1.%d", i+1)), []*discovery.EndpointSlice{
				slice(name, name+"-a", tcp8080, readyEP(fmt.Sprintf("10.244.6.%d", i+1), "node-a"), readyEP(fmt.Sprintf("10.244.7.%d", i+1), "node-b"))})
		}
		if err := apply(many); err != nil {
			return err
		}
		if got := nl.Stats(); got.Fallbacks != st.Fallbacks+1 || got.NFT != st.NFT+1 {
			return fmt.Errorf("a big transaction did not fall back to nft: stats %+v, before %+v", got, st)
		}
		if err := compare("big transaction"); err != nil {
			return err
		}

		// Step 5: just under the cap (40 services of 6 operations) still
		// goes over netlink, acknowledgements and all.
		st = nl.Stats()
		near := map[string]*nftables.Unit{}
		for i := 0; i < 40; i++ {
			name := fmt.Sprintf("near-%d", i)
			near["default/"+name], _ = r.Service(service(name, fmt.Sprintf("10.96.2.%d", i+1)), []*discovery.EndpointSlice{
				slice(name, name+"-a", tcp8080, readyEP(fmt.Sprintf("10.244.8.%d", i+1), "node-a"), readyEP(fmt.Sprintf("10.244.9.%d", i+1), "node-b"))})
		}
		if err := apply(near); err != nil {
			return err
		}
		if got := nl.Stats(); got.Netlink != st.Netlink+1 {
			return fmt.Errorf("a transaction under the cap did not go over netlink: stats %+v, before %+v", got, st)
		}
		return compare("transaction near the cap")
	})
}

// TestNetnsNetlinkUpdateForwards proves through the kernel that changes
// written over netlink take effect: a service without endpoints refuses
// connections; an update over netlink gives it an endpoint in a "pod"
// namespace, and connections reach it; a second one takes the endpoint
// away again and connections are refused. Both updates must have gone
// over netlink, not nft.
func TestNetnsNetlinkUpdateForwards(t *testing.T) {
	nettest.RequireRoot(t, "nft")
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2")
	}
	node, _ := nodeAndPod(t, "skiffg-nln-", "skiffg-nlp-", 78)

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
		svc := service("web", "10.91.78.10")
		empty, _ := r.Service(svc, nil)
		a := nftables.New(nft, knftables.IPv4Family, table)
		if _, err := a.FullSync(ctx, r.Base(), map[string]*nftables.Unit{"default/web": empty}); err != nil {
			return err
		}
		a.UseNetlink(nftables.NewNetlink(table, 0))
		d := net.Dialer{Timeout: 3 * time.Second}
		refused := func(step string) error {
			if _, err := d.Dial("tcp", "10.91.78.10:80"); !errors.Is(err, syscall.ECONNREFUSED) {
				return fmt.Errorf("%s: want connection refused, got %v", step, err)
			}
			return nil
		}
		if err := refused("before any endpoint"); err != nil {
			return err
		}

		withEP, _ := r.Service(svc, []*discovery.EndpointSlice{slice("web", "web-a", tcp8080, readyEP("10.90.78.2", "node-y"))})
		if _, err := a.Update(ctx, map[string]*nftables.Unit{"default/web": withEP}); err != nil {
			return fmt.Errorf("adding the endpoint: %w", err)
		}
		c, err := d.Dial("tcp", "10.91.78.10:80")
		if err != nil {
			return fmt.Errorf("connecting to the ClusterIP after the netlink update: %w", err)
		}
		b, _ := io.ReadAll(c)
		c.Close()
		if string(b) != "hello from 10.90.78.2:8080" {
			return fmt.Errorf("ClusterIP answered %q", b)
		}

		if _, err := a.Update(ctx, map[string]*nftables.Unit{"default/web": empty}); err != nil {
			return fmt.Errorf("removing the endpoint: %w", err)
		}
		if err := refused("after the endpoint went"); err != nil {
			return err
		}
		if st := a.Stats(); st.Netlink != 2 || st.NFT != 1 || st.Fallbacks != 0 { // NFT: the full sync
			return fmt.Errorf("updates did not both go over netlink: %+v", st)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
