// Package nodeports is the NodePorts filter: a pod asking for a host port
// fits only nodes where no pod already uses that port (same protocol, and
// the same IP or either side on 0.0.0.0).
package nodeports

import (
	"context"

	"skiff.dev/skiff/internal/scheduler/framework"
)

// Name is the plugin name.
const Name = "NodePorts"

// ErrReason is upstream's reason.
const ErrReason = "node(s) didn't have free ports for the requested pod ports"

const stateKey framework.StateKey = "PreFilter" + Name

type state []framework.HostPort

func (s state) Clone() framework.StateData { return s }

// NodePorts is the plugin.
type NodePorts struct{}

var (
	_ framework.PreFilterPlugin   = (*NodePorts)(nil)
	_ framework.FilterPlugin      = (*NodePorts)(nil)
	_ framework.EnqueueExtensions = (*NodePorts)(nil)
)

// New builds the plugin.
func New(framework.Handle) (framework.Plugin, error) { return &NodePorts{}, nil }

func (*NodePorts) Name() string { return Name }

func (*NodePorts) EventsToRegister() []framework.ClusterEvent {
	return []framework.ClusterEvent{
		{Resource: framework.KindAssignedPod, ActionType: framework.Delete},
		{Resource: framework.KindNode, ActionType: framework.Add},
	}
}

// PreFilter collects the pod's host ports; Skip when it has none.
func (*NodePorts) PreFilter(_ context.Context, cs *framework.CycleState, pi *framework.PodInfo, _ *framework.Snapshot) (*framework.PreFilterResult, *framework.Status) {
	ports := framework.HostPorts(pi.Pod)
	if len(ports) == 0 {
		return nil, framework.NewStatus(framework.Skip)
	}
	cs.Write(stateKey, state(ports))
	return nil, nil
}

func (*NodePorts) PreFilterExtensions() framework.PreFilterExtensions { return nil }

// Filter rejects nodes where a wanted port is taken.
func (*NodePorts) Filter(_ context.Context, cs *framework.CycleState, pi *framework.PodInfo, ni *framework.NodeInfo) *framework.Status {
	var ports []framework.HostPort
	if d, ok := cs.Read(stateKey); ok {
		ports = d.(state)
	} else {
		ports = framework.HostPorts(pi.Pod)
	}
	for _, p := range ports {
		if ni.PortConflict(p) {
			return framework.NewStatus(framework.Unschedulable, ErrReason)
		}
	}
	return nil
}
