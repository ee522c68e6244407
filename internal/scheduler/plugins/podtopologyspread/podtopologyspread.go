// Package podtopologyspread is the PodTopologySpread plugin.
//
// Filter enforces the pod's DoNotSchedule constraints: placing the pod in
// the node's domain must not make (matching pods in that domain) minus (the
// global minimum over eligible domains) exceed maxSkew. The minimum is 0
// while fewer than minDomains domains exist. Eligible nodes follow
// nodeAffinityPolicy (default Honor: only nodes matching the pod's required
// node affinity/selector count) and nodeTaintsPolicy (default Ignore), and
// must carry every constraint's topology key. matchLabelKeys add the pod's
// own label values to the selector.
//
// Score prefers domains with fewer matching pods for ScheduleAnyway
// constraints; nodes lacking one of the keys are not scored (0). A pod
// with no constraints at all gets the cluster default constraints
// (upstream's system defaults unless configured), whose selector is built
// from the Services, ReplicaSets, StatefulSets and ReplicationControllers
// selecting the pod. Under the system defaults, as upstream, nodes lacking
// a key are scored by the constraints whose keys they have (a cluster
// without zone labels still spreads by hostname).
//
// Counts come from the snapshot's Index: per-domain counters of pods
// matching a constraint's selector, kept current as pods come and go, so
// PreFilter/PreScore cost O(domains), not O(pods). When some nodes are not
// eligible (node affinity or taint policies Honor with a restricting pod,
// nodes lacking one of several keys), counts are taken over the eligible
// nodes' pods instead. Filter and Score are O(constraints) per node.
//
// PreScore first asks the index how many nodes carry each key. A key on
// every node: no node is ignored and no node's labels are looked at. A key
// on no node: with keys required every node would be ignored and score 0,
// so the plugin is skipped; under the system defaults the constraint adds
// to no node's score and is dropped (a zoneless cluster spreads by
// hostname alone). Only a key on some nodes makes PreScore look at each
// feasible node's labels. Hostname counts are kept per node slot of the
// index, so Score indexes a slice per node, not a map by the node's name.
package podtopologyspread

import (
	"context"
	"hash/maphash"
	"maps"
	"math"
	"sync"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	chaffinity "k8s.io/component-helpers/scheduling/corev1/nodeaffinity"

	"skiff.dev/skiff/internal/scheduler/framework"
	"skiff.dev/skiff/internal/scheduler/plugins/tainttoleration"
)

// Name is the plugin name.
const Name = "PodTopologySpread"

// Upstream's reasons.
const (
	ErrReasonConstraintsNotMatch = "node(s) didn't match pod topology spread constraints"
	ErrReasonNodeLabelNotMatch   = ErrReasonConstraintsNotMatch + " (missing required label)"
)

const (
	preFilterKey framework.StateKey = "PreFilter" + Name
	preScoreKey  framework.StateKey = "PreScore" + Name
)

// SystemDefaultConstraints are upstream's cluster defaults.
var SystemDefaultConstraints = []v1.TopologySpreadConstraint{
	{TopologyKey: v1.LabelTopologyZone, WhenUnsatisfiable: v1.ScheduleAnyway, MaxSkew: 5},
	{TopologyKey: v1.LabelHostname, WhenUnsatisfiable: v1.ScheduleAnyway, MaxSkew: 3},
}

// Listers are used to build the default constraints' selector. Any may be nil.
type Listers struct {
	Services               corelisters.ServiceLister
	ReplicationControllers corelisters.ReplicationControllerLister
	ReplicaSets            appslisters.ReplicaSetLister
	StatefulSets           appslisters.StatefulSetLister
	// Generation, when set, returns a number that changes whenever the
	// contents of any of the listers may have changed (the scheduler
	// counts its informers' events for these four kinds, after the
	// informer has stored the object). With it the default selector
	// built for one pod is reused for the next pods with the same
	// namespace and labels (a ReplicaSet's pods) until the number
	// changes; without it every pod walks the four listers.
	Generation func() uint64
}

// Args configures the plugin.
type Args struct {
	// DefaultConstraints apply to pods without constraints; nil means
	// SystemDefaultConstraints. Use an empty non-nil slice to disable.
	DefaultConstraints []v1.TopologySpreadConstraint
}

// errConstraintsNotMatch is shared by every rejecting Filter call (most
// nodes are rejected when one domain is behind): no allocation per node.
var errConstraintsNotMatch = framework.NewStatus(framework.Unschedulable, ErrReasonConstraintsNotMatch).WithPlugin(Name)

// PodTopologySpread is the plugin.
type PodTopologySpread struct {
	h        framework.Handle
	defaults []v1.TopologySpreadConstraint
	listers  Listers
	// systemDefaulted: the defaults are upstream's system defaults (Args
	// left them nil), under which scoring does not require every key.
	systemDefaulted bool
	// scanOnly turns PreScore's index fast path off (tests compare the
	// two).
	scanOnly bool

	selMu    sync.Mutex
	selCache map[*metav1.LabelSelector]compiled

	// defSels remembers default selectors per namespace and labels while
	// Listers.Generation stays at defGen (see defaultSelectorFor).
	defMu   sync.Mutex
	defGen  uint64
	defSels map[uint64][]defaultSel
	defN    int
	defSeed maphash.Seed
}

var (
	_ framework.PreFilterPlugin     = (*PodTopologySpread)(nil)
	_ framework.PreFilterExtensions = (*PodTopologySpread)(nil)
	_ framework.FilterPlugin        = (*PodTopologySpread)(nil)
	_ framework.PreScorePlugin      = (*PodTopologySpread)(nil)
	_ framework.ScorePlugin         = (*PodTopologySpread)(nil)
	_ framework.EnqueueExtensions   = (*PodTopologySpread)(nil)
)

// New builds the plugin.
func New(h framework.Handle, args Args, l Listers) *PodTopologySpread {
	d := args.DefaultConstraints
	if d == nil {
		d = SystemDefaultConstraints
	}
	return &PodTopologySpread{h: h, defaults: d, listers: l, systemDefaulted: args.DefaultConstraints == nil, defSeed: maphash.MakeSeed()}
}

func (*PodTopologySpread) Name() string { return Name }

func (*PodTopologySpread) EventsToRegister() []framework.ClusterEvent {
	return []framework.ClusterEvent{
		{Resource: framework.KindAssignedPod, ActionType: framework.All},
		{Resource: framework.KindNode, ActionType: framework.Add | framework.UpdateNodeLabel | framework.UpdateNodeTaint | framework.Delete},
	}
}

type constraint struct {
	maxSkew           int64
	key               string
	minDomains        int
	selector          labels.Selector
	honorAffinity     bool
	honorTaints       bool
	whenUnsatisfiable v1.UnsatisfiableConstraintAction
	// counterKey names the index counter of (namespace, selector); empty
	// means counterFor renders it.
	counterKey string
}

func (p *PodTopologySpread) compile(pod *v1.Pod, action v1.UnsatisfiableConstraintAction) ([]constraint, error) {
	src := pod.Spec.TopologySpreadConstraints
	var defaultSel labels.Selector
	var defaultKey string
	if len(src) == 0 {
		// As upstream: no default constraint with this action means no
		// selector to build (the listers' walk is the costly part, and
		// system defaults have no DoNotSchedule constraint at all).
		if !hasAction(p.defaults, action) {
			return nil, nil
		}
		src = p.defaults
		defaultSel, defaultKey = p.defaultSelectorFor(pod)
		if defaultSel.Empty() {
			return nil, nil
		}
	}
	var out []constraint
	for _, c := range src {
		if c.WhenUnsatisfiable != action {
			continue
		}
		sel := defaultSel
		if sel == nil {
			var err error
			sel, err = metav1.LabelSelectorAsSelector(c.LabelSelector)
			if err != nil {
				return nil, err
			}
			for _, k := range c.MatchLabelKeys {
				if v, ok := pod.Labels[k]; ok {
					if r, err := labels.NewRequirement(k, "in", []string{v}); err == nil {
						sel = sel.Add(*r)
					}
				}
			}
		}
		cc := constraint{maxSkew: int64(c.MaxSkew), key: c.TopologyKey, minDomains: 1, selector: sel,
			honorAffinity: true, whenUnsatisfiable: c.WhenUnsatisfiable, counterKey: defaultKey}
		if c.MinDomains != nil && *c.MinDomains > 0 {
			cc.minDomains = int(*c.MinDomains)
		}
		if c.NodeAffinityPolicy != nil && *c.NodeAffinityPolicy == v1.NodeInclusionPolicyIgnore {
			cc.honorAffinity = false
		}
		if c.NodeTaintsPolicy != nil && *c.NodeTaintsPolicy == v1.NodeInclusionPolicyHonor {
			cc.honorTaints = true
		}
		out = append(out, cc)
	}
	return out, nil
}

func hasAction(cs []v1.TopologySpreadConstraint, action v1.UnsatisfiableConstraintAction) bool {
	for i := range cs {
		if cs[i].WhenUnsatisfiable == action {
			return true
		}
	}
	return false
}

// defaultSel is a default selector remembered for a namespace and labels.
type defaultSel struct {
	ns string
	// labels are the first pod's (informer objects are never changed in
	// place).
	labels map[string]string
	sel    labels.Selector
	// counterKey is counterKey(ns, sel).
	counterKey string
}

// maxDefaultSels bounds the remembered default selectors; beyond it the
// cache starts over.
const maxDefaultSels = 1024

// defaultSelectorFor is defaultSelector(pod) and the index counter key of
// (namespace, selector), reused from an earlier pod with the same
// namespace and labels while Listers.Generation has not moved: the
// selector depends on nothing else. A pod of a 10,000-replica ReplicaSet
// otherwise listed the namespace's Services, ReplicationControllers,
// ReplicaSets and StatefulSets and rendered the selector's string again
// (0.18 of the scheduler's ~2.4 CPU-s per 10,000 pods). The generation is
// read before the listers, and an entry is only kept if it has not moved
// since, so an entry never predates a change whose event was counted.
func (p *PodTopologySpread) defaultSelectorFor(pod *v1.Pod) (labels.Selector, string) {
	genFn := p.listers.Generation
	if genFn == nil {
		sel := p.defaultSelector(pod)
		return sel, counterKey(pod.Namespace, sel)
	}
	gen := genFn()
	h := labelsHash(p.defSeed, pod.Namespace, pod.Labels)
	p.defMu.Lock()
	if p.defGen != gen {
		p.defSels, p.defN, p.defGen = nil, 0, gen
	}
	for _, e := range p.defSels[h] {
		if e.ns == pod.Namespace && maps.Equal(e.labels, pod.Labels) {
			p.defMu.Unlock()
			return e.sel, e.counterKey
		}
	}
	p.defMu.Unlock()
	sel := p.defaultSelector(pod)
	key := counterKey(pod.Namespace, sel)
	p.defMu.Lock()
	defer p.defMu.Unlock()
	if p.defGen == gen && genFn() == gen {
		if p.defSels == nil || p.defN >= maxDefaultSels {
			p.defSels, p.defN = map[uint64][]defaultSel{}, 0
		}
		p.defSels[h] = append(p.defSels[h], defaultSel{ns: pod.Namespace, labels: pod.Labels, sel: sel, counterKey: key})
		p.defN++
	}
	return sel, key
}

// labelsHash hashes a namespace and a label set (in any order: the sum of
// the pairs' hashes).
func labelsHash(seed maphash.Seed, ns string, l map[string]string) uint64 {
	var h maphash.Hash
	h.SetSeed(seed)
	h.WriteString(ns)
	sum := h.Sum64()
	for k, v := range l {
		h.Reset()
		h.WriteString(k)
		h.WriteByte(0)
		h.WriteString(v)
		sum += h.Sum64()
	}
	return sum
}

// defaultSelector merges the selectors of the objects that own or select
// the pod, as upstream's helper.DefaultSelector.
func (p *PodTopologySpread) defaultSelector(pod *v1.Pod) labels.Selector {
	set := labels.Set{}
	sel := labels.NewSelector()
	podLabels := labels.Set(pod.Labels)
	if l := p.listers.Services; l != nil {
		if svcs, err := l.Services(pod.Namespace).List(labels.Everything()); err == nil {
			for _, s := range svcs {
				if len(s.Spec.Selector) > 0 && subset(s.Spec.Selector, podLabels) {
					for k, v := range s.Spec.Selector {
						set[k] = v
					}
				}
			}
		}
	}
	if l := p.listers.ReplicationControllers; l != nil {
		if rcs, err := l.ReplicationControllers(pod.Namespace).List(labels.Everything()); err == nil {
			for _, rc := range rcs {
				if len(rc.Spec.Selector) > 0 && subset(rc.Spec.Selector, podLabels) {
					for k, v := range rc.Spec.Selector {
						set[k] = v
					}
				}
			}
		}
	}
	addReqs := func(ls *metav1.LabelSelector) {
		s, err := p.compiledSelector(ls)
		if err != nil || s.Empty() || !s.Matches(podLabels) {
			return
		}
		reqs, _ := s.Requirements()
		sel = sel.Add(reqs...)
	}
	if l := p.listers.ReplicaSets; l != nil {
		if rss, err := l.ReplicaSets(pod.Namespace).List(labels.Everything()); err == nil {
			for _, rs := range rss {
				addReqs(rs.Spec.Selector)
			}
		}
	}
	if l := p.listers.StatefulSets; l != nil {
		if sss, err := l.StatefulSets(pod.Namespace).List(labels.Everything()); err == nil {
			for _, ss := range sss {
				addReqs(ss.Spec.Selector)
			}
		}
	}
	for k, v := range set {
		if r, err := labels.NewRequirement(k, "=", []string{v}); err == nil {
			sel = sel.Add(*r)
		}
	}
	return sel
}

// subset reports whether every key of set has the same value in l (what
// labels.SelectorFromSet(set).Matches(l) computes, without building it).
func subset(set map[string]string, l labels.Set) bool {
	for k, v := range set {
		if lv, ok := l[k]; !ok || lv != v {
			return false
		}
	}
	return true
}

// maxCachedSelectors bounds the compiled-selector cache; beyond it the
// cache starts over.
const maxCachedSelectors = 4096

type compiled struct {
	sel labels.Selector
	err error
}

// compiledSelector is metav1.LabelSelectorAsSelector(ls), remembered per
// selector object. The listers hand out the informers' objects, which are
// never changed in place (an update is a new object), and the conversion
// validates every key and value with regular expressions: per pod and per
// ReplicaSet or StatefulSet in the namespace, that was most of
// defaultSelector's cost. The cache holds the selector objects it has
// seen, so an address is never reused while cached.
func (p *PodTopologySpread) compiledSelector(ls *metav1.LabelSelector) (labels.Selector, error) {
	if ls == nil {
		return metav1.LabelSelectorAsSelector(ls)
	}
	p.selMu.Lock()
	defer p.selMu.Unlock()
	if c, ok := p.selCache[ls]; ok {
		return c.sel, c.err
	}
	sel, err := metav1.LabelSelectorAsSelector(ls)
	if p.selCache == nil || len(p.selCache) >= maxCachedSelectors {
		p.selCache = map[*metav1.LabelSelector]compiled{}
	}
	p.selCache[ls] = compiled{sel, err}
	return sel, err
}

// eligible reports whether node counts for constraint c given the pod.
func eligible(c *constraint, pod *v1.Pod, node *v1.Node, affinityOK bool) bool {
	if c.honorAffinity && !affinityOK {
		return false
	}
	if c.honorTaints {
		if _, bad := tainttoleration.FindUntoleratedTaint(node.Spec.Taints, pod.Spec.Tolerations); bad {
			return false
		}
	}
	return true
}

func hasAllKeys(cs []constraint, node *v1.Node) bool {
	for i := range cs {
		if _, ok := node.Labels[cs[i].key]; !ok {
			return false
		}
	}
	return true
}

func countMatching(pods []*framework.PodInfo, ns string, sel labels.Selector) int64 {
	var n int64
	for _, p := range pods {
		if p.Pod.Namespace == ns && p.Pod.DeletionTimestamp == nil && sel.Matches(labels.Set(p.Pod.Labels)) {
			n++
		}
	}
	return n
}

type preFilterState struct {
	constraints []constraint
	counts      []map[string]int64
	mins        []int64
	// self[i] is 1 when the incoming pod matches constraint i's selector
	// (computed once, not per node).
	self []int64
}

func (s *preFilterState) Clone() framework.StateData {
	c := &preFilterState{constraints: s.constraints, mins: append([]int64(nil), s.mins...), self: s.self}
	for _, m := range s.counts {
		cm := make(map[string]int64, len(m))
		for k, v := range m {
			cm[k] = v
		}
		c.counts = append(c.counts, cm)
	}
	return c
}

func (s *preFilterState) recomputeMins() {
	for i := range s.constraints {
		m := int64(math.MaxInt64)
		for _, v := range s.counts[i] {
			m = min(m, v)
		}
		if len(s.counts[i]) < s.constraints[i].minDomains || m == math.MaxInt64 {
			m = 0
		}
		s.mins[i] = m
	}
}

// countDomains counts matching pods per domain over the eligible nodes.
// If restrict is non-nil, domains are restricted to the keys already in
// it. With requireAll, nodes lacking any key do not count; without, a node
// lacking a key counts in that key's "" domain (as upstream's scoring).
func (p *PodTopologySpread) countDomains(ctx context.Context, pod *v1.Pod, cs []constraint, nodes []*framework.NodeInfo, restrict []map[string]int64, requireAll bool) []map[string]int64 {
	out := make([]map[string]int64, len(cs))
	for i := range out {
		if restrict != nil {
			out[i] = restrict[i]
		} else {
			out[i] = map[string]int64{}
		}
	}
	req := chaffinity.GetRequiredNodeAffinity(pod)
	var mu sync.Mutex
	par := framework.Parallelizer{}
	if p.h != nil {
		par = p.h.Parallelizer()
	}
	par.Until(ctx, len(nodes), func(n int) {
		node := nodes[n].Node()
		if requireAll && !hasAllKeys(cs, node) {
			return
		}
		affOK, _ := req.Match(node)
		for i := range cs {
			c := &cs[i]
			if !eligible(c, pod, node, affOK) {
				continue
			}
			v := node.Labels[c.key]
			cnt := countMatching(nodes[n].Pods, pod.Namespace, c.selector)
			mu.Lock()
			if restrict == nil {
				out[i][v] += cnt
			} else if _, ok := out[i][v]; ok {
				out[i][v] += cnt
			}
			mu.Unlock()
		}
	})
	return out
}

// hasRequiredNodeAffinity reports whether the pod narrows nodes by
// nodeSelector or required node affinity.
func hasRequiredNodeAffinity(pod *v1.Pod) bool {
	a := pod.Spec.Affinity
	return len(pod.Spec.NodeSelector) > 0 || (a != nil && a.NodeAffinity != nil && a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil)
}

// counterFor returns the snapshot index's live per-domain count of pods
// in the pod's namespace, not terminating, matching c's selector.
func counterFor(ix *framework.Index, ns string, c *constraint, topologyKey string) map[string]int64 {
	sel := c.selector
	return ix.DomainCounts(c.indexKey(ns), topologyKey, sel, matcher(ns, sel))
}

// counterKey names the index counter of pods in ns matching sel.
func counterKey(ns string, sel labels.Selector) string {
	return "tsc|" + ns + "|" + framework.SelectorKey(sel)
}

// indexKey is c's counter key for pods in ns (the pod's namespace, which
// a remembered counterKey was built for).
func (c *constraint) indexKey(ns string) string {
	if c.counterKey != "" {
		return c.counterKey
	}
	return counterKey(ns, c.selector)
}

// nodeCounterFor is counterFor per node (the snapshot's NodeInfos), for
// hostname constraints, which upstream counts per node.
func nodeCounterFor(ix *framework.Index, ns string, c *constraint) framework.NodeCounts {
	sel := c.selector
	return ix.NodeCounts(c.indexKey(ns), sel, matcher(ns, sel))
}

func matcher(ns string, sel labels.Selector) func(*v1.Pod) bool {
	return func(p *v1.Pod) bool {
		return p.Namespace == ns && p.DeletionTimestamp == nil && sel.Matches(labels.Set(p.Labels))
	}
}

// indexUsable reports whether every node counts for every constraint, so
// per-domain counts can come from the index's counters: no node excluded
// by the pod's node affinity (Honor) or taints (Honor), and no node
// excluded for lacking one of several topology keys.
func indexUsable(pod *v1.Pod, cs []constraint, ix *framework.Index) bool {
	reqAff := hasRequiredNodeAffinity(pod)
	for i := range cs {
		if cs[i].honorTaints || (cs[i].honorAffinity && reqAff) {
			return false
		}
		if cs[i].key != cs[0].key && (ix.NodesWithKey(cs[i].key) != ix.NumNodes() || ix.NodesWithKey(cs[0].key) != ix.NumNodes()) {
			return false
		}
	}
	return true
}

// PreFilter counts matching pods per domain for DoNotSchedule constraints.
func (p *PodTopologySpread) PreFilter(ctx context.Context, cs *framework.CycleState, pi *framework.PodInfo, snap *framework.Snapshot) (*framework.PreFilterResult, *framework.Status) {
	cons, err := p.compile(pi.Pod, v1.DoNotSchedule)
	if err != nil {
		return nil, framework.NewStatus(framework.UnschedulableAndUnresolvable, err.Error())
	}
	if len(cons) == 0 {
		return nil, framework.NewStatus(framework.Skip)
	}
	s := &preFilterState{constraints: cons, mins: make([]int64, len(cons)), self: make([]int64, len(cons))}
	podLabels := labels.Set(pi.Pod.Labels)
	for i := range cons {
		if cons[i].selector.Matches(podLabels) {
			s.self[i] = 1
		}
	}
	if ix := snap.Index(); indexUsable(pi.Pod, cons, ix) {
		// Every node is eligible: domains are all values of the key, with
		// counts kept by the index (O(domains), not O(pods)).
		s.counts = make([]map[string]int64, len(cons))
		for i := range cons {
			live := counterFor(ix, pi.Pod.Namespace, &cons[i], cons[i].key)
			dn := ix.DomainNodes(cons[i].key)
			m := make(map[string]int64, len(dn))
			for v := range dn {
				m[v] = live[v]
			}
			s.counts[i] = m
		}
	} else {
		s.counts = p.countDomains(ctx, pi.Pod, cons, snap.NodeInfoList, nil, true)
	}
	s.recomputeMins()
	cs.Write(preFilterKey, s)
	return nil, nil
}

func (p *PodTopologySpread) PreFilterExtensions() framework.PreFilterExtensions { return p }

func (p *PodTopologySpread) update(cs *framework.CycleState, pi, other *framework.PodInfo, ni *framework.NodeInfo, sign int64) *framework.Status {
	d, ok := cs.Read(preFilterKey)
	if !ok {
		return nil
	}
	s := d.(*preFilterState)
	node := ni.Node()
	if other.Pod.Namespace != pi.Pod.Namespace || !hasAllKeys(s.constraints, node) {
		return nil
	}
	affOK, _ := chaffinity.GetRequiredNodeAffinity(pi.Pod).Match(node)
	for i := range s.constraints {
		c := &s.constraints[i]
		if !eligible(c, pi.Pod, node, affOK) || !c.selector.Matches(labels.Set(other.Pod.Labels)) {
			continue
		}
		s.counts[i][node.Labels[c.key]] += sign
	}
	s.recomputeMins()
	return nil
}

// AddPod counts a pod added to ni.
func (p *PodTopologySpread) AddPod(_ context.Context, cs *framework.CycleState, pi, add *framework.PodInfo, ni *framework.NodeInfo) *framework.Status {
	return p.update(cs, pi, add, ni, 1)
}

// RemovePod uncounts a pod removed from ni.
func (p *PodTopologySpread) RemovePod(_ context.Context, cs *framework.CycleState, pi, rm *framework.PodInfo, ni *framework.NodeInfo) *framework.Status {
	return p.update(cs, pi, rm, ni, -1)
}

// Filter checks the skew each constraint would reach on this node.
func (p *PodTopologySpread) Filter(_ context.Context, cs *framework.CycleState, pi *framework.PodInfo, ni *framework.NodeInfo) *framework.Status {
	d, ok := cs.Read(preFilterKey)
	if !ok {
		return nil
	}
	s := d.(*preFilterState)
	node := ni.Node()
	for i := range s.constraints {
		c := &s.constraints[i]
		v, ok := node.Labels[c.key]
		if !ok {
			return framework.NewStatus(framework.UnschedulableAndUnresolvable, ErrReasonNodeLabelNotMatch)
		}
		if s.counts[i][v]+s.self[i]-s.mins[i] > c.maxSkew {
			return errConstraintsNotMatch
		}
	}
	return nil
}

type preScoreState struct {
	constraints []constraint
	// counts[i] is matching pods per domain of constraint i's key (for
	// the feasible nodes' domains; read-only, it may be the index's live
	// counter).
	counts []map[string]int64
	// perNode[i] counts matching pods per node (the snapshot's NodeInfos)
	// for hostname constraints (nil: count on the node).
	perNode []framework.NodeCounts
	weights []float64
	// ignored holds the nodes lacking one of the keys when every key is
	// required; nil when no node is ignored.
	ignored map[string]bool
	// checkKey: keys are not required (system default constraints) and
	// some node may lack one: a constraint adds to a node's score only if
	// the node carries its key.
	checkKey bool
}

func (s *preScoreState) Clone() framework.StateData { return s }

// requireAllKeys reports whether PreScore ignores nodes lacking any of the
// constraints' keys: always, except for the system default constraints,
// which upstream applies to nodes without a zone label too (they still
// spread by hostname).
func (p *PodTopologySpread) requireAllKeys(pod *v1.Pod) bool {
	return len(pod.Spec.TopologySpreadConstraints) > 0 || !p.systemDefaulted
}

// PreScore counts matching pods per domain for ScheduleAnyway constraints,
// over the domains of the feasible nodes.
func (p *PodTopologySpread) PreScore(ctx context.Context, cs *framework.CycleState, pi *framework.PodInfo, nodes []*framework.NodeInfo) *framework.Status {
	cons, err := p.compile(pi.Pod, v1.ScheduleAnyway)
	if err != nil {
		return framework.AsStatus(err)
	}
	if len(cons) == 0 || len(nodes) == 0 {
		return framework.NewStatus(framework.Skip)
	}
	requireAll := p.requireAllKeys(pi.Pod)
	var snap *framework.Snapshot
	if p.h != nil {
		snap = p.h.Snapshot()
	}
	var s *preScoreState
	if snap != nil && !p.scanOnly {
		var allIgnored bool
		s, allIgnored = preScoreIndexed(pi.Pod, cons, nodes, snap.Index(), requireAll)
		if allIgnored {
			// Every node lacks a required key: all would be ignored and
			// score 0, which is what skipping the plugin adds.
			return framework.NewStatus(framework.Skip)
		}
	}
	if s == nil {
		s = p.preScoreScan(ctx, pi.Pod, cons, nodes, snap, requireAll)
	}
	cs.Write(preScoreKey, s)
	return nil
}

// preScoreIndexed is PreScore when the snapshot's index settles every
// node's keys by itself: each constraint's key is on every node or on
// none. Then no feasible node is ignored (or all are: allIgnored), no
// node's labels are looked at for keys, and counts are the index's live
// counters. It returns nil when a key is on some nodes only or node
// inclusion policies exclude nodes (the scan handles those).
func preScoreIndexed(pod *v1.Pod, cons []constraint, nodes []*framework.NodeInfo, ix *framework.Index, requireAll bool) (s *preScoreState, allIgnored bool) {
	all := ix.NumNodes()
	if all == 0 {
		return nil, false
	}
	kept := make([]constraint, 0, len(cons))
	for i := range cons {
		switch n := ix.NodesWithKey(cons[i].key); {
		case n == 0 && requireAll:
			return nil, true
		case n == 0:
			// No node carries the key: the constraint adds to no node's
			// score, and its weight and counts are never read.
		case n == all:
			kept = append(kept, cons[i])
		default:
			return nil, false
		}
	}
	if !indexUsable(pod, kept, ix) {
		return nil, false
	}
	s = &preScoreState{constraints: kept, weights: make([]float64, len(kept)),
		counts: make([]map[string]int64, len(kept)), perNode: make([]framework.NodeCounts, len(kept))}
	for i := range kept {
		c := &kept[i]
		if c.key == v1.LabelHostname {
			s.perNode[i] = nodeCounterFor(ix, pod.Namespace, c)
			s.weights[i] = math.Log(float64(len(nodes) + 2))
			continue
		}
		s.counts[i] = counterFor(ix, pod.Namespace, c, c.key)
		s.weights[i] = math.Log(float64(domainsAmong(ix, c.key, nodes) + 2))
	}
	return s, false
}

// domainsAmong counts the distinct values of key among nodes, which all
// carry it.
func domainsAmong(ix *framework.Index, key string, nodes []*framework.NodeInfo) int {
	dn := ix.DomainNodes(key)
	if len(dn) <= 1 || len(nodes) == ix.NumNodes() {
		return len(dn)
	}
	seen := make(map[string]struct{}, len(dn))
	for _, ni := range nodes {
		seen[ni.Node().Labels[key]] = struct{}{}
		if len(seen) == len(dn) {
			break
		}
	}
	return len(seen)
}

// preScoreScan is PreScore by looking at every feasible node's labels:
// for keys some nodes lack, node inclusion policies, and without a
// snapshot.
func (p *PodTopologySpread) preScoreScan(ctx context.Context, pod *v1.Pod, cons []constraint, nodes []*framework.NodeInfo, snap *framework.Snapshot, requireAll bool) *preScoreState {
	s := &preScoreState{constraints: cons, weights: make([]float64, len(cons)), checkKey: !requireAll}
	domains := make([]map[string]int64, len(cons))
	for i := range domains {
		domains[i] = map[string]int64{}
	}
	for _, ni := range nodes {
		node := ni.Node()
		if requireAll && !hasAllKeys(cons, node) {
			if s.ignored == nil {
				s.ignored = map[string]bool{}
			}
			s.ignored[node.Name] = true
			continue
		}
		for i := range cons {
			if cons[i].key != v1.LabelHostname {
				// A node lacking the key (keys not required) is in the
				// "" domain, as upstream counts it.
				domains[i][node.Labels[cons[i].key]] = 0
			}
		}
	}
	for i := range cons {
		n := len(domains[i])
		if cons[i].key == v1.LabelHostname {
			n = len(nodes) - len(s.ignored)
		}
		s.weights[i] = math.Log(float64(n + 2))
	}
	if snap == nil {
		s.counts = p.countDomains(ctx, pod, cons, nodes, domains, requireAll)
		return s
	}
	ix := snap.Index()
	if !p.scanOnly {
		// (scanOnly counts hostname domains on each node in Score: the
		// tests' reference for the index's per-node counters.)
		s.perNode = make([]framework.NodeCounts, len(cons))
	}
	for i := range cons {
		if cons[i].key == v1.LabelHostname && s.perNode != nil {
			s.perNode[i] = nodeCounterFor(ix, pod.Namespace, &cons[i])
		}
	}
	if requireAll && indexUsable(pod, cons, ix) {
		for i := range cons {
			if cons[i].key == v1.LabelHostname {
				continue
			}
			live := counterFor(ix, pod.Namespace, &cons[i], cons[i].key)
			for v := range domains[i] {
				domains[i][v] = live[v]
			}
		}
		s.counts = domains
	} else {
		s.counts = p.countDomains(ctx, pod, cons, snap.NodeInfoList, domains, requireAll)
	}
	return s
}

// Score is sum(count in the node's domain * domain weight + maxSkew - 1).
func (p *PodTopologySpread) Score(_ context.Context, cs *framework.CycleState, pi *framework.PodInfo, ni *framework.NodeInfo) (int64, *framework.Status) {
	d, ok := cs.Read(preScoreKey)
	if !ok {
		return 0, nil
	}
	s := d.(*preScoreState)
	node := ni.Node()
	if s.ignored != nil && s.ignored[node.Name] {
		return 0, nil
	}
	var score float64
	for i := range s.constraints {
		c := &s.constraints[i]
		if s.checkKey {
			if _, ok := node.Labels[c.key]; !ok {
				continue
			}
		}
		var cnt int64
		switch {
		case c.key == v1.LabelHostname && s.perNode != nil:
			cnt = s.perNode[i].Of(ni)
		case c.key == v1.LabelHostname:
			cnt = countMatching(ni.Pods, pi.Pod.Namespace, c.selector)
		default:
			cnt = s.counts[i][node.Labels[c.key]]
		}
		score += float64(cnt)*s.weights[i] + float64(c.maxSkew-1)
	}
	return int64(math.Round(score)), nil
}

func (p *PodTopologySpread) ScoreExtensions() framework.ScoreExtensions { return p }

// NormalizeScore reverses: fewer matching pods score higher; ignored nodes
// (missing a topology key) score 0.
func (p *PodTopologySpread) NormalizeScore(_ context.Context, cs *framework.CycleState, _ *framework.PodInfo, scores []framework.NodeScore) *framework.Status {
	d, ok := cs.Read(preScoreKey)
	if !ok {
		return nil
	}
	s := d.(*preScoreState)
	lo, hi := int64(math.MaxInt64), int64(0)
	for _, sc := range scores {
		if s.ignored != nil && s.ignored[sc.Name] {
			continue
		}
		lo, hi = min(lo, sc.Score), max(hi, sc.Score)
	}
	for i := range scores {
		switch {
		case s.ignored != nil && s.ignored[scores[i].Name]:
			scores[i].Score = 0
		case hi == 0:
			scores[i].Score = framework.MaxNodeScore
		default:
			scores[i].Score = framework.MaxNodeScore * (hi + lo - scores[i].Score) / hi
		}
	}
	return nil
}
