// Package nodeaffinity is the NodeAffinity plugin: Filter enforces
// spec.nodeSelector and requiredDuringScheduling node affinity (all
// operators, matchExpressions and matchFields); Score sums the weights of
// the preferred terms a node matches, normalized to [0, 100].
package nodeaffinity

import (
	"context"
	"fmt"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"

	"skiff.dev/skiff/internal/scheduler/framework"
)

// Name is the plugin name.
const Name = "NodeAffinity"

// ErrReasonPod is upstream's reason.
const ErrReasonPod = "node(s) didn't match Pod's node affinity/selector"

const (
	preFilterKey framework.StateKey = "PreFilter" + Name
	preScoreKey  framework.StateKey = "PreScore" + Name
)

type preFilterState struct {
	required nodeaffinity.RequiredNodeAffinity
	// fast is set when the pod's required terms all compiled to label
	// selectors (no matchFields): Filter then matches labels directly
	// instead of going through the helper, which builds a field-set map
	// per node. nodeSelector is spec.nodeSelector; terms are ORed.
	fast         bool
	nodeSelector labels.Selector
	terms        []labels.Selector
}

// compileRequired builds the fast form of the pod's required affinity; ok
// is false when some term has matchFields or does not compile.
func compileRequired(pod *v1.Pod) (s *preFilterState, ok bool) {
	s = &preFilterState{fast: true}
	if len(pod.Spec.NodeSelector) > 0 {
		s.nodeSelector = labels.SelectorFromSet(pod.Spec.NodeSelector)
	}
	a := pod.Spec.Affinity
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return s, true
	}
	for _, t := range a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
		if len(t.MatchFields) > 0 {
			return nil, false
		}
		if len(t.MatchExpressions) == 0 {
			continue // an empty term matches nothing
		}
		sel, err := expressionsSelector(t.MatchExpressions)
		if err != nil {
			return nil, false
		}
		s.terms = append(s.terms, sel)
	}
	if s.terms == nil {
		s.terms = []labels.Selector{} // required terms present: none matches
	}
	return s, true
}

func (s *preFilterState) match(node *v1.Node) bool {
	set := labels.Set(node.Labels)
	if s.nodeSelector != nil && !s.nodeSelector.Matches(set) {
		return false
	}
	if s.terms == nil {
		return true
	}
	for _, t := range s.terms {
		if t.Matches(set) {
			return true
		}
	}
	return false
}

func (s *preFilterState) Clone() framework.StateData { return s }

type preScoreState struct {
	terms []preferredTerm
}

// preferredTerm is one compiled preferred term. Terms with only
// matchExpressions match the node's labels directly; the helper's
// PreferredSchedulingTerms.Score builds a field set (a map) per node per
// call, which dominated scoring, so it is used only for terms with
// matchFields.
type preferredTerm struct {
	weight int64
	labels labels.Selector
	fields *nodeaffinity.PreferredSchedulingTerms
}

var selectorOps = map[v1.NodeSelectorOperator]selection.Operator{
	v1.NodeSelectorOpIn: selection.In, v1.NodeSelectorOpNotIn: selection.NotIn,
	v1.NodeSelectorOpExists: selection.Exists, v1.NodeSelectorOpDoesNotExist: selection.DoesNotExist,
	v1.NodeSelectorOpGt: selection.GreaterThan, v1.NodeSelectorOpLt: selection.LessThan,
}

func compilePreferred(terms []v1.PreferredSchedulingTerm) ([]preferredTerm, error) {
	out := make([]preferredTerm, 0, len(terms))
	for i := range terms {
		t := &terms[i]
		if t.Weight == 0 || (len(t.Preference.MatchExpressions) == 0 && len(t.Preference.MatchFields) == 0) {
			continue // upstream ignores these
		}
		pt := preferredTerm{weight: int64(t.Weight)}
		if len(t.Preference.MatchFields) > 0 {
			f, err := nodeaffinity.NewPreferredSchedulingTerms(terms[i : i+1])
			if err != nil {
				return nil, err
			}
			pt.fields = f
			out = append(out, pt)
			continue
		}
		sel, err := expressionsSelector(t.Preference.MatchExpressions)
		if err != nil {
			return nil, err
		}
		pt.labels = sel
		out = append(out, pt)
	}
	return out, nil
}

// expressionsSelector turns node selector expressions into a label
// selector (all must hold).
func expressionsSelector(exprs []v1.NodeSelectorRequirement) (labels.Selector, error) {
	sel := labels.NewSelector()
	for _, r := range exprs {
		op, ok := selectorOps[r.Operator]
		if !ok {
			return nil, fmt.Errorf("%q is not a valid node selector operator", r.Operator)
		}
		req, err := labels.NewRequirement(r.Key, op, r.Values)
		if err != nil {
			return nil, fmt.Errorf("compiling node selector requirement: %w", err)
		}
		sel = sel.Add(*req)
	}
	return sel, nil
}

func (s *preScoreState) Clone() framework.StateData { return s }

// NodeAffinity is the plugin.
type NodeAffinity struct{}

var (
	_ framework.PreFilterPlugin   = (*NodeAffinity)(nil)
	_ framework.FilterPlugin      = (*NodeAffinity)(nil)
	_ framework.PreScorePlugin    = (*NodeAffinity)(nil)
	_ framework.ScorePlugin       = (*NodeAffinity)(nil)
	_ framework.EnqueueExtensions = (*NodeAffinity)(nil)
)

// New builds the plugin.
func New(framework.Handle) (framework.Plugin, error) { return &NodeAffinity{}, nil }

func (*NodeAffinity) Name() string { return Name }

func (*NodeAffinity) EventsToRegister() []framework.ClusterEvent {
	return []framework.ClusterEvent{{Resource: framework.KindNode, ActionType: framework.Add | framework.UpdateNodeLabel}}
}

// RequiredMatches reports whether node satisfies the pod's nodeSelector and
// required node affinity. Shared with PodTopologySpread's
// nodeAffinityPolicy.
func RequiredMatches(pod *v1.Pod, node *v1.Node) bool {
	ok, _ := nodeaffinity.GetRequiredNodeAffinity(pod).Match(node)
	return ok
}

func hasRequired(pod *v1.Pod) bool {
	a := pod.Spec.Affinity
	return len(pod.Spec.NodeSelector) > 0 || (a != nil && a.NodeAffinity != nil && a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil)
}

// PreFilter compiles the required affinity once per cycle. When the only
// term pins metadata.name, it narrows the candidate nodes.
func (*NodeAffinity) PreFilter(_ context.Context, cs *framework.CycleState, pi *framework.PodInfo, _ *framework.Snapshot) (*framework.PreFilterResult, *framework.Status) {
	if !hasRequired(pi.Pod) {
		return nil, framework.NewStatus(framework.Skip)
	}
	st, ok := compileRequired(pi.Pod)
	if !ok {
		st = &preFilterState{}
	}
	st.required = nodeaffinity.GetRequiredNodeAffinity(pi.Pod)
	cs.Write(preFilterKey, st)
	a := pi.Pod.Spec.Affinity
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return nil, nil
	}
	terms := a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	names := map[string]bool{}
	for _, t := range terms {
		found := false
		for _, f := range t.MatchFields {
			if f.Key == "metadata.name" && f.Operator == v1.NodeSelectorOpIn {
				for _, v := range f.Values {
					names[v] = true
				}
				found = true
			}
		}
		if !found {
			// A term without a name pin can match any node.
			return nil, nil
		}
	}
	if len(terms) == 0 {
		return nil, nil
	}
	return &framework.PreFilterResult{NodeNames: names}, nil
}

func (*NodeAffinity) PreFilterExtensions() framework.PreFilterExtensions { return nil }

// Filter enforces the required affinity.
func (*NodeAffinity) Filter(_ context.Context, cs *framework.CycleState, pi *framework.PodInfo, ni *framework.NodeInfo) *framework.Status {
	var req nodeaffinity.RequiredNodeAffinity
	if d, ok := cs.Read(preFilterKey); ok {
		s := d.(*preFilterState)
		if s.fast {
			if !s.match(ni.Node()) {
				return framework.NewStatus(framework.UnschedulableAndUnresolvable, ErrReasonPod)
			}
			return nil
		}
		req = s.required
	} else {
		req = nodeaffinity.GetRequiredNodeAffinity(pi.Pod)
	}
	ok, err := req.Match(ni.Node())
	if err != nil {
		return framework.AsStatus(err)
	}
	if !ok {
		return framework.NewStatus(framework.UnschedulableAndUnresolvable, ErrReasonPod)
	}
	return nil
}

// PreScore compiles the preferred terms; Skip when there are none.
func (*NodeAffinity) PreScore(_ context.Context, cs *framework.CycleState, pi *framework.PodInfo, _ []*framework.NodeInfo) *framework.Status {
	a := pi.Pod.Spec.Affinity
	if a == nil || a.NodeAffinity == nil || len(a.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution) == 0 {
		return framework.NewStatus(framework.Skip)
	}
	prefs := a.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution
	// Validate as upstream does, then compile for cheap per-node matching.
	if _, err := nodeaffinity.NewPreferredSchedulingTerms(prefs); err != nil {
		return framework.AsStatus(err)
	}
	terms, err := compilePreferred(prefs)
	if err != nil {
		return framework.AsStatus(err)
	}
	cs.Write(preScoreKey, &preScoreState{terms: terms})
	return nil
}

// Score sums the weights of matching preferred terms.
func (*NodeAffinity) Score(_ context.Context, cs *framework.CycleState, _ *framework.PodInfo, ni *framework.NodeInfo) (int64, *framework.Status) {
	d, ok := cs.Read(preScoreKey)
	if !ok {
		return 0, nil
	}
	node := ni.Node()
	var score int64
	for _, t := range d.(*preScoreState).terms {
		switch {
		case t.fields != nil:
			score += t.fields.Score(node)
		case t.labels.Matches(labels.Set(node.Labels)):
			score += t.weight
		}
	}
	return score, nil
}

func (p *NodeAffinity) ScoreExtensions() framework.ScoreExtensions { return p }

// NormalizeScore scales to [0, 100].
// NormalizeScoreIgnoresNames: NormalizeScore reads scores only.
func (*NodeAffinity) NormalizeScoreIgnoresNames() {}

func (*NodeAffinity) NormalizeScore(_ context.Context, _ *framework.CycleState, _ *framework.PodInfo, scores []framework.NodeScore) *framework.Status {
	framework.DefaultNormalizeScore(framework.MaxNodeScore, false, scores)
	return nil
}
