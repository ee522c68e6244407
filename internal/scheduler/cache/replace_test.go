package cache

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"skiff.dev/skiff/internal/scheduler/framework"
)

// TestInPlaceReplacementMatchesRebuild drives a cache through random pod
// lifecycles (assume, confirm where assumed or elsewhere, status writes,
// label changes, resizes, host ports, deletion timestamps, removals) with
// an incremental snapshot and its Index, and after every step holds both
// to a snapshot built from scratch from the pods the cache should hold:
// per node the pod objects (the latest versions), requests, scoring
// requests and ports, and per selector the Index's domain and per-node
// counts and candidate pods. Status writes and confirmations take the
// in-place path (NodeInfo.ReplacePodInfo, Index rekeying); a replacement
// that skipped something it must not would leave a count or an aggregate
// stale here.
func TestInPlaceReplacementMatchesRebuild(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	c, _ := newCache(0)
	nodes := []*v1.Node{node("n0", "a"), node("n1", "a"), node("n2", "b")}
	for _, n := range nodes {
		c.AddNode(n)
	}
	snap := &framework.Snapshot{}
	c.UpdateSnapshot(snap)
	snap.Index()                 // built now, then kept current incrementally
	want := map[string]*v1.Pod{} // uid -> the version the cache must hold
	ns := []string{"default", "other"}
	appLabels := []map[string]string{{"app": "x"}, {"app": "y"}, {"app": "x", "tier": "web"}, nil}
	sels := []labels.Selector{labels.SelectorFromSet(labels.Set{"app": "x"}), labels.SelectorFromSet(labels.Set{"tier": "web"}), labels.Everything()}
	replaced := 0
	queued := map[string]*framework.PodInfo{} // as the scheduler's queue holds them
	// assume places a queued pod as Scheduler.assume does: a shallow copy
	// with spec.nodeName set, its PodInfo a copy of the queued one.
	assume := func(qpi *framework.PodInfo, node string) *v1.Pod {
		ap := *qpi.Pod
		ap.Spec.NodeName = node
		api := qpi.WithNewIdentity()
		api.Pod = &ap
		if err := c.AssumePodInfo(api); err != nil {
			t.Fatal(err)
		}
		return &ap
	}
	newVersion := func(p *v1.Pod) *v1.Pod {
		q := p.DeepCopy()
		q.ResourceVersion = fmt.Sprint(r.IntN(1 << 30))
		return q
	}
	for step := 0; step < 1000; step++ {
		uids := slices.Sorted(maps.Keys(want))
		switch op := r.IntN(10); {
		case op < 3 || len(uids) == 0: // a new pod: assumed, or added bound
			p := pod(fmt.Sprintf("p%d", step), nodes[r.IntN(len(nodes))].Name, []string{"100m", "1"}[r.IntN(2)])
			p.Namespace = ns[r.IntN(len(ns))]
			p.Labels = maps.Clone(appLabels[r.IntN(len(appLabels))])
			if r.IntN(5) == 0 {
				p.Spec.Containers[0].Ports = []v1.ContainerPort{{ContainerPort: 80, HostPort: 8080 + int32(r.IntN(2))}}
			}
			if r.IntN(2) == 0 {
				node := p.Spec.NodeName
				p.Spec.NodeName = ""
				queued[string(p.UID)] = framework.NewPodInfo(p)
				p = assume(queued[string(p.UID)], node)
			} else if err := c.AddPod(p); err != nil {
				t.Fatal(err)
			}
			want[string(p.UID)] = p
		default:
			cur := want[uids[r.IntN(len(uids))]]
			q := newVersion(cur)
			var err error
			switch r.IntN(9) {
			case 8: // binding failed: forgotten, and assumed again (maybe elsewhere) before the next snapshot
				if !c.IsAssumedPod(cur) {
					continue
				}
				if err := c.ForgetPod(cur); err != nil {
					t.Fatal(err)
				}
				want[string(cur.UID)] = assume(queued[string(cur.UID)], nodes[r.IntN(len(nodes))].Name)
				continue
			case 7: // host ports (immutable in the API; the cache must still follow)
				if len(q.Spec.Containers[0].Ports) == 0 {
					q.Spec.Containers[0].Ports = []v1.ContainerPort{{ContainerPort: 80, HostPort: 8080}}
				} else {
					q.Spec.Containers[0].Ports = nil
				}
			case 0: // status write
				q.Status.Phase = v1.PodRunning
				q.Status.StartTime = &metav1.Time{Time: time.Unix(int64(step), 0)}
			case 1: // labels
				q.Labels = maps.Clone(appLabels[r.IntN(len(appLabels))])
			case 2: // resize
				q.Spec.Containers[0].Resources.Requests = v1.ResourceList{v1.ResourceCPU: resource.MustParse(fmt.Sprintf("%dm", 100+r.IntN(3)*100))}
			case 3: // terminating
				q.DeletionTimestamp = &metav1.Time{Time: time.Unix(int64(step), 0)}
			case 4: // removed
				if err := c.RemovePod(cur); err != nil {
					t.Fatal(err)
				}
				delete(want, string(cur.UID))
				continue
			case 5: // a binding confirmed, maybe on another node than assumed
				if !c.IsAssumedPod(cur) {
					continue
				}
				if r.IntN(3) == 0 {
					q.Spec.NodeName = nodes[r.IntN(len(nodes))].Name
				}
				if err := c.AddPod(q); err != nil {
					t.Fatal(err)
				}
				want[string(q.UID)] = q
				continue
			case 6: // unchanged but for the resource version
			}
			if c.IsAssumedPod(cur) {
				continue // updates are of confirmed pods
			}
			if pi := framework.NewPodInfo(cur); pi.Equivalent(framework.NewPodInfo(q)) {
				replaced++
			}
			if err = c.UpdatePod(cur, q); err != nil {
				t.Fatal(err)
			}
			want[string(q.UID)] = q
		}
		if r.IntN(3) == 0 && step < 999 {
			continue // several changes between snapshots
		}
		c.UpdateSnapshot(snap)
		checkAgainstRebuild(t, step, snap, nodes, want, sels)
	}
	if replaced < 100 {
		t.Fatalf("only %d updates were equivalent: the in-place path is barely exercised", replaced)
	}
}

func checkAgainstRebuild(t *testing.T, step int, snap *framework.Snapshot, nodes []*v1.Node, want map[string]*v1.Pod, sels []labels.Selector) {
	t.Helper()
	ref := framework.NewSnapshot(slices.Collect(maps.Values(want)), nodes)
	for _, n := range nodes {
		got, _ := snap.Get(n.Name)
		exp, _ := ref.Get(n.Name)
		if got.Requested.MilliCPU != exp.Requested.MilliCPU || got.NonZeroCPU != exp.NonZeroCPU || got.NonZeroMem != exp.NonZeroMem ||
			fmt.Sprint(got.UsedPorts) != fmt.Sprint(exp.UsedPorts) {
			t.Fatalf("step %d, node %s: requested %d/%d/%d ports %v, rebuilt %d/%d/%d ports %v", step, n.Name,
				got.Requested.MilliCPU, got.NonZeroCPU, got.NonZeroMem, got.UsedPorts, exp.Requested.MilliCPU, exp.NonZeroCPU, exp.NonZeroMem, exp.UsedPorts)
		}
		if len(got.Pods) != len(exp.Pods) {
			t.Fatalf("step %d, node %s: %d pods, rebuilt %d", step, n.Name, len(got.Pods), len(exp.Pods))
		}
		for _, pi := range got.Pods {
			if w := want[string(pi.Pod.UID)]; w != pi.Pod {
				t.Fatalf("step %d, node %s: pod %s is a stale version (rv %s, want %s)", step, n.Name, pi.Pod.Name, pi.Pod.ResourceVersion, w.ResourceVersion)
			}
		}
	}
	for i, sel := range sels {
		for _, nsName := range []string{"default", "other"} {
			match := func(p *v1.Pod) bool {
				return p.Namespace == nsName && p.DeletionTimestamp == nil && sel.Matches(labels.Set(p.Labels))
			}
			key := fmt.Sprintf("test|%s|%d", nsName, i)
			got, exp := snap.Index().DomainCounts(key, v1.LabelTopologyZone, sel, match), ref.Index().DomainCounts(key, v1.LabelTopologyZone, sel, match)
			if !maps.Equal(nonZero(got), nonZero(exp)) {
				t.Fatalf("step %d, %s in %s: zone counts %v, rebuilt %v", step, sel, nsName, got, exp)
			}
			gn, en := snap.Index().NodeCounts(key, sel, match), ref.Index().NodeCounts(key, sel, match)
			for _, n := range nodes {
				a, _ := snap.Get(n.Name)
				b, _ := ref.Get(n.Name)
				if gn.Of(a) != en.Of(b) {
					t.Fatalf("step %d, %s in %s, node %s: count %d, rebuilt %d", step, sel, nsName, n.Name, gn.Of(a), en.Of(b))
				}
			}
		}
		if g, e := candidates(snap, sel), candidates(ref, sel); !slices.Equal(g, e) {
			t.Fatalf("step %d, %s: candidates %v, rebuilt %v", step, sel, g, e)
		}
	}
}

func nonZero(m map[string]int64) map[string]int64 {
	out := map[string]int64{}
	for k, v := range m {
		if v != 0 {
			out[k] = v
		}
	}
	return out
}

// candidates lists the Index's candidate pods for sel as name@rv, sorted
// (the PodInfos it holds must be the current ones).
func candidates(s *framework.Snapshot, sel labels.Selector) []string {
	var out []string
	s.Index().ForEachCandidatePod(sel, func(pi *framework.PodInfo, _ map[string]string) {
		if sel.Matches(labels.Set(pi.Pod.Labels)) {
			out = append(out, pi.Pod.Namespace+"/"+pi.Pod.Name+"@"+pi.Pod.ResourceVersion)
		}
	})
	sort.Strings(out)
	return out
}
