package framework

import (
	"fmt"

	v1 "k8s.io/api/core/v1"
)

// Snapshot is the cluster as one scheduling cycle sees it. The cache
// updates it incrementally between cycles (see cache.UpdateSnapshot); during
// a cycle it is read-only.
type Snapshot struct {
	NodeInfoMap map[string]*NodeInfo
	// NodeInfoList holds the nodes (NodeInfo with a Node) in a stable order.
	NodeInfoList []*NodeInfo
	// HavePodsWithAffinityList / HavePodsWithRequiredAntiAffinityList are
	// the subsets of NodeInfoList that have such pods, so inter-pod
	// affinity is O(nodes with such pods), not O(nodes).
	HavePodsWithAffinityList             []*NodeInfo
	HavePodsWithRequiredAntiAffinityList []*NodeInfo
	// Generation is the cache generation the snapshot reflects.
	Generation int64

	// index aggregates the pods for inter-pod affinity and topology spread;
	// nil until first needed, then maintained by SetNodeInfo,
	// DeleteNodeInfo and AddPod.
	index *Index
}

// Index returns the snapshot's aggregates, building them on first use.
// Code that changes NodeInfos in place must go through SetNodeInfo,
// DeleteNodeInfo or AddPod to keep it current.
func (s *Snapshot) Index() *Index {
	if s.index == nil {
		s.index = buildIndex(s.NodeInfoList)
	}
	return s.index
}

// SetNodeInfo makes the snapshot's NodeInfo for name a copy of ni (keeping
// the NodeInfo pointer stable for NodeInfoList) and updates the index.
// It reports whether the node's having pods with affinity or required
// anti-affinity changed (the affinity lists then need a rebuild).
func (s *Snapshot) SetNodeInfo(name string, ni *NodeInfo) (affinityChanged bool) {
	if s.NodeInfoMap == nil {
		s.NodeInfoMap = map[string]*NodeInfo{}
	}
	existing, ok := s.NodeInfoMap[name]
	if !ok {
		existing = &NodeInfo{}
		s.NodeInfoMap[name] = existing
	}
	old := *existing
	*existing = *ni
	existing.indexSlot = old.indexSlot
	if s.index != nil {
		s.index.replaceNode(existing, old.node, old.Pods, existing.node, existing.Pods)
	}
	return (len(old.PodsWithAffinity) > 0) != (len(existing.PodsWithAffinity) > 0) ||
		(len(old.PodsWithRequiredAntiAffinity) > 0) != (len(existing.PodsWithRequiredAntiAffinity) > 0)
}

// DeleteNodeInfo removes a node (and its pods) from the snapshot's map and
// index; the caller rebuilds NodeInfoList.
func (s *Snapshot) DeleteNodeInfo(name string) {
	ni, ok := s.NodeInfoMap[name]
	if !ok {
		return
	}
	if s.index != nil {
		s.index.removeNode(ni, ni.node, ni.Pods)
	}
	delete(s.NodeInfoMap, name)
}

// NewSnapshot builds a snapshot from scratch: for tests and benchmarks.
// Pods are placed on the node named by spec.nodeName.
func NewSnapshot(pods []*v1.Pod, nodes []*v1.Node) *Snapshot {
	s := &Snapshot{NodeInfoMap: map[string]*NodeInfo{}}
	for _, n := range nodes {
		ni := &NodeInfo{}
		ni.SetNode(n)
		s.NodeInfoMap[n.Name] = ni
		s.NodeInfoList = append(s.NodeInfoList, ni)
	}
	for _, p := range pods {
		if ni, ok := s.NodeInfoMap[p.Spec.NodeName]; ok {
			ni.AddPod(p)
		}
	}
	s.RebuildAffinityLists()
	s.index = buildIndex(s.NodeInfoList)
	return s
}

// RebuildAffinityLists recomputes the affinity sublists from NodeInfoList.
func (s *Snapshot) RebuildAffinityLists() {
	s.HavePodsWithAffinityList = s.HavePodsWithAffinityList[:0]
	s.HavePodsWithRequiredAntiAffinityList = s.HavePodsWithRequiredAntiAffinityList[:0]
	for _, ni := range s.NodeInfoList {
		if len(ni.PodsWithAffinity) > 0 {
			s.HavePodsWithAffinityList = append(s.HavePodsWithAffinityList, ni)
		}
		if len(ni.PodsWithRequiredAntiAffinity) > 0 {
			s.HavePodsWithRequiredAntiAffinityList = append(s.HavePodsWithRequiredAntiAffinityList, ni)
		}
	}
}

// Get returns the NodeInfo of a node.
func (s *Snapshot) Get(name string) (*NodeInfo, error) {
	ni, ok := s.NodeInfoMap[name]
	if !ok || ni.Node() == nil {
		return nil, fmt.Errorf("nodeinfo %q not found", name)
	}
	return ni, nil
}

// List returns all nodes.
func (s *Snapshot) List() []*NodeInfo { return s.NodeInfoList }

// NumNodes is len(List()).
func (s *Snapshot) NumNodes() int { return len(s.NodeInfoList) }

// AddPod places a pod into the snapshot (used by benchmarks' fake binder to
// emulate the cache's assume without a cache).
func (s *Snapshot) AddPod(pod *v1.Pod) error {
	ni, ok := s.NodeInfoMap[pod.Spec.NodeName]
	if !ok {
		return fmt.Errorf("node %q not in snapshot", pod.Spec.NodeName)
	}
	hadAff, hadAnti := len(ni.PodsWithAffinity) > 0, len(ni.PodsWithRequiredAntiAffinity) > 0
	pi := NewPodInfo(pod)
	ni.AddPodInfo(pi)
	if s.index != nil && ni.node != nil {
		s.index.addPod(pi, podLoc{node: ni.node.Name, labels: ni.node.Labels, ni: ni}, 1)
	}
	if !hadAff && len(ni.PodsWithAffinity) > 0 {
		s.HavePodsWithAffinityList = append(s.HavePodsWithAffinityList, ni)
	}
	if !hadAnti && len(ni.PodsWithRequiredAntiAffinity) > 0 {
		s.HavePodsWithRequiredAntiAffinityList = append(s.HavePodsWithRequiredAntiAffinityList, ni)
	}
	return nil
}
