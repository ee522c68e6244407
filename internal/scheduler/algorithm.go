package scheduler

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"k8s.io/apimachinery/pkg/util/sets"

	"skiff.dev/skiff/internal/scheduler/framework"
)

// ErrNoNodesAvailable is returned when the cluster has no nodes.
var ErrNoNodesAvailable = errors.New("no nodes available to schedule pods")

// Diagnosis records why no node fitted.
type Diagnosis struct {
	NodeToStatus         framework.NodeToStatus
	UnschedulablePlugins sets.Set[string]
	PreFilterMsg         string
	PostFilterMsg        string
}

// FitError is the "no node fits" error; its message is upstream's.
type FitError struct {
	NumAllNodes int
	Diagnosis   Diagnosis
}

// Error renders "0/N nodes are available: <k reason>, ... ." followed by
// the PostFilter (preemption) message, with the "k reason" strings sorted
// lexicographically as upstream does.
func (f *FitError) Error() string {
	msg := fmt.Sprintf("0/%d nodes are available", f.NumAllNodes)
	if f.Diagnosis.PreFilterMsg != "" {
		msg += ": " + f.Diagnosis.PreFilterMsg + "."
	} else {
		counts := map[string]int{}
		for _, st := range f.Diagnosis.NodeToStatus {
			for _, r := range st.Reasons() {
				counts[r]++
			}
		}
		parts := make([]string, 0, len(counts))
		for r, c := range counts {
			parts = append(parts, fmt.Sprintf("%d %s", c, r))
		}
		sort.Strings(parts)
		if len(parts) > 0 {
			msg += ": " + strings.Join(parts, ", ")
		}
		msg += "."
	}
	if f.Diagnosis.PostFilterMsg != "" {
		msg += " " + f.Diagnosis.PostFilterMsg
	}
	return msg
}

// ScheduleResult is where the pod goes.
type ScheduleResult struct {
	SuggestedHost  string
	EvaluatedNodes int
	FeasibleNodes  int
}

// Algorithm is the pure placement algorithm: filter a sample of nodes,
// score the feasible ones, pick the best. It holds no client and no
// informer, so benchmarks drive it with an in-memory snapshot.
type Algorithm struct {
	Framework *framework.Framework
	// PercentageOfNodesToScore: 0 means upstream's adaptive default
	// (50% - nodes/125, at least 5%, at least 100 nodes).
	PercentageOfNodesToScore int32
	Parallelizer             framework.Parallelizer
	// Nominated returns pods nominated to a node (nil: no nominator).
	Nominated    func(node string) []*framework.PodInfo
	HasNominated func() bool
	// Rand breaks score ties; injected for determinism.
	Rand *rand.Rand

	nextStartNodeIndex int
	// statusBuf is findFeasible's reusable per-node status slice (Schedule
	// runs on one goroutine); rejectedInSearch is its last reject count.
	statusBuf        []*framework.Status
	rejectedInSearch int
	// feasibleBuf and scoreBuf are the feasible-node list and the score
	// space, reused from cycle to cycle (no plugin keeps the node list
	// past its call): together they were ~14 KB of allocation per pod at
	// 1,000 nodes.
	feasibleBuf []*framework.NodeInfo
	scoreBuf    framework.ScoreBuffers
}

const (
	minFeasibleNodesToFind           = 100
	minFeasibleNodesPercentageToFind = 5
)

// NumFeasibleNodesToFind is how many feasible nodes the search stops at.
func (a *Algorithm) NumFeasibleNodesToFind(numAll int) int {
	pct := int(a.PercentageOfNodesToScore)
	if numAll < minFeasibleNodesToFind || pct >= 100 {
		return numAll
	}
	if pct <= 0 {
		pct = 50 - numAll/125
		if pct < minFeasibleNodesPercentageToFind {
			pct = minFeasibleNodesPercentageToFind
		}
	}
	n := numAll * pct / 100
	if n < minFeasibleNodesToFind {
		return minFeasibleNodesToFind
	}
	return n
}

// Schedule places one pod against snap. A *FitError means no node fits.
func (a *Algorithm) Schedule(ctx context.Context, state *framework.CycleState, pi *framework.PodInfo, snap *framework.Snapshot) (ScheduleResult, error) {
	all := snap.List()
	if len(all) == 0 {
		return ScheduleResult{}, ErrNoNodesAvailable
	}
	fwk := a.Framework
	diag := Diagnosis{NodeToStatus: framework.NodeToStatus{}, UnschedulablePlugins: sets.New[string]()}
	pre, st := fwk.RunPreFilterPlugins(ctx, state, pi, snap)
	if !st.IsSuccess() {
		if !st.IsRejected() {
			return ScheduleResult{}, fmt.Errorf("running prefilter plugins: %w", st.AsError())
		}
		for _, ni := range all {
			diag.NodeToStatus[ni.Node().Name] = st
		}
		diag.PreFilterMsg = st.Message()
		diag.UnschedulablePlugins.Insert(st.Plugin())
		return ScheduleResult{}, &FitError{NumAllNodes: len(all), Diagnosis: diag}
	}
	candidates := all
	if pre != nil && pre.NodeNames != nil {
		candidates = make([]*framework.NodeInfo, 0, len(pre.NodeNames))
		for name := range pre.NodeNames {
			if ni, err := snap.Get(name); err == nil {
				candidates = append(candidates, ni)
			}
		}
		sort.Slice(candidates, func(i, j int) bool { return candidates[i].Node().Name < candidates[j].Node().Name })
		rejected := framework.NewStatus(framework.UnschedulableAndUnresolvable, "node(s) didn't satisfy plugin(s) [PreFilter]")
		for _, ni := range all {
			if !pre.NodeNames[ni.Node().Name] {
				diag.NodeToStatus[ni.Node().Name] = rejected
			}
		}
	}
	feasible, err := a.findFeasible(ctx, state, pi, candidates, &diag)
	if err != nil {
		return ScheduleResult{}, err
	}
	if len(feasible) == 0 {
		return ScheduleResult{}, &FitError{NumAllNodes: len(all), Diagnosis: diag}
	}
	res := ScheduleResult{EvaluatedNodes: len(feasible) + len(diag.NodeToStatus) + a.rejectedInSearch, FeasibleNodes: len(feasible)}
	if len(feasible) == 1 {
		res.SuggestedHost = feasible[0].Node().Name
		return res, nil
	}
	if st := fwk.RunPreScorePlugins(ctx, state, pi, feasible); !st.IsSuccess() {
		return ScheduleResult{}, fmt.Errorf("running prescore plugins: %w", st.AsError())
	}
	scores, st := fwk.RunScorePluginsInto(ctx, state, pi, feasible, &a.scoreBuf)
	if !st.IsSuccess() {
		return ScheduleResult{}, fmt.Errorf("running score plugins: %w", st.AsError())
	}
	res.SuggestedHost = a.selectHost(scores)
	return res, nil
}

// selectHost picks the highest total, breaking ties uniformly at random
// (reservoir sampling) like upstream.
func (a *Algorithm) selectHost(scores []framework.NodeScore) string {
	best, bestScore, ties := "", int64(-1), 0
	for _, s := range scores {
		switch {
		case s.Score > bestScore:
			best, bestScore, ties = s.Name, s.Score, 1
		case s.Score == bestScore:
			ties++
			if a.Rand != nil && a.Rand.IntN(ties) == 0 {
				best = s.Name
			}
		}
	}
	return best
}

func (a *Algorithm) findFeasible(ctx context.Context, state *framework.CycleState, pi *framework.PodInfo, nodes []*framework.NodeInfo, diag *Diagnosis) ([]*framework.NodeInfo, error) {
	n := len(nodes)
	want := a.NumFeasibleNodesToFind(n)
	if cap(a.feasibleBuf) < want {
		a.feasibleBuf = make([]*framework.NodeInfo, want)
	}
	// Entries [0, found) are written before they are read; the rest are
	// never read (and the NodeInfos they may still point to are the
	// snapshot's, alive anyway).
	feasible := a.feasibleBuf[:want]
	// Rejections go into a slice indexed by search position (no lock, no
	// map insert per node); the NodeToStatus map is only built when no
	// node fits, the one case that reads it. The slice is all nil between
	// cycles: the pass below clears what it reads, instead of clearing
	// all n pointers up front (a bulk write barrier while the GC marks).
	if cap(a.statusBuf) < n {
		a.statusBuf = make([]*framework.Status, n)
	}
	statuses := a.statusBuf[:n]
	var found atomic.Int64
	var errOnce sync.Once
	var firstErr error
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := 0
	if n > 0 {
		start = a.nextStartNodeIndex % n
	}
	checkNominated := a.Nominated != nil && (a.HasNominated == nil || a.HasNominated())
	a.Parallelizer.Until(cctx, n, func(i int) {
		ni := nodes[(start+i)%n]
		st := a.runFilters(ctx, state, pi, ni, checkNominated)
		if st.IsSuccess() {
			k := found.Add(1)
			if k > int64(want) {
				cancel()
				return
			}
			feasible[k-1] = ni
			return
		}
		if st.Code() == framework.Error {
			errOnce.Do(func() { firstErr = st.AsError() })
			cancel()
			return
		}
		statuses[i] = st
	})
	if firstErr != nil {
		clear(statuses)
		return nil, fmt.Errorf("running filter plugins: %w", firstErr)
	}
	numFeasible := min(int(found.Load()), want)
	rejected := 0
	for i, st := range statuses {
		if st == nil {
			continue
		}
		statuses[i] = nil
		rejected++
		if numFeasible == 0 {
			diag.NodeToStatus[nodes[(start+i)%n].Node().Name] = st
			diag.UnschedulablePlugins.Insert(st.Plugin())
		}
	}
	a.rejectedInSearch = rejected
	if n > 0 {
		a.nextStartNodeIndex = (start + numFeasible + rejected) % n
	}
	return feasible[:numFeasible], nil
}

// runFilters runs the filters; when higher-or-equal priority pods are
// nominated to the node, it runs them with those pods added, so a
// preemptor's freed room is not taken by others.
func (a *Algorithm) runFilters(ctx context.Context, state *framework.CycleState, pi *framework.PodInfo, ni *framework.NodeInfo, checkNominated bool) *framework.Status {
	fwk := a.Framework
	if checkNominated {
		var add []*framework.PodInfo
		for _, np := range a.Nominated(ni.Node().Name) {
			if np.Pod.UID != pi.Pod.UID && podPriority(np) >= podPriority(pi) {
				add = append(add, np)
			}
		}
		if len(add) > 0 {
			ni = ni.Clone()
			state = state.Clone()
			for _, np := range add {
				ni.AddPodInfo(np)
				if st := fwk.RunPreFilterExtensionAddPod(ctx, state, pi, np, ni); !st.IsSuccess() {
					return st
				}
			}
		}
	}
	return fwk.RunFilterPlugins(ctx, state, pi, ni)
}

func podPriority(pi *framework.PodInfo) int32 {
	if p := pi.Pod.Spec.Priority; p != nil {
		return *p
	}
	return 0
}
