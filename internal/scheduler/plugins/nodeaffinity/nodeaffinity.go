// Package nodeaffinity is the NodeAffinity plugin: Filter enforces
// spec.nodeSelector and requiredDuringScheduling node affinity (all
// operators, matchExpressions and matchFields); Score sums the weights of
// the preferred terms a node matches, normalized to [0, 100].
package nodeaffinity

import (
	"context"

	v1 "k8s.io/api/core/v1"
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
}

func (s *preFilterState) Clone() framework.StateData { return s }

type preScoreState struct {
	preferred *nodeaffinity.PreferredSchedulingTerms
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
	cs.Write(preFilterKey, &preFilterState{required: nodeaffinity.GetRequiredNodeAffinity(pi.Pod)})
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
		req = d.(*preFilterState).required
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
	terms, err := nodeaffinity.NewPreferredSchedulingTerms(a.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution)
	if err != nil {
		return framework.AsStatus(err)
	}
	cs.Write(preScoreKey, &preScoreState{preferred: terms})
	return nil
}

// Score sums the weights of matching preferred terms.
func (*NodeAffinity) Score(_ context.Context, cs *framework.CycleState, _ *framework.PodInfo, ni *framework.NodeInfo) (int64, *framework.Status) {
	d, ok := cs.Read(preScoreKey)
	if !ok {
		return 0, nil
	}
	return d.(*preScoreState).preferred.Score(ni.Node()), nil
}

func (p *NodeAffinity) ScoreExtensions() framework.ScoreExtensions { return p }

// NormalizeScore scales to [0, 100].
func (*NodeAffinity) NormalizeScore(_ context.Context, _ *framework.CycleState, _ *framework.PodInfo, scores []framework.NodeScore) *framework.Status {
	framework.DefaultNormalizeScore(framework.MaxNodeScore, false, scores)
	return nil
}
