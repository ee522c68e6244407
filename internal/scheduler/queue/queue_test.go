package queue

import (
	"context"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	clocktesting "k8s.io/utils/clock/testing"

	"skiff.dev/skiff/internal/scheduler/framework"
)

func pod(name string, prio int32) *v1.Pod {
	return &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID(name)},
		Spec: v1.PodSpec{Priority: &prio}}
}

var (
	nodeAdd    = framework.ClusterEvent{Resource: framework.KindNode, ActionType: framework.Add}
	podDelete  = framework.ClusterEvent{Resource: framework.KindAssignedPod, ActionType: framework.Delete}
	nodeTaint  = framework.ClusterEvent{Resource: framework.KindNode, ActionType: framework.UpdateNodeTaint}
	pluginEvts = map[string][]framework.ClusterEvent{
		"Fit":   {podDelete, {Resource: framework.KindNode, ActionType: framework.Add | framework.UpdateNodeAllocatable}},
		"Taint": {{Resource: framework.KindNode, ActionType: framework.Add | framework.UpdateNodeTaint}},
	}
)

func newQueue() (*Queue, *clocktesting.FakeClock) {
	clk := clocktesting.NewFakeClock(time.Unix(1000, 0))
	return New(clk, Options{InitialBackoff: time.Second, MaxBackoff: 10 * time.Second, MaxInUnschedulable: time.Minute, PluginEvents: pluginEvts}), clk
}

func pop(t *testing.T, q *Queue) *QueuedPodInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	x, err := q.Pop(ctx)
	if err != nil {
		t.Fatalf("pop: %v", err)
	}
	return x
}

// fail pops name and reports it unschedulable because of plugins.
func fail(t *testing.T, q *Queue, name string, plugins ...string) *QueuedPodInfo {
	t.Helper()
	x := pop(t, q)
	if x.Pod.Name != name {
		t.Fatalf("popped %s, want %s", x.Pod.Name, name)
	}
	cycle := q.SchedulingCycle()
	x.UnschedulablePlugins = sets.New(plugins...)
	q.AddUnschedulableIfNotPresent(x, cycle)
	return x
}

func lengths(t *testing.T, q *Queue, active, backoff, unsched int) {
	t.Helper()
	a, b, u := q.Lengths()
	if a != active || b != backoff || u != unsched {
		t.Fatalf("queue lengths (active, backoff, unschedulable) = (%d, %d, %d), want (%d, %d, %d)", a, b, u, active, backoff, unsched)
	}
}

func TestPopOrdersByPriorityThenAge(t *testing.T) {
	q, clk := newQueue()
	q.Add(pod("low", 0))
	clk.Step(time.Millisecond)
	q.Add(pod("high", 100))
	clk.Step(time.Millisecond)
	q.Add(pod("low2", 0))
	for _, want := range []string{"high", "low", "low2"} {
		if got := pop(t, q).Pod.Name; got != want {
			t.Fatalf("popped %s, want %s", got, want)
		}
	}
}

func TestPopBlocksUntilAddOrCancel(t *testing.T) {
	q, _ := newQueue()
	got := make(chan string, 1)
	go func() {
		x, err := q.Pop(context.Background())
		if err == nil {
			got <- x.Pod.Name
		}
	}()
	select {
	case n := <-got:
		t.Fatalf("pop returned %s from an empty queue", n)
	case <-time.After(50 * time.Millisecond):
	}
	q.Add(pod("p", 0))
	select {
	case n := <-got:
		if n != "p" {
			t.Fatalf("popped %s", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("pop did not wake up on add")
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := q.Pop(ctx); errc <- err }()
	cancel()
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("pop on a cancelled context returned a pod")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("pop did not return on cancel")
	}
}

func TestUnschedulablePodWaitsForARelevantEvent(t *testing.T) {
	q, clk := newQueue()
	q.Add(pod("p", 0))
	fail(t, q, "p", "Taint")
	lengths(t, q, 0, 0, 1)

	// A pod deletion cannot help a taint rejection.
	q.MoveAllToActiveOrBackoffQueue(podDelete, nil)
	lengths(t, q, 0, 0, 1)

	// A taint change can; the pod failed just now, so it backs off first.
	q.MoveAllToActiveOrBackoffQueue(nodeTaint, nil)
	lengths(t, q, 0, 1, 0)
	q.FlushBackoffQCompleted()
	lengths(t, q, 0, 1, 0)
	clk.Step(time.Second)
	q.FlushBackoffQCompleted()
	lengths(t, q, 1, 0, 0)
}

func TestEventAfterBackoffGoesStraightToActive(t *testing.T) {
	q, clk := newQueue()
	q.Add(pod("p", 0))
	fail(t, q, "p", "Fit")
	clk.Step(2 * time.Second) // past the 1 s back-off of the first attempt
	q.MoveAllToActiveOrBackoffQueue(podDelete, nil)
	lengths(t, q, 1, 0, 0)
}

func TestMoveFilter(t *testing.T) {
	q, _ := newQueue()
	q.Add(pod("a", 0))
	q.Add(pod("b", 0))
	fail(t, q, "a", "Fit")
	fail(t, q, "b", "Fit")
	q.MoveAllToActiveOrBackoffQueue(nodeAdd, func(x *QueuedPodInfo) bool { return x.Pod.Name == "a" })
	if !q.Has("b") {
		t.Fatal("b left the queue")
	}
	lengths(t, q, 0, 1, 1)
}

func TestBackoffGrowsExponentiallyAndCaps(t *testing.T) {
	q, clk := newQueue()
	q.Add(pod("p", 0))
	want := []time.Duration{1, 2, 4, 8, 10, 10}
	for i, w := range want {
		x := pop(t, q)
		if x.Attempts != i+1 {
			t.Fatalf("attempt %d recorded as %d", i+1, x.Attempts)
		}
		// An error (no rejecting plugins) goes to back-off directly.
		q.AddUnschedulableIfNotPresent(x, q.SchedulingCycle())
		lengths(t, q, 0, 1, 0)
		clk.Step(w*time.Second - time.Millisecond)
		q.FlushBackoffQCompleted()
		if a, _, _ := q.Lengths(); a != 0 {
			t.Fatalf("attempt %d: released before %v", i+1, w*time.Second)
		}
		clk.Step(time.Millisecond)
		q.FlushBackoffQCompleted()
		lengths(t, q, 1, 0, 0)
	}
}

func TestEventDuringCycleSendsPodToBackoff(t *testing.T) {
	q, _ := newQueue()
	q.Add(pod("p", 0))
	x := pop(t, q)
	cycle := q.SchedulingCycle()
	// A node is added while p is being scheduled: that event must not be
	// lost by parking p among the unschedulable pods.
	q.MoveAllToActiveOrBackoffQueue(nodeAdd, nil)
	x.UnschedulablePlugins = sets.New("Taint")
	q.AddUnschedulableIfNotPresent(x, cycle)
	lengths(t, q, 0, 1, 0)
}

func TestUnschedulableLeftoversAreFlushed(t *testing.T) {
	q, clk := newQueue()
	q.Add(pod("p", 0))
	fail(t, q, "p", "Taint")
	clk.Step(30 * time.Second)
	q.FlushUnschedulablePodsLeftover()
	lengths(t, q, 0, 0, 1)
	clk.Step(31 * time.Second) // > MaxInUnschedulable (1 min)
	q.FlushUnschedulablePodsLeftover()
	lengths(t, q, 1, 0, 0)
}

func TestUpdateOfUnschedulablePodRetriesIt(t *testing.T) {
	q, _ := newQueue()
	p := pod("p", 0)
	q.Add(p)
	fail(t, q, "p", "Taint")
	// A status-only update does not help.
	same := p.DeepCopy()
	same.Status.Message = "x"
	q.Update(p, same)
	lengths(t, q, 0, 0, 1)
	changed := same.DeepCopy()
	changed.Labels = map[string]string{"a": "b"}
	q.Update(same, changed)
	lengths(t, q, 1, 0, 0)
	if got := pop(t, q).Pod.Labels["a"]; got != "b" {
		t.Fatalf("popped the old version")
	}
}

func TestDeleteDuringCycleDropsPod(t *testing.T) {
	q, _ := newQueue()
	p := pod("p", 0)
	q.Add(p)
	x := pop(t, q)
	q.Delete(p)
	x.UnschedulablePlugins = sets.New("Fit")
	q.AddUnschedulableIfNotPresent(x, q.SchedulingCycle())
	lengths(t, q, 0, 0, 0)
	if q.Has("p") {
		t.Fatal("deleted pod was requeued")
	}
}

func TestUpdateDuringCycleIsKept(t *testing.T) {
	q, _ := newQueue()
	p := pod("p", 0)
	q.Add(p)
	x := pop(t, q)
	newer := p.DeepCopy()
	newer.Labels = map[string]string{"v": "2"}
	q.Update(p, newer)
	lengths(t, q, 0, 0, 0) // still in flight
	x.UnschedulablePlugins = sets.New("Fit")
	q.AddUnschedulableIfNotPresent(x, q.SchedulingCycle())
	q.MoveAllToActiveOrBackoffQueue(nodeAdd, nil)
	q.FlushBackoffQCompleted()
	var got *QueuedPodInfo
	for _, m := range []map[types.UID]*QueuedPodInfo{q.inActive, q.inBackoff, q.unsched} {
		if m["p"] != nil {
			got = m["p"]
		}
	}
	if got == nil || got.Pod.Labels["v"] != "2" {
		t.Fatalf("requeued pod is not the version updated mid-cycle: %+v", got)
	}
}

func TestNominator(t *testing.T) {
	q, _ := newQueue()
	if q.HasNominatedPods() {
		t.Fatal("empty queue has nominations")
	}
	p := pod("p", 10)
	q.AddNominatedPod(framework.NewPodInfo(p), "n1")
	if got := q.NominatedPodsForNode("n1"); len(got) != 1 || got[0].Pod.Name != "p" {
		t.Fatalf("nominated to n1: %v", got)
	}
	q.AddNominatedPod(framework.NewPodInfo(p), "n2")
	if len(q.NominatedPodsForNode("n1")) != 0 || len(q.NominatedPodsForNode("n2")) != 1 {
		t.Fatal("re-nomination did not move the pod")
	}
	// A pending pod whose status carries a nomination is tracked on Add.
	o := pod("o", 5)
	o.Status.NominatedNodeName = "n3"
	q.Add(o)
	if len(q.NominatedPodsForNode("n3")) != 1 {
		t.Fatal("status.nominatedNodeName not tracked")
	}
	q.DeleteNominatedPodIfExists(p)
	q.Delete(o)
	if q.HasNominatedPods() {
		t.Fatal("nominations left after delete")
	}
}

func TestCloseWakesPop(t *testing.T) {
	q, _ := newQueue()
	errc := make(chan error, 1)
	go func() { _, err := q.Pop(context.Background()); errc <- err }()
	time.Sleep(10 * time.Millisecond)
	q.Close()
	select {
	case err := <-errc:
		if err != ErrClosed {
			t.Fatalf("got %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("pop not woken by close")
	}
}
