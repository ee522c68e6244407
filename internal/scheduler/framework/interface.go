package framework

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/events"
)

// MaxNodeScore is the highest score a normalized Score plugin returns.
const MaxNodeScore int64 = 100

// StateKey names a piece of CycleState.
type StateKey string

// StateData is data plugins keep in the CycleState between extension
// points. Clone must return a copy safe to mutate (preemption clones the
// state before simulating removals).
type StateData interface {
	Clone() StateData
}

// CycleState is per-pod, per-cycle plugin state. Writes happen in
// PreFilter/PreScore (single goroutine); reads in Filter/Score may be
// concurrent.
type CycleState struct {
	// data is copy-on-write: Filter and Score read it from every worker
	// for every node, so a read is one atomic load and a scan of a few
	// entries, with no lock; the few writes per cycle copy the small
	// slice. A scan beats a map here: a cycle holds under a dozen keys,
	// the keys are the plugins' constants (equal strings share their
	// bytes, so comparing is a length and pointer check), and a map read
	// hashed the key for every node and plugin (CycleState.Read was ~6%
	// of the algorithm's CPU at 1,000 nodes).
	mu   sync.Mutex
	data atomic.Pointer[[]stateEntry]
	// SkipFilterPlugins / SkipScorePlugins are plugins that returned Skip.
	SkipFilterPlugins map[string]bool
	SkipScorePlugins  map[string]bool

	// activeFilters caches, after PreFilter, the filters of activeFor
	// that were not skipped.
	activeFilters []FilterPlugin
	activeFor     *Framework
}

// NewCycleState returns an empty state.
func NewCycleState() *CycleState {
	return &CycleState{}
}

type stateEntry struct {
	key  StateKey
	data StateData
}

// Read returns the data under key.
func (c *CycleState) Read(key StateKey) (StateData, bool) {
	p := c.data.Load()
	if p == nil {
		return nil, false
	}
	for _, e := range *p {
		if e.key == key {
			return e.data, true
		}
	}
	return nil, false
}

// Write stores data under key.
func (c *CycleState) Write(key StateKey, d StateData) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var old []stateEntry
	if p := c.data.Load(); p != nil {
		old = *p
	}
	m := make([]stateEntry, len(old), len(old)+1)
	copy(m, old)
	replaced := false
	for i := range m {
		if m[i].key == key {
			m[i].data, replaced = d, true
			break
		}
	}
	if !replaced {
		m = append(m, stateEntry{key, d})
	}
	c.data.Store(&m)
}

// Clone deep-copies the state.
func (c *CycleState) Clone() *CycleState {
	if c == nil {
		return nil
	}
	out := NewCycleState()
	if p := c.data.Load(); p != nil {
		cm := make([]stateEntry, len(*p))
		for i, e := range *p {
			cm[i] = stateEntry{e.key, e.data.Clone()}
		}
		out.data.Store(&cm)
	}
	out.SkipFilterPlugins = c.SkipFilterPlugins
	out.SkipScorePlugins = c.SkipScorePlugins
	out.activeFilters, out.activeFor = c.activeFilters, c.activeFor
	return out
}

// Plugin is the base of every plugin.
type Plugin interface {
	Name() string
}

// PreFilterResult optionally narrows the nodes to evaluate; nil NodeNames
// means all nodes.
type PreFilterResult struct {
	NodeNames map[string]bool
}

// PreFilterPlugin runs once per cycle before filtering.
type PreFilterPlugin interface {
	Plugin
	PreFilter(ctx context.Context, state *CycleState, pod *PodInfo, snap *Snapshot) (*PreFilterResult, *Status)
	// PreFilterExtensions may be nil. Preemption uses them to update the
	// precomputed state when it removes victims or adds nominated pods.
	PreFilterExtensions() PreFilterExtensions
}

// PreFilterExtensions update PreFilter state incrementally.
type PreFilterExtensions interface {
	AddPod(ctx context.Context, state *CycleState, podToSchedule *PodInfo, podToAdd *PodInfo, nodeInfo *NodeInfo) *Status
	RemovePod(ctx context.Context, state *CycleState, podToSchedule *PodInfo, podToRemove *PodInfo, nodeInfo *NodeInfo) *Status
}

// FilterPlugin decides whether a node can run the pod.
type FilterPlugin interface {
	Plugin
	Filter(ctx context.Context, state *CycleState, pod *PodInfo, nodeInfo *NodeInfo) *Status
}

// NodeToStatus records why each node was rejected.
type NodeToStatus map[string]*Status

// PostFilterResult is the outcome of a PostFilter (preemption).
type PostFilterResult struct {
	NominatedNodeName string
}

// PostFilterPlugin runs when no node fits.
type PostFilterPlugin interface {
	Plugin
	PostFilter(ctx context.Context, state *CycleState, pod *PodInfo, filtered NodeToStatus) (*PostFilterResult, *Status)
}

// PreScorePlugin runs once before scoring the feasible nodes.
type PreScorePlugin interface {
	Plugin
	PreScore(ctx context.Context, state *CycleState, pod *PodInfo, nodes []*NodeInfo) *Status
}

// NodeScore is a node's score.
type NodeScore struct {
	Name  string
	Score int64
}

// ScorePlugin ranks feasible nodes.
type ScorePlugin interface {
	Plugin
	Score(ctx context.Context, state *CycleState, pod *PodInfo, nodeInfo *NodeInfo) (int64, *Status)
	// ScoreExtensions returns nil when scores are already in [0, MaxNodeScore].
	ScoreExtensions() ScoreExtensions
}

// ScoreExtensions normalizes scores into [0, MaxNodeScore].
type ScoreExtensions interface {
	NormalizeScore(ctx context.Context, state *CycleState, pod *PodInfo, scores []NodeScore) *Status
}

// ScoreNamesUnused is implemented by ScoreExtensions whose NormalizeScore
// reads and writes only each entry's Score, never its Name: their score
// rows are filled without names, like those of plugins that do not
// normalize (a name is a pointer; storing one per node costs a write
// barrier while the GC marks).
type ScoreNamesUnused interface {
	NormalizeScoreIgnoresNames()
}

// ReservePlugin is told when a node has been chosen (Reserve) and when the
// choice is abandoned (Unreserve).
type ReservePlugin interface {
	Plugin
	Reserve(ctx context.Context, state *CycleState, pod *v1.Pod, nodeName string) *Status
	Unreserve(ctx context.Context, state *CycleState, pod *v1.Pod, nodeName string)
}

// PermitPlugin may approve, reject or delay binding (Wait with a timeout).
type PermitPlugin interface {
	Plugin
	Permit(ctx context.Context, state *CycleState, pod *v1.Pod, nodeName string) (*Status, time.Duration)
}

// PreBindPlugin runs in the binding goroutine after Permit and before Bind:
// it writes what the placement depends on (VolumeBinding: PV claimRefs and
// the claims' selected node) and may wait for it to take effect. A failure
// unreserves the pod and sends it back to the queue.
type PreBindPlugin interface {
	Plugin
	PreBind(ctx context.Context, state *CycleState, pod *v1.Pod, nodeName string) *Status
}

// BindPlugin writes the placement. Skip passes to the next binder.
type BindPlugin interface {
	Plugin
	Bind(ctx context.Context, state *CycleState, pod *v1.Pod, nodeName string) *Status
}

// ActionType is what happened to a resource.
type ActionType int

const (
	Add ActionType = 1 << iota
	Delete
	UpdateNodeAllocatable
	UpdateNodeLabel
	UpdateNodeTaint
	UpdateNodeCondition
	UpdatePodLabel
	UpdatePodRequest
	Update = UpdateNodeAllocatable | UpdateNodeLabel | UpdateNodeTaint | UpdateNodeCondition | UpdatePodLabel | UpdatePodRequest
	All    = Add | Delete | Update
)

// Resource kinds a ClusterEvent can be about.
const (
	KindNode                  = "Node"
	KindAssignedPod           = "AssignedPod"
	KindPersistentVolume      = "PersistentVolume"
	KindPersistentVolumeClaim = "PersistentVolumeClaim"
	KindNamespace             = "Namespace"
	KindStorageClass          = "StorageClass"
	KindWildcard              = "*"
)

// ClusterEvent is a change that may make unschedulable pods schedulable.
type ClusterEvent struct {
	Resource   string
	ActionType ActionType
	Label      string
}

// Match reports whether a registered interest e covers the incoming event.
func (e ClusterEvent) Match(incoming ClusterEvent) bool {
	if e.Resource == KindWildcard || incoming.Resource == KindWildcard {
		return true
	}
	return e.Resource == incoming.Resource && e.ActionType&incoming.ActionType != 0
}

// EnqueueExtensions lets a plugin say which events can make a pod it
// rejected schedulable; the queue retries a pod only on those events.
type EnqueueExtensions interface {
	EventsToRegister() []ClusterEvent
}

// Handle is what plugins may use from the scheduler.
type Handle interface {
	// ClientSet is for plugins that write (binder, preemption).
	ClientSet() kubernetes.Interface
	// EventRecorder records events (may be nil in tests).
	EventRecorder() events.EventRecorder
	// NamespaceLabels returns a namespace's labels (nil if unknown).
	NamespaceLabels(ns string) labels.Set
	// NamespacesMatching lists the namespaces whose labels match sel.
	NamespacesMatching(sel labels.Selector) []string
	// Framework runs the filter plugins, for preemption's simulations.
	Framework() *Framework
	// Snapshot is the current cycle's snapshot.
	Snapshot() *Snapshot
	// Parallelizer runs work over nodes.
	Parallelizer() Parallelizer
}
