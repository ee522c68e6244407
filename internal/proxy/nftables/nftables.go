// Package nftables applies a desired nftables state to one table with
// knftables transactions, and keeps what it applied so that later changes
// cost only what they touch.
//
// The desired state is split into a Base (the table, its maps and base
// chains: written on a full sync only) and Units (the objects one owner, a
// Kubernetes Service, adds: chains, affinity sets and elements of the base
// maps). Update diffs a unit against the one last applied and writes only
// the difference: added chains, flushed-and-rewritten chains whose rules
// changed, element deletes and adds, and finally flushes and deletes of
// chains and sets the unit no longer has, once nothing refers to them.
// FullSync rewrites everything, flushes the base maps and removes objects
// found in the kernel that the desired state does not have (drift).
//
// The package knows nothing about Kubernetes; it is the I/O edge of the
// proxy. A failed transaction leaves the kernel unchanged (nft transactions
// are atomic), but the applier then insists on a full sync before the next
// Update, because its record may no longer match the kernel.
package nftables

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"sigs.k8s.io/knftables"
)

// Chain is one chain and its rules, in order. Hook fields are set on base
// chains only.
type Chain struct {
	Name     string
	Type     knftables.BaseChainType
	Hook     knftables.BaseChainHook
	Priority knftables.BaseChainPriority
	Rules    []string
}

func (c *Chain) equalRules(o *Chain) bool { return slices.Equal(c.Rules, o.Rules) }

// Set is a named set (Map false) or verdict map (Map true).
type Set struct {
	Name    string
	Map     bool
	Type    string
	Flags   []knftables.SetFlag
	Timeout time.Duration
}

func (s *Set) equal(o *Set) bool {
	return s.Name == o.Name && s.Map == o.Map && s.Type == o.Type &&
		slices.Equal(s.Flags, o.Flags) && s.Timeout == o.Timeout
}

// Element is one element of a base map, keyed (Key) to a verdict (Value).
type Element struct {
	Map   string
	Key   []string
	Value []string
}

// SharedElement is an element of a base set that several units may want
// (an endpoint IP used by two services): the applier counts references and
// adds it on the first, deletes it with the last.
type SharedElement struct {
	Set string
	Key []string
}

func (e *SharedElement) id() string { return e.Set + "\x00" + strings.Join(e.Key, " . ") }

func (e *Element) id() string { return e.Map + "\x00" + strings.Join(e.Key, " . ") }

// Unit is the set of objects one owner contributes. Chains, sets and
// elements are referred to by name, so names must be unique in the table.
type Unit struct {
	Chains   []Chain
	Sets     []Set
	Elements []Element
	Shared   []SharedElement
}

// Base is the skeleton every full sync writes first.
type Base struct {
	Sets   []Set // maps and sets shared by all units
	Chains []Chain
}

// Applier applies units to one table. It is not safe for concurrent use.
type Applier struct {
	nft    knftables.Interface
	family knftables.Family
	table  string

	applied  map[string]*Unit
	refs     map[string]int // SharedElement id → units holding it
	needFull bool

	netlink *Netlink // if set, Update writes over netlink where it can
	stats   Stats
}

// Stats counts the applier's transactions by the path they took.
type Stats struct {
	Netlink, NFT, Fallbacks int // Fallbacks: Updates netlink could not express
}

// Stats returns the transaction counts so far.
func (a *Applier) Stats() Stats { return a.stats }

// UseNetlink makes Update write over netlink instead of running nft;
// transactions it cannot express still go through nft. Full syncs always
// use nft.
func (a *Applier) UseNetlink(n *Netlink) { a.netlink = n }

// New returns an applier for the table nft was created for.
func New(nft knftables.Interface, family knftables.Family, table string) *Applier {
	return &Applier{nft: nft, family: family, table: table, applied: map[string]*Unit{}, refs: map[string]int{}, needFull: true}
}

// NeedsFullSync reports whether Update would be refused: before the first
// FullSync and after a failed transaction.
func (a *Applier) NeedsFullSync() bool { return a.needFull }

// Applied returns the unit last applied for key, or nil.
func (a *Applier) Applied(key string) *Unit { return a.applied[key] }

// ErrNeedFullSync is returned by Update when the applier's record of the
// kernel cannot be trusted.
var ErrNeedFullSync = errors.New("full sync required")

// Update applies changes (key → new unit; a nil unit deletes the key's
// objects) as one transaction that touches only the changed units. It
// returns the number of operations written.
func (a *Applier) Update(ctx context.Context, changes map[string]*Unit) (int, error) {
	if a.needFull {
		return 0, ErrNeedFullSync
	}
	keys := sortedKeys(changes)
	refs := map[string]int{} // changed counts, committed on success
	count := func(id string) int {
		if n, ok := refs[id]; ok {
			return n
		}
		return a.refs[id]
	}
	touched := map[string]SharedElement{}
	for _, k := range keys {
		oldS, newS := sharedOf(a.applied[k]), sharedOf(changes[k])
		for id, e := range newS {
			if _, ok := oldS[id]; !ok {
				refs[id] = count(id) + 1
				touched[id] = e
			}
		}
		for id, e := range oldS {
			if _, ok := newS[id]; !ok {
				refs[id] = count(id) - 1
				touched[id] = e
			}
		}
	}
	// write puts the whole transaction into w: the units' diffs, then only
	// the net change of the shared elements since the last transaction.
	write := func(w writer) {
		for _, k := range keys {
			writeDiff(w, a.applied[k], changes[k])
		}
		for _, id := range sortedKeys(touched) {
			e := touched[id]
			switch before, after := a.refs[id], refs[id]; {
			case before == 0 && after > 0:
				w.addShared(&e)
			case before > 0 && after == 0:
				w.deleteShared(&e)
			}
		}
	}
	n, err := a.run(ctx, write)
	if err != nil {
		a.needFull = true
		return n, fmt.Errorf("running incremental transaction (%d operations): %w", n, err)
	}
	if n == 0 {
		return 0, nil
	}
	for _, k := range keys {
		if changes[k] == nil {
			delete(a.applied, k)
		} else {
			a.applied[k] = changes[k]
		}
	}
	for id, c := range refs {
		if c == 0 {
			delete(a.refs, id)
		} else {
			a.refs[id] = c
		}
	}
	return n, nil
}

// FullSync rewrites the table from base and units, removing chains, sets
// and maps that are in the kernel but not desired. Affinity sets that stay
// are not flushed, so client affinity survives a resync.
func (a *Applier) FullSync(ctx context.Context, base *Base, units map[string]*Unit) (int, error) {
	existing := map[string]map[string]bool{}
	for _, typ := range []string{"chain", "set", "map"} {
		names, err := a.nft.List(ctx, typ)
		if err != nil && !knftables.IsNotFound(err) {
			return 0, fmt.Errorf("listing %ss of table %s: %w", typ, a.table, err)
		}
		existing[typ] = map[string]bool{}
		for _, n := range names {
			existing[typ][n] = true
		}
	}
	desired := map[string]map[string]bool{"chain": {}, "set": {}, "map": {}}

	tx := a.nft.NewTransaction()
	tx.Add(&knftables.Table{Family: a.family, Name: a.table})
	for i := range base.Sets {
		s := &base.Sets[i]
		tx.Add(setObject(s))
		tx.Flush(setObject(s))
		desired[setKind(s)][s.Name] = true
	}
	addChains := func(chains []Chain) {
		for i := range chains {
			c := &chains[i]
			tx.Add(chainObject(c))
			desired["chain"][c.Name] = true
		}
	}
	writeRules := func(chains []Chain) {
		for i := range chains {
			c := &chains[i]
			if existing["chain"][c.Name] {
				tx.Flush(&knftables.Chain{Name: c.Name})
			}
			for _, r := range c.Rules {
				tx.Add(&knftables.Rule{Chain: c.Name, Rule: r})
			}
		}
	}
	keys := sortedKeys(units)
	// Sets and chains first, rules after, so a rule may refer to any of them.
	addChains(base.Chains)
	for _, k := range keys {
		u := units[k]
		for i := range u.Sets {
			tx.Add(setObject(&u.Sets[i]))
			desired[setKind(&u.Sets[i])][u.Sets[i].Name] = true
		}
		addChains(u.Chains)
	}
	writeRules(base.Chains)
	for _, k := range keys {
		u := units[k]
		writeRules(u.Chains)
		for i := range u.Elements {
			tx.Add(elementObject(&u.Elements[i]))
		}
	}
	refs := map[string]int{}
	for _, k := range keys {
		shared := sharedOf(units[k]) // a unit holds each element once
		for _, id := range sortedKeys(shared) {
			e := shared[id]
			if refs[id]++; refs[id] == 1 {
				tx.Add(&knftables.Element{Set: e.Set, Key: e.Key})
			}
		}
	}
	// Stale chains may refer to each other and to stale sets: flush them
	// all before deleting any.
	var staleChains []string
	for n := range existing["chain"] {
		if !desired["chain"][n] {
			staleChains = append(staleChains, n)
		}
	}
	sort.Strings(staleChains)
	for _, n := range staleChains {
		tx.Flush(&knftables.Chain{Name: n})
	}
	for _, n := range staleChains {
		tx.Delete(&knftables.Chain{Name: n})
	}
	for _, typ := range []string{"set", "map"} {
		for _, n := range sortedKeys(existing[typ]) {
			if desired[typ][n] {
				continue
			}
			if typ == "set" {
				tx.Delete(&knftables.Set{Name: n})
			} else {
				tx.Delete(&knftables.Map{Name: n})
			}
		}
	}
	n := tx.NumOperations()
	if err := a.nft.Run(ctx, tx); err != nil {
		a.needFull = true
		return n, fmt.Errorf("running full sync transaction (%d operations): %w", n, err)
	}
	a.stats.NFT++
	a.applied = make(map[string]*Unit, len(units))
	for k, u := range units {
		a.applied[k] = u
	}
	a.refs = refs
	a.needFull = false
	return n, nil
}

// writer receives the operations of one transaction: a knftables
// transaction (nft) or a netlink batch.
type writer interface {
	addChain(c *Chain)
	flushChain(name string)
	deleteChain(name string)
	addRule(chain, rule string)
	addSet(s *Set)
	deleteSet(s *Set)
	addElement(e *Element)
	deleteElement(e *Element)
	addShared(e *SharedElement)
	deleteShared(e *SharedElement)
}

type txWriter struct{ tx *knftables.Transaction }

func (w txWriter) addChain(c *Chain)          { w.tx.Add(chainObject(c)) }
func (w txWriter) flushChain(name string)     { w.tx.Flush(&knftables.Chain{Name: name}) }
func (w txWriter) deleteChain(name string)    { w.tx.Delete(&knftables.Chain{Name: name}) }
func (w txWriter) addRule(chain, rule string) { w.tx.Add(&knftables.Rule{Chain: chain, Rule: rule}) }
func (w txWriter) addSet(s *Set)              { w.tx.Add(setObject(s)) }
func (w txWriter) deleteSet(s *Set)           { w.tx.Delete(setObject(s)) }
func (w txWriter) addElement(e *Element)      { w.tx.Add(elementObject(e)) }
func (w txWriter) deleteElement(e *Element) {
	w.tx.Delete(&knftables.Element{Map: e.Map, Key: e.Key})
}
func (w txWriter) addShared(e *SharedElement) { w.tx.Add(&knftables.Element{Set: e.Set, Key: e.Key}) }
func (w txWriter) deleteShared(e *SharedElement) {
	w.tx.Delete(&knftables.Element{Set: e.Set, Key: e.Key})
}

// run writes one transaction with write and applies it: over netlink if
// the applier has it and the transaction is expressible, else with nft.
// It returns the number of operations (0: nothing was run).
func (a *Applier) run(ctx context.Context, write func(writer)) (int, error) {
	if a.netlink != nil {
		w, err := a.netlink.newWriter()
		if err != nil {
			return 0, err
		}
		write(w)
		switch {
		case w.err == nil && w.n == 0:
			return 0, nil
		case w.err == nil:
			if err := w.flush(); err != nil {
				return w.n, fmt.Errorf("netlink: %w", err)
			}
			a.stats.Netlink++
			return w.n, nil
		case errors.Is(w.err, errUnsupported):
			a.stats.Fallbacks++
		default:
			return w.n, w.err
		}
	}
	tx := a.nft.NewTransaction()
	write(txWriter{tx})
	n := tx.NumOperations()
	if n == 0 {
		return 0, nil
	}
	if err := a.nft.Run(ctx, tx); err != nil {
		return n, err
	}
	a.stats.NFT++
	return n, nil
}

// WriteDiff writes into tx the operations that turn old into new (either
// may be nil). It is pure: tests call it directly.
func WriteDiff(tx *knftables.Transaction, old, new *Unit) { writeDiff(txWriter{tx}, old, new) }

func writeDiff(tx writer, old, new *Unit) {
	if old == nil {
		old = &Unit{}
	}
	if new == nil {
		new = &Unit{}
	}
	oldSets := indexSets(old.Sets)
	for i := range new.Sets {
		if o, ok := oldSets[new.Sets[i].Name]; ok && !o.equal(&new.Sets[i]) {
			// A set's type or timeout cannot be changed in place and chains
			// refer to it: replace the whole unit.
			writeDiff(tx, old, nil)
			writeDiff(tx, nil, new)
			return
		}
	}
	newSets := indexSets(new.Sets)
	oldChains := indexChains(old.Chains)
	newChains := indexChains(new.Chains)

	for i := range new.Sets {
		if _, ok := oldSets[new.Sets[i].Name]; !ok {
			tx.addSet(&new.Sets[i])
		}
	}
	for i := range new.Chains {
		if _, ok := oldChains[new.Chains[i].Name]; !ok {
			tx.addChain(&new.Chains[i])
		}
	}
	for i := range new.Chains {
		c := &new.Chains[i]
		o, ok := oldChains[c.Name]
		if ok && o.equalRules(c) {
			continue
		}
		if ok {
			tx.flushChain(c.Name)
		}
		for _, r := range c.Rules {
			tx.addRule(c.Name, r)
		}
	}
	oldElems := indexElements(old.Elements)
	newElems := indexElements(new.Elements)
	for i := range old.Elements {
		e := &old.Elements[i]
		if n, ok := newElems[e.id()]; !ok || !slices.Equal(n.Value, e.Value) {
			tx.deleteElement(e)
		}
	}
	for i := range new.Elements {
		e := &new.Elements[i]
		if o, ok := oldElems[e.id()]; !ok || !slices.Equal(o.Value, e.Value) {
			tx.addElement(e)
		}
	}
	var gone []string
	for i := range old.Chains {
		if _, ok := newChains[old.Chains[i].Name]; !ok {
			gone = append(gone, old.Chains[i].Name)
		}
	}
	for _, n := range gone {
		tx.flushChain(n)
	}
	for _, n := range gone {
		tx.deleteChain(n)
	}
	for i := range old.Sets {
		if _, ok := newSets[old.Sets[i].Name]; !ok {
			tx.deleteSet(&old.Sets[i])
		}
	}
}

func setKind(s *Set) string {
	if s.Map {
		return "map"
	}
	return "set"
}

func setObject(s *Set) knftables.Object {
	var timeout *time.Duration
	if s.Timeout > 0 {
		t := s.Timeout
		timeout = &t
	}
	if s.Map {
		return &knftables.Map{Name: s.Name, Type: s.Type, Flags: s.Flags, Timeout: timeout}
	}
	return &knftables.Set{Name: s.Name, Type: s.Type, Flags: s.Flags, Timeout: timeout}
}

func chainObject(c *Chain) *knftables.Chain {
	ch := &knftables.Chain{Name: c.Name}
	if c.Hook != "" {
		ch.Type = knftables.PtrTo(c.Type)
		ch.Hook = knftables.PtrTo(c.Hook)
		ch.Priority = knftables.PtrTo(c.Priority)
	}
	return ch
}

func elementObject(e *Element) *knftables.Element {
	return &knftables.Element{Map: e.Map, Key: e.Key, Value: e.Value}
}

func indexSets(s []Set) map[string]*Set {
	m := make(map[string]*Set, len(s))
	for i := range s {
		m[s[i].Name] = &s[i]
	}
	return m
}

func indexChains(c []Chain) map[string]*Chain {
	m := make(map[string]*Chain, len(c))
	for i := range c {
		m[c[i].Name] = &c[i]
	}
	return m
}

func indexElements(e []Element) map[string]*Element {
	m := make(map[string]*Element, len(e))
	for i := range e {
		m[e[i].id()] = &e[i]
	}
	return m
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func sharedOf(u *Unit) map[string]SharedElement {
	m := map[string]SharedElement{}
	if u != nil {
		for _, e := range u.Shared {
			m[e.id()] = e
		}
	}
	return m
}
