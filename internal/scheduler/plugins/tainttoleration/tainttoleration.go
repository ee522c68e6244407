// Package tainttoleration is the TaintToleration plugin: Filter rejects
// nodes with a NoSchedule or NoExecute taint the pod does not tolerate;
// Score prefers nodes with fewer untolerated PreferNoSchedule taints.
// It also exports the toleration-matching helpers other plugins share.
package tainttoleration

import (
	"context"

	v1 "k8s.io/api/core/v1"

	"skiff.dev/skiff/internal/scheduler/framework"
)

// Name is the plugin name.
const Name = "TaintToleration"

// ErrReasonNotMatch is upstream's current reason (taint keys and values
// are no longer echoed in the message since v1.34).
const ErrReasonNotMatch = "node(s) had untolerated taint(s)"

// TaintToleration is the plugin.
type TaintToleration struct{}

var (
	_ framework.FilterPlugin      = (*TaintToleration)(nil)
	_ framework.ScorePlugin       = (*TaintToleration)(nil)
	_ framework.ScoreExtensions   = (*TaintToleration)(nil)
	_ framework.EnqueueExtensions = (*TaintToleration)(nil)
)

// New builds the plugin.
func New(framework.Handle) (framework.Plugin, error) { return &TaintToleration{}, nil }

func (*TaintToleration) Name() string { return Name }

func (*TaintToleration) EventsToRegister() []framework.ClusterEvent {
	return []framework.ClusterEvent{{Resource: framework.KindNode, ActionType: framework.Add | framework.UpdateNodeTaint}}
}

// ToleratesTaint reports whether one toleration tolerates taint: effects
// match (an empty toleration effect matches all), keys match (an empty key
// with Exists matches all keys), and Exists or equal values.
func ToleratesTaint(t *v1.Toleration, taint *v1.Taint) bool {
	if t.Effect != "" && t.Effect != taint.Effect {
		return false
	}
	if t.Key != "" && t.Key != taint.Key {
		return false
	}
	switch t.Operator {
	case v1.TolerationOpExists:
		return true
	case "", v1.TolerationOpEqual:
		return t.Value == taint.Value
	}
	return false
}

// TolerationsTolerateTaint reports whether any toleration tolerates taint.
func TolerationsTolerateTaint(tols []v1.Toleration, taint *v1.Taint) bool {
	for i := range tols {
		if ToleratesTaint(&tols[i], taint) {
			return true
		}
	}
	return false
}

// FindUntoleratedTaint returns the first NoSchedule/NoExecute taint not
// tolerated.
func FindUntoleratedTaint(taints []v1.Taint, tols []v1.Toleration) (v1.Taint, bool) {
	for i := range taints {
		t := &taints[i]
		if t.Effect != v1.TaintEffectNoSchedule && t.Effect != v1.TaintEffectNoExecute {
			continue
		}
		if !TolerationsTolerateTaint(tols, t) {
			return *t, true
		}
	}
	return v1.Taint{}, false
}

// Filter rejects nodes with an untolerated NoSchedule/NoExecute taint.
func (*TaintToleration) Filter(_ context.Context, _ *framework.CycleState, pi *framework.PodInfo, ni *framework.NodeInfo) *framework.Status {
	if _, bad := FindUntoleratedTaint(ni.Taints(), pi.Pod.Spec.Tolerations); bad {
		return framework.NewStatus(framework.UnschedulableAndUnresolvable, ErrReasonNotMatch)
	}
	return nil
}

// Score counts untolerated PreferNoSchedule taints (normalized reversed).
func (*TaintToleration) Score(_ context.Context, _ *framework.CycleState, pi *framework.PodInfo, ni *framework.NodeInfo) (int64, *framework.Status) {
	var n int64
	taints := ni.Taints()
	for i := range taints {
		if taints[i].Effect == v1.TaintEffectPreferNoSchedule && !TolerationsTolerateTaint(pi.Pod.Spec.Tolerations, &taints[i]) {
			n++
		}
	}
	return n, nil
}

func (p *TaintToleration) ScoreExtensions() framework.ScoreExtensions { return p }

// NormalizeScore makes fewer untolerated taints score higher.
// NormalizeScoreIgnoresNames: NormalizeScore reads scores only.
func (*TaintToleration) NormalizeScoreIgnoresNames() {}

func (*TaintToleration) NormalizeScore(_ context.Context, _ *framework.CycleState, _ *framework.PodInfo, scores []framework.NodeScore) *framework.Status {
	framework.DefaultNormalizeScore(framework.MaxNodeScore, true, scores)
	return nil
}
