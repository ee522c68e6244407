package replicaset

import (
	"context"
	"fmt"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"skiff.dev/skiff/internal/cputime"
)

// BenchmarkSteadySync is one Sync of a 5,000-pod ReplicaSet that is
// already converged, in a namespace that also holds the 5,000 pods of a
// second ReplicaSet (the middle of a rolling update): what every pod event
// costs the controller. It must write nothing.
func BenchmarkSteadySync(b *testing.B) {
	const n = 5000
	rsA, rsB := newRS("a", n), newRS("b", n)
	objs := []runtime.Object{rsA, rsB}
	for _, rs := range []*appsv1.ReplicaSet{rsA, rsB} {
		for i := range n {
			objs = append(objs, newPod(fmt.Sprintf("%s-%05d", rs.Name, i), rs.Spec.Template.Labels, now, ownedBy(rs), running("n1", now)))
		}
		rs.Status = appsv1.ReplicaSetStatus{Replicas: n, FullyLabeledReplicas: n, ReadyReplicas: n, AvailableReplicas: n, ObservedGeneration: rs.Generation}
	}
	f := newFixture(b, false, objs...)
	f.c.verifyTally = false
	ctx := context.Background()
	b.ReportAllocs()
	cpu0 := cputime.Process()
	for b.Loop() {
		if err := f.c.Sync(ctx, "default/a"); err != nil {
			b.Fatal(err)
		}
	}
	// CPU time, not wall time, is what a loaded machine does not distort.
	b.ReportMetric(float64(cputime.Process()-cpu0)/float64(b.N), "cpu-ns/op")
	if got := f.actions(); len(got) != 0 {
		b.Fatalf("a converged ReplicaSet's sync wrote %q", got)
	}
}

// BenchmarkScaleUpSync is one Sync of a ReplicaSet in the middle of a
// 10,000-replica scale-up, as the issue-4 benchmark runs ~300 of them: its
// 10,000 pods exist, half of them ready, its creations are all observed,
// and a pod's status change has just made its readyReplicas stale, so
// each sync writes status. "tally" reads the counts the pod handlers keep;
// "walk" is every sync claiming and counting all pods.
func BenchmarkScaleUpSync(b *testing.B) {
	const n = 10000
	for _, mode := range []string{"tally", "walk"} {
		b.Run(mode, func(b *testing.B) {
			rs := newRS("web", n)
			objs := []runtime.Object{rs}
			for i := range n {
				opts := []podOpt{ownedBy(rs)}
				if i%2 == 0 {
					opts = append(opts, running("n1", now))
				}
				objs = append(objs, newPod(fmt.Sprintf("web-%05d", i), rs.Spec.Template.Labels, now, opts...))
			}
			f := newFixture(b, false, objs...)
			f.c.verifyTally = false
			f.c.noTally = mode == "walk"
			written := &discardStatus{adapter: f.c.ad}
			f.c.ad = written
			rsStore := f.factory.Apps().V1().ReplicaSets().Informer().GetIndexer()
			ctx := context.Background()
			b.ReportAllocs()
			cpu0 := cputime.Process()
			for i := 0; b.Loop(); i++ {
				// A stale status, as after each batch of pod updates.
				cur := rs.DeepCopy()
				cur.Status = appsv1.ReplicaSetStatus{Replicas: n, ReadyReplicas: int32(i % 100)}
				if err := rsStore.Update(cur); err != nil {
					b.Fatal(err)
				}
				if err := f.c.Sync(ctx, "default/web"); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(cputime.Process()-cpu0)/float64(b.N), "cpu-ns/op")
			if got := written.last; got.Replicas != n || got.ReadyReplicas != n/2 || written.n != b.N {
				b.Fatalf("%d status writes, last %+v; want %d, with %d replicas, %d ready", written.n, got, b.N, n, n/2)
			}
		})
	}
}

// discardStatus keeps the status a sync writes instead of sending it: the
// fake clientset's UpdateStatus costs more than the sync being measured.
type discardStatus struct {
	adapter
	last appsv1.ReplicaSetStatus
	n    int
}

func (d *discardStatus) updateStatus(_ context.Context, rs *appsv1.ReplicaSet) (*appsv1.ReplicaSet, error) {
	d.last, d.n = rs.Status, d.n+1
	return rs, nil
}
