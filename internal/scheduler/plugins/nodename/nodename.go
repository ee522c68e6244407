// Package nodename is the NodeName filter: a pod that names a node in
// spec.nodeName fits only that node.
package nodename

import (
	"context"

	"skiff.dev/skiff/internal/scheduler/framework"
)

// Name is the plugin name.
const Name = "NodeName"

// ErrReason is upstream's rejection reason.
const ErrReason = "node(s) didn't match the requested node name"

// NodeName is the plugin.
type NodeName struct{}

var (
	_ framework.FilterPlugin      = (*NodeName)(nil)
	_ framework.EnqueueExtensions = (*NodeName)(nil)
)

// New builds the plugin.
func New(framework.Handle) (framework.Plugin, error) { return &NodeName{}, nil }

func (*NodeName) Name() string { return Name }

func (*NodeName) EventsToRegister() []framework.ClusterEvent {
	return []framework.ClusterEvent{{Resource: framework.KindNode, ActionType: framework.Add}}
}

// Filter rejects every node but the named one.
func (*NodeName) Filter(_ context.Context, _ *framework.CycleState, pi *framework.PodInfo, ni *framework.NodeInfo) *framework.Status {
	if pi.Pod.Spec.NodeName != "" && pi.Pod.Spec.NodeName != ni.Node().Name {
		return framework.NewStatus(framework.UnschedulableAndUnresolvable, ErrReason)
	}
	return nil
}
