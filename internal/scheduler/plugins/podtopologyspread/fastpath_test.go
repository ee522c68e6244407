package podtopologyspread

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"sort"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"skiff.dev/skiff/internal/scheduler/framework"
	"skiff.dev/skiff/internal/scheduler/schedtest"
)

// scoreSubset runs PreScore and Score (normalized, weight 1) of fwk over
// nodes, as the algorithm does over the feasible nodes. A skipped plugin
// scores 0 everywhere.
func scoreSubset(t *testing.T, fwk *framework.Framework, pod *v1.Pod, nodes []*framework.NodeInfo) map[string]int64 {
	t.Helper()
	ctx := context.Background()
	pi := framework.NewPodInfo(pod)
	cs := framework.NewCycleState()
	if st := fwk.RunPreScorePlugins(ctx, cs, pi, nodes); !st.IsSuccess() {
		t.Fatalf("prescore: %v", st.AsError())
	}
	scores, st := fwk.RunScorePlugins(ctx, cs, pi, nodes)
	if !st.IsSuccess() {
		t.Fatalf("score: %v", st.AsError())
	}
	out := map[string]int64{}
	for _, s := range scores {
		out[s.Name] = s.Score
	}
	return out
}

func rsListers(t *testing.T, sel map[string]string) Listers {
	i := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "rs", Namespace: "default"},
		Spec: appsv1.ReplicaSetSpec{Selector: &metav1.LabelSelector{MatchLabels: sel}}}
	if err := i.Add(rs); err != nil {
		t.Fatal(err)
	}
	return Listers{ReplicaSets: appslisters.NewReplicaSetLister(i)}
}

// zoneMode says which nodes carry the zone label.
type zoneMode int

const (
	zoneAll zoneMode = iota
	zoneNone
	zoneSome
)

func fastPathNode(r *rand.Rand, i int, mode zoneMode) *v1.Node {
	l := map[string]string{"pool": []string{"x", "y"}[r.IntN(2)]}
	switch {
	case mode == zoneAll, mode == zoneSome && r.IntN(2) == 0:
		// An empty value is a domain of its own.
		l[v1.LabelTopologyZone] = []string{"z0", "z1", "z2", ""}[r.IntN(4)]
	}
	n := schedtest.Node(fmt.Sprintf("n%02d", i), "8", "8Gi", l)
	if mode == zoneSome && r.IntN(8) == 0 {
		delete(n.Labels, v1.LabelHostname)
	}
	if r.IntN(6) == 0 {
		n.Spec.Taints = []v1.Taint{{Key: "dedicated", Effect: v1.TaintEffectNoSchedule}}
	}
	return n
}

// TestPreScoreIndexedMatchesScan schedules pods one after another on
// random clusters whose nodes carry a topology key everywhere, nowhere or
// on some nodes only, adding, removing and relabelling nodes between
// pods, and checks PreScore's index fast path scores every feasible
// subset exactly as the per-node scan does.
func TestPreScoreIndexedMatchesScan(t *testing.T) {
	app := map[string]string{"app": "a"}
	honor := v1.NodeInclusionPolicyHonor
	pods := []struct {
		name string
		pod  func(i int) *v1.Pod
	}{
		{"default constraints", func(i int) *v1.Pod { return schedtest.Pod(fmt.Sprintf("p%d", i), "", "", app) }},
		{"default constraints, pod not matching its owner", func(i int) *v1.Pod {
			return schedtest.Pod(fmt.Sprintf("p%d", i), "", "", map[string]string{"app": "b"})
		}},
		{"soft zone and hostname", func(i int) *v1.Pod {
			p := spread(schedtest.Pod(fmt.Sprintf("p%d", i), "", "", map[string]string{"app": "web"}),
				v1.TopologySpreadConstraint{MaxSkew: 2, TopologyKey: v1.LabelTopologyZone, WhenUnsatisfiable: v1.ScheduleAnyway})
			return spread(p, v1.TopologySpreadConstraint{MaxSkew: 1, TopologyKey: v1.LabelHostname, WhenUnsatisfiable: v1.ScheduleAnyway})
		}},
		{"soft hostname with a node selector (affinity Honor)", func(i int) *v1.Pod {
			p := spread(schedtest.Pod(fmt.Sprintf("p%d", i), "", "", map[string]string{"app": "web"}),
				v1.TopologySpreadConstraint{MaxSkew: 1, TopologyKey: v1.LabelHostname, WhenUnsatisfiable: v1.ScheduleAnyway})
			p.Spec.NodeSelector = map[string]string{"pool": "x"}
			return p
		}},
		{"soft zone, taints Honor", func(i int) *v1.Pod {
			return spread(schedtest.Pod(fmt.Sprintf("p%d", i), "", "", map[string]string{"app": "web"}),
				v1.TopologySpreadConstraint{MaxSkew: 1, TopologyKey: v1.LabelTopologyZone, WhenUnsatisfiable: v1.ScheduleAnyway, NodeTaintsPolicy: &honor})
		}},
		{"soft custom key on no node", func(i int) *v1.Pod {
			return spread(schedtest.Pod(fmt.Sprintf("p%d", i), "", "", map[string]string{"app": "web"}),
				v1.TopologySpreadConstraint{MaxSkew: 1, TopologyKey: "rack", WhenUnsatisfiable: v1.ScheduleAnyway})
		}},
	}
	for _, pc := range pods {
		for _, mode := range []zoneMode{zoneAll, zoneNone, zoneSome} {
			t.Run(fmt.Sprintf("%s/zones %d", pc.name, mode), func(t *testing.T) {
				r := rand.New(rand.NewPCG(uint64(mode), 42))
				const maxNodes = 10
				var nodes []*v1.Node
				for i := 0; i < maxNodes-2; i++ {
					nodes = append(nodes, fastPathNode(r, i, mode))
				}
				snap := framework.NewSnapshot(nil, nodes)
				h := schedtest.Handle(snap, nil)
				listers := rsListers(t, app)
				fast, slow := New(h, Args{}, listers), New(h, Args{}, listers)
				slow.scanOnly = true
				fastFwk := framework.NewFramework([]framework.Plugin{fast}, nil, h.Par)
				slowFwk := framework.NewFramework([]framework.Plugin{slow}, nil, h.Par)
				rebuild := func() {
					names := make([]string, 0, len(snap.NodeInfoMap))
					for n, ni := range snap.NodeInfoMap {
						if ni.Node() != nil {
							names = append(names, n)
						}
					}
					sort.Strings(names)
					snap.NodeInfoList = snap.NodeInfoList[:0]
					for _, n := range names {
						snap.NodeInfoList = append(snap.NodeInfoList, snap.NodeInfoMap[n])
					}
				}
				for step := 0; step < 60; step++ {
					all := snap.List()
					if len(all) == 0 {
						snap.SetNodeInfo("n00", nodeInfoOf(fastPathNode(r, 0, mode)))
						rebuild()
						continue
					}
					// A random feasible subset, in search order.
					feasible := make([]*framework.NodeInfo, 0, len(all))
					for _, ni := range all {
						if r.IntN(4) != 0 {
							feasible = append(feasible, ni)
						}
					}
					if len(feasible) == 0 {
						feasible = all[:1]
					}
					pod := pc.pod(step)
					got, want := scoreSubset(t, fastFwk, pod, feasible), scoreSubset(t, slowFwk, pod, feasible)
					if !maps.Equal(got, want) {
						t.Fatalf("step %d: index path scores %v, scan %v", step, got, want)
					}
					// Place the pod on the best node, then change the cluster.
					best := feasible[0].Node().Name
					for n, s := range got {
						if s > got[best] || (s == got[best] && n < best) {
							best = n
						}
					}
					pod.Spec.NodeName = best
					if r.IntN(3) == 0 {
						pod.Namespace = "other"
					}
					if err := snap.AddPod(pod); err != nil {
						t.Fatal(err)
					}
					switch op := r.IntN(8); op {
					case 0: // relabel a node: another zone, or (rarely) a change of key coverage
						ni := all[r.IntN(len(all))]
						m := mode
						if r.IntN(4) == 0 {
							m = zoneSome
						}
						c := ni.Clone()
						c.SetNode(fastPathNode(r, nodeIndex(ni.Node().Name), m))
						snap.SetNodeInfo(ni.Node().Name, c)
					case 1: // remove a node
						snap.DeleteNodeInfo(all[r.IntN(len(all))].Node().Name)
						rebuild()
					case 2: // add a node
						i := r.IntN(maxNodes)
						name := fmt.Sprintf("n%02d", i)
						if cur, ok := snap.NodeInfoMap[name]; !ok || cur.Node() == nil {
							snap.SetNodeInfo(name, nodeInfoOf(fastPathNode(r, i, mode)))
							rebuild()
						}
					}
				}
			})
		}
	}
}

func nodeInfoOf(n *v1.Node) *framework.NodeInfo {
	ni := &framework.NodeInfo{}
	ni.SetNode(n)
	return ni
}

func nodeIndex(name string) int {
	var i int
	fmt.Sscanf(name, "n%d", &i)
	return i
}

// TestDefaultSelectorCompiledOnce: the default selector built with the
// compiled-selector cache equals the one built without it, through
// ReplicaSet updates (a new object with another selector), a StatefulSet,
// matching and non-matching Services and ReplicationControllers, and an
// invalid selector.
func TestDefaultSelectorCompiledOnce(t *testing.T) {
	idx := func() cache.Indexer {
		return cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	}
	rsIdx, ssIdx, svcIdx, rcIdx := idx(), idx(), idx(), idx()
	l := Listers{ReplicaSets: appslisters.NewReplicaSetLister(rsIdx), StatefulSets: appslisters.NewStatefulSetLister(ssIdx),
		Services: corelisters.NewServiceLister(svcIdx), ReplicationControllers: corelisters.NewReplicationControllerLister(rcIdx)}
	cached := New(nil, Args{}, l)
	want := func(pod *v1.Pod) string { return New(nil, Args{}, l).defaultSelector(pod).String() }
	rs := func(name string, sel *metav1.LabelSelector) *appsv1.ReplicaSet {
		return &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}, Spec: appsv1.ReplicaSetSpec{Selector: sel}}
	}
	pods := []*v1.Pod{
		schedtest.Pod("a", "", "", map[string]string{"app": "a", "tier": "web"}),
		schedtest.Pod("b", "", "", map[string]string{"app": "b"}),
		schedtest.Pod("c", "", "", nil),
	}
	check := func(step string) {
		t.Helper()
		for _, pod := range pods {
			for i := 0; i < 2; i++ { // the second call hits the cache
				if got, w := cached.defaultSelector(pod).String(), want(pod); got != w {
					t.Fatalf("%s, pod %s: cached %q, uncached %q", step, pod.Name, got, w)
				}
			}
		}
	}
	check("empty")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(rsIdx.Add(rs("rs1", &metav1.LabelSelector{MatchLabels: map[string]string{"app": "a"}})))
	check("rs1 selects a")
	if s := cached.defaultSelector(pods[0]).String(); s != "app=a" {
		t.Fatalf("rs1 selects a: got %q", s)
	}
	must(rsIdx.Update(rs("rs1", &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpIn, Values: []string{"a", "b"}}}})))
	check("rs1 updated to app in (a,b)")
	if s := cached.defaultSelector(pods[1]).String(); s != "app in (a,b)" {
		t.Fatalf("rs1 updated: pod b got %q", s)
	}
	must(rsIdx.Add(rs("bad", &metav1.LabelSelector{MatchLabels: map[string]string{"app": "a b"}})))
	must(ssIdx.Add(&appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "ss", Namespace: "default"},
		Spec: appsv1.StatefulSetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "web"}}}}))
	must(svcIdx.Add(&v1.Service{ObjectMeta: metav1.ObjectMeta{Name: "s1", Namespace: "default"}, Spec: v1.ServiceSpec{Selector: map[string]string{"app": "a", "tier": "web"}}}))
	must(svcIdx.Add(&v1.Service{ObjectMeta: metav1.ObjectMeta{Name: "s2", Namespace: "default"}, Spec: v1.ServiceSpec{Selector: map[string]string{"app": "b", "tier": "db"}}}))
	must(rcIdx.Add(&v1.ReplicationController{ObjectMeta: metav1.ObjectMeta{Name: "rc", Namespace: "default"}, Spec: v1.ReplicationControllerSpec{Selector: map[string]string{"app": "b"}}}))
	check("statefulset, services, rc, invalid selector")
	if s := cached.defaultSelector(pods[1]).String(); s != "app in (a,b),app=b" {
		t.Fatalf("pod b with rs1 and rc: got %q", s)
	}
}

// TestDefaultSelectorForFollowsGeneration: with Listers.Generation the
// default selector (and its counter key) is remembered per namespace and
// labels and equals the uncached one while the generation holds, for
// pods whose label maps are distinct objects; a change to the listers is
// seen once the generation moves, and not before (the reuse is real).
func TestDefaultSelectorForFollowsGeneration(t *testing.T) {
	idx := func() cache.Indexer {
		return cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	}
	rsIdx, svcIdx := idx(), idx()
	var gen uint64
	l := Listers{ReplicaSets: appslisters.NewReplicaSetLister(rsIdx), Services: corelisters.NewServiceLister(svcIdx)}
	uncached := New(nil, Args{}, l)
	l.Generation = func() uint64 { return gen }
	cached := New(nil, Args{}, l)
	podIn := func(ns, name string, lbls map[string]string) *v1.Pod {
		p := schedtest.Pod(name, "", "", maps.Clone(lbls))
		p.Namespace = ns
		return p
	}
	web := map[string]string{"app": "web", "pod-template-hash": "1"}
	pods := []*v1.Pod{
		podIn("default", "w1", web), podIn("default", "w2", web), podIn("other", "w3", web),
		podIn("default", "d1", map[string]string{"app": "db"}), podIn("default", "n1", nil), podIn("default", "n2", map[string]string{}),
		podIn("default", "x1", map[string]string{"app": "web"}), podIn("default", "x2", map[string]string{"pod-template-hash": "1", "app": "web", "x": ""}),
	}
	check := func(step string) {
		t.Helper()
		for _, pod := range pods {
			for i := 0; i < 2; i++ {
				wantSel, wantKey := uncached.defaultSelectorFor(pod)
				gotSel, gotKey := cached.defaultSelectorFor(pod)
				if gotSel.String() != wantSel.String() || gotKey != wantKey {
					t.Fatalf("%s, pod %s/%s: cached %q (%q), uncached %q (%q)", step, pod.Namespace, pod.Name, gotSel, gotKey, wantSel, wantKey)
				}
			}
		}
	}
	check("empty")
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "default"},
		Spec: appsv1.ReplicaSetSpec{Selector: &metav1.LabelSelector{MatchLabels: web}}}
	if err := rsIdx.Add(rs); err != nil {
		t.Fatal(err)
	}
	// Not counted yet: the remembered (empty) selector is still served.
	if s, _ := cached.defaultSelectorFor(pods[0]); !s.Empty() {
		t.Fatalf("selector changed without a generation change: %q", s)
	}
	gen++
	check("replicaset added")
	if s, k := cached.defaultSelectorFor(pods[1]); s.String() != "app=web,pod-template-hash=1" || k != "tsc|default|app=web,pod-template-hash=1" {
		t.Fatalf("pod w2: %q, key %q", s, k)
	}
	if s, _ := cached.defaultSelectorFor(pods[2]); !s.Empty() {
		t.Fatalf("pod in another namespace got %q", s)
	}
	if err := svcIdx.Add(&v1.Service{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "default"}, Spec: v1.ServiceSpec{Selector: map[string]string{"app": "db"}}}); err != nil {
		t.Fatal(err)
	}
	gen++
	check("service added")
	if err := rsIdx.Delete(rs); err != nil {
		t.Fatal(err)
	}
	gen++
	check("replicaset deleted")
	if s, _ := cached.defaultSelectorFor(pods[0]); !s.Empty() {
		t.Fatalf("after the replicaset's deletion pod w1 got %q", s)
	}
}

// BenchmarkPreScoreDefaults is PodTopologySpread's PreScore for a
// ReplicaSet's pod under the system defaults at 1,000 zoneless nodes, each
// pod with its own label map, with and without Listers.Generation.
//
//	go test ./internal/scheduler/plugins/podtopologyspread -run XXX -bench PreScoreDefaults -benchmem -count 5
func BenchmarkPreScoreDefaults(b *testing.B) {
	idx := func(objs ...any) cache.Indexer {
		i := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
		for _, o := range objs {
			if err := i.Add(o); err != nil {
				b.Fatal(err)
			}
		}
		return i
	}
	web := map[string]string{"app": "bench", "pod-template-hash": "5d8f7c9b4"}
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "bench-5d8f7c9b4", Namespace: "default"},
		Spec: appsv1.ReplicaSetSpec{Selector: &metav1.LabelSelector{MatchLabels: web}}}
	svc := &v1.Service{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: "default"}}
	nodes := make([]*v1.Node, 1000)
	for i := range nodes {
		nodes[i] = schedtest.Node(fmt.Sprintf("n%04d", i), "32", "256Gi", nil)
	}
	pods := make([]*v1.Pod, 1000)
	for i := range pods {
		pods[i] = schedtest.Pod(fmt.Sprintf("p%04d", i), "", "", maps.Clone(web))
	}
	for _, withGen := range []bool{false, true} {
		b.Run(fmt.Sprintf("generation=%v", withGen), func(b *testing.B) {
			l := Listers{Services: corelisters.NewServiceLister(idx(svc)), ReplicationControllers: corelisters.NewReplicationControllerLister(idx()),
				ReplicaSets: appslisters.NewReplicaSetLister(idx(rs)), StatefulSets: appslisters.NewStatefulSetLister(idx())}
			if withGen {
				l.Generation = func() uint64 { return 1 }
			}
			snap := framework.NewSnapshot(nil, nodes)
			h := schedtest.Handle(snap, nil)
			p := New(h, Args{}, l)
			all := snap.List()
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				pi := framework.NewPodInfo(pods[i%len(pods)])
				if st := p.PreScore(ctx, framework.NewCycleState(), pi, all); !st.IsSuccess() {
					b.Fatal(st.AsError())
				}
			}
		})
	}
}
