// Package queue is the scheduling queue: pods waiting for a node.
//
// Three sub-queues, as upstream:
//   - activeQ: pods ready to be tried, highest priority first, then the
//     earliest queued;
//   - backoffQ: pods that failed recently, released after an exponential
//     per-pod back-off (initial * 2^(attempts-1), capped);
//   - unschedulable: pods no node fits. They wait for a cluster event one
//     of the plugins that rejected them registered interest in
//     (EnqueueExtensions), e.g. a node added or a pod deleted, and then go
//     to backoffQ or activeQ. A pod left there longer than
//     MaxInUnschedulable is flushed anyway (Run checks every 30 s).
//
// An event that arrives while a pod is being scheduled (moveRequestCycle)
// sends that pod to backoffQ instead of unschedulable, so the event is not
// lost. Pop blocks on a condition variable: there is no busy polling. The
// clock is injected; tests drive back-off with a fake clock and the Flush
// methods.
//
// The queue also keeps the nominator: pods nominated to a node by
// preemption, which the scheduler treats as occupying that node for pods
// of lower or equal priority.
package queue

import (
	"container/heap"
	"context"
	"errors"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/utils/clock"

	"skiff.dev/skiff/internal/scheduler/framework"
)

// ErrClosed is returned by Pop after Close.
var ErrClosed = errors.New("scheduling queue is closed")

// QueuedPodInfo is a pod in the queue with its scheduling history.
type QueuedPodInfo struct {
	*framework.PodInfo
	// Timestamp is when the pod was last added to a queue.
	Timestamp time.Time
	// InitialAttemptTimestamp is when the pod was first popped.
	InitialAttemptTimestamp time.Time
	Attempts                int
	// UnschedulablePlugins rejected the pod in its last attempt; empty
	// means an error (retry on any event).
	UnschedulablePlugins sets.Set[string]
	backoffExpiry        time.Time
	index                int
}

// Options configures a Queue.
type Options struct {
	InitialBackoff     time.Duration // default 1 s
	MaxBackoff         time.Duration // default 10 s
	MaxInUnschedulable time.Duration // default 5 min
	// PluginEvents maps plugin name to the events that can help pods it
	// rejected (Framework.EventsToRegister).
	PluginEvents map[string][]framework.ClusterEvent
}

type podHeap struct {
	items []*QueuedPodInfo
	less  func(a, b *QueuedPodInfo) bool
}

func (h *podHeap) Len() int           { return len(h.items) }
func (h *podHeap) Less(i, j int) bool { return h.less(h.items[i], h.items[j]) }
func (h *podHeap) Swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	h.items[i].index, h.items[j].index = i, j
}
func (h *podHeap) Push(x any) {
	q := x.(*QueuedPodInfo)
	q.index = len(h.items)
	h.items = append(h.items, q)
}
func (h *podHeap) Pop() any {
	n := len(h.items)
	q := h.items[n-1]
	h.items = h.items[:n-1]
	q.index = -1
	return q
}

func priority(p *v1.Pod) int32 {
	if p.Spec.Priority != nil {
		return *p.Spec.Priority
	}
	return 0
}

// Queue is the scheduling queue.
type Queue struct {
	mu    sync.Mutex
	cond  *sync.Cond
	clock clock.Clock
	opts  Options

	active, backoff *podHeap
	inActive        map[types.UID]*QueuedPodInfo
	inBackoff       map[types.UID]*QueuedPodInfo
	unsched         map[types.UID]*QueuedPodInfo

	schedulingCycle  int64
	moveRequestCycle int64
	closed           bool

	nominated   map[string][]*framework.PodInfo
	nominatedOn map[types.UID]string

	// inFlight holds popped pods not yet Done, with their latest version
	// (updates arriving mid-cycle); a nil value means deleted mid-cycle.
	inFlight map[types.UID]*v1.Pod
}

// New returns an empty queue.
func New(clk clock.Clock, opts Options) *Queue {
	if opts.InitialBackoff == 0 {
		opts.InitialBackoff = time.Second
	}
	if opts.MaxBackoff == 0 {
		opts.MaxBackoff = 10 * time.Second
	}
	if opts.MaxInUnschedulable == 0 {
		opts.MaxInUnschedulable = 5 * time.Minute
	}
	q := &Queue{
		clock: clk, opts: opts,
		active: &podHeap{less: func(a, b *QueuedPodInfo) bool {
			pa, pb := priority(a.Pod), priority(b.Pod)
			if pa != pb {
				return pa > pb
			}
			return a.Timestamp.Before(b.Timestamp)
		}},
		backoff: &podHeap{less: func(a, b *QueuedPodInfo) bool {
			return a.backoffExpiry.Before(b.backoffExpiry)
		}},
		inActive: map[types.UID]*QueuedPodInfo{}, inBackoff: map[types.UID]*QueuedPodInfo{},
		unsched: map[types.UID]*QueuedPodInfo{}, moveRequestCycle: -1,
		nominated: map[string][]*framework.PodInfo{}, nominatedOn: map[types.UID]string{},
		inFlight: map[types.UID]*v1.Pod{},
	}
	q.cond = sync.NewCond(&q.mu)
	return q
}

func (q *Queue) removeLocked(uid types.UID) *QueuedPodInfo {
	if x, ok := q.inActive[uid]; ok {
		heap.Remove(q.active, x.index)
		delete(q.inActive, uid)
		return x
	}
	if x, ok := q.inBackoff[uid]; ok {
		heap.Remove(q.backoff, x.index)
		delete(q.inBackoff, uid)
		return x
	}
	if x, ok := q.unsched[uid]; ok {
		delete(q.unsched, uid)
		return x
	}
	return nil
}

func (q *Queue) pushActiveLocked(x *QueuedPodInfo) {
	heap.Push(q.active, x)
	q.inActive[x.Pod.UID] = x
	q.cond.Broadcast()
}

func (q *Queue) pushBackoffLocked(x *QueuedPodInfo) {
	x.backoffExpiry = x.Timestamp.Add(q.backoffDuration(x))
	heap.Push(q.backoff, x)
	q.inBackoff[x.Pod.UID] = x
}

func (q *Queue) backoffDuration(x *QueuedPodInfo) time.Duration {
	d := q.opts.InitialBackoff
	for i := 1; i < x.Attempts; i++ {
		d *= 2
		if d >= q.opts.MaxBackoff {
			return q.opts.MaxBackoff
		}
	}
	return d
}

// Add enqueues a new pending pod into activeQ.
func (q *Queue) Add(pod *v1.Pod) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, ok := q.inFlight[pod.UID]; ok {
		q.inFlight[pod.UID] = pod
		return
	}
	x := q.removeLocked(pod.UID)
	if x == nil {
		x = &QueuedPodInfo{PodInfo: framework.NewPodInfo(pod)}
	} else {
		x.PodInfo = framework.NewPodInfo(pod)
	}
	x.Timestamp = q.clock.Now()
	q.pushActiveLocked(x)
	q.updateNominatedLocked(pod)
}

// Update replaces a pending pod. An unschedulable pod whose spec or labels
// changed is retried (the change may make it fit).
func (q *Queue) Update(old, pod *v1.Pod) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.updateNominatedLocked(pod)
	if _, ok := q.inFlight[pod.UID]; ok {
		q.inFlight[pod.UID] = pod
		return
	}
	if x, ok := q.inActive[pod.UID]; ok {
		x.PodInfo = framework.NewPodInfo(pod)
		heap.Fix(q.active, x.index)
		return
	}
	if x, ok := q.inBackoff[pod.UID]; ok {
		x.PodInfo = framework.NewPodInfo(pod)
		return
	}
	if x, ok := q.unsched[pod.UID]; ok {
		x.PodInfo = framework.NewPodInfo(pod)
		if old != nil && (old.Generation != pod.Generation || !equalLabels(old.Labels, pod.Labels)) {
			delete(q.unsched, pod.UID)
			x.Timestamp = q.clock.Now()
			q.pushActiveLocked(x)
		}
		return
	}
	// Not queued and not in flight (the scheduler checks): a new pod.
	q.pushActiveLocked(&QueuedPodInfo{PodInfo: framework.NewPodInfo(pod), Timestamp: q.clock.Now()})
}

func equalLabels(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

// Delete removes a pod from the queue and the nominator.
func (q *Queue) Delete(pod *v1.Pod) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.removeLocked(pod.UID)
	q.deleteNominatedLocked(pod.UID)
	if _, ok := q.inFlight[pod.UID]; ok {
		q.inFlight[pod.UID] = nil
	}
}

// Done ends a pod's scheduling cycle (it was assumed, or dropped).
func (q *Queue) Done(uid types.UID) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.inFlight, uid)
}

// Pop blocks until a pod is active (or ctx ends / Close), and returns it.
func (q *Queue) Pop(ctx context.Context) (*QueuedPodInfo, error) {
	stop := context.AfterFunc(ctx, func() {
		q.mu.Lock()
		q.cond.Broadcast()
		q.mu.Unlock()
	})
	defer stop()
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.active.Len() == 0 {
		if q.closed {
			return nil, ErrClosed
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		q.cond.Wait()
	}
	x := heap.Pop(q.active).(*QueuedPodInfo)
	delete(q.inActive, x.Pod.UID)
	q.schedulingCycle++
	q.inFlight[x.Pod.UID] = x.Pod
	x.Attempts++
	if x.Attempts == 1 {
		x.InitialAttemptTimestamp = q.clock.Now()
	}
	return x, nil
}

// SchedulingCycle returns the number of pods popped so far.
func (q *Queue) SchedulingCycle() int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.schedulingCycle
}

// AddUnschedulableIfNotPresent requeues a pod that failed in the cycle
// podCycle (ending its cycle; a pod deleted meanwhile is dropped): into backoffQ if an event arrived since that cycle started or
// the failure was an error, else into the unschedulable pods.
func (q *Queue) AddUnschedulableIfNotPresent(x *QueuedPodInfo, podCycle int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	uid := x.Pod.UID
	if latest, ok := q.inFlight[uid]; ok {
		delete(q.inFlight, uid)
		if latest == nil {
			return // deleted while being scheduled
		}
		if latest != x.Pod {
			x.PodInfo = framework.NewPodInfo(latest)
		}
	}
	if q.inActive[uid] != nil || q.inBackoff[uid] != nil || q.unsched[uid] != nil {
		return
	}
	x.Timestamp = q.clock.Now()
	if q.moveRequestCycle >= podCycle || len(x.UnschedulablePlugins) == 0 {
		q.pushBackoffLocked(x)
		return
	}
	q.unsched[uid] = x
}

// eventHelps reports whether ev can help a pod rejected by plugins.
func (q *Queue) eventHelps(x *QueuedPodInfo, ev framework.ClusterEvent) bool {
	if len(x.UnschedulablePlugins) == 0 {
		return true
	}
	for p := range x.UnschedulablePlugins {
		evs, ok := q.opts.PluginEvents[p]
		if !ok {
			return true // unknown interest: be safe
		}
		for _, e := range evs {
			if e.Match(ev) {
				return true
			}
		}
	}
	return false
}

func (q *Queue) moveLocked(x *QueuedPodInfo) {
	delete(q.unsched, x.Pod.UID)
	now := q.clock.Now()
	if now.Before(x.Timestamp.Add(q.backoffDuration(x))) {
		q.pushBackoffLocked(x)
		return
	}
	x.Timestamp = now
	q.pushActiveLocked(x)
}

// MoveAllToActiveOrBackoffQueue moves the unschedulable pods that ev may
// help (and that pass the optional filter) out of the unschedulable pods.
func (q *Queue) MoveAllToActiveOrBackoffQueue(ev framework.ClusterEvent, filter func(*QueuedPodInfo) bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, x := range q.unsched {
		if q.eventHelps(x, ev) && (filter == nil || filter(x)) {
			q.moveLocked(x)
		}
	}
	q.moveRequestCycle = q.schedulingCycle
}

// FlushBackoffQCompleted moves pods whose back-off expired to activeQ.
func (q *Queue) FlushBackoffQCompleted() {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := q.clock.Now()
	for q.backoff.Len() > 0 {
		x := q.backoff.items[0]
		if x.backoffExpiry.After(now) {
			return
		}
		heap.Pop(q.backoff)
		delete(q.inBackoff, x.Pod.UID)
		x.Timestamp = now
		q.pushActiveLocked(x)
	}
}

// FlushUnschedulablePodsLeftover retries pods unschedulable for longer than
// MaxInUnschedulable.
func (q *Queue) FlushUnschedulablePodsLeftover() {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := q.clock.Now()
	for _, x := range q.unsched {
		if now.Sub(x.Timestamp) > q.opts.MaxInUnschedulable {
			q.moveLocked(x)
		}
	}
}

// Run flushes back-off every second and leftovers every 30 s until ctx ends.
func (q *Queue) Run(ctx context.Context) {
	next := q.clock.Now().Add(30 * time.Second)
	for {
		select {
		case <-ctx.Done():
			q.Close()
			return
		case <-q.clock.After(time.Second):
		}
		q.FlushBackoffQCompleted()
		if now := q.clock.Now(); !now.Before(next) {
			q.FlushUnschedulablePodsLeftover()
			next = now.Add(30 * time.Second)
		}
	}
}

// Close wakes Pop callers with ErrClosed.
func (q *Queue) Close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	q.cond.Broadcast()
}

// Lengths returns the sizes of activeQ, backoffQ and unschedulable pods.
func (q *Queue) Lengths() (active, backoff, unschedulable int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.active.Len(), q.backoff.Len(), len(q.unsched)
}

// Has reports whether a pod is anywhere in the queue.
func (q *Queue) Has(uid types.UID) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.inActive[uid] != nil || q.inBackoff[uid] != nil || q.unsched[uid] != nil
}

func (q *Queue) updateNominatedLocked(pod *v1.Pod) {
	q.deleteNominatedLocked(pod.UID)
	if n := pod.Status.NominatedNodeName; n != "" && pod.Spec.NodeName == "" {
		q.addNominatedLocked(framework.NewPodInfo(pod), n)
	}
}

func (q *Queue) addNominatedLocked(pi *framework.PodInfo, node string) {
	q.nominated[node] = append(q.nominated[node], pi)
	q.nominatedOn[pi.Pod.UID] = node
}

func (q *Queue) deleteNominatedLocked(uid types.UID) {
	node, ok := q.nominatedOn[uid]
	if !ok {
		return
	}
	delete(q.nominatedOn, uid)
	list := q.nominated[node]
	for i, p := range list {
		if p.Pod.UID == uid {
			list = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(q.nominated, node)
	} else {
		q.nominated[node] = list
	}
}

// AddNominatedPod records that pi is nominated to node (after preemption).
func (q *Queue) AddNominatedPod(pi *framework.PodInfo, node string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.deleteNominatedLocked(pi.Pod.UID)
	q.addNominatedLocked(pi, node)
}

// DeleteNominatedPodIfExists forgets a nomination (pod bound or deleted).
func (q *Queue) DeleteNominatedPodIfExists(pod *v1.Pod) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.deleteNominatedLocked(pod.UID)
}

// NominatedPodsForNode returns the pods nominated to node.
func (q *Queue) NominatedPodsForNode(node string) []*framework.PodInfo {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]*framework.PodInfo(nil), q.nominated[node]...)
}

// HasNominatedPods reports whether any pod is nominated anywhere (a cheap
// check that lets the scheduler skip the per-node lookup).
func (q *Queue) HasNominatedPods() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.nominated) > 0
}
