// Package defaultpreemption is the DefaultPreemption PostFilter: when no
// node fits, find a node where evicting lower-priority pods makes room,
// with victims chosen as upstream does, nominate the preemptor to it
// (status.nominatedNodeName, set by the scheduler from the result) and
// delete the victims gracefully through the API.
//
// Victim choice on a node: remove every lower-priority pod; if the pod
// still does not fit, the node is no candidate. Otherwise add pods back,
// most important first (PDB-violating ones before the others), keeping
// each one that still lets the pod fit. Among candidate nodes pick, in
// order: fewest PDB violations, lowest highest-victim priority, lowest sum
// of victim priorities, fewest victims, latest start of the
// highest-priority victims, then the first.
//
// Priorities are pod.spec.priority as admission resolved it from the
// PriorityClass; nil counts as 0.
//
// Not done yet: clearing the nomination of lower-priority pods nominated
// to the chosen node, and the DisruptionTarget condition on victims.
package defaultpreemption

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"

	v1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	policylisters "k8s.io/client-go/listers/policy/v1"

	"skiff.dev/skiff/internal/scheduler/framework"
)

// Name is the plugin name.
const Name = "DefaultPreemption"

// Upstream's per-node reasons.
const (
	ReasonNotHelpful = "Preemption is not helpful for scheduling"
	ReasonNoVictims  = "No preemption victims found for incoming pod"
)

// Candidate-count bounds as upstream: at least 10% of nodes or 100.
const (
	minCandidateNodesPercentage = 10
	minCandidateNodesAbsolute   = 100
)

// DefaultPreemption is the plugin.
type DefaultPreemption struct {
	h    framework.Handle
	pdbs policylisters.PodDisruptionBudgetLister
}

var _ framework.PostFilterPlugin = (*DefaultPreemption)(nil)

// New builds the plugin; pdbs may be nil (PDBs then ignored).
func New(h framework.Handle, pdbs policylisters.PodDisruptionBudgetLister) *DefaultPreemption {
	return &DefaultPreemption{h: h, pdbs: pdbs}
}

func (*DefaultPreemption) Name() string { return Name }

// Priority returns the pod's resolved priority (nil counts as 0).
func Priority(p *v1.Pod) int32 {
	if p.Spec.Priority != nil {
		return *p.Spec.Priority
	}
	return 0
}

func startTime(p *v1.Pod) metav1.Time {
	if p.Status.StartTime != nil {
		return *p.Status.StartTime
	}
	return p.CreationTimestamp
}

// moreImportant orders by priority, then earlier start.
func moreImportant(a, b *v1.Pod) bool {
	pa, pb := Priority(a), Priority(b)
	if pa != pb {
		return pa > pb
	}
	return startTime(a).Time.Before(startTime(b).Time)
}

// Candidate is a node and the pods to evict there.
type Candidate struct {
	Node          string
	Victims       []*v1.Pod
	PDBViolations int
}

// PostFilter runs preemption.
func (pl *DefaultPreemption) PostFilter(ctx context.Context, state *framework.CycleState, pi *framework.PodInfo, filtered framework.NodeToStatus) (*framework.PostFilterResult, *framework.Status) {
	pod := pi.Pod
	if pod.Spec.PreemptionPolicy != nil && *pod.Spec.PreemptionPolicy == v1.PreemptNever {
		return nil, framework.NewStatus(framework.Unschedulable, "preemption: not eligible due to preemptionPolicy=Never.")
	}
	snap := pl.h.Snapshot()
	if nn := pod.Status.NominatedNodeName; nn != "" {
		// Victims of an earlier preemption are still terminating: wait.
		if ni, err := snap.Get(nn); err == nil {
			for _, p := range ni.Pods {
				if p.Pod.DeletionTimestamp != nil && Priority(p.Pod) < Priority(pod) {
					return nil, framework.NewStatus(framework.Unschedulable, "preemption: not eligible due to a terminating pod on the nominated node.")
				}
			}
		}
	}
	all := snap.List()
	statuses := map[string]string{}
	var potential []*framework.NodeInfo
	for _, ni := range all {
		st := filtered[ni.Node().Name]
		if st.Code() == framework.UnschedulableAndUnresolvable {
			statuses[ni.Node().Name] = ReasonNotHelpful
			continue
		}
		potential = append(potential, ni)
	}
	var pdbs []*policyv1.PodDisruptionBudget
	if pl.pdbs != nil {
		pdbs, _ = pl.pdbs.List(labels.Everything())
	}
	candidates := pl.findCandidates(ctx, state, pi, potential, pdbs, statuses)
	if len(candidates) == 0 {
		return &framework.PostFilterResult{}, framework.NewStatus(framework.Unschedulable, "preemption: "+histogram(len(all), statuses))
	}
	best := PickOne(candidates)
	if err := pl.prepare(ctx, pod, best); err != nil {
		return nil, framework.AsStatus(err)
	}
	return &framework.PostFilterResult{NominatedNodeName: best.Node}, nil
}

// histogram renders upstream's "0/N nodes are available: k reason, ..."
// with its lexicographic sort of the "k reason" strings.
func histogram(n int, statuses map[string]string) string {
	counts := map[string]int{}
	for _, r := range statuses {
		counts[r]++
	}
	parts := make([]string, 0, len(counts))
	for r, c := range counts {
		parts = append(parts, fmt.Sprintf("%d %s", c, r))
	}
	sort.Strings(parts)
	return fmt.Sprintf("0/%d nodes are available: %s.", n, strings.Join(parts, ", "))
}

func (pl *DefaultPreemption) findCandidates(ctx context.Context, state *framework.CycleState, pi *framework.PodInfo, nodes []*framework.NodeInfo, pdbs []*policyv1.PodDisruptionBudget, statuses map[string]string) []Candidate {
	want := max(len(nodes)*minCandidateNodesPercentage/100, minCandidateNodesAbsolute)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex
	var out []Candidate
	pl.h.Parallelizer().Until(cctx, len(nodes), func(i int) {
		c, ok := pl.SelectVictimsOnNode(ctx, state, pi, nodes[i], pdbs)
		mu.Lock()
		defer mu.Unlock()
		if !ok {
			statuses[nodes[i].Node().Name] = ReasonNoVictims
			return
		}
		out = append(out, c)
		if len(out) >= want {
			cancel()
		}
	})
	// Nodes not evaluated because enough candidates were found count as
	// "no victims" only for the message, which is unused on success.
	sort.Slice(out, func(a, b int) bool { return out[a].Node < out[b].Node })
	return out
}

// SelectVictimsOnNode computes the minimal victims on one node.
func (pl *DefaultPreemption) SelectVictimsOnNode(ctx context.Context, state *framework.CycleState, pi *framework.PodInfo, ni *framework.NodeInfo, pdbs []*policyv1.PodDisruptionBudget) (Candidate, bool) {
	fwk := pl.h.Framework()
	node := ni.Clone()
	st := state.Clone()
	prio := Priority(pi.Pod)
	var lower []*framework.PodInfo
	for _, p := range ni.Pods {
		if Priority(p.Pod) < prio {
			lower = append(lower, p)
		}
	}
	if len(lower) == 0 {
		return Candidate{}, false
	}
	for _, p := range lower {
		if err := node.RemovePod(p.Pod); err != nil {
			return Candidate{}, false
		}
		if s := fwk.RunPreFilterExtensionRemovePod(ctx, st, pi, p, node); !s.IsSuccess() {
			return Candidate{}, false
		}
	}
	if s := fwk.RunFilterPlugins(ctx, st, pi, node); !s.IsSuccess() {
		return Candidate{}, false
	}
	sort.SliceStable(lower, func(a, b int) bool { return moreImportant(lower[a].Pod, lower[b].Pod) })
	violating, nonViolating := splitByPDB(lower, pdbs)
	var victims []*v1.Pod
	violations := 0
	reprieve := func(p *framework.PodInfo) bool {
		node.AddPodInfo(p)
		fwk.RunPreFilterExtensionAddPod(ctx, st, pi, p, node)
		if s := fwk.RunFilterPlugins(ctx, st, pi, node); s.IsSuccess() {
			return true
		}
		_ = node.RemovePod(p.Pod)
		fwk.RunPreFilterExtensionRemovePod(ctx, st, pi, p, node)
		victims = append(victims, p.Pod)
		return false
	}
	for _, p := range violating {
		if !reprieve(p) {
			violations++
		}
	}
	for _, p := range nonViolating {
		reprieve(p)
	}
	if len(victims) == 0 {
		// Everything could be reprieved: the pod fits without preemption,
		// which the filters said it did not; treat as no candidate.
		return Candidate{}, false
	}
	return Candidate{Node: ni.Node().Name, Victims: victims, PDBViolations: violations}, true
}

// splitByPDB splits pods into those whose eviction would violate a PDB
// (no disruptions left) and the rest, keeping order.
func splitByPDB(pods []*framework.PodInfo, pdbs []*policyv1.PodDisruptionBudget) (violating, ok []*framework.PodInfo) {
	allowed := make([]int32, len(pdbs))
	sels := make([]labels.Selector, len(pdbs))
	for i, pdb := range pdbs {
		allowed[i] = pdb.Status.DisruptionsAllowed
		s, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil || s.Empty() {
			s = labels.Nothing()
		}
		sels[i] = s
	}
	for _, p := range pods {
		bad := false
		for i, pdb := range pdbs {
			if pdb.Namespace != p.Pod.Namespace || !sels[i].Matches(labels.Set(p.Pod.Labels)) {
				continue
			}
			if _, already := pdb.Status.DisruptedPods[p.Pod.Name]; already {
				continue
			}
			allowed[i]--
			if allowed[i] < 0 {
				bad = true
			}
		}
		if bad {
			violating = append(violating, p)
		} else {
			ok = append(ok, p)
		}
	}
	return violating, ok
}

// PickOne chooses among candidates with upstream's criteria.
func PickOne(cs []Candidate) Candidate {
	type key struct {
		violations  int
		highest     int32
		sum         int64
		n           int
		latestStart int64
	}
	keyOf := func(c Candidate) key {
		k := key{violations: c.PDBViolations, highest: math.MinInt32, n: len(c.Victims), latestStart: math.MinInt64}
		for _, v := range c.Victims {
			p := Priority(v)
			// Shift by MaxInt32+1 so negative priorities still add up as upstream.
			k.sum += int64(p) + math.MaxInt32 + 1
			k.highest = max(k.highest, p)
		}
		for _, v := range c.Victims {
			if Priority(v) == k.highest {
				// The earliest start among the highest-priority victims; a
				// later one is preferred (less work lost).
				t := startTime(v).UnixNano()
				if k.latestStart == math.MinInt64 || t < k.latestStart {
					k.latestStart = t
				}
			}
		}
		return k
	}
	best, bk := cs[0], keyOf(cs[0])
	for _, c := range cs[1:] {
		k := keyOf(c)
		better := false
		switch {
		case k.violations != bk.violations:
			better = k.violations < bk.violations
		case k.highest != bk.highest:
			better = k.highest < bk.highest
		case k.sum != bk.sum:
			better = k.sum < bk.sum
		case k.n != bk.n:
			better = k.n < bk.n
		case k.latestStart != bk.latestStart:
			better = k.latestStart > bk.latestStart
		}
		if better {
			best, bk = c, k
		}
	}
	return best
}

// prepare deletes the victims gracefully and records events.
func (pl *DefaultPreemption) prepare(ctx context.Context, preemptor *v1.Pod, c Candidate) error {
	client := pl.h.ClientSet()
	for _, v := range c.Victims {
		if client != nil {
			err := client.CoreV1().Pods(v.Namespace).Delete(ctx, v.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &v.UID}})
			if err != nil && !isNotFound(err) {
				return fmt.Errorf("preempting pod %s/%s: %w", v.Namespace, v.Name, err)
			}
		}
		if r := pl.h.EventRecorder(); r != nil {
			r.Eventf(v, preemptor, v1.EventTypeNormal, "Preempted", "Preempting", "Preempted by pod %v on node %v", preemptor.UID, c.Node)
		}
	}
	return nil
}
