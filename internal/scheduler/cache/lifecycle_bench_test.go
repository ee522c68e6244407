package cache

import (
	"fmt"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"skiff.dev/skiff/internal/scheduler/framework"
)

// BenchmarkPodLifecycle is the cache and snapshot work of one pod of a
// ReplicaSet in the controllers benchmark, outside the scheduling
// algorithm: assumed, its binding confirmed by the informer, its first
// status write (Running), each followed by the next cycle's
// UpdateSnapshot, on 1,000 nodes with a per-node topology spread counter
// for the ReplicaSet's selector in the snapshot's Index.
//
//	go test ./internal/scheduler/cache -run XXX -bench PodLifecycle -benchmem -count 5
func BenchmarkPodLifecycle(b *testing.B) {
	const nodes = 1000
	c, _ := newCache(0)
	for i := 0; i < nodes; i++ {
		c.AddNode(node(fmt.Sprintf("n%04d", i), "a"))
	}
	snap := &framework.Snapshot{}
	c.UpdateSnapshot(snap)
	sel := labels.SelectorFromSet(labels.Set{"app": "bench", "pod-template-hash": "5d8f7c9b4"})
	match := func(p *v1.Pod) bool {
		return p.Namespace == "default" && p.DeletionTimestamp == nil && sel.Matches(labels.Set(p.Labels))
	}
	snap.Index().NodeCounts("bench", sel, match)
	start := metav1.NewTime(time.Unix(1000, 0))
	type versions struct{ assumed, bound, running *v1.Pod }
	batch := make([]versions, nodes)
	prepare := func(base int) {
		for j := range batch {
			p := pod(fmt.Sprintf("p%d", base+j), fmt.Sprintf("n%04d", j), "100m")
			p.Labels = map[string]string{"app": "bench", "pod-template-hash": "5d8f7c9b4"}
			bound := p.DeepCopy()
			bound.ResourceVersion = "2"
			running := bound.DeepCopy()
			running.ResourceVersion, running.Status.Phase, running.Status.StartTime = "3", v1.PodRunning, &start
			batch[j] = versions{p, bound, running}
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		j := i % nodes
		if j == 0 {
			b.StopTimer()
			if i > 0 { // ~1 pod per node: nodes stay small
				for _, v := range batch {
					_ = c.RemovePod(v.running)
				}
				c.UpdateSnapshot(snap)
			}
			prepare(i)
			b.StartTimer()
		}
		v := batch[j]
		if err := c.AssumePod(v.assumed); err != nil {
			b.Fatal(err)
		}
		c.UpdateSnapshot(snap)
		if err := c.AddPod(v.bound); err != nil {
			b.Fatal(err)
		}
		c.UpdateSnapshot(snap)
		if err := c.UpdatePod(v.bound, v.running); err != nil {
			b.Fatal(err)
		}
		c.UpdateSnapshot(snap)
	}
}
