// Package nodeunschedulable is the NodeUnschedulable filter: cordoned nodes
// (spec.unschedulable) reject pods unless they tolerate the
// node.kubernetes.io/unschedulable:NoSchedule taint.
package nodeunschedulable

import (
	"context"

	v1 "k8s.io/api/core/v1"

	"skiff.dev/skiff/internal/scheduler/framework"
	"skiff.dev/skiff/internal/scheduler/plugins/tainttoleration"
)

// Name is the plugin name.
const Name = "NodeUnschedulable"

// ErrReasonUnschedulable is upstream's reason.
const ErrReasonUnschedulable = "node(s) were unschedulable"

// NodeUnschedulable is the plugin.
type NodeUnschedulable struct{}

var (
	_ framework.FilterPlugin      = (*NodeUnschedulable)(nil)
	_ framework.EnqueueExtensions = (*NodeUnschedulable)(nil)
)

// New builds the plugin.
func New(framework.Handle) (framework.Plugin, error) { return &NodeUnschedulable{}, nil }

func (*NodeUnschedulable) Name() string { return Name }

func (*NodeUnschedulable) EventsToRegister() []framework.ClusterEvent {
	return []framework.ClusterEvent{{Resource: framework.KindNode, ActionType: framework.Add | framework.UpdateNodeTaint}}
}

var unschedulableTaint = v1.Taint{Key: v1.TaintNodeUnschedulable, Effect: v1.TaintEffectNoSchedule}

// Filter rejects cordoned nodes.
func (*NodeUnschedulable) Filter(_ context.Context, _ *framework.CycleState, pi *framework.PodInfo, ni *framework.NodeInfo) *framework.Status {
	if !ni.Unschedulable() {
		return nil
	}
	if tainttoleration.TolerationsTolerateTaint(pi.Pod.Spec.Tolerations, &unschedulableTaint) {
		return nil
	}
	return framework.NewStatus(framework.UnschedulableAndUnresolvable, ErrReasonUnschedulable)
}
