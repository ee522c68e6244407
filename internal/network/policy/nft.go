package policy

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	"sigs.k8s.io/knftables"
)

// DefaultTable is the nftables table (family ip) the policy enforcer owns.
const DefaultTable = "skiff-policy"

// Applier writes Rulesets to one table. It remembers the last one applied
// so that the next costs only the difference. Not safe for concurrent use.
type Applier struct {
	nft     knftables.Interface
	table   string
	applied *Ruleset // nil: the kernel state is unknown, full sync next
}

// NewApplier returns an applier for the table nft was created for (family
// ip).
func NewApplier(nft knftables.Interface, table string) *Applier {
	return &Applier{nft: nft, table: table}
}

// NeedsFullSync reports whether the next Apply rebuilds the table: before
// the first one and after a failed transaction.
func (a *Applier) NeedsFullSync() bool { return a.applied == nil }

// Apply makes the table hold rs: with full (or when the applier's record
// cannot be trusted) by rebuilding the table atomically, otherwise by
// writing only the difference to the last applied Ruleset. It returns the
// number of operations written and whether that was a full sync.
func (a *Applier) Apply(ctx context.Context, rs *Ruleset, full bool) (ops int, wasFull bool, err error) {
	tx := a.nft.NewTransaction()
	full = full || a.applied == nil
	if full {
		writeFull(tx, rs)
	} else {
		WriteDiff(tx, a.applied, rs)
	}
	n := tx.NumOperations()
	if n == 0 {
		return 0, false, nil
	}
	if err := a.nft.Run(ctx, tx); err != nil {
		a.applied = nil
		kind := "incremental"
		if full {
			kind = "full"
		}
		return n, full, fmt.Errorf("running %s policy transaction (%d operations) on table %s: %w", kind, n, a.table, err)
	}
	a.applied = rs
	return n, full, nil
}

// Delete removes the table (the agent's policy enforcement switched off).
func (a *Applier) Delete(ctx context.Context) error {
	tx := a.nft.NewTransaction()
	tx.Add(&knftables.Table{})
	tx.Delete(&knftables.Table{})
	if err := a.nft.Run(ctx, tx); err != nil {
		return fmt.Errorf("deleting table %s: %w", a.table, err)
	}
	a.applied = nil
	return nil
}

// writeFull deletes the table and builds it again in the same transaction:
// nft applies it atomically, so no packet sees it missing; conntrack keeps
// established connections, which the first rule accepts.
func writeFull(tx *knftables.Transaction, rs *Ruleset) {
	tx.Add(&knftables.Table{})
	tx.Delete(&knftables.Table{})
	tx.Add(&knftables.Table{Comment: knftables.PtrTo("skiff NetworkPolicy enforcement")})
	for _, m := range []string{IngressMap, EgressMap} {
		tx.Add(&knftables.Map{Name: m, Type: "ipv4_addr : verdict"})
	}
	tx.Add(&knftables.Chain{Name: ForwardChain, Type: knftables.PtrTo(knftables.FilterType),
		Hook: knftables.PtrTo(knftables.ForwardHook), Priority: knftables.PtrTo(knftables.FilterPriority)})
	for _, r := range BaseRules() {
		tx.Add(&knftables.Rule{Chain: ForwardChain, Rule: r})
	}
	WriteDiff(tx, &Ruleset{}, rs)
}

// WriteDiff writes into tx the operations that turn the table holding old
// into one holding new, in an order nft accepts: sets and chains exist
// before anything refers to them, and are deleted only once nothing does.
// It is pure: tests call it directly.
func WriteDiff(tx *knftables.Transaction, old, new *Ruleset) {
	// 1. New sets and chains.
	for _, name := range sortedKeys(new.Sets) {
		if _, ok := old.Sets[name]; !ok {
			tx.Add(&knftables.Set{Name: name, Type: new.Sets[name].Type})
		}
	}
	for _, name := range sortedKeys(new.Chains) {
		if _, ok := old.Chains[name]; !ok {
			tx.Add(&knftables.Chain{Name: name})
		}
	}
	// 2. Set elements.
	for _, name := range sortedKeys(new.Sets) {
		var oldEls map[string]bool
		if o := old.Sets[name]; o != nil {
			oldEls = o.Elements
		}
		newEls := new.Sets[name].Elements
		// Sets can hold every pod of the cluster: collect the difference
		// first and sort only that.
		var del, add []string
		for e := range oldEls {
			if !newEls[e] {
				del = append(del, e)
			}
		}
		for e := range newEls {
			if !oldEls[e] {
				add = append(add, e)
			}
		}
		sort.Strings(del)
		sort.Strings(add)
		for _, e := range del {
			tx.Delete(&knftables.Element{Set: name, Key: strings.Split(e, " . ")})
		}
		for _, e := range add {
			tx.Add(&knftables.Element{Set: name, Key: strings.Split(e, " . ")})
		}
	}
	// 3. Chains whose rules changed.
	for _, name := range sortedKeys(new.Chains) {
		o, ok := old.Chains[name]
		if ok && slices.Equal(o, new.Chains[name]) {
			continue
		}
		if ok {
			tx.Flush(&knftables.Chain{Name: name})
		}
		for _, r := range new.Chains[name] {
			tx.Add(&knftables.Rule{Chain: name, Rule: r})
		}
	}
	// 4. Map elements: pods entering or leaving isolation.
	for _, m := range []struct {
		name     string
		old, new map[string]string
	}{{IngressMap, old.Ingress, new.Ingress}, {EgressMap, old.Egress, new.Egress}} {
		for _, ip := range sortedKeys(m.old) {
			if c, ok := m.new[ip]; !ok || c != m.old[ip] {
				tx.Delete(&knftables.Element{Map: m.name, Key: []string{ip}})
			}
		}
		for _, ip := range sortedKeys(m.new) {
			if c, ok := m.old[ip]; !ok || c != m.new[ip] {
				tx.Add(&knftables.Element{Map: m.name, Key: []string{ip}, Value: []string{"jump " + m.new[ip]}})
			}
		}
	}
	// 5. Chains and sets no longer wanted: flush all chains first, as they
	// may refer to the sets.
	var gone []string
	for _, name := range sortedKeys(old.Chains) {
		if _, ok := new.Chains[name]; !ok {
			gone = append(gone, name)
		}
	}
	for _, name := range gone {
		tx.Flush(&knftables.Chain{Name: name})
	}
	for _, name := range gone {
		tx.Delete(&knftables.Chain{Name: name})
	}
	for _, name := range sortedKeys(old.Sets) {
		if _, ok := new.Sets[name]; !ok {
			tx.Delete(&knftables.Set{Name: name})
		}
	}
}

// Render is the table's content as `nft -f` input after a full sync of rs,
// sorted: golden files and debugging.
func Render(rs *Ruleset) (string, error) {
	fake := knftables.NewFake(knftables.IPv4Family, DefaultTable)
	if _, _, err := NewApplier(fake, DefaultTable).Apply(context.Background(), rs, true); err != nil {
		return "", err
	}
	return fake.Dump(), nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
