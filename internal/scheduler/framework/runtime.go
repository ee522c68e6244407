package framework

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/events"
)

// Parallelizer runs fn(i) for i in [0, n) on a bounded number of workers.
type Parallelizer struct {
	Workers int
}

// Until runs fn over [0, n); it stops handing out work once ctx is done.
// Work is handed out in small chunks through one atomic counter, so a
// cancelled search stops quickly.
func (p Parallelizer) Until(ctx context.Context, n int, fn func(i int)) {
	workers := p.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	if workers > n {
		workers = n
	}
	if workers <= 1 {
		for i := 0; i < n; i++ {
			if ctx.Err() != nil {
				return
			}
			fn(i)
		}
		return
	}
	const chunk = 8
	var next atomic.Int64
	var wg sync.WaitGroup
	wg.Add(workers)
	for w := 0; w < workers; w++ {
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				start := int(next.Add(chunk)) - chunk
				if start >= n {
					return
				}
				for i := start; i < min(start+chunk, n); i++ {
					fn(i)
				}
			}
		}()
	}
	wg.Wait()
}

// Framework runs a profile's plugins at each extension point, in order.
type Framework struct {
	preFilter  []PreFilterPlugin
	filter     []FilterPlugin
	postFilter []PostFilterPlugin
	preScore   []PreScorePlugin
	score      []ScorePlugin
	reserve    []ReservePlugin
	permit     []PermitPlugin
	preBind    []PreBindPlugin
	bind       []BindPlugin
	weights    map[string]int64
	events     map[string][]ClusterEvent
	par        Parallelizer
}

// NewFramework sorts plugins into extension points. weights gives each
// Score plugin's weight (default 1).
func NewFramework(plugins []Plugin, weights map[string]int64, par Parallelizer) *Framework {
	f := &Framework{weights: map[string]int64{}, events: map[string][]ClusterEvent{}, par: par}
	for _, p := range plugins {
		if x, ok := p.(PreFilterPlugin); ok {
			f.preFilter = append(f.preFilter, x)
		}
		if x, ok := p.(FilterPlugin); ok {
			f.filter = append(f.filter, x)
		}
		if x, ok := p.(PostFilterPlugin); ok {
			f.postFilter = append(f.postFilter, x)
		}
		if x, ok := p.(PreScorePlugin); ok {
			f.preScore = append(f.preScore, x)
		}
		if x, ok := p.(ScorePlugin); ok {
			f.score = append(f.score, x)
			w := weights[p.Name()]
			if w == 0 {
				w = 1
			}
			f.weights[p.Name()] = w
		}
		if x, ok := p.(ReservePlugin); ok {
			f.reserve = append(f.reserve, x)
		}
		if x, ok := p.(PermitPlugin); ok {
			f.permit = append(f.permit, x)
		}
		if x, ok := p.(PreBindPlugin); ok {
			f.preBind = append(f.preBind, x)
		}
		if x, ok := p.(BindPlugin); ok {
			f.bind = append(f.bind, x)
		}
		if x, ok := p.(EnqueueExtensions); ok {
			f.events[p.Name()] = x.EventsToRegister()
		}
	}
	return f
}

// EventsToRegister returns, per plugin, the events that can make a pod it
// rejected schedulable.
func (f *Framework) EventsToRegister() map[string][]ClusterEvent { return f.events }

// HasPostFilter reports whether preemption (or another PostFilter) is on.
func (f *Framework) HasPostFilter() bool { return len(f.postFilter) > 0 }

// RunPreFilterPlugins runs every PreFilter plugin; their node-name results
// are intersected. Plugins returning Skip get their Filter skipped.
func (f *Framework) RunPreFilterPlugins(ctx context.Context, state *CycleState, pi *PodInfo, snap *Snapshot) (*PreFilterResult, *Status) {
	var result *PreFilterResult
	for _, p := range f.preFilter {
		r, st := p.PreFilter(ctx, state, pi, snap)
		if st.IsSkip() {
			if state.SkipFilterPlugins == nil {
				state.SkipFilterPlugins = map[string]bool{}
			}
			state.SkipFilterPlugins[p.Name()] = true
			continue
		}
		if !st.IsSuccess() {
			return nil, st.WithPlugin(p.Name())
		}
		if r != nil && r.NodeNames != nil {
			if result == nil {
				result = &PreFilterResult{NodeNames: r.NodeNames}
			} else {
				inter := map[string]bool{}
				for n := range r.NodeNames {
					if result.NodeNames[n] {
						inter[n] = true
					}
				}
				result.NodeNames = inter
			}
		}
	}
	state.activeFilters, state.activeFor = f.activeFilters(state), f
	return result, nil
}

// RunPreFilterExtensionAddPod tells PreFilter state that podToAdd is on nodeInfo.
func (f *Framework) RunPreFilterExtensionAddPod(ctx context.Context, state *CycleState, pi, podToAdd *PodInfo, ni *NodeInfo) *Status {
	for _, p := range f.preFilter {
		if state.SkipFilterPlugins[p.Name()] {
			continue
		}
		if ext := p.PreFilterExtensions(); ext != nil {
			if st := ext.AddPod(ctx, state, pi, podToAdd, ni); !st.IsSuccess() {
				return st.WithPlugin(p.Name())
			}
		}
	}
	return nil
}

// RunPreFilterExtensionRemovePod tells PreFilter state that podToRemove left nodeInfo.
func (f *Framework) RunPreFilterExtensionRemovePod(ctx context.Context, state *CycleState, pi, podToRemove *PodInfo, ni *NodeInfo) *Status {
	for _, p := range f.preFilter {
		if state.SkipFilterPlugins[p.Name()] {
			continue
		}
		if ext := p.PreFilterExtensions(); ext != nil {
			if st := ext.RemovePod(ctx, state, pi, podToRemove, ni); !st.IsSuccess() {
				return st.WithPlugin(p.Name())
			}
		}
	}
	return nil
}

// RunFilterPlugins runs the filters on one node and stops at the first
// rejection, as upstream does.
func (f *Framework) RunFilterPlugins(ctx context.Context, state *CycleState, pi *PodInfo, ni *NodeInfo) *Status {
	filters := state.activeFilters
	if filters == nil || state.activeFor != f {
		filters = f.activeFilters(state)
	}
	for _, p := range filters {
		if st := p.Filter(ctx, state, pi, ni); !st.IsSuccess() {
			return st.WithPlugin(p.Name())
		}
	}
	return nil
}

// activeFilters lists the filters PreFilter did not skip. RunPreFilterPlugins
// stores it in the state, so the per-node loop does no map lookups.
func (f *Framework) activeFilters(state *CycleState) []FilterPlugin {
	out := make([]FilterPlugin, 0, len(f.filter))
	for _, p := range f.filter {
		if !state.SkipFilterPlugins[p.Name()] {
			out = append(out, p)
		}
	}
	return out
}

// RunPostFilterPlugins runs PostFilter plugins until one succeeds.
func (f *Framework) RunPostFilterPlugins(ctx context.Context, state *CycleState, pi *PodInfo, filtered NodeToStatus) (*PostFilterResult, *Status) {
	var last *Status = NewStatus(Unschedulable)
	for _, p := range f.postFilter {
		r, st := p.PostFilter(ctx, state, pi, filtered)
		if st.IsSuccess() {
			return r, nil
		}
		if st.Code() == Error {
			return nil, st.WithPlugin(p.Name())
		}
		last = st.WithPlugin(p.Name())
	}
	return nil, last
}

// RunPreScorePlugins runs PreScore; plugins returning Skip are skipped at Score.
func (f *Framework) RunPreScorePlugins(ctx context.Context, state *CycleState, pi *PodInfo, nodes []*NodeInfo) *Status {
	for _, p := range f.preScore {
		st := p.PreScore(ctx, state, pi, nodes)
		if st.IsSkip() {
			if state.SkipScorePlugins == nil {
				state.SkipScorePlugins = map[string]bool{}
			}
			state.SkipScorePlugins[p.Name()] = true
			continue
		}
		if !st.IsSuccess() {
			return st.WithPlugin(p.Name())
		}
	}
	return nil
}

// ScoreBuffers is space RunScorePluginsInto reuses from one call to the
// next: the totals it returns, the per-plugin score matrix and the
// bookkeeping around it. At 1,000 nodes that is ~400 feasible nodes times
// (plugins+1) NodeScores per pod, most of the scheduler's allocation per
// cycle (a sync.Pool lost it at every GC). The zero value is ready; a
// ScoreBuffers serves one caller at a time.
type ScoreBuffers struct {
	totals []NodeScore
	matrix []NodeScore
	rows   [][]NodeScore
	active []ScorePlugin
	errs   []atomic.Pointer[Status]
}

// RunScorePlugins scores nodes with every Score plugin, normalizes, applies
// weights and returns the total per node (same order as nodes). All
// plugins score a node in one parallel pass (one fan-out per cycle, not
// one per plugin); normalization then runs per plugin, as upstream.
func (f *Framework) RunScorePlugins(ctx context.Context, state *CycleState, pi *PodInfo, nodes []*NodeInfo) ([]NodeScore, *Status) {
	return f.RunScorePluginsInto(ctx, state, pi, nodes, &ScoreBuffers{})
}

// RunScorePluginsInto is RunScorePlugins with its space taken from buf:
// the totals it returns are valid until buf's next use.
func (f *Framework) RunScorePluginsInto(ctx context.Context, state *CycleState, pi *PodInfo, nodes []*NodeInfo, buf *ScoreBuffers) ([]NodeScore, *Status) {
	totals := grow(buf.totals, len(nodes))
	buf.totals = totals
	for i, n := range nodes {
		// From the NodeInfo, not the (cache-cold) Node object.
		totals[i] = NodeScore{Name: n.Name()}
	}
	active := buf.active[:0]
	for _, p := range f.score {
		if !state.SkipScorePlugins[p.Name()] {
			active = append(active, p)
		}
	}
	buf.active = active
	defer clear(buf.active) // no plugin kept alive by the buffer
	if len(active) == 0 {
		return totals, nil
	}
	// Every entry the matrix is read at is written below (a plugin that
	// fails leaves its row stale, and the call then fails).
	backing := grow(buf.matrix, len(active)*len(nodes))
	buf.matrix = backing
	scores := grow(buf.rows, len(active))
	buf.rows = scores
	for j := range active {
		scores[j] = backing[j*len(nodes) : (j+1)*len(nodes)]
	}
	errs := grow(buf.errs, len(active))
	buf.errs = errs
	for j := range errs {
		errs[j].Store(nil)
	}
	// Only a plugin that normalizes, and reads names doing so, reads its
	// row's names: the others' rows get the scores alone (a name is a
	// pointer, and storing one while the GC marks costs a write barrier,
	// per node and plugin).
	var named uint64
	for j, p := range active {
		if j >= 64 || readsNames(p.ScoreExtensions()) {
			named |= 1 << min(j, 63)
		}
	}
	f.par.Until(ctx, len(nodes), func(i int) {
		for j, p := range active {
			s, st := p.Score(ctx, state, pi, nodes[i])
			if !st.IsSuccess() {
				errs[j].Store(st)
				continue
			}
			if named&(1<<min(j, 63)) != 0 {
				scores[j][i] = NodeScore{Name: totals[i].Name, Score: s}
			} else {
				scores[j][i].Score = s
			}
		}
	})
	for j, p := range active {
		if st := errs[j].Load(); st != nil {
			return nil, st.WithPlugin(p.Name())
		}
		if ext := p.ScoreExtensions(); ext != nil {
			if st := ext.NormalizeScore(ctx, state, pi, scores[j]); !st.IsSuccess() {
				return nil, st.WithPlugin(p.Name())
			}
		}
		w := f.weights[p.Name()]
		for i := range scores[j] {
			sc := scores[j][i].Score
			if sc < 0 || sc > MaxNodeScore {
				return nil, AsStatus(fmt.Errorf("plugin %s returned score %d outside [0,%d]", p.Name(), sc, MaxNodeScore)).WithPlugin(p.Name())
			}
			totals[i].Score += sc * w
		}
	}
	return totals, nil
}

// readsNames reports whether a plugin's NormalizeScore may read names.
func readsNames(ext ScoreExtensions) bool {
	if ext == nil {
		return false
	}
	_, unused := ext.(ScoreNamesUnused)
	return !unused
}

// grow returns s resized to n, reallocated only when too small.
func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// NumScorePlugins reports how many Score plugins would run.
func (f *Framework) NumScorePlugins() int { return len(f.score) }

// RunReservePluginsReserve runs Reserve in order; on failure the caller must
// run Unreserve.
func (f *Framework) RunReservePluginsReserve(ctx context.Context, state *CycleState, pod *v1.Pod, node string) *Status {
	for _, p := range f.reserve {
		if st := p.Reserve(ctx, state, pod, node); !st.IsSuccess() {
			return st.WithPlugin(p.Name())
		}
	}
	return nil
}

// RunReservePluginsUnreserve runs Unreserve in reverse order.
func (f *Framework) RunReservePluginsUnreserve(ctx context.Context, state *CycleState, pod *v1.Pod, node string) {
	for i := len(f.reserve) - 1; i >= 0; i-- {
		f.reserve[i].Unreserve(ctx, state, pod, node)
	}
}

// RunPermitPlugins runs Permit. Waiting is not supported yet: a Wait
// answer is reported as Unschedulable so the pod is retried.
func (f *Framework) RunPermitPlugins(ctx context.Context, state *CycleState, pod *v1.Pod, node string) *Status {
	for _, p := range f.permit {
		st, _ := p.Permit(ctx, state, pod, node)
		switch st.Code() {
		case Success:
		case Wait:
			return NewStatus(Unschedulable, "permit wait is not supported").WithPlugin(p.Name())
		default:
			return st.WithPlugin(p.Name())
		}
	}
	return nil
}

// RunPreBindPlugins runs PreBind in order and stops at the first failure.
func (f *Framework) RunPreBindPlugins(ctx context.Context, state *CycleState, pod *v1.Pod, node string) *Status {
	for _, p := range f.preBind {
		if st := p.PreBind(ctx, state, pod, node); !st.IsSuccess() {
			return st.WithPlugin(p.Name())
		}
	}
	return nil
}

// RunBindPlugins runs binders until one does not Skip.
func (f *Framework) RunBindPlugins(ctx context.Context, state *CycleState, pod *v1.Pod, node string) *Status {
	for _, p := range f.bind {
		st := p.Bind(ctx, state, pod, node)
		if st.IsSkip() {
			continue
		}
		return st.WithPlugin(p.Name())
	}
	return AsStatus(fmt.Errorf("no bind plugin bound pod %s/%s", pod.Namespace, pod.Name))
}

// BasicHandle is a plain Handle: the scheduler fills it, tests build one.
type BasicHandle struct {
	Client     kubernetes.Interface
	Recorder   events.EventRecorder
	Namespaces func() map[string]labels.Set
	Fwk        *Framework
	Snap       *Snapshot
	Par        Parallelizer
}

var _ Handle = (*BasicHandle)(nil)

func (h *BasicHandle) ClientSet() kubernetes.Interface     { return h.Client }
func (h *BasicHandle) EventRecorder() events.EventRecorder { return h.Recorder }
func (h *BasicHandle) Framework() *Framework               { return h.Fwk }
func (h *BasicHandle) Snapshot() *Snapshot                 { return h.Snap }
func (h *BasicHandle) Parallelizer() Parallelizer          { return h.Par }

func (h *BasicHandle) NamespaceLabels(ns string) labels.Set {
	if h.Namespaces == nil {
		return nil
	}
	return h.Namespaces()[ns]
}

func (h *BasicHandle) NamespacesMatching(sel labels.Selector) []string {
	if h.Namespaces == nil {
		return nil
	}
	var out []string
	for name, l := range h.Namespaces() {
		if sel.Matches(l) {
			out = append(out, name)
		}
	}
	return out
}

// DefaultNormalizeScore scales scores so the highest becomes maxPriority,
// and reverses them (maxPriority - s) when reverse is set.
func DefaultNormalizeScore(maxPriority int64, reverse bool, scores []NodeScore) {
	var maxCount int64
	for i := range scores {
		maxCount = max(maxCount, scores[i].Score)
	}
	if maxCount == 0 {
		if reverse {
			for i := range scores {
				scores[i].Score = maxPriority
			}
		}
		return
	}
	for i := range scores {
		s := maxPriority * scores[i].Score / maxCount
		if reverse {
			s = maxPriority - s
		}
		scores[i].Score = s
	}
}
