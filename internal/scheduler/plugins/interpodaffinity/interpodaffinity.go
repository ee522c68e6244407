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
// PreFilter reads per-domain counts from the snapshot's Index (existing
// pods' terms grouped and counted per domain; counters of pods matching
// the incoming pod's terms, kept current as pods come and go), so a cycle
// costs O(matching domains), not O(pods); Filter is O(labels + terms).
// Score adds preferred (anti-)affinity weights of both the incoming pod and
// the existing pods (existing pods' required affinity counts with weight 1,
// upstream's hardPodAffinityWeight), min-max normalized.
package interpodaffinity

import (
	"context"
	"math"

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
			t = t.WithNamespaces(ns)
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
			t.AffinityTerm = t.AffinityTerm.WithNamespaces(ns)
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

// domainCounts returns the snapshot's per-domain count of pods matching
// the (namespace-resolved) term t, kept current by the snapshot's index.
func domainCounts(ix *framework.Index, t framework.AffinityTerm) map[string]int64 {
	return ix.DomainCounts("ipa|"+t.Key(), t.TopologyKey, t.Selector, func(p *v1.Pod) bool { return t.Matches(p, nil) })
}

// PreFilter precomputes the per-domain counts; Skip when neither the pod
// nor any existing pod has required (anti-)affinity.
func (p *InterPodAffinity) PreFilter(_ context.Context, cs *framework.CycleState, pi *framework.PodInfo, snap *framework.Snapshot) (*framework.PreFilterResult, *framework.Status) {
	if pi.ParseError != nil {
		return nil, framework.NewStatus(framework.UnschedulableAndUnresolvable, pi.ParseError.Error())
	}
	hasOwn := len(pi.RequiredAffinityTerms)+len(pi.RequiredAntiAffinityTerms) > 0
	ix := snap.Index()
	if !hasOwn && !ix.HasExistingTerms(framework.ExistingRequiredAntiAffinity) {
		return nil, framework.NewStatus(framework.Skip)
	}
	s := &preFilterState{
		affTerms:     p.resolve(pi.RequiredAffinityTerms),
		antiTerms:    p.resolve(pi.RequiredAntiAffinityTerms),
		nsLabels:     p.nsLabels(pi.Pod.Namespace),
		existingAnti: counts{}, affinity: counts{}, anti: counts{},
	}
	// Symmetry: existing pods' required anti-affinity terms that select
	// the incoming pod, aggregated per group of identical terms.
	ix.ForEachMatchingExistingTerm(framework.ExistingRequiredAntiAffinity, pi.Pod, s.nsLabels, func(t *framework.AffinityTerm, _ int32, domains map[string]int64) {
		for v, n := range domains {
			s.existingAnti[pair{t.TopologyKey, v}] += n
		}
	})
	for _, t := range s.antiTerms {
		for v, n := range domainCounts(ix, t) {
			s.anti[pair{t.TopologyKey, v}] += n
		}
	}
	switch len(s.affTerms) {
	case 0:
	case 1:
		t := s.affTerms[0]
		for v, n := range domainCounts(ix, t) {
			s.affinity[pair{t.TopologyKey, v}] += n
		}
	default:
		// A pod counts only if it matches every term: no single counter
		// answers that, so match the candidates of the first term.
		ix.ForEachCandidatePod(s.affTerms[0].Selector, func(ex *framework.PodInfo, nodeLabels map[string]string) {
			if !matchesAll(s.affTerms, ex.Pod) {
				return
			}
			for i := range s.affTerms {
				if v, ok := nodeLabels[s.affTerms[i].TopologyKey]; ok {
					s.affinity[pair{s.affTerms[i].TopologyKey, v}]++
				}
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

// Filter checks the three rules against the precomputed counts, in
// upstream's order (so the reported reason is upstream's when several
// fail): the pod's affinity, its anti-affinity, then existing pods'
// anti-affinity.
func (p *InterPodAffinity) Filter(_ context.Context, cs *framework.CycleState, pi *framework.PodInfo, ni *framework.NodeInfo) *framework.Status {
	d, ok := cs.Read(preFilterKey)
	if !ok {
		return nil
	}
	s := d.(*preFilterState)
	node := ni.Node()
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
			if len(s.affinity) > 0 || !matchesAll(s.affTerms, pi.Pod) {
				return framework.NewStatus(framework.UnschedulableAndUnresolvable, ErrReasonAffinityRulesNotMatch)
			}
			for i := range s.affTerms {
				if _, ok := node.Labels[s.affTerms[i].TopologyKey]; !ok {
					return framework.NewStatus(framework.UnschedulableAndUnresolvable, ErrReasonAffinityRulesNotMatch)
				}
			}
		}
	}
	for i := range s.antiTerms {
		if v, ok := node.Labels[s.antiTerms[i].TopologyKey]; ok && s.anti[pair{s.antiTerms[i].TopologyKey, v}] > 0 {
			return framework.NewStatus(framework.Unschedulable, ErrReasonAntiAffinityRulesNotMatch)
		}
	}
	if len(s.existingAnti) > 0 {
		for k, v := range node.Labels {
			if s.existingAnti[pair{k, v}] > 0 {
				return framework.NewStatus(framework.Unschedulable, ErrReasonExistingAntiAffinityRulesNotMatch)
			}
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
func (p *InterPodAffinity) PreScore(_ context.Context, cs *framework.CycleState, pi *framework.PodInfo, _ []*framework.NodeInfo) *framework.Status {
	ix := p.h.Snapshot().Index()
	hasPref := len(pi.PreferredAffinityTerms)+len(pi.PreferredAntiAffinityTerms) > 0
	if !hasPref && !ix.HasExistingTerms(framework.ExistingRequiredAffinity) &&
		!ix.HasExistingTerms(framework.ExistingPreferredAffinity) && !ix.HasExistingTerms(framework.ExistingPreferredAntiAffinity) {
		return framework.NewStatus(framework.Skip)
	}
	total := map[string]map[string]int64{}
	add := func(key string, domains map[string]int64, w int64) {
		if len(domains) == 0 {
			return
		}
		m := total[key]
		if m == nil {
			m = map[string]int64{}
			total[key] = m
		}
		for v, n := range domains {
			m[v] += n * w
		}
	}
	for _, t := range p.resolveW(pi.PreferredAffinityTerms) {
		add(t.TopologyKey, domainCounts(ix, t.AffinityTerm), int64(t.Weight))
	}
	for _, t := range p.resolveW(pi.PreferredAntiAffinityTerms) {
		add(t.TopologyKey, domainCounts(ix, t.AffinityTerm), -int64(t.Weight))
	}
	nsLabels := p.nsLabels(pi.Pod.Namespace)
	ix.ForEachMatchingExistingTerm(framework.ExistingRequiredAffinity, pi.Pod, nsLabels, func(t *framework.AffinityTerm, _ int32, domains map[string]int64) {
		add(t.TopologyKey, domains, HardPodAffinityWeight)
	})
	ix.ForEachMatchingExistingTerm(framework.ExistingPreferredAffinity, pi.Pod, nsLabels, func(t *framework.AffinityTerm, w int32, domains map[string]int64) {
		add(t.TopologyKey, domains, int64(w))
	})
	ix.ForEachMatchingExistingTerm(framework.ExistingPreferredAntiAffinity, pi.Pod, nsLabels, func(t *framework.AffinityTerm, w int32, domains map[string]int64) {
		add(t.TopologyKey, domains, -int64(w))
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
// NormalizeScoreIgnoresNames: NormalizeScore reads scores only.
func (p *InterPodAffinity) NormalizeScoreIgnoresNames() {}

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
