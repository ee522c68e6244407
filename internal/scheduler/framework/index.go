package framework

import (
	"sort"
	"strconv"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/util/sets"
)

// TermKind names the existing pods' affinity terms the Index aggregates.
type TermKind int

// Kinds of existing pods' terms.
const (
	ExistingRequiredAntiAffinity TermKind = iota
	ExistingRequiredAffinity
	ExistingPreferredAffinity
	ExistingPreferredAntiAffinity
	numTermKinds
)

// maxCounters bounds the domain counters the Index keeps; beyond it the
// least recently used half is dropped (they are rebuilt on demand).
const maxCounters = 4096

type labelKV struct{ key, value string }

// indexedPod is an indexed pod's current PodInfo and location.
type indexedPod struct {
	pi  *PodInfo
	loc podLoc
}

// podLoc is where an indexed pod sits: its node, that node's labels at
// indexing time (node objects are immutable, so the map is stable) and the
// snapshot's NodeInfo for it (stable while the node is in the snapshot).
type podLoc struct {
	node   string
	labels map[string]string
	ni     *NodeInfo
}

// counter keeps, per value of one topology key, how many indexed pods a
// predicate selects. It is created on the first request and then kept up
// to date on every pod add/remove, so a scheduling cycle reads it in
// O(domains) instead of scanning every pod.
type counter struct {
	match       func(*v1.Pod) bool
	topologyKey string
	kv          labelKV
	indexed     bool
	domains     map[string]int64
	// bySlot replaces domains for the nodeInfoTopology pseudo key: counts
	// indexed by the nodes' index slots (NodeInfo.indexSlot).
	bySlot   []int64
	perNode  bool
	lastUsed uint64
}

// termGroup aggregates identical terms of existing pods: per value of the
// term's topology key, how many such terms sit on nodes in that domain.
type termGroup struct {
	key     string
	kind    TermKind
	term    AffinityTerm
	weight  int32
	kv      labelKV
	indexed bool
	terms   int
	domains map[string]int64
}

// Index holds cluster-wide aggregates over the pods of a Snapshot's nodes
// (only nodes with a Node object count, like NodeInfoList): pods by
// label, nodes per topology domain, existing pods' (anti-)affinity terms
// grouped and counted per domain, and on-demand per-domain counters of
// pods matching a selector. The Snapshot keeps it current incrementally
// (SetNodeInfo, DeleteNodeInfo, AddPod), so PreFilter/PreScore of
// InterPodAffinity and PodTopologySpread cost O(matching domains), not
// O(pods).
//
// Like the Snapshot, an Index belongs to the scheduling goroutine; maps it
// returns are read-only and valid until the snapshot next changes.
type Index struct {
	numNodes    int
	domainNodes map[string]map[string]int
	// nextSlot and freeSlots hand out NodeInfo.indexSlot (1-based; 0 is
	// none), so per-node counters are slices, not maps.
	nextSlot  int32
	freeSlots []int32
	// keyNodes counts, per label key, the nodes carrying it (the sum of
	// domainNodes[key], kept so NodesWithKey is O(1) and not O(domains):
	// a hostname key has one domain per node).
	keyNodes map[string]int
	// pods and byLabel key pods by their PodInfo's identity (see
	// PodInfo.ident), which an in-place replacement keeps: rekeying then
	// rewrites one pods entry instead of the pod's entries in every label
	// set (the sets of a 10,000-pod ReplicaSet's labels are large maps).
	pods    map[*podIdent]indexedPod
	byLabel map[labelKV]map[*podIdent]struct{}

	counters        map[string]*counter
	countersByLabel map[labelKV][]*counter
	countersAll     []*counter
	tick            uint64

	groups        map[string]*termGroup
	groupsByLabel [numTermKinds]map[labelKV][]*termGroup
	groupsAll     [numTermKinds][]*termGroup
	groupCount    [numTermKinds]int
}

func newIndex() *Index {
	ix := &Index{
		domainNodes:     map[string]map[string]int{},
		keyNodes:        map[string]int{},
		pods:            map[*podIdent]indexedPod{},
		byLabel:         map[labelKV]map[*podIdent]struct{}{},
		counters:        map[string]*counter{},
		countersByLabel: map[labelKV][]*counter{},
		groups:          map[string]*termGroup{},
	}
	for k := range ix.groupsByLabel {
		ix.groupsByLabel[k] = map[labelKV][]*termGroup{}
	}
	return ix
}

func buildIndex(nodes []*NodeInfo) *Index {
	ix := newIndex()
	for _, ni := range nodes {
		ix.addNode(ni, ni.Node(), ni.Pods)
	}
	return ix
}

// indexKey picks one requirement of sel every selected pod must satisfy
// with a single value (k=v, k==v, k in (v)), so candidates can be looked
// up by that label instead of scanning all pods.
func indexKey(sel labels.Selector) (labelKV, bool) {
	if sel == nil {
		return labelKV{}, false
	}
	reqs, selectable := sel.Requirements()
	if !selectable {
		return labelKV{}, false
	}
	for _, r := range reqs {
		switch r.Operator() {
		case selection.Equals, selection.DoubleEquals, selection.In:
			if vals := r.Values(); vals.Len() == 1 {
				return labelKV{r.Key(), vals.UnsortedList()[0]}, true
			}
		}
	}
	return labelKV{}, false
}

func (ix *Index) addNode(ni *NodeInfo, node *v1.Node, pods []*PodInfo) {
	if node == nil {
		return
	}
	ix.numNodes++
	if ni != nil && ni.indexSlot == 0 {
		if n := len(ix.freeSlots); n > 0 {
			ni.indexSlot, ix.freeSlots = ix.freeSlots[n-1], ix.freeSlots[:n-1]
		} else {
			ix.nextSlot++
			ni.indexSlot = ix.nextSlot
		}
	}
	for k, v := range node.Labels {
		ix.keyNodes[k]++
		m := ix.domainNodes[k]
		if m == nil {
			m = map[string]int{}
			ix.domainNodes[k] = m
		}
		m[v]++
	}
	loc := podLoc{node: node.Name, labels: node.Labels, ni: ni}
	for _, pi := range pods {
		ix.addPod(pi, loc, 1)
	}
}

func (ix *Index) removeNode(ni *NodeInfo, node *v1.Node, pods []*PodInfo) {
	if node == nil {
		return
	}
	ix.numNodes--
	for k, v := range node.Labels {
		if ix.keyNodes[k]--; ix.keyNodes[k] <= 0 {
			delete(ix.keyNodes, k)
		}
		m := ix.domainNodes[k]
		if m[v]--; m[v] <= 0 {
			delete(m, v)
			if len(m) == 0 {
				delete(ix.domainNodes, k)
			}
		}
	}
	loc := podLoc{node: node.Name, labels: node.Labels, ni: ni}
	for _, pi := range pods {
		ix.addPod(pi, loc, -1)
	}
	// The pods are uncounted from the slot: it can go to another node.
	if ni != nil && ni.indexSlot != 0 {
		ix.freeSlots = append(ix.freeSlots, ni.indexSlot)
		ni.indexSlot = 0
	}
}

// replaceNode moves the index from (oldNode, oldPods) to (newNode,
// newPods), both of the snapshot's NodeInfo ni. With unchanged node labels only the pods that differ (by
// PodInfo identity; PodInfos are immutable) are visited.
func (ix *Index) replaceNode(ni *NodeInfo, oldNode *v1.Node, oldPods []*PodInfo, newNode *v1.Node, newPods []*PodInfo) {
	if oldNode == nil || newNode == nil || (oldNode != newNode && !equalStringMaps(oldNode.Labels, newNode.Labels)) {
		ix.removeNode(ni, oldNode, oldPods)
		ix.addNode(ni, newNode, newPods)
		return
	}
	// Lists change by appends and removals: skip the common prefix, then
	// diff the (usually short) tails.
	p := 0
	for p < len(oldPods) && p < len(newPods) && oldPods[p] == newPods[p] {
		p++
	}
	oldTail, newTail := oldPods[p:], newPods[p:]
	if len(oldTail) == 0 && len(newTail) == 0 {
		return
	}
	if ix.rekeyReplaced(oldTail, newTail) {
		return
	}
	loc := podLoc{node: newNode.Name, labels: newNode.Labels, ni: ni}
	in := make(map[*PodInfo]bool, len(newTail))
	for _, pi := range newTail {
		in[pi] = true
	}
	for _, pi := range oldTail {
		if in[pi] {
			delete(in, pi)
			continue
		}
		ix.addPod(pi, loc, -1)
	}
	for _, pi := range newTail {
		if in[pi] {
			ix.addPod(pi, loc, 1)
		}
	}
}

// rekeyReplaced handles lists of equal length whose differing entries are
// PodInfos replaced in place by equivalent ones for the same pod, which
// keep its identity (NodeInfo.ReplacePodInfo: an assigned pod's status
// write or binding confirmation): every label set, counter and term group
// stays as it is, only the pod's entry points to the new PodInfo. It
// reports false, changing nothing, when some difference is anything else.
func (ix *Index) rekeyReplaced(oldPods, newPods []*PodInfo) bool {
	if len(oldPods) != len(newPods) {
		return false
	}
	for i, o := range oldPods {
		n := newPods[i]
		if o == n {
			continue
		}
		// A shared identity means ReplacePodInfo found the two
		// Equivalent (labels, namespace, deletion, no terms).
		if o.ident != n.ident {
			return false
		}
		if e, ok := ix.pods[o.ident]; !ok || e.pi != o {
			return false
		}
	}
	for i, o := range oldPods {
		if n := newPods[i]; o != n {
			e := ix.pods[o.ident]
			e.pi = n
			ix.pods[o.ident] = e
		}
	}
	return true
}

func equalStringMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

func (ix *Index) addPod(pi *PodInfo, loc podLoc, sign int64) {
	id := pi.ident
	if sign > 0 {
		ix.pods[id] = indexedPod{pi, loc}
	} else {
		delete(ix.pods, id)
	}
	for k, v := range pi.Pod.Labels {
		kv := labelKV{k, v}
		m := ix.byLabel[kv]
		if sign > 0 {
			if m == nil {
				m = map[*podIdent]struct{}{}
				ix.byLabel[kv] = m
			}
			m[id] = struct{}{}
		} else if m != nil {
			delete(m, id)
			if len(m) == 0 {
				delete(ix.byLabel, kv)
			}
		}
		for _, c := range ix.countersByLabel[kv] {
			c.count(pi.Pod, loc, sign)
		}
	}
	for _, c := range ix.countersAll {
		c.count(pi.Pod, loc, sign)
	}
	if !pi.HasAffinity() {
		return
	}
	for i := range pi.RequiredAntiAffinityTerms {
		ix.addTerm(ExistingRequiredAntiAffinity, &pi.RequiredAntiAffinityTerms[i], 0, loc, sign)
	}
	for i := range pi.RequiredAffinityTerms {
		ix.addTerm(ExistingRequiredAffinity, &pi.RequiredAffinityTerms[i], 0, loc, sign)
	}
	for i := range pi.PreferredAffinityTerms {
		t := &pi.PreferredAffinityTerms[i]
		ix.addTerm(ExistingPreferredAffinity, &t.AffinityTerm, t.Weight, loc, sign)
	}
	for i := range pi.PreferredAntiAffinityTerms {
		t := &pi.PreferredAntiAffinityTerms[i]
		ix.addTerm(ExistingPreferredAntiAffinity, &t.AffinityTerm, t.Weight, loc, sign)
	}
}

// NodeNameTopology is a pseudo topology key for DomainCounts: one domain
// per node, keyed by node name (whatever its hostname label says).
const NodeNameTopology = "\x00metadata.name"

// SelectorKey renders sel for counter keys; unlike String it tells
// labels.Nothing() (a nil LabelSelector) from labels.Everything().
func SelectorKey(sel labels.Selector) string {
	if sel == nil {
		return "\x00nil"
	}
	if _, selectable := sel.Requirements(); !selectable {
		return "\x00nothing"
	}
	return sel.String()
}

// nodeInfoTopology is the pseudo topology key of NodeCounts' counters.
const nodeInfoTopology = "\x00nodeinfo"

func (c *counter) count(pod *v1.Pod, loc podLoc, sign int64) {
	if c.perNode {
		if loc.ni == nil || !c.match(pod) {
			return
		}
		s := int(loc.ni.indexSlot)
		if s >= len(c.bySlot) {
			c.bySlot = append(c.bySlot, make([]int64, s+1-len(c.bySlot))...)
		}
		c.bySlot[s] += sign
		return
	}
	v, ok := loc.labels[c.topologyKey]
	if c.topologyKey == NodeNameTopology {
		v, ok = loc.node, true
	}
	if !ok || !c.match(pod) {
		return
	}
	if c.domains[v] += sign; c.domains[v] == 0 {
		delete(c.domains, v)
	}
}

func groupKey(kind TermKind, weight int32, t *AffinityTerm) string {
	var b strings.Builder
	b.WriteByte(byte('0' + kind))
	b.WriteByte('/')
	b.WriteString(strconv.Itoa(int(weight)))
	b.WriteByte('/')
	b.WriteString(t.Key())
	return b.String()
}

func (ix *Index) addTerm(kind TermKind, t *AffinityTerm, weight int32, loc podLoc, sign int64) {
	key := groupKey(kind, weight, t)
	g := ix.groups[key]
	if g == nil {
		if sign < 0 {
			return
		}
		g = &termGroup{key: key, kind: kind, term: *t, weight: weight, domains: map[string]int64{}}
		g.kv, g.indexed = indexKey(t.Selector)
		if g.indexed {
			ix.groupsByLabel[kind][g.kv] = append(ix.groupsByLabel[kind][g.kv], g)
		} else {
			ix.groupsAll[kind] = append(ix.groupsAll[kind], g)
		}
		ix.groups[key] = g
		ix.groupCount[kind]++
	}
	g.terms += int(sign)
	if v, ok := loc.labels[t.TopologyKey]; ok {
		if g.domains[v] += sign; g.domains[v] == 0 {
			delete(g.domains, v)
		}
	}
	if g.terms > 0 {
		return
	}
	delete(ix.groups, key)
	ix.groupCount[kind]--
	if g.indexed {
		l := removeGroup(ix.groupsByLabel[kind][g.kv], g)
		if len(l) == 0 {
			delete(ix.groupsByLabel[kind], g.kv)
		} else {
			ix.groupsByLabel[kind][g.kv] = l
		}
	} else {
		ix.groupsAll[kind] = removeGroup(ix.groupsAll[kind], g)
	}
}

func removeGroup(l []*termGroup, g *termGroup) []*termGroup {
	for i, x := range l {
		if x == g {
			l[i] = l[len(l)-1]
			l[len(l)-1] = nil
			return l[:len(l)-1]
		}
	}
	return l
}

// NumNodes is the number of indexed nodes.
func (ix *Index) NumNodes() int { return ix.numNodes }

// DomainNodes returns, per value of label key, how many nodes carry it.
func (ix *Index) DomainNodes(key string) map[string]int { return ix.domainNodes[key] }

// NodesWithKey is the number of nodes that carry label key.
func (ix *Index) NodesWithKey(key string) int { return ix.keyNodes[key] }

// HasExistingTerms reports whether any existing pod has a term of kind.
func (ix *Index) HasExistingTerms(kind TermKind) bool { return ix.groupCount[kind] > 0 }

// ForEachMatchingExistingTerm calls fn for every group of identical
// existing terms of kind that selects pod (whose namespace has nsLabels),
// with the term's weight (0 for required terms) and its per-domain term
// counts over the term's topology key.
func (ix *Index) ForEachMatchingExistingTerm(kind TermKind, pod *v1.Pod, nsLabels labels.Set, fn func(t *AffinityTerm, weight int32, domains map[string]int64)) {
	if ix.groupCount[kind] == 0 {
		return
	}
	visit := func(g *termGroup) {
		if len(g.domains) > 0 && g.term.Matches(pod, nsLabels) {
			fn(&g.term, g.weight, g.domains)
		}
	}
	if byLabel := ix.groupsByLabel[kind]; len(byLabel) > 0 {
		for k, v := range pod.Labels {
			for _, g := range byLabel[labelKV{k, v}] {
				visit(g)
			}
		}
	}
	for _, g := range ix.groupsAll[kind] {
		visit(g)
	}
}

// DomainCounts returns, per value of topologyKey, how many indexed pods
// match (match must imply sel, which is used to look candidates up). key
// identifies the predicate: the same key must always mean the same
// predicate. match may read only the pod's namespace, labels and deletion
// timestamp (a PodInfo replaced by one equal in these is not recounted).
// The counter is kept up to date from then on.
func (ix *Index) DomainCounts(key, topologyKey string, sel labels.Selector, match func(*v1.Pod) bool) map[string]int64 {
	return ix.counter(key, topologyKey, sel, match).domains
}

// NodeCounts is DomainCounts with one domain per node: a Score reading it
// per node indexes a slice by the NodeInfo's slot, instead of hashing the
// node's name, whose bytes are rarely in the CPU cache.
func (ix *Index) NodeCounts(key string, sel labels.Selector, match func(*v1.Pod) bool) NodeCounts {
	return NodeCounts{ix.counter(key, nodeInfoTopology, sel, match).bySlot}
}

// NodeCounts holds per-node counts; read-only, valid until the snapshot
// next changes.
type NodeCounts struct{ bySlot []int64 }

// Of returns the count on ni, one of the snapshot's NodeInfos (those
// NodeInfoList holds; a copy of one has no slot and counts 0).
func (c NodeCounts) Of(ni *NodeInfo) int64 {
	if s := int(ni.indexSlot); s > 0 && s < len(c.bySlot) {
		return c.bySlot[s]
	}
	return 0
}

func (ix *Index) counter(key, topologyKey string, sel labels.Selector, match func(*v1.Pod) bool) *counter {
	ix.tick++
	key = topologyKey + "\x00" + key
	if c := ix.counters[key]; c != nil {
		c.lastUsed = ix.tick
		return c
	}
	c := &counter{match: match, topologyKey: topologyKey, lastUsed: ix.tick}
	if topologyKey == nodeInfoTopology {
		c.perNode = true
	} else {
		c.domains = map[string]int64{}
	}
	c.kv, c.indexed = indexKey(sel)
	ix.forEachCandidate(c.kv, c.indexed, func(pi *PodInfo, loc podLoc) { c.count(pi.Pod, loc, 1) })
	if len(ix.counters) >= maxCounters {
		ix.evictCounters()
	}
	ix.counters[key] = c
	if c.indexed {
		ix.countersByLabel[c.kv] = append(ix.countersByLabel[c.kv], c)
	} else {
		ix.countersAll = append(ix.countersAll, c)
	}
	return c
}

func (ix *Index) evictCounters() {
	type kc struct {
		k string
		c *counter
	}
	all := make([]kc, 0, len(ix.counters))
	for k, c := range ix.counters {
		all = append(all, kc{k, c})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].c.lastUsed > all[j].c.lastUsed })
	ix.counters = map[string]*counter{}
	ix.countersByLabel = map[labelKV][]*counter{}
	ix.countersAll = nil
	for _, x := range all[:len(all)/2] {
		ix.counters[x.k] = x.c
		if x.c.indexed {
			ix.countersByLabel[x.c.kv] = append(ix.countersByLabel[x.c.kv], x.c)
		} else {
			ix.countersAll = append(ix.countersAll, x.c)
		}
	}
}

func (ix *Index) forEachCandidate(kv labelKV, indexed bool, fn func(pi *PodInfo, loc podLoc)) {
	if indexed {
		for id := range ix.byLabel[kv] {
			e := ix.pods[id]
			fn(e.pi, e.loc)
		}
		return
	}
	for _, e := range ix.pods {
		fn(e.pi, e.loc)
	}
}

// ForEachCandidatePod calls fn with every indexed pod that may match sel
// (a superset: callers still match) and its node's labels.
func (ix *Index) ForEachCandidatePod(sel labels.Selector, fn func(pi *PodInfo, nodeLabels map[string]string)) {
	kv, ok := indexKey(sel)
	ix.forEachCandidate(kv, ok, func(pi *PodInfo, loc podLoc) { fn(pi, loc.labels) })
}

// NamespacesKey renders a namespace set canonically, for counter keys.
func NamespacesKey(ns sets.Set[string]) string {
	return strings.Join(sets.List(ns), ",")
}
