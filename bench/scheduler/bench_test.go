// Package scheduler benchmarks skiff's scheduling algorithm alone, in the
// style of upstream's scheduler_perf: an in-process snapshot of 5,000
// nodes, 10,000 pods scheduled one after another with the default plugins,
// and a fake binder that places each pod into the snapshot. It reports
// pods/s and the p99 per-pod latency of one scheduling cycle.
//
//	go test ./bench/scheduler -run XXX -bench . -benchtime 1x
package scheduler

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"skiff.dev/skiff/internal/cputime"
	"skiff.dev/skiff/internal/scheduler"
	"skiff.dev/skiff/internal/scheduler/framework"
)

const (
	numNodes = 5000
	numPods  = 10000
	numZones = 10
)

func nodes() []*v1.Node {
	out := make([]*v1.Node, numNodes)
	for i := range out {
		rl := v1.ResourceList{v1.ResourceCPU: resource.MustParse("32"), v1.ResourceMemory: resource.MustParse("256Gi"), v1.ResourcePods: resource.MustParse("110")}
		name := fmt.Sprintf("node-%d", i)
		out[i] = &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
			v1.LabelHostname: name, v1.LabelTopologyZone: fmt.Sprintf("zone-%d", i%numZones)}},
			Status: v1.NodeStatus{Capacity: rl, Allocatable: rl}}
	}
	return out
}

func basePod(i int) *v1.Pod {
	return &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pod-%d", i), Namespace: "default", UID: types.UID(fmt.Sprintf("uid-%d", i)),
		Labels: map[string]string{"app": "bench", "color": []string{"red", "green", "blue"}[i%3]}},
		Spec: v1.PodSpec{Containers: []v1.Container{{Name: "c", Resources: v1.ResourceRequirements{Requests: v1.ResourceList{
			v1.ResourceCPU: resource.MustParse("100m"), v1.ResourceMemory: resource.MustParse("500Mi")}}}}}}
}

type scenario struct {
	name string
	pod  func(i int) *v1.Pod
}

var scenarios = []scenario{
	{"SchedulingBasic", basePod},
	{"SchedulingPodAntiAffinity", func(i int) *v1.Pod {
		p := basePod(i)
		// Pods of one group (2 pods each) repel each other per host.
		p.Labels["group"] = fmt.Sprintf("g%d", i/2)
		p.Spec.Affinity = &v1.Affinity{PodAntiAffinity: &v1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []v1.PodAffinityTerm{{
			TopologyKey: v1.LabelHostname, LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"group": p.Labels["group"]}}}}}}
		return p
	}},
	{"SchedulingTopologySpread", func(i int) *v1.Pod {
		p := basePod(i)
		p.Spec.TopologySpreadConstraints = []v1.TopologySpreadConstraint{{MaxSkew: 1, TopologyKey: v1.LabelTopologyZone,
			WhenUnsatisfiable: v1.DoNotSchedule, LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"color": p.Labels["color"]}}}}
		return p
	}},
	{"SchedulingPreferredNodeAffinity", func(i int) *v1.Pod {
		p := basePod(i)
		p.Spec.Affinity = &v1.Affinity{NodeAffinity: &v1.NodeAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []v1.PreferredSchedulingTerm{{
			Weight: 10, Preference: v1.NodeSelectorTerm{MatchExpressions: []v1.NodeSelectorRequirement{{
				Key: v1.LabelTopologyZone, Operator: v1.NodeSelectorOpIn, Values: []string{"zone-1", "zone-2"}}}}}}}}
		return p
	}},
}

type fakeBinder struct{}

func (fakeBinder) Name() string { return "FakeBinder" }
func (fakeBinder) Bind(context.Context, *framework.CycleState, *v1.Pod, string) *framework.Status {
	return nil
}

// run schedules numPods pods and returns the per-pod latencies.
func run(tb testing.TB, sc scenario) (time.Duration, []time.Duration) {
	snap := framework.NewSnapshot(nil, nodes())
	h := &framework.BasicHandle{Snap: snap, Par: framework.Parallelizer{},
		Namespaces: func() map[string]labels.Set { return map[string]labels.Set{"default": {}} }}
	h.Fwk = framework.NewFramework(scheduler.DefaultPlugins(h, scheduler.PluginDeps{DisablePreemption: true, Binder: fakeBinder{}}), scheduler.DefaultScoreWeights, h.Par)
	algo := &scheduler.Algorithm{Framework: h.Fwk, Parallelizer: h.Par, Rand: rand.New(rand.NewPCG(1, 2))}
	pods := make([]*v1.Pod, numPods)
	for i := range pods {
		pods[i] = sc.pod(i)
	}
	ctx := context.Background()
	lat := make([]time.Duration, 0, numPods)
	start := time.Now()
	for _, p := range pods {
		t0 := time.Now()
		res, err := algo.Schedule(ctx, framework.NewCycleState(), framework.NewPodInfo(p), snap)
		if err != nil {
			tb.Fatalf("%s: scheduling %s: %v", sc.name, p.Name, err)
		}
		p.Spec.NodeName = res.SuggestedHost
		if err := snap.AddPod(p); err != nil {
			tb.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	return time.Since(start), lat
}

func p99(lat []time.Duration) time.Duration {
	s := append([]time.Duration(nil), lat...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)*99/100]
}

func BenchmarkScheduling(b *testing.B) {
	for _, sc := range scenarios {
		b.Run(sc.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				cpu0 := cputime.Process()
				total, lat := run(b, sc)
				cpu := cputime.Process() - cpu0
				b.ReportMetric(float64(numPods)/total.Seconds(), "pods/s")
				// CPU time is less sensitive than wall time to other
				// processes on a shared machine: pods per CPU-second.
				b.ReportMetric(float64(numPods)/cpu.Seconds(), "pods/cpu-s")
				b.ReportMetric(float64(p99(lat).Microseconds()), "p99-µs")
			}
		})
	}
}
