package garbagecollector

import (
	"slices"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// objectRef identifies one object in the graph.
type objectRef struct {
	APIVersion string
	Kind       string
	Namespace  string
	Name       string
	UID        types.UID
}

func (r objectRef) String() string {
	return r.APIVersion + "/" + r.Kind + ", " + r.Namespace + "/" + r.Name + ", uid " + string(r.UID)
}

// node is one object (or, when virtual, an owner only known from someone's
// ownerReference). Fields are guarded by graph.mu.
type node struct {
	identity           objectRef
	owners             []metav1.OwnerReference
	dependents         map[*node]struct{}
	virtual            bool
	beingDeleted       bool
	deletingDependents bool
}

type eventType int

const (
	addEvent eventType = iota
	updateEvent
	deleteEvent
)

// event is an informer notification, or a virtual delete produced by a
// worker that verified an owner does not exist.
type event struct {
	typ     eventType
	virtual bool
	gvk     schema.GroupVersionKind
	obj     *metav1.PartialObjectMetadata
}

// graph is the owner -> dependents graph keyed by UID. Only processEvent
// mutates it, from a single goroutine; workers read it under the read lock.
// It performs no I/O: its output is nodes handed to the enqueue callbacks.
type graph struct {
	mu    sync.RWMutex
	nodes map[types.UID]*node

	attemptToDelete func(*node)
	attemptToOrphan func(*node)
	// markAbsent records an owner known to be gone, sparing workers a GET.
	markAbsent func(types.UID)
}

func newGraph(toDelete, toOrphan func(*node), markAbsent func(types.UID)) *graph {
	return &graph{nodes: map[types.UID]*node{}, attemptToDelete: toDelete, attemptToOrphan: toOrphan, markAbsent: markAbsent}
}

func hasFinalizer(o metav1.Object, f string) bool { return slices.Contains(o.GetFinalizers(), f) }

func refFromEvent(ev *event) objectRef {
	return objectRef{
		APIVersion: ev.gvk.GroupVersion().String(), Kind: ev.gvk.Kind,
		Namespace: ev.obj.Namespace, Name: ev.obj.Name, UID: ev.obj.UID,
	}
}

func (g *graph) get(uid types.UID) *node {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.nodes[uid]
}

// processEvent applies one change to the graph and enqueues the nodes whose
// garbage collection state it may have changed.
func (g *graph) processEvent(ev *event) {
	g.mu.Lock()
	var toDelete, toOrphan []*node
	defer func() {
		g.mu.Unlock()
		for _, n := range toDelete {
			g.attemptToDelete(n)
		}
		for _, n := range toOrphan {
			g.attemptToOrphan(n)
		}
	}()
	uid := ev.obj.UID
	existing := g.nodes[uid]

	if ev.typ == deleteEvent {
		if existing == nil || (ev.virtual && !existing.virtual) {
			return // unknown, or observed for real since the worker looked
		}
		g.removeLocked(existing)
		if len(existing.dependents) > 0 {
			g.markAbsent(uid)
		}
		for d := range existing.dependents {
			toDelete = append(toDelete, d) // now dangling
		}
		for _, ref := range existing.owners {
			if o := g.nodes[ref.UID]; o != nil && o.deletingDependents {
				toDelete = append(toDelete, o) // may be able to drop its finalizer
			}
		}
		return
	}

	obj := ev.obj
	if existing == nil {
		n := &node{identity: refFromEvent(ev), dependents: map[*node]struct{}{}}
		g.nodes[uid] = n
		toDelete = append(toDelete, g.linkOwnersLocked(n, obj.OwnerReferences)...)
		n.owners = slices.Clone(obj.OwnerReferences)
		existing = n
	} else {
		if existing.virtual {
			existing.virtual = false
		}
		existing.identity = refFromEvent(ev)
		added, removed, changed := diffOwners(existing.owners, obj.OwnerReferences)
		toDelete = append(toDelete, g.linkOwnersLocked(existing, added)...)
		for _, ref := range removed {
			if o := g.nodes[ref.UID]; o != nil {
				delete(o.dependents, existing)
				if o.deletingDependents {
					toDelete = append(toDelete, o)
				}
			}
		}
		for _, ref := range changed {
			if o := g.nodes[ref.UID]; o != nil && o.deletingDependents {
				toDelete = append(toDelete, o) // blockOwnerDeletion may have been dropped
			}
		}
		existing.owners = slices.Clone(obj.OwnerReferences)
	}

	// Transitions driven by the owner's own deletion state.
	beingDeleted := obj.DeletionTimestamp != nil
	existing.beingDeleted = beingDeleted
	if beingDeleted && hasFinalizer(obj, metav1.FinalizerOrphanDependents) {
		toOrphan = append(toOrphan, existing)
	}
	if beingDeleted && hasFinalizer(obj, metav1.FinalizerDeleteDependents) {
		if !existing.deletingDependents {
			existing.deletingDependents = true
			for d := range existing.dependents {
				toDelete = append(toDelete, d)
			}
		}
		toDelete = append(toDelete, existing)
	} else {
		existing.deletingDependents = false
	}
}

// linkOwnersLocked records n as a dependent of each owner, creating virtual
// nodes for owners not seen yet; those are returned so a worker verifies them.
func (g *graph) linkOwnersLocked(n *node, refs []metav1.OwnerReference) []*node {
	var unverified []*node
	for _, ref := range refs {
		o := g.nodes[ref.UID]
		if o == nil {
			// The owner's namespace is unknown; a namespaced owner can only
			// live in its dependent's namespace, so that is what we verify.
			o = &node{
				identity: objectRef{
					APIVersion: ref.APIVersion, Kind: ref.Kind, Name: ref.Name, UID: ref.UID,
					Namespace: n.identity.Namespace,
				},
				dependents: map[*node]struct{}{},
				virtual:    true,
			}
			g.nodes[ref.UID] = o
			unverified = append(unverified, o)
		}
		o.dependents[n] = struct{}{}
	}
	return unverified
}

func (g *graph) removeLocked(n *node) {
	delete(g.nodes, n.identity.UID)
	for _, ref := range n.owners {
		if o := g.nodes[ref.UID]; o != nil {
			delete(o.dependents, n)
		}
	}
}

// diffOwners compares owner references by UID.
func diffOwners(old, cur []metav1.OwnerReference) (added, removed, changed []metav1.OwnerReference) {
	byUID := func(refs []metav1.OwnerReference) map[types.UID]metav1.OwnerReference {
		m := make(map[types.UID]metav1.OwnerReference, len(refs))
		for _, r := range refs {
			m[r.UID] = r
		}
		return m
	}
	o, c := byUID(old), byUID(cur)
	for uid, r := range c {
		prev, ok := o[uid]
		if !ok {
			added = append(added, r)
		} else if blocks(prev) != blocks(r) {
			changed = append(changed, r)
		}
	}
	for uid, r := range o {
		if _, ok := c[uid]; !ok {
			removed = append(removed, r)
		}
	}
	return added, removed, changed
}

func blocks(r metav1.OwnerReference) bool {
	return r.BlockOwnerDeletion != nil && *r.BlockOwnerDeletion
}

// snapshot copies what a worker needs to know about n.
type snapshot struct {
	identity           objectRef
	virtual            bool
	deletingDependents bool
	dependents         []*node
	// blocking are dependents whose reference to n has blockOwnerDeletion.
	blocking []*node
}

func (g *graph) snapshot(n *node) snapshot {
	g.mu.RLock()
	defer g.mu.RUnlock()
	s := snapshot{identity: n.identity, virtual: n.virtual, deletingDependents: n.deletingDependents}
	for d := range n.dependents {
		s.dependents = append(s.dependents, d)
		for _, ref := range d.owners {
			if ref.UID == n.identity.UID && blocks(ref) {
				s.blocking = append(s.blocking, d)
			}
		}
	}
	return s
}
