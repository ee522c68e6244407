package framework

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"sort"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
)

func indexTestNode(i int, zone string) *v1.Node {
	name := fmt.Sprintf("n%d", i)
	l := map[string]string{v1.LabelHostname: name}
	if zone != "" {
		l[v1.LabelTopologyZone] = zone
	}
	rl := v1.ResourceList{v1.ResourceCPU: resource.MustParse("8"), v1.ResourcePods: resource.MustParse("110")}
	return &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}, Status: v1.NodeStatus{Allocatable: rl}}
}

func randomPod(r *rand.Rand, id int) *v1.Pod {
	ns := []string{"default", "other"}[r.IntN(2)]
	p := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p%d", id), Namespace: ns, UID: types.UID(fmt.Sprintf("u%d", id)),
		Labels: map[string]string{"app": []string{"a", "b", "c"}[r.IntN(3)]}}}
	if r.IntN(2) == 0 {
		p.Labels["tier"] = []string{"x", "y"}[r.IntN(2)]
	}
	if r.IntN(5) == 0 {
		now := metav1.Now()
		p.DeletionTimestamp = &now
	}
	term := func() v1.PodAffinityTerm {
		t := v1.PodAffinityTerm{TopologyKey: []string{v1.LabelTopologyZone, v1.LabelHostname}[r.IntN(2)],
			LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": []string{"a", "b"}[r.IntN(2)]}}}
		switch r.IntN(4) {
		case 0:
			t.LabelSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpExists}}}
		case 1:
			t.Namespaces = []string{"default", "other"}
		}
		return t
	}
	aff := &v1.Affinity{PodAffinity: &v1.PodAffinity{}, PodAntiAffinity: &v1.PodAntiAffinity{}}
	switch r.IntN(4) {
	case 0:
		aff.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution = []v1.PodAffinityTerm{term()}
	case 1:
		aff.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution = []v1.PodAffinityTerm{term()}
	case 2:
		aff.PodAffinity.PreferredDuringSchedulingIgnoredDuringExecution = []v1.WeightedPodAffinityTerm{{Weight: int32(1 + r.IntN(3)), PodAffinityTerm: term()}}
		aff.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution = []v1.WeightedPodAffinityTerm{{Weight: 2, PodAffinityTerm: term()}}
	}
	p.Spec.Affinity = aff
	return p
}

// bruteCounts counts, per value of key, the pods on listed nodes match selects.
func bruteCounts(snap *Snapshot, key string, match func(*v1.Pod) bool) map[string]int64 {
	out := map[string]int64{}
	for _, ni := range snap.NodeInfoList {
		v, ok := ni.Node().Labels[key]
		if key == NodeNameTopology {
			v, ok = ni.Node().Name, true
		}
		if !ok {
			continue
		}
		for _, p := range ni.Pods {
			if match(p.Pod) {
				out[v]++
			}
		}
	}
	return out
}

type domainKey struct{ key, value string }

func bruteExisting(snap *Snapshot, kind TermKind, pod *v1.Pod) map[domainKey]int64 {
	out := map[domainKey]int64{}
	for _, ni := range snap.NodeInfoList {
		for _, ex := range ni.Pods {
			var terms []AffinityTerm
			var weights []int32
			switch kind {
			case ExistingRequiredAntiAffinity:
				terms = ex.RequiredAntiAffinityTerms
			case ExistingRequiredAffinity:
				terms = ex.RequiredAffinityTerms
			case ExistingPreferredAffinity:
				for _, t := range ex.PreferredAffinityTerms {
					terms, weights = append(terms, t.AffinityTerm), append(weights, t.Weight)
				}
			case ExistingPreferredAntiAffinity:
				for _, t := range ex.PreferredAntiAffinityTerms {
					terms, weights = append(terms, t.AffinityTerm), append(weights, t.Weight)
				}
			}
			for i, t := range terms {
				v, ok := ni.Node().Labels[t.TopologyKey]
				if !ok || !t.Matches(pod, nil) {
					continue
				}
				w := int64(1)
				if weights != nil {
					w = int64(weights[i])
				}
				out[domainKey{t.TopologyKey, v}] += w
			}
		}
	}
	return out
}

func indexedExisting(ix *Index, kind TermKind, pod *v1.Pod) map[domainKey]int64 {
	out := map[domainKey]int64{}
	ix.ForEachMatchingExistingTerm(kind, pod, nil, func(t *AffinityTerm, w int32, domains map[string]int64) {
		for v, n := range domains {
			if w == 0 {
				w = 1
			}
			out[domainKey{t.TopologyKey, v}] += n * int64(w)
		}
	})
	for k, v := range out {
		if v == 0 {
			delete(out, k)
		}
	}
	return out
}

// TestIndexMatchesBruteForce drives a snapshot through random node and pod
// changes (the paths the cache and benchmarks use) and checks every
// aggregate the plugins read against a scan of all pods.
func TestIndexMatchesBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	const numNodes = 8
	var nodes []*v1.Node
	for i := 0; i < numNodes; i++ {
		zone := fmt.Sprintf("z%d", i%3)
		if i == numNodes-1 {
			zone = ""
		}
		nodes = append(nodes, indexTestNode(i, zone))
	}
	snap := NewSnapshot(nil, nodes)
	rebuildList := func() {
		snap.NodeInfoList = snap.NodeInfoList[:0]
		names := make([]string, 0, len(snap.NodeInfoMap))
		for n, ni := range snap.NodeInfoMap {
			if ni.Node() != nil {
				names = append(names, n)
			}
		}
		sort.Strings(names)
		for _, n := range names {
			snap.NodeInfoList = append(snap.NodeInfoList, snap.NodeInfoMap[n])
		}
	}
	type sel struct {
		name string
		sel  labels.Selector
	}
	mustSel := func(s string) labels.Selector {
		x, err := labels.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	sels := []sel{{"app=a", mustSel("app=a")}, {"app in (a,b)", mustSel("app in (a,b)")}, {"tier=x,app=b", mustSel("tier=x,app=b")},
		{"app!=a", mustSel("app!=a")}, {"everything", labels.Everything()}, {"nothing", labels.Nothing()}}
	keys := []string{v1.LabelTopologyZone, v1.LabelHostname, NodeNameTopology}
	check := func(step int) {
		t.Helper()
		ix := snap.Index()
		if ix.NumNodes() != len(snap.NodeInfoList) {
			t.Fatalf("step %d: index has %d nodes, snapshot lists %d", step, ix.NumNodes(), len(snap.NodeInfoList))
		}
		slots := map[int32]string{}
		for _, ni := range snap.NodeInfoList {
			if ni.indexSlot == 0 || slots[ni.indexSlot] != "" {
				t.Fatalf("step %d: node %s has slot %d (taken by %q)", step, ni.Node().Name, ni.indexSlot, slots[ni.indexSlot])
			}
			slots[ni.indexSlot] = ni.Node().Name
		}
		for _, k := range []string{v1.LabelTopologyZone, v1.LabelHostname, "no-such-key"} {
			want := 0
			for _, ni := range snap.NodeInfoList {
				if _, ok := ni.Node().Labels[k]; ok {
					want++
				}
			}
			if got := ix.NodesWithKey(k); got != want {
				t.Fatalf("step %d: NodesWithKey(%q) = %d, want %d", step, k, got, want)
			}
		}
		for _, s := range sels {
			for _, ns := range []string{"default", "other"} {
				match := func(p *v1.Pod) bool {
					return p.Namespace == ns && p.DeletionTimestamp == nil && s.sel.Matches(labels.Set(p.Labels))
				}
				byNode := ix.NodeCounts("test|"+ns+"|"+SelectorKey(s.sel), s.sel, match)
				wantByNode := map[*NodeInfo]int64{}
				for _, ni := range snap.NodeInfoList {
					for _, pi := range ni.Pods {
						if match(pi.Pod) {
							wantByNode[ni]++
						}
					}
				}
				for _, ni := range snap.NodeInfoList {
					if got := byNode.Of(ni); got != wantByNode[ni] {
						t.Fatalf("step %d: count of %s in %s on %s: got %d, want %d", step, s.name, ns, ni.Node().Name, got, wantByNode[ni])
					}
				}
				for _, k := range keys {
					got := ix.DomainCounts("test|"+ns+"|"+SelectorKey(s.sel), k, s.sel, match)
					if want := bruteCounts(snap, k, match); !maps.Equal(got, want) {
						t.Fatalf("step %d: counts of %s in %s by %q: got %v, want %v", step, s.name, ns, k, got, want)
					}
				}
			}
		}
		probe := randomPod(r, 100000+step)
		for kind := TermKind(0); kind < numTermKinds; kind++ {
			if got, want := indexedExisting(ix, kind, probe), bruteExisting(snap, kind, probe); !maps.Equal(got, want) {
				t.Fatalf("step %d: existing terms of kind %d selecting %v: got %v, want %v", step, kind, probe.Labels, got, want)
			}
		}
	}
	check(0)
	id := 0
	for step := 1; step <= 400; step++ {
		name := fmt.Sprintf("n%d", r.IntN(numNodes))
		cur := snap.NodeInfoMap[name]
		switch op := r.IntN(10); {
		case op < 4 && cur != nil && cur.Node() != nil:
			// The benchmark's fake binder path.
			id++
			p := randomPod(r, id)
			p.Spec.NodeName = name
			if err := snap.AddPod(p); err != nil {
				t.Fatal(err)
			}
		case op < 6 && cur != nil:
			// The cache path: a changed copy replaces the node's info.
			ni := cur.Clone()
			if len(ni.Pods) > 0 {
				_ = ni.RemovePod(ni.Pods[r.IntN(len(ni.Pods))].Pod)
			}
			id++
			ni.AddPod(randomPod(r, id))
			snap.SetNodeInfo(name, ni)
		case op < 7 && cur != nil && cur.Node() != nil:
			// Relabel the node: every pod changes domain (or leaves
			// every zone when the label goes).
			ni := cur.Clone()
			n := cur.Node().DeepCopy()
			if r.IntN(3) == 0 {
				delete(n.Labels, v1.LabelTopologyZone)
			} else {
				n.Labels[v1.LabelTopologyZone] = fmt.Sprintf("z%d", r.IntN(4))
			}
			ni.SetNode(n)
			snap.SetNodeInfo(name, ni)
		case op < 8 && cur != nil:
			// Node object gone, pods still there.
			ni := cur.Clone()
			ni.RemoveNode()
			snap.SetNodeInfo(name, ni)
			rebuildList()
		case op < 9:
			snap.DeleteNodeInfo(name)
			rebuildList()
		default:
			var i int
			fmt.Sscanf(name, "n%d", &i)
			ni := &NodeInfo{}
			if cur != nil {
				ni = cur.Clone()
			}
			ni.SetNode(indexTestNode(i, fmt.Sprintf("z%d", i%3)))
			snap.SetNodeInfo(name, ni)
			rebuildList()
		}
		check(step)
	}
	// A fresh index over the final state agrees with the incremental one.
	fresh := buildIndex(snap.NodeInfoList)
	if fresh.NumNodes() != snap.Index().NumNodes() || len(fresh.pods) != len(snap.Index().pods) {
		t.Fatalf("fresh index: %d nodes %d pods; incremental: %d nodes %d pods", fresh.NumNodes(), len(fresh.pods), snap.Index().NumNodes(), len(snap.Index().pods))
	}
}

func TestIndexEvictsLeastRecentlyUsedCounters(t *testing.T) {
	snap := NewSnapshot(nil, []*v1.Node{indexTestNode(0, "z0")})
	ix := snap.Index()
	keep := labels.SelectorFromSet(labels.Set{"app": "keep"})
	ix.DomainCounts("keep", v1.LabelHostname, keep, func(*v1.Pod) bool { return true })
	for i := 0; i < maxCounters+10; i++ {
		s := labels.SelectorFromSet(labels.Set{"app": fmt.Sprint(i)})
		ix.DomainCounts(fmt.Sprint(i), v1.LabelHostname, s, func(*v1.Pod) bool { return false })
		if i%100 == 0 {
			ix.DomainCounts("keep", v1.LabelHostname, keep, func(*v1.Pod) bool { return true })
		}
	}
	if len(ix.counters) > maxCounters {
		t.Fatalf("%d counters kept, want at most %d", len(ix.counters), maxCounters)
	}
	if _, ok := ix.counters[v1.LabelHostname+"\x00keep"]; !ok {
		t.Fatalf("recently used counter was evicted")
	}
	// Evicted or not, counts stay right: a new pod is seen.
	p := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", UID: "p", Labels: map[string]string{"app": "keep"}}, Spec: v1.PodSpec{NodeName: "n0"}}
	if err := snap.AddPod(p); err != nil {
		t.Fatal(err)
	}
	if got := ix.DomainCounts("keep", v1.LabelHostname, keep, func(*v1.Pod) bool { return true }); got["n0"] != 1 {
		t.Fatalf("counts after add: %v", got)
	}
}
