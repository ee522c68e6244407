// Package cache is the scheduler's in-memory view of nodes and pods,
// including "assumed" pods: pods the scheduler has placed but whose binding
// the API has not confirmed yet. Scheduling the next pod against assumed
// state is what lets binding run asynchronously.
//
// Contract:
//   - AssumePod places a pod (with spec.nodeName set) immediately;
//     FinishBinding starts its expiry clock (if a TTL is configured);
//     ForgetPod undoes an assume after a failed bind; the informer's AddPod
//     confirms it. Expired assumed pods are dropped by
//     CleanupExpiredAssumedPods (Run calls it every second).
//   - UpdateSnapshot copies into a framework.Snapshot only the nodes changed
//     since the snapshot's generation: nodes sit in a list ordered by last
//     change, so the cost is O(changed nodes), not O(nodes).
//   - A confirmed or updated pod whose new version counts the same
//     (framework.PodInfo.Equivalent: labels, requests, ports, no affinity
//     terms) replaces the cached one in place: nothing is re-accounted,
//     and the snapshot's Index only repoints the pod's entry.
//   - The cache is safe for concurrent use; a Snapshot is not and belongs to
//     the scheduling goroutine. One cache feeds one snapshot (the
//     removed-node and list-dirty bookkeeping is per cache).
package cache

import (
	"context"
	"fmt"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"

	"skiff.dev/skiff/internal/scheduler/framework"
)

type nodeItem struct {
	info       *framework.NodeInfo
	prev, next *nodeItem
}

type podState struct {
	pod             *v1.Pod
	deadline        time.Time
	bindingFinished bool
}

// Cache is the scheduler cache.
type Cache struct {
	mu         sync.RWMutex
	clock      clock.PassiveClock
	ttl        time.Duration
	nodes      map[string]*nodeItem
	head       *nodeItem
	order      []string // node names in insertion order, for the snapshot list
	listDirty  bool     // order or node presence changed since last snapshot
	removed    []string // nodes unlinked since the last snapshot
	pods       map[types.UID]*podState
	assumed    map[types.UID]bool
	generation int64
}

// New returns a cache. ttl is how long an assumed pod whose binding
// finished may wait for the informer to confirm it; 0 means forever, as
// upstream's default.
func New(clk clock.PassiveClock, ttl time.Duration) *Cache {
	return &Cache{clock: clk, ttl: ttl, nodes: map[string]*nodeItem{}, pods: map[types.UID]*podState{}, assumed: map[types.UID]bool{}}
}

func (c *Cache) touch(name string) *nodeItem {
	it, ok := c.nodes[name]
	if !ok {
		it = &nodeItem{info: &framework.NodeInfo{}}
		c.nodes[name] = it
	} else if it != c.head {
		if it.prev != nil {
			it.prev.next = it.next
		}
		if it.next != nil {
			it.next.prev = it.prev
		}
		it.prev, it.next = nil, nil
	} else {
		c.generation++
		it.info.Generation = c.generation
		return it
	}
	it.next = c.head
	if c.head != nil {
		c.head.prev = it
	}
	c.head = it
	c.generation++
	it.info.Generation = c.generation
	return it
}

func (c *Cache) unlink(name string) {
	it, ok := c.nodes[name]
	if !ok {
		return
	}
	if it.prev != nil {
		it.prev.next = it.next
	}
	if it.next != nil {
		it.next.prev = it.prev
	}
	if c.head == it {
		c.head = it.next
	}
	delete(c.nodes, name)
	c.removed = append(c.removed, name)
	c.generation++
}

// AddNode adds or replaces a node.
func (c *Cache) AddNode(node *v1.Node) {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, existed := c.nodes[node.Name]
	it := c.touch(node.Name)
	if it.info.Node() == nil {
		c.listDirty = true
		if !existed {
			c.order = append(c.order, node.Name)
		}
	}
	it.info.SetNode(node)
}

// UpdateNode replaces a node.
func (c *Cache) UpdateNode(_, node *v1.Node) { c.AddNode(node) }

// RemoveNode removes a node. Its pods stay (their deletions will follow)
// but the node leaves the snapshot list.
func (c *Cache) RemoveNode(node *v1.Node) {
	c.mu.Lock()
	defer c.mu.Unlock()
	it, ok := c.nodes[node.Name]
	if !ok {
		return
	}
	c.listDirty = true
	if len(it.info.Pods) == 0 {
		c.unlink(node.Name)
		c.removeOrder(node.Name)
		return
	}
	it = c.touch(node.Name)
	it.info.RemoveNode()
}

func (c *Cache) removeOrder(name string) {
	for i, n := range c.order {
		if n == name {
			c.order = append(c.order[:i], c.order[i+1:]...)
			return
		}
	}
}

func (c *Cache) addPodLocked(pod *v1.Pod) { c.addPodInfoLocked(framework.NewPodInfo(pod)) }

func (c *Cache) addPodInfoLocked(pi *framework.PodInfo) {
	pod := pi.Pod
	it := c.touch(pod.Spec.NodeName)
	if _, ok := c.nodes[pod.Spec.NodeName]; ok && it.info.Node() == nil && len(it.info.Pods) == 0 {
		c.order = appendUnique(c.order, pod.Spec.NodeName)
	}
	it.info.AddPodInfo(pi)
}

func appendUnique(s []string, v string) []string {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}

func (c *Cache) removePodLocked(pod *v1.Pod) error {
	it, ok := c.nodes[pod.Spec.NodeName]
	if !ok {
		return fmt.Errorf("node %q of pod %s/%s not in cache", pod.Spec.NodeName, pod.Namespace, pod.Name)
	}
	if err := it.info.RemovePod(pod); err != nil {
		return fmt.Errorf("removing pod from cache: %w", err)
	}
	it = c.touch(pod.Spec.NodeName)
	if it.info.Node() == nil && len(it.info.Pods) == 0 {
		c.unlink(pod.Spec.NodeName)
		c.removeOrder(pod.Spec.NodeName)
	}
	return nil
}

// AssumePod places pod (spec.nodeName set) before its binding is confirmed.
func (c *Cache) AssumePod(pod *v1.Pod) error { return c.AssumePodInfo(framework.NewPodInfo(pod)) }

// AssumePodInfo is AssumePod with the pod's PodInfo already computed
// (pi.Pod is the assumed pod, spec.nodeName set).
func (c *Cache) AssumePodInfo(pi *framework.PodInfo) error {
	pod := pi.Pod
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.pods[pod.UID]; ok {
		return fmt.Errorf("pod %s/%s is already in the cache", pod.Namespace, pod.Name)
	}
	c.addPodInfoLocked(pi)
	c.pods[pod.UID] = &podState{pod: pod}
	c.assumed[pod.UID] = true
	return nil
}

// FinishBinding starts the expiry clock of an assumed pod.
func (c *Cache) FinishBinding(pod *v1.Pod) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	ps, ok := c.pods[pod.UID]
	if !ok || !c.assumed[pod.UID] {
		return nil // already confirmed or removed
	}
	ps.bindingFinished = true
	ps.deadline = c.clock.Now().Add(c.ttl)
	return nil
}

// ForgetPod removes an assumed pod (its binding failed).
func (c *Cache) ForgetPod(pod *v1.Pod) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	ps, ok := c.pods[pod.UID]
	if !ok || !c.assumed[pod.UID] {
		return fmt.Errorf("pod %s/%s is not assumed", pod.Namespace, pod.Name)
	}
	delete(c.pods, pod.UID)
	delete(c.assumed, pod.UID)
	return c.removePodLocked(ps.pod)
}

// IsAssumedPod reports whether the pod is assumed and unconfirmed.
func (c *Cache) IsAssumedPod(pod *v1.Pod) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.assumed[pod.UID]
}

// AddPod records an assigned pod seen by the informer, confirming an
// assumed one (moving it if it landed elsewhere).
func (c *Cache) AddPod(pod *v1.Pod) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ps, ok := c.pods[pod.UID]; ok {
		if !c.assumed[pod.UID] {
			return fmt.Errorf("pod %s/%s was already added", pod.Namespace, pod.Name)
		}
		if c.replacePodLocked(ps.pod, pod) {
			delete(c.assumed, pod.UID)
			return nil
		}
		if err := c.removePodLocked(ps.pod); err != nil {
			return err
		}
		delete(c.assumed, pod.UID)
	}
	c.addPodLocked(pod)
	c.pods[pod.UID] = &podState{pod: pod}
	return nil
}

// replacePodLocked swaps the cached pod cur for pod, its new version on
// the same node, in place when their PodInfos are Equivalent (same
// labels, requests, ports, no affinity terms: a status write, a binding
// confirmed where it was assumed), and reports whether it did. The node
// still moves to the next generation, so the snapshot gets the new pod
// object, but nothing is re-accounted.
func (c *Cache) replacePodLocked(cur, pod *v1.Pod) bool {
	if cur.Spec.NodeName != pod.Spec.NodeName {
		return false
	}
	it, ok := c.nodes[pod.Spec.NodeName]
	if !ok || !it.info.ReplacePodInfo(framework.NewPodInfo(pod)) {
		return false
	}
	c.touch(pod.Spec.NodeName)
	c.pods[pod.UID] = &podState{pod: pod}
	return true
}

// UpdatePod replaces an assigned pod.
func (c *Cache) UpdatePod(old, pod *v1.Pod) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	ps, ok := c.pods[old.UID]
	if !ok || c.assumed[old.UID] {
		c.addPodLocked(pod)
		if ok {
			_ = c.removePodLocked(ps.pod)
			delete(c.assumed, old.UID)
		}
		c.pods[pod.UID] = &podState{pod: pod}
		return nil
	}
	if c.replacePodLocked(ps.pod, pod) {
		return nil
	}
	if err := c.removePodLocked(ps.pod); err != nil {
		return err
	}
	c.addPodLocked(pod)
	c.pods[pod.UID] = &podState{pod: pod}
	return nil
}

// RemovePod removes an assigned (or assumed) pod.
func (c *Cache) RemovePod(pod *v1.Pod) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	ps, ok := c.pods[pod.UID]
	if !ok {
		return nil
	}
	delete(c.pods, pod.UID)
	delete(c.assumed, pod.UID)
	return c.removePodLocked(ps.pod)
}

// CleanupExpiredAssumedPods drops assumed pods whose binding finished more
// than the TTL ago without a confirmation.
func (c *Cache) CleanupExpiredAssumedPods() {
	if c.ttl == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clock.Now()
	for uid := range c.assumed {
		ps := c.pods[uid]
		if ps.bindingFinished && now.After(ps.deadline) {
			delete(c.pods, uid)
			delete(c.assumed, uid)
			_ = c.removePodLocked(ps.pod)
		}
	}
}

// Run cleans up expired assumed pods every second until ctx ends.
func (c *Cache) Run(ctx context.Context, clk clock.Clock) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-clk.After(time.Second):
			c.CleanupExpiredAssumedPods()
		}
	}
}

// Counts returns the number of nodes (with a Node object) and pods.
func (c *Cache) Counts() (nodes, pods int) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, it := range c.nodes {
		if it.info.Node() != nil {
			nodes++
		}
	}
	return nodes, len(c.pods)
}

// NodeInfo returns a copy of a node's info (for tests and debugging).
func (c *Cache) NodeInfo(name string) (*framework.NodeInfo, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	it, ok := c.nodes[name]
	if !ok {
		return nil, false
	}
	return it.info.Clone(), true
}

// UpdateSnapshot brings snap up to date, copying only changed nodes.
func (c *Cache) UpdateSnapshot(snap *framework.Snapshot) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if snap.NodeInfoMap == nil {
		snap.NodeInfoMap = map[string]*framework.NodeInfo{}
	}
	affinityChanged := false
	for it := c.head; it != nil && it.info.Generation > snap.Generation; it = it.next {
		name := ""
		if n := it.info.Node(); n != nil {
			name = n.Name
		} else if len(it.info.Pods) > 0 {
			name = it.info.Pods[0].Pod.Spec.NodeName
		}
		if snap.SetNodeInfo(name, it.info.Clone()) {
			affinityChanged = true
		}
	}
	for _, name := range c.removed {
		if _, ok := c.nodes[name]; !ok {
			snap.DeleteNodeInfo(name)
		}
		c.listDirty = true
	}
	c.removed = c.removed[:0]
	if c.listDirty || snap.NodeInfoList == nil {
		snap.NodeInfoList = snap.NodeInfoList[:0]
		for _, name := range c.order {
			if ni, ok := snap.NodeInfoMap[name]; ok && ni.Node() != nil {
				snap.NodeInfoList = append(snap.NodeInfoList, ni)
			}
		}
		c.listDirty = false
		affinityChanged = true
	}
	if affinityChanged {
		snap.RebuildAffinityLists()
	}
	snap.Generation = c.generation
}
