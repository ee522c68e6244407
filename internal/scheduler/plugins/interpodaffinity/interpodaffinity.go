// Package interpodaffinity is the InterPodAffinity plugin.
//
// Filter enforces, per topology domain (topologyKey + node label value):
//   - the incoming pod's required affinity: some pod matching all its terms
//     must already be in the node's domain, except for the first pod of a
//     group (no match anywhere and the pod matches its own terms);
//   - the incoming pod's required anti-affinity: no matching pod in the domain;
//   - symmetry: no existing pod whose required anti-affinity matches the
//     incoming pod may be in the domain.
//
// PreFilter precomputes per-domain counts once per cycle (over the nodes
// that hold pods, in parallel), so Filter is O(labels + terms) per node.
// Score adds preferred (anti-)affinity weights of both the incoming pod and
// the existing pods (existing pods' required affinity counts with weight 1,
// upstream's hardPodAffinityWeight), min-max normalized.
package interpodaffinity

import (
	"context"
	"math"
	"sync"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"skiff.dev/skiff/internal/scheduler/framework"
)

// Name is the plugin name.
const Name = "InterPodAffinity"

// Upstream's reasons.
const (
	ErrReasonExistingAntiAffinityRulesNotMatch = "node(s) didn't satisfy existing pods anti-affinity rules"
	ErrReasonAffinityRulesNotMatch             = "node(s) didn't match pod affinity rules"
	ErrReasonAntiAffinityRulesNotMatch         = "node(s) didn't match pod anti-affinity rules"
)

// HardPodAffinityWeight is the score weight of an existing pod's required
// affinity term that the incoming pod matches.
const HardPodAffinityWeight = 1

const (
	preFilterKey framework.StateKey = "PreFilter" + Name
	preScoreKey  framework.StateKey = "PreScore" + Name
)

type pair struct{ key, value string }

type counts map[pair]int64

func (c counts) add(o counts) {
	for k, v := range o {
		c[k] += v
	}
}

func (c counts) clone() counts {
	out := make(counts, len(c))
	out.add(c)
	return out
}

type preFilterState struct {
	existingAnti, affinity, anti counts
	affTerms, antiTerms          []framework.AffinityTerm
	nsLabels                     labels.Set
}

func (s *preFilterState) Clone() framework.StateData {
	c := *s
	c.existingAnti, c.affinity, c.anti = s.existingAnti.clone(), s.affinity.clone(), s.anti.clone()
	return &c
}

// InterPodAffinity is the plugin.
type InterPodAffinity struct{ h framework.Handle }

var (
	_ framework.PreFilterPlugin     = (*InterPodAffinity)(nil)
	_ framework.PreFilterExtensions = (*InterPodAffinity)(nil)
	_ framework.FilterPlugin        = (*InterPodAffinity)(nil)
	_ framework.PreScorePlugin      = (*InterPodAffinity)(nil)
	_ framework.ScorePlugin         = (*InterPodAffinity)(nil)
	_ framework.EnqueueExtensions   = (*InterPodAffinity)(nil)
)

// New builds the plugin.
func New(h framework.Handle) (framework.Plugin, error) { return &InterPodAffinity{h: h}, nil }

func (*InterPodAffinity) Name() string { return Name }

func (*InterPodAffinity) EventsToRegister() []framework.ClusterEvent {
	return []framework.ClusterEvent{
		{Resource: framework.KindAssignedPod, ActionType: framework.All},
		{Resource: framework.KindNode, ActionType: framework.Add | framework.UpdateNodeLabel},
		{Resource: framework.KindNamespace, ActionType: framework.Add | framework.Update},
	}
}

// resolve turns namespace selectors into namespace sets, so matching
// existing pods never needs their namespace's labels.
func (p *InterPodAffinity) resolve(terms []framework.AffinityTerm) []framework.AffinityTerm {
	out := make([]framework.AffinityTerm, len(terms))
	for i, t := range terms {
		if t.NamespaceSelector != nil {
			ns := t.Namespaces.Clone()
			if p.h != nil {
				ns.Insert(p.h.NamespacesMatching(t.NamespaceSelector)...)
			}
			t.Namespaces, t.NamespaceSelector = ns, nil
		}
		out[i] = t
	}
	return out
}

func (p *InterPodAffinity) resolveW(terms []framework.WeightedAffinityTerm) []framework.WeightedAffinityTerm {
	out := make([]framework.WeightedAffinityTerm, len(terms))
	for i, t := range terms {
		if t.NamespaceSelector != nil {
			ns := t.Namespaces.Clone()
			if p.h != nil {
				ns.Insert(p.h.NamespacesMatching(t.NamespaceSelector)...)
			}
			t.Namespaces, t.NamespaceSelector = ns, nil
		}
		out[i] = t
	}
	return out
}

func (p *InterPodAffinity) nsLabels(ns string) labels.Set {
	if p.h == nil {
		return nil
	}
	return p.h.NamespaceLabels(ns)
}

func matchesAll(terms []framework.AffinityTerm, pod *v1.Pod) bool {
	if len(terms) == 0 {
		return false
	}
	for i := range terms {
		if !terms[i].Matches(pod, nil) {
			return false
		}
	}
	return true
}

// existingAntiCounts counts, per domain, existing pods whose required
// anti-affinity selects the incoming pod, for one node.
func existingAntiCounts(pod *v1.Pod, nsLabels labels.Set, ni *framework.NodeInfo, c counts, sign int64, only *framework.PodInfo) {
	node := ni.Node()
	list := ni.PodsWithRequiredAntiAffinity
	if only != nil {
		list = []*framework.PodInfo{only}
	}
	for _, ex := range list {
		for i := range ex.RequiredAntiAffinityTerms {
			t := &ex.RequiredAntiAffinityTerms[i]
			if v, ok := node.Labels[t.TopologyKey]; ok && t.Matches(pod, nsLabels) {
				c[pair{t.TopologyKey, v}] += sign
			}
		}
	}
}

// incomingCounts counts, per domain, existing pods matching the incoming
// pod's affinity (all terms) and anti-affinity (per term).
func incomingCounts(s *preFilterState, node *v1.Node, ex *v1.Pod, aff, anti counts, sign int64) {
	if matchesAll(s.affTerms, ex) {
		for i := range s.affTerms {
			if v, ok := node.Labels[s.affTerms[i].TopologyKey]; ok {
				aff[pair{s.affTerms[i].TopologyKey, v}] += sign
			}
		}
	}
	for i := range s.antiTerms {
		t := &s.antiTerms[i]
		if v, ok := node.Labels[t.TopologyKey]; ok && t.Matches(ex, nil) {
			anti[pair{t.TopologyKey, v}] += sign
		}
	}
}

// parallelCount runs fn for each node into a local map and merges.
func (p *InterPodAffinity) parallelCount(ctx context.Context, nodes []*framework.NodeInfo, fn func(ni *framework.NodeInfo, a, b counts)) (counts, counts) {
	outA, outB := counts{}, counts{}
	var mu sync.Mutex
	par := framework.Parallelizer{}
	if p.h != nil {
		par = p.h.Parallelizer()
	}
	par.Until(ctx, len(nodes), func(i int) {
		a, b := counts{}, counts{}
		fn(nodes[i], a, b)
		if len(a)+len(b) == 0 {
			return
		}
		mu.Lock()
		outA.add(a)
		outB.add(b)
		mu.Unlock()
	})
	return outA, outB
}

// PreFilter precomputes the per-domain counts; Skip when neither the pod
// nor any existing pod has required (anti-)affinity.
func (p *InterPodAffinity) PreFilter(ctx context.Context, cs *framework.CycleState, pi *framework.PodInfo, snap *framework.Snapshot) (*framework.PreFilterResult, *framework.Status) {
	if pi.ParseError != nil {
		return nil, framework.NewStatus(framework.UnschedulableAndUnresolvable, pi.ParseError.Error())
	}
	hasOwn := len(pi.RequiredAffinityTerms)+len(pi.RequiredAntiAffinityTerms) > 0
	if !hasOwn && len(snap.HavePodsWithRequiredAntiAffinityList) == 0 {
		return nil, framework.NewStatus(framework.Skip)
	}
	s := &preFilterState{
		affTerms:  p.resolve(pi.RequiredAffinityTerms),
		antiTerms: p.resolve(pi.RequiredAntiAffinityTerms),
		nsLabels:  p.nsLabels(pi.Pod.Namespace),
	}
	s.existingAnti, _ = p.parallelCount(ctx, snap.HavePodsWithRequiredAntiAffinityList, func(ni *framework.NodeInfo, a, _ counts) {
		existingAntiCounts(pi.Pod, s.nsLabels, ni, a, 1, nil)
	})
	s.affinity, s.anti = counts{}, counts{}
	if hasOwn {
		s.affinity, s.anti = p.parallelCount(ctx, snap.NodeInfoList, func(ni *framework.NodeInfo, a, b counts) {
			for _, ex := range ni.Pods {
				incomingCounts(s, ni.Node(), ex.Pod, a, b, 1)
			}
		})
	}
	cs.Write(preFilterKey, s)
	return nil, nil
}

func (p *InterPodAffinity) PreFilterExtensions() framework.PreFilterExtensions { return p }

func (p *InterPodAffinity) update(cs *framework.CycleState, pi, other *framework.PodInfo, ni *framework.NodeInfo, sign int64) *framework.Status {
	d, ok := cs.Read(preFilterKey)
	if !ok {
		return nil
	}
	s := d.(*preFilterState)
	existingAntiCounts(pi.Pod, s.nsLabels, ni, s.existingAnti, sign, other)
	incomingCounts(s, ni.Node(), other.Pod, s.affinity, s.anti, sign)
	for _, c := range []counts{s.existingAnti, s.affinity, s.anti} {
		for k, v := range c {
			if v == 0 {
				delete(c, k)
			}
		}
	}
	return nil
}

// AddPod updates the counts for a pod added to ni.
func (p *InterPodAffinity) AddPod(_ context.Context, cs *framework.CycleState, pi, add *framework.PodInfo, ni *framework.NodeInfo) *framework.Status {
	return p.update(cs, pi, add, ni, 1)
}

// RemovePod updates the counts for a pod removed from ni.
func (p *InterPodAffinity) RemovePod(_ context.Context, cs *framework.CycleState, pi, rm *framework.PodInfo, ni *framework.NodeInfo) *framework.Status {
	return p.update(cs, pi, rm, ni, -1)
}

// Filter checks the three rules against the precomputed counts.
func (p *InterPodAffinity) Filter(_ context.Context, cs *framework.CycleState, pi *framework.PodInfo, ni *framework.NodeInfo) *framework.Status {
	d, ok := cs.Read(preFilterKey)
	if !ok {
		return nil
	}
	s := d.(*preFilterState)
	node := ni.Node()
	if len(s.existingAnti) > 0 {
		for k, v := range node.Labels {
			if s.existingAnti[pair{k, v}] > 0 {
				return framework.NewStatus(framework.Unschedulable, ErrReasonExistingAntiAffinityRulesNotMatch)
			}
		}
	}
	for i := range s.antiTerms {
		if v, ok := node.Labels[s.antiTerms[i].TopologyKey]; ok && s.anti[pair{s.antiTerms[i].TopologyKey, v}] > 0 {
			return framework.NewStatus(framework.Unschedulable, ErrReasonAntiAffinityRulesNotMatch)
		}
	}
	if len(s.affTerms) > 0 {
		all := true
		for i := range s.affTerms {
			v, ok := node.Labels[s.affTerms[i].TopologyKey]
			if !ok || s.affinity[pair{s.affTerms[i].TopologyKey, v}] <= 0 {
				all = false
				break
			}
		}
		if !all {
			// The first pod of a self-affine group may go anywhere that has
			// the topology keys.
			if len(s.affinity) == 0 && matchesAll(s.affTerms, pi.Pod) {
				for i := range s.affTerms {
					if _, ok := node.Labels[s.affTerms[i].TopologyKey]; !ok {
						return framework.NewStatus(framework.UnschedulableAndUnresolvable, ErrReasonAffinityRulesNotMatch)
					}
				}
				return nil
			}
			return framework.NewStatus(framework.UnschedulableAndUnresolvable, ErrReasonAffinityRulesNotMatch)
		}
	}
	return nil
}

type preScoreState struct {
	scores map[string]map[string]int64 // topologyKey -> value -> score
}

func (s *preScoreState) Clone() framework.StateData { return s }

// PreScore builds the per-domain preferred scores; Skip when there is
// nothing to score.
func (p *InterPodAffinity) PreScore(ctx context.Context, cs *framework.CycleState, pi *framework.PodInfo, _ []*framework.NodeInfo) *framework.Status {
	snap := p.h.Snapshot()
	hasPref := len(pi.PreferredAffinityTerms)+len(pi.PreferredAntiAffinityTerms) > 0
	if !hasPref && len(snap.HavePodsWithAffinityList) == 0 {
		return framework.NewStatus(framework.Skip)
	}
	prefAff := p.resolveW(pi.PreferredAffinityTerms)
	prefAnti := p.resolveW(pi.PreferredAntiAffinityTerms)
	nsLabels := p.nsLabels(pi.Pod.Namespace)
	nodes := snap.HavePodsWithAffinityList
	if hasPref {
		nodes = snap.NodeInfoList
	}
	total := map[string]map[string]int64{}
	var mu sync.Mutex
	p.h.Parallelizer().Until(ctx, len(nodes), func(i int) {
		ni := nodes[i]
		node := ni.Node()
		local := map[pair]int64{}
		add := func(key string, w int64) {
			if v, ok := node.Labels[key]; ok {
				local[pair{key, v}] += w
			}
		}
		pods := ni.PodsWithAffinity
		if hasPref {
			pods = ni.Pods
		}
		for _, ex := range pods {
			for _, t := range prefAff {
				if t.Matches(ex.Pod, nil) {
					add(t.TopologyKey, int64(t.Weight))
				}
			}
			for _, t := range prefAnti {
				if t.Matches(ex.Pod, nil) {
					add(t.TopologyKey, -int64(t.Weight))
				}
			}
			for _, t := range ex.RequiredAffinityTerms {
				if t.Matches(pi.Pod, nsLabels) {
					add(t.TopologyKey, HardPodAffinityWeight)
				}
			}
			for _, t := range ex.PreferredAffinityTerms {
				if t.Matches(pi.Pod, nsLabels) {
					add(t.TopologyKey, int64(t.Weight))
				}
			}
			for _, t := range ex.PreferredAntiAffinityTerms {
				if t.Matches(pi.Pod, nsLabels) {
					add(t.TopologyKey, -int64(t.Weight))
				}
			}
		}
		if len(local) == 0 {
			return
		}
		mu.Lock()
		for k, v := range local {
			m := total[k.key]
			if m == nil {
				m = map[string]int64{}
				total[k.key] = m
			}
			m[k.value] += v
		}
		mu.Unlock()
	})
	if len(total) == 0 {
		return framework.NewStatus(framework.Skip)
	}
	cs.Write(preScoreKey, &preScoreState{scores: total})
	return nil
}

// Score sums the domain scores of the node's topology values.
func (p *InterPodAffinity) Score(_ context.Context, cs *framework.CycleState, _ *framework.PodInfo, ni *framework.NodeInfo) (int64, *framework.Status) {
	d, ok := cs.Read(preScoreKey)
	if !ok {
		return 0, nil
	}
	var score int64
	for key, vals := range d.(*preScoreState).scores {
		if v, ok := ni.Node().Labels[key]; ok {
			score += vals[v]
		}
	}
	return score, nil
}

func (p *InterPodAffinity) ScoreExtensions() framework.ScoreExtensions { return p }

// NormalizeScore min-max scales into [0, 100] (scores may be negative).
func (p *InterPodAffinity) NormalizeScore(_ context.Context, cs *framework.CycleState, _ *framework.PodInfo, scores []framework.NodeScore) *framework.Status {
	if _, ok := cs.Read(preScoreKey); !ok {
		return nil
	}
	lo, hi := int64(math.MaxInt64), int64(math.MinInt64)
	for _, s := range scores {
		lo, hi = min(lo, s.Score), max(hi, s.Score)
	}
	for i := range scores {
		if hi > lo {
			scores[i].Score = framework.MaxNodeScore * (scores[i].Score - lo) / (hi - lo)
		} else {
			scores[i].Score = 0
		}
	}
	return nil
}
