package replicaset

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/runtime"
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
	ctx := context.Background()
	b.ReportAllocs()
	cpu0 := processCPU()
	for b.Loop() {
		if err := f.c.Sync(ctx, "default/a"); err != nil {
			b.Fatal(err)
		}
	}
	// CPU time, not wall time, is what a loaded machine does not distort.
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
	if got := f.actions(); len(got) != 0 {
		b.Fatalf("a converged ReplicaSet's sync wrote %q", got)
	}
}

// processCPU is the process's user+system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
