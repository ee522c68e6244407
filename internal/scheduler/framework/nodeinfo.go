package framework

import (
	"fmt"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// NodeInfo is a node and the pods placed (or assumed) on it, with the
// aggregates plugins need.
type NodeInfo struct {
	node *v1.Node
	// unschedulable and taints copy the node's spec.unschedulable and
	// spec.taints (the slice shares the node's immutable array), so the
	// filters every node goes through in every cycle read them here and
	// not from the large Node object: in a busy process that object is
	// rarely in the CPU cache, and the first filter to touch it paid a
	// memory load per node per cycle.
	unschedulable bool
	taints        []v1.Taint
	// name is the node's name (the string header; Score reads it per node).
	name string
	// indexSlot is the node's slot in its snapshot's Index (0: none),
	// kept by the Index and the Snapshot; copies have none.
	indexSlot int32

	Pods                         []*PodInfo
	PodsWithAffinity             []*PodInfo
	PodsWithRequiredAntiAffinity []*PodInfo

	// Requested is the sum of the pods' requests; NonZeroCPU/NonZeroMem
	// use scoring defaults for pods requesting nothing.
	Requested              Resource
	NonZeroCPU, NonZeroMem int64
	Allocatable            Resource
	// UsedPorts maps "proto/port" to the host IPs using it.
	UsedPorts map[string][]string

	// Generation is bumped (by the cache) on every change; snapshots copy
	// only nodes whose generation moved.
	Generation int64
}

// NewNodeInfo builds a NodeInfo with the given pods.
func NewNodeInfo(pods ...*v1.Pod) *NodeInfo {
	ni := &NodeInfo{}
	for _, p := range pods {
		ni.AddPodInfo(NewPodInfo(p))
	}
	return ni
}

// Node returns the node, nil if only pods are known so far.
func (n *NodeInfo) Node() *v1.Node {
	if n == nil {
		return nil
	}
	return n.node
}

// SetNode sets the node object and its allocatable.
func (n *NodeInfo) SetNode(node *v1.Node) {
	n.node = node
	n.unschedulable, n.taints, n.name = node.Spec.Unschedulable, node.Spec.Taints, node.Name
	n.Allocatable = NewResource(node.Status.Allocatable)
}

// RemoveNode clears the node object, keeping the pods (they may still be
// deleted later).
func (n *NodeInfo) RemoveNode() { n.node, n.unschedulable, n.taints, n.name = nil, false, nil, "" }

// Name is the node's name ("" without a node).
func (n *NodeInfo) Name() string { return n.name }

// Unschedulable is the node's spec.unschedulable (false without a node).
func (n *NodeInfo) Unschedulable() bool { return n.unschedulable }

// Taints are the node's spec.taints (nil without a node); read-only.
func (n *NodeInfo) Taints() []v1.Taint { return n.taints }

func portKey(p HostPort) string { return fmt.Sprintf("%s/%d", p.Protocol, p.Port) }

// PortConflict reports whether hp collides with a used port: the same
// protocol and port on the same IP, or either side on 0.0.0.0.
func (n *NodeInfo) PortConflict(hp HostPort) bool {
	ips, ok := n.UsedPorts[portKey(hp)]
	if !ok {
		return false
	}
	for _, ip := range ips {
		if ip == hp.IP || ip == "0.0.0.0" || hp.IP == "0.0.0.0" {
			return true
		}
	}
	return false
}

// AddPodInfo adds a pod to the node.
func (n *NodeInfo) AddPodInfo(pi *PodInfo) {
	n.Pods = append(n.Pods, pi)
	if pi.HasAffinity() {
		n.PodsWithAffinity = append(n.PodsWithAffinity, pi)
	}
	if len(pi.RequiredAntiAffinityTerms) > 0 {
		n.PodsWithRequiredAntiAffinity = append(n.PodsWithRequiredAntiAffinity, pi)
	}
	n.update(pi, 1)
}

// AddPod is AddPodInfo(NewPodInfo(pod)).
func (n *NodeInfo) AddPod(pod *v1.Pod) { n.AddPodInfo(NewPodInfo(pod)) }

func (n *NodeInfo) update(pi *PodInfo, sign int64) {
	if sign > 0 {
		n.Requested.AddResource(&pi.Requests)
	} else {
		n.Requested.SubResource(&pi.Requests)
	}
	n.NonZeroCPU += sign * pi.NonZeroCPU
	n.NonZeroMem += sign * pi.NonZeroMem
	for _, hp := range HostPorts(pi.Pod) {
		k := portKey(hp)
		if sign > 0 {
			if n.UsedPorts == nil {
				n.UsedPorts = map[string][]string{}
			}
			n.UsedPorts[k] = append(n.UsedPorts[k], hp.IP)
			continue
		}
		ips := n.UsedPorts[k]
		for i, ip := range ips {
			if ip == hp.IP {
				ips = append(ips[:i:i], ips[i+1:]...)
				break
			}
		}
		if len(ips) == 0 {
			delete(n.UsedPorts, k)
		} else {
			n.UsedPorts[k] = ips
		}
	}
}

func removeFrom(list []*PodInfo, uid types.UID) ([]*PodInfo, bool) {
	for i, p := range list {
		if p.Pod.UID == uid {
			// Copy so that clones sharing the backing array are untouched.
			out := make([]*PodInfo, 0, len(list)-1)
			out = append(out, list[:i]...)
			return append(out, list[i+1:]...), true
		}
	}
	return list, false
}

// RemovePod removes the pod with pod's UID; an error if it is not there.
func (n *NodeInfo) RemovePod(pod *v1.Pod) error {
	var pi *PodInfo
	for _, p := range n.Pods {
		if p.Pod.UID == pod.UID {
			pi = p
			break
		}
	}
	if pi == nil {
		return fmt.Errorf("pod %s/%s not found on node %s", pod.Namespace, pod.Name, n.nodeName())
	}
	n.Pods, _ = removeFrom(n.Pods, pod.UID)
	n.PodsWithAffinity, _ = removeFrom(n.PodsWithAffinity, pod.UID)
	n.PodsWithRequiredAntiAffinity, _ = removeFrom(n.PodsWithRequiredAntiAffinity, pod.UID)
	n.update(pi, -1)
	return nil
}

// ReplacePodInfo puts pi in place of the node's PodInfo for the same pod
// (same UID) when the two are Equivalent, leaving every aggregate as it
// is, and reports whether it did; otherwise the caller removes and adds.
// An assigned pod's status writes and its binding's confirmation keep
// its labels, requests and ports: a replacement instead of a removal and
// an addition skips redoing the accounting and, in the snapshot's Index,
// the pod's counters (see Index.replaceNode).
func (n *NodeInfo) ReplacePodInfo(pi *PodInfo) bool {
	for i, p := range n.Pods {
		if p.Pod.UID != pi.Pod.UID {
			continue
		}
		if !p.Equivalent(pi) {
			return false
		}
		// The replacement keeps the pod's Index identity (pi is the
		// caller's new PodInfo, not yet shared).
		pi.ident = p.ident
		// Copy so that clones sharing the backing array are untouched.
		pods := append([]*PodInfo(nil), n.Pods...)
		pods[i] = pi
		n.Pods = pods
		return true
	}
	return false
}

func (n *NodeInfo) nodeName() string {
	if n.node == nil {
		return "<nil>"
	}
	return n.node.Name
}

// Clone returns a copy that can be mutated (pods added/removed) without
// affecting n. PodInfos themselves are shared: they are immutable.
func (n *NodeInfo) Clone() *NodeInfo {
	c := &NodeInfo{
		node:                         n.node,
		unschedulable:                n.unschedulable,
		taints:                       n.taints,
		name:                         n.name,
		Pods:                         append([]*PodInfo(nil), n.Pods...),
		Requested:                    n.Requested.Clone(),
		NonZeroCPU:                   n.NonZeroCPU,
		NonZeroMem:                   n.NonZeroMem,
		Allocatable:                  n.Allocatable.Clone(),
		Generation:                   n.Generation,
		PodsWithAffinity:             append([]*PodInfo(nil), n.PodsWithAffinity...),
		PodsWithRequiredAntiAffinity: append([]*PodInfo(nil), n.PodsWithRequiredAntiAffinity...),
	}
	if n.UsedPorts != nil {
		c.UsedPorts = make(map[string][]string, len(n.UsedPorts))
		for k, v := range n.UsedPorts {
			c.UsedPorts[k] = append([]string(nil), v...)
		}
	}
	return c
}
