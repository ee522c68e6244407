package controller

import (
	"errors"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
)

func TestExpectations(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(1000, 0))
	e := NewExpectations(clk)
	if !e.Satisfied("ns/a") {
		t.Fatal("unknown key must be satisfied")
	}
	e.ExpectCreations("ns/a", 2)
	if e.Satisfied("ns/a") {
		t.Fatal("pending creations must not be satisfied")
	}
	e.CreationObserved("ns/a")
	if e.Satisfied("ns/a") {
		t.Fatal("one creation still pending")
	}
	e.CreationObserved("ns/a")
	if !e.Satisfied("ns/a") {
		t.Fatal("all creations observed")
	}
	e.ExpectDeletions("ns/a", []string{"ns/p1", "ns/p2"})
	e.DeletionObserved("ns/a", "ns/p1")
	e.DeletionObserved("ns/a", "ns/p1")
	if e.Satisfied("ns/a") {
		t.Fatal("a repeated deletion of one pod must not count twice")
	}
	clk.Step(ExpectationsTimeout + time.Second)
	if !e.Satisfied("ns/a") {
		t.Fatal("expired expectations must be satisfied")
	}
	e.Delete("ns/a")
	if a, d := e.Pending("ns/a"); a != 0 || d != 0 {
		t.Fatalf("pending after delete = %d,%d", a, d)
	}
}

func readyPod(name string, node string, phase v1.PodPhase, ready bool, readySince, created int64, restarts int32) *v1.Pod {
	p := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.Unix(created, 0)}}
	p.Spec.NodeName = node
	p.Status.Phase = phase
	st := v1.ConditionFalse
	if ready {
		st = v1.ConditionTrue
	}
	p.Status.Conditions = []v1.PodCondition{{Type: v1.PodReady, Status: st, LastTransitionTime: metav1.Unix(readySince, 0)}}
	p.Status.ContainerStatuses = []v1.ContainerStatus{{RestartCount: restarts}}
	return p
}

func TestActivePodsOrder(t *testing.T) {
	// Listed in the expected deletion order.
	want := []*v1.Pod{
		readyPod("unassigned", "", v1.PodPending, false, 0, 10, 0),
		readyPod("pending", "n", v1.PodPending, false, 0, 10, 0),
		readyPod("unknown", "n", v1.PodUnknown, false, 0, 10, 0),
		readyPod("running-notready", "n", v1.PodRunning, false, 0, 10, 0),
		readyPod("ready-recently", "n", v1.PodRunning, true, 500, 10, 0),
		readyPod("ready-long-restarts", "n", v1.PodRunning, true, 100, 10, 5),
		readyPod("ready-long-newer", "n", v1.PodRunning, true, 100, 20, 0),
		readyPod("ready-long-older", "n", v1.PodRunning, true, 100, 10, 0),
	}
	got := append([]*v1.Pod(nil), want...)
	for i := range got { // reverse, then sort
		j := len(got) - 1 - i
		if i < j {
			got[i], got[j] = got[j], got[i]
		}
	}
	sort.Sort(ActivePods(got))
	for i := range want {
		if got[i].Name != want[i].Name {
			t.Fatalf("position %d: got %s, want %s", i, got[i].Name, want[i].Name)
		}
	}
}

func TestSlowStartBatch(t *testing.T) {
	var calls atomic.Int32
	n, err := SlowStartBatch(10, 1, func() error { calls.Add(1); return nil })
	if n != 10 || err != nil || calls.Load() != 10 {
		t.Fatalf("got %d, %v, calls %d", n, err, calls.Load())
	}
	calls.Store(0)
	boom := errors.New("quota")
	// Fails from the 4th call on: batches 1, 2 succeed; batch of 4 fails.
	n, err = SlowStartBatch(10, 1, func() error {
		if calls.Add(1) > 3 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) || n != 3 || calls.Load() != 7 {
		t.Fatalf("got %d, %v, calls %d; want 3 successes after 7 calls", n, err, calls.Load())
	}
}

// TestSlowStartBatchParallel: a batch's calls overlap, at most
// SlowStartParallel at a time, and every call of the batch is made.
func TestSlowStartBatchParallel(t *testing.T) {
	var in, peak, calls atomic.Int32
	n, err := SlowStartBatch(127, 64, func() error {
		calls.Add(1)
		cur := in.Add(1)
		for {
			p := peak.Load()
			if cur <= p || peak.CompareAndSwap(p, cur) {
				break
			}
		}
		time.Sleep(2 * time.Millisecond)
		in.Add(-1)
		return nil
	})
	if n != 127 || err != nil || calls.Load() != 127 {
		t.Fatalf("got %d, %v after %d calls", n, err, calls.Load())
	}
	if p := peak.Load(); p < 2 || p > SlowStartParallel {
		t.Fatalf("%d calls at once, want 2..%d", p, SlowStartParallel)
	}
}

func TestComputeHash(t *testing.T) {
	tpl := &v1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "x"}}}
	tpl.Spec.Containers = []v1.Container{{Name: "c", Image: "nginx:1"}}
	a := ComputeHash(tpl, nil)
	if a != ComputeHash(tpl.DeepCopy(), nil) {
		t.Fatal("hash not deterministic")
	}
	one := int32(1)
	if a == ComputeHash(tpl, &one) {
		t.Fatal("collision count must change the hash")
	}
	tpl2 := tpl.DeepCopy()
	tpl2.Spec.Containers[0].Image = "nginx:2"
	if a == ComputeHash(tpl2, nil) {
		t.Fatal("template change must change the hash")
	}
	for _, r := range a {
		if !((r >= 'b' && r <= 'z') || (r >= '2' && r <= '9')) || r == 'e' || r == 'a' {
			t.Fatalf("hash %q not safe-encoded", a)
		}
	}
}

func TestIsPodAvailable(t *testing.T) {
	p := readyPod("p", "n", v1.PodRunning, true, 100, 0, 0)
	if IsPodAvailable(p, 10, time.Unix(105, 0)) {
		t.Fatal("ready 5s with minReadySeconds 10 must not be available")
	}
	if !IsPodAvailable(p, 10, time.Unix(110, 0)) {
		t.Fatal("ready 10s with minReadySeconds 10 must be available")
	}
	if d, ok := UntilAvailable(p, 10, time.Unix(104, 0)); !ok || d != 6*time.Second {
		t.Fatalf("UntilAvailable = %v %v", d, ok)
	}
}
