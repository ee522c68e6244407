package controllers

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"skiff.dev/skiff/internal/hollow"
	"skiff.dev/skiff/test/integration/framework"
)

var latencyRounds = flag.Int("latency-rounds", 50, "BenchmarkControllerLatency: one-replica Deployments created one after another")

// percentile is the q-quantile (0 < q <= 1) of ds by the nearest-rank
// method; ds is sorted in place. Zero for no samples.
func percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(q*float64(len(ds))+0.999999) - 1
	return ds[max(0, min(i, len(ds)-1))]
}

// stageLatencies prints p50/p90/p99/max of each stage's per-pod latency.
func stageLatencies(title string, stages []string, samples map[string][]time.Duration) {
	fmt.Printf("\n%s\n| stage | samples | p50 | p90 | p99 | max |\n|---|---:|---:|---:|---:|---:|\n", title)
	for _, s := range stages {
		ds := samples[s]
		fmt.Printf("| %s | %d | %v | %v | %v | %v |\n", s, len(ds),
			percentile(ds, 0.5).Round(10*time.Microsecond), percentile(ds, 0.9).Round(10*time.Microsecond),
			percentile(ds, 0.99).Round(10*time.Microsecond), percentile(ds, 1).Round(10*time.Microsecond))
	}
}

// BenchmarkControllerLatency measures the latency the control plane adds
// on an idle cluster (issue 4's "controller-added latency"): one-replica
// Deployments created one after another on 10 hollow nodes, each timed
// from the create call to its ReplicaSet (Deployment controller), its pod
// (ReplicaSet controller), the pod bound (scheduler) and Running (hollow
// kubelet), as seen by informers in the benchmark.
//
//	go test ./bench/controllers -run XXX -bench ControllerLatency -benchtime 1x -args -latency-rounds 50
func BenchmarkControllerLatency(b *testing.B) {
	for i := 0; i < b.N; i++ {
		controllerLatency(b, *latencyRounds)
	}
}

func controllerLatency(b *testing.B, rounds int) {
	c := framework.Start(b, framework.Options{ControllerManager: true, Scheduler: true})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := c.Client
	h := hollow.New(client, hollow.Options{Count: 10, Prefix: "lat-node-"})
	hdone := make(chan error, 1)
	go func() { hdone <- h.Run(ctx) }()
	defer func() { cancel(); <-hdone }()
	for start := time.Now(); ; time.Sleep(50 * time.Millisecond) {
		l, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err == nil && len(l.Items) >= 10 {
			break
		}
		if time.Since(start) > time.Minute {
			b.Fatalf("hollow nodes not registered after 1m")
		}
	}

	// seen[deployment][stage] is when the benchmark's informers first saw
	// that stage; the pod and ReplicaSet carry the Deployment's name in
	// their "lat" label.
	var mu sync.Mutex
	seen := map[string]map[string]time.Time{}
	changed := make(chan struct{}, 1)
	mark := func(dep, stage string) {
		if dep == "" {
			return
		}
		now := time.Now()
		mu.Lock()
		if seen[dep] == nil {
			seen[dep] = map[string]time.Time{}
		}
		if _, ok := seen[dep][stage]; !ok {
			seen[dep][stage] = now
		}
		mu.Unlock()
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	onPod := func(o any) {
		p, ok := o.(*v1.Pod)
		if !ok {
			return
		}
		dep := p.Labels["lat"]
		mark(dep, "pod")
		if p.Spec.NodeName != "" {
			mark(dep, "bound")
		}
		if p.Status.Phase == v1.PodRunning {
			mark(dep, "running")
		}
	}
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace("default"))
	if _, err := factory.Core().V1().Pods().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: onPod, UpdateFunc: func(_, o any) { onPod(o) },
	}); err != nil {
		b.Fatal(err)
	}
	onRS := func(o any) {
		if rs, ok := o.(*appsv1.ReplicaSet); ok {
			mark(rs.Labels["lat"], "replicaset")
		}
	}
	if _, err := factory.Apps().V1().ReplicaSets().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: onRS, UpdateFunc: func(_, o any) { onRS(o) },
	}); err != nil {
		b.Fatal(err)
	}
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())

	stages := []string{"replicaset", "pod", "bound", "running"}
	samples := map[string][]time.Duration{}
	one := int32(1)
	b.ResetTimer()
	for i := 0; i < rounds; i++ {
		name := fmt.Sprintf("lat-%d", i)
		labels := map[string]string{"lat": name}
		d := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: appsv1.DeploymentSpec{
				Replicas: &one,
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: v1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec:       v1.PodSpec{Containers: []v1.Container{{Name: "app", Image: "lat:v1"}}},
				},
			},
		}
		start := time.Now()
		if _, err := client.AppsV1().Deployments("default").Create(ctx, d, metav1.CreateOptions{}); err != nil {
			b.Fatalf("creating %s: %v", name, err)
		}
		deadline := time.After(30 * time.Second)
		for {
			mu.Lock()
			_, done := seen[name]["running"]
			mu.Unlock()
			if done {
				break
			}
			select {
			case <-changed:
			case <-time.After(100 * time.Millisecond):
			case <-deadline:
				mu.Lock()
				b.Fatalf("%s: not Running after 30s (seen %v)", name, seen[name])
			}
		}
		mu.Lock()
		prev := start
		for _, s := range stages {
			t, ok := seen[name][s]
			if !ok {
				// Seen Running in the same event as an earlier stage.
				t = prev
			}
			if t.Before(prev) {
				t = prev
			}
			samples[s] = append(samples[s], t.Sub(prev))
			prev = t
		}
		samples["total"] = append(samples["total"], prev.Sub(start))
		mu.Unlock()
	}
	b.StopTimer()
	total := slices.Clone(samples["total"])
	b.ReportMetric(float64(percentile(total, 0.5).Microseconds())/1000, "ms-p50-to-running")
	b.ReportMetric(float64(percentile(total, 0.99).Microseconds())/1000, "ms-p99-to-running")
	stageLatencies(fmt.Sprintf("Idle cluster, %d one-replica Deployments one after another: latency each stage adds (from the previous stage)", rounds),
		append(stages, "total"), samples)
	fmt.Println("(replicaset: Deployment controller; pod: ReplicaSet controller; bound: scheduler; running: hollow kubelet's status write; total: create call to Running)")
}

func TestPercentile(t *testing.T) {
	ms := func(xs ...int) []time.Duration {
		var ds []time.Duration
		for _, x := range xs {
			ds = append(ds, time.Duration(x)*time.Millisecond)
		}
		return ds
	}
	for _, tc := range []struct {
		ds   []time.Duration
		q    float64
		want time.Duration
	}{
		{nil, 0.5, 0},
		{ms(7), 0.99, 7 * time.Millisecond},
		{ms(5, 1, 4, 2, 3), 0.5, 3 * time.Millisecond},
		{ms(5, 1, 4, 2, 3), 1, 5 * time.Millisecond},
		{ms(10, 20, 30, 40, 50, 60, 70, 80, 90, 100), 0.9, 90 * time.Millisecond},
		{ms(10, 20, 30, 40, 50, 60, 70, 80, 90, 100), 0.99, 100 * time.Millisecond},
		{ms(10, 20, 30, 40, 50, 60, 70, 80, 90, 100), 0.1, 10 * time.Millisecond},
	} {
		if got := percentile(slices.Clone(tc.ds), tc.q); got != tc.want {
			t.Errorf("percentile(%v, %v) = %v, want %v", tc.ds, tc.q, got, tc.want)
		}
	}
}
