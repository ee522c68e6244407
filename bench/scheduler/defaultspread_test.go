package scheduler

import (
	"context"
	"flag"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"skiff.dev/skiff/internal/cputime"
	"skiff.dev/skiff/internal/scheduler"
	"skiff.dev/skiff/internal/scheduler/framework"
	"skiff.dev/skiff/internal/scheduler/plugins/podtopologyspread"
)

// The issue-4 shape, algorithm only: 1,000 nodes like internal/hollow's
// (hostname, os, arch and role labels, no zone label, 32 cpu, 256Gi, 110
// pods), 10,000 pods of one ReplicaSet without requests or constraints of
// their own, so PodTopologySpread applies the cluster default constraints
// with the ReplicaSet's selector. Reports CPU per pod (the number to judge
// on a loaded machine).
//
//	go test ./bench/scheduler -run XXX -bench DefaultSpread -benchtime 1x [-cpuprofile cpu.out]
const (
	spreadNodes = 1000
	spreadPods  = 10000
)

// spreadDigest runs the search on one worker (a deterministic order) and
// reports a digest of every pod's node: equal digests before and after a
// change mean it placed every pod on the same node.
var spreadDigest = flag.Bool("spread-digest", false, "BenchmarkDefaultSpread: one worker, report a digest of the placements")

func hollowLikeNodes(n int) []*v1.Node {
	out := make([]*v1.Node, n)
	for i := range out {
		rl := v1.ResourceList{v1.ResourceCPU: resource.MustParse("32"), v1.ResourceMemory: resource.MustParse("256Gi"), v1.ResourcePods: resource.MustParse("110")}
		name := fmt.Sprintf("hollow-node-%d", i)
		out[i] = &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
			v1.LabelHostname: name, v1.LabelOSStable: "linux", v1.LabelArchStable: "amd64", "kubernetes.io/role": "hollow"}},
			Status: v1.NodeStatus{Capacity: rl, Allocatable: rl}}
	}
	return out
}

// spreadListers returns listers holding the default namespace's
// "kubernetes" Service (no selector) and the ReplicaSet owning the pods.
func spreadListers(tb testing.TB, rs *appsv1.ReplicaSet) podtopologyspread.Listers {
	idx := func(objs ...any) cache.Indexer {
		i := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
		for _, o := range objs {
			if err := i.Add(o); err != nil {
				tb.Fatal(err)
			}
		}
		return i
	}
	svc := &v1.Service{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: "default"}}
	return podtopologyspread.Listers{
		Services:               corelisters.NewServiceLister(idx(svc)),
		ReplicationControllers: corelisters.NewReplicationControllerLister(idx()),
		ReplicaSets:            appslisters.NewReplicaSetLister(idx(rs)),
		StatefulSets:           appslisters.NewStatefulSetLister(idx()),
	}
}

func BenchmarkDefaultSpread(b *testing.B) {
	for i := 0; i < b.N; i++ {
		rsLabels := map[string]string{"app": "bench", "pod-template-hash": "5d8f7c9b4"}
		rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "bench-5d8f7c9b4", Namespace: "default", UID: "rs-uid"},
			Spec: appsv1.ReplicaSetSpec{Selector: &metav1.LabelSelector{MatchLabels: rsLabels}}}
		snap := framework.NewSnapshot(nil, hollowLikeNodes(spreadNodes))
		par := framework.Parallelizer{}
		if *spreadDigest {
			par.Workers = 1
		}
		h := &framework.BasicHandle{Snap: snap, Par: par,
			Namespaces: func() map[string]labels.Set { return map[string]labels.Set{"default": {}} }}
		h.Fwk = framework.NewFramework(scheduler.DefaultPlugins(h, scheduler.PluginDeps{DisablePreemption: true, Binder: fakeBinder{},
			SpreadListers: spreadListers(b, rs)}), scheduler.DefaultScoreWeights, h.Par)
		algo := &scheduler.Algorithm{Framework: h.Fwk, Parallelizer: h.Par, Rand: rand.New(rand.NewPCG(1, 2))}
		ctrl := true
		pods := make([]*v1.Pod, spreadPods)
		for j := range pods {
			pods[j] = &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("bench-5d8f7c9b4-%05d", j), Namespace: "default",
				UID: types.UID(fmt.Sprintf("uid-%d", j)), Labels: rsLabels,
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID, Controller: &ctrl}}},
				Spec: v1.PodSpec{Containers: []v1.Container{{Name: "app", Image: "bench:v1"}}}}
		}
		ctx := context.Background()
		b.StartTimer()
		cpu0 := cputime.Process()
		for _, p := range pods {
			res, err := algo.Schedule(ctx, framework.NewCycleState(), framework.NewPodInfo(p), snap)
			if err != nil {
				b.Fatalf("scheduling %s: %v", p.Name, err)
			}
			p.Spec.NodeName = res.SuggestedHost
			if err := snap.AddPod(p); err != nil {
				b.Fatal(err)
			}
		}
		cpu := cputime.Process() - cpu0
		b.StopTimer()
		b.ReportMetric(float64(cpu.Microseconds())/spreadPods, "cpu-µs/pod")
		perNode := map[int]int{}
		for _, ni := range snap.List() {
			perNode[len(ni.Pods)]++
		}
		b.ReportMetric(float64(maxKey(perNode)), "max-pods/node")
		if *spreadDigest {
			d := fnv.New32a()
			for _, p := range pods {
				fmt.Fprintf(d, "%s=%s;", p.Name, p.Spec.NodeName)
			}
			b.ReportMetric(float64(d.Sum32()), "digest")
		}
	}
}

func maxKey(m map[int]int) int {
	k := 0
	for x := range m {
		k = max(k, x)
	}
	return k
}
