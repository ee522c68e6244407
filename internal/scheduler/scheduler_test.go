package scheduler

import (
	"context"

	"math/rand/v2"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"
)

func testNode(name string, cpu string, taints ...v1.Taint) *v1.Node {
	rl := v1.ResourceList{v1.ResourceCPU: resource.MustParse(cpu), v1.ResourceMemory: resource.MustParse("8Gi"), v1.ResourcePods: resource.MustParse("110")}
	return &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{v1.LabelHostname: name}},
		Spec:   v1.NodeSpec{Taints: taints},
		Status: v1.NodeStatus{Capacity: rl, Allocatable: rl}}
}

func testPod(name, cpu string) *v1.Pod {
	return &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("uid-" + name)},
		Spec: v1.PodSpec{SchedulerName: v1.DefaultSchedulerName, Containers: []v1.Container{{Name: "c",
			Resources: v1.ResourceRequirements{Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse(cpu)}}}}}}
}

func bindings(client *fake.Clientset) map[string]string {
	out := map[string]string{}
	for _, a := range client.Actions() {
		if ca, ok := a.(k8stesting.CreateAction); ok && a.GetSubresource() == "binding" {
			b := ca.GetObject().(*v1.Binding)
			out[b.Name] = b.Target.Name
		}
	}
	return out
}

func startScheduler(t *testing.T, objs ...runtime.Object) (*fake.Clientset, *Scheduler, context.CancelFunc) {
	t.Helper()
	client := fake.NewClientset(objs...)
	factory := informers.NewSharedInformerFactory(client, 0)
	s, err := New(Config{Clock: clocktesting.NewFakeClock(time.Unix(1000, 0)), Rand: rand.New(rand.NewPCG(1, 2))}, client, factory, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _ = s.Run(ctx) }()
	t.Cleanup(cancel)
	return client, s, cancel
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestSchedulerBindsPodsAndReportsFailures(t *testing.T) {
	taint := v1.Taint{Key: "dedicated", Value: "infra", Effect: v1.TaintEffectNoSchedule}
	objs := []runtime.Object{
		testNode("n1", "2"), testNode("n2", "2"), testNode("n3", "2"),
		testNode("t1", "64", taint), testNode("t2", "64", taint),
		testPod("small-a", "1"), testPod("small-b", "1"),
		testPod("huge", "4"),
	}
	client, _, _ := startScheduler(t, objs...)
	waitFor(t, "two bindings", func() bool { return len(bindings(client)) == 2 })
	b := bindings(client)
	for _, name := range []string{"small-a", "small-b"} {
		if n := b[name]; !strings.HasPrefix(n, "n") {
			t.Errorf("pod %s bound to %q, want an untainted node", name, n)
		}
	}
	if _, ok := b["huge"]; ok {
		t.Fatalf("huge pod bound although no node fits")
	}
	want := "0/5 nodes are available: 2 node(s) had untolerated taint(s), 3 Insufficient cpu. " +
		"preemption: 0/5 nodes are available: 5 Preemption is not helpful for scheduling."
	waitFor(t, "PodScheduled=False", func() bool {
		p, err := client.CoreV1().Pods("default").Get(context.Background(), "huge", metav1.GetOptions{})
		if err != nil {
			return false
		}
		for _, c := range p.Status.Conditions {
			if c.Type == v1.PodScheduled && c.Status == v1.ConditionFalse && c.Reason == v1.PodReasonUnschedulable {
				if c.Message != want {
					t.Fatalf("message:\n got %q\nwant %q", c.Message, want)
				}
				return true
			}
		}
		return false
	})
	waitFor(t, "FailedScheduling event", func() bool {
		evs, _ := client.EventsV1().Events("default").List(context.Background(), metav1.ListOptions{})
		for _, e := range evs.Items {
			if e.Reason == "FailedScheduling" && e.Note == want && e.Regarding.Name == "huge" {
				return true
			}
		}
		return false
	})
}

func TestSchedulerRetriesWhenNodeAdded(t *testing.T) {
	client, s, _ := startScheduler(t, testNode("n1", "1"), testPod("p", "2"))
	waitFor(t, "pod unschedulable", func() bool { _, _, u := s.Queue().Lengths(); return u == 1 })
	if _, err := client.CoreV1().Nodes().Create(context.Background(), testNode("big", "4"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// No clock advance needed: the node event moves the pod (its back-off
	// of 1 s on the fake clock has not expired, so it goes via backoffQ);
	// flush it as the periodic loop would.
	waitFor(t, "pod moved out of unschedulable", func() bool { _, _, u := s.Queue().Lengths(); return u == 0 })
	s.cfg.Clock.(*clocktesting.FakeClock).Step(2 * time.Second)
	s.Queue().FlushBackoffQCompleted()
	waitFor(t, "binding to big", func() bool { return bindings(client)["p"] == "big" })
}

func TestSchedulerPreemptsLowerPriorityPod(t *testing.T) {
	low := testPod("low", "2")
	low.Spec.NodeName = "n1"
	low.Spec.Priority = ptr(int32(1))
	high := testPod("high", "2")
	high.Spec.Priority = ptr(int32(100))
	client, s, _ := startScheduler(t, testNode("n1", "2"), low, high)
	waitFor(t, "victim deleted", func() bool {
		_, err := client.CoreV1().Pods("default").Get(context.Background(), "low", metav1.GetOptions{})
		return err != nil
	})
	waitFor(t, "nominated node", func() bool {
		p, _ := client.CoreV1().Pods("default").Get(context.Background(), "high", metav1.GetOptions{})
		return p != nil && p.Status.NominatedNodeName == "n1"
	})
	waitFor(t, "preemptor bound after victim left", func() bool {
		// The victim's deletion moved the preemptor to backoffQ; expire it.
		s.cfg.Clock.(*clocktesting.FakeClock).Step(2 * time.Second)
		s.Queue().FlushBackoffQCompleted()
		return bindings(client)["high"] == "n1"
	})
}

func ptr[T any](v T) *T { return &v }

// TestScheduledEventsLimited: "Scheduled" events go through a token
// bucket (the fake clock never refills it, so exactly the burst is
// recorded); a negative QPS records one per pod.
func TestScheduledEventsLimited(t *testing.T) {
	for _, tc := range []struct {
		name       string
		qps        float32
		burst      int
		wantEvents int
	}{
		{"limited", 1, 2, 2},
		{"unlimited", -1, 0, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := []runtime.Object{testNode("n1", "8"), testNode("n2", "8")}
			for _, n := range []string{"a", "b", "c", "d", "e"} {
				objs = append(objs, testPod(n, "1"))
			}
			client := fake.NewClientset(objs...)
			factory := informers.NewSharedInformerFactory(client, 0)
			s, err := New(Config{Clock: clocktesting.NewFakeClock(time.Unix(1000, 0)), Rand: rand.New(rand.NewPCG(1, 2)),
				ScheduledEventQPS: tc.qps, ScheduledEventBurst: tc.burst}, client, factory, nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go func() { _ = s.Run(ctx) }()
			waitFor(t, "five bindings", func() bool { return len(bindings(client)) == 5 })
			scheduled := func() int {
				evs, _ := client.EventsV1().Events("default").List(context.Background(), metav1.ListOptions{})
				n := 0
				for _, e := range evs.Items {
					if e.Reason == "Scheduled" {
						n++
					}
				}
				return n
			}
			waitFor(t, "Scheduled events", func() bool { return scheduled() >= tc.wantEvents })
			time.Sleep(200 * time.Millisecond) // any extra event would be written by now
			if n := scheduled(); n != tc.wantEvents {
				t.Fatalf("%d Scheduled events, want %d", n, tc.wantEvents)
			}
		})
	}
}

// TestSpreadOwnerEventsMoveGeneration: every event of the four kinds the
// default spreading selector is built from moves the generation
// PodTopologySpread's selector reuse follows (a missed kind would leave a
// stale selector in place), and pod events do not.
func TestSpreadOwnerEventsMoveGeneration(t *testing.T) {
	client, s, _ := startScheduler(t, testNode("n1", "2"))
	ctx := context.Background()
	waitFor(t, "informers to sync", func() bool {
		for _, synced := range s.synced {
			if !synced() {
				return false
			}
		}
		return true
	})
	meta := metav1.ObjectMeta{Name: "x", Namespace: "default"}
	moved := func(what string, do func() error) {
		t.Helper()
		before := s.spreadOwners.Load()
		if err := do(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		waitFor(t, what+" to move the generation", func() bool { return s.spreadOwners.Load() > before })
	}
	moved("service add", func() error {
		_, err := client.CoreV1().Services("default").Create(ctx, &v1.Service{ObjectMeta: meta}, metav1.CreateOptions{})
		return err
	})
	moved("service update", func() error {
		_, err := client.CoreV1().Services("default").Update(ctx, &v1.Service{ObjectMeta: meta, Spec: v1.ServiceSpec{Selector: map[string]string{"a": "b"}}}, metav1.UpdateOptions{})
		return err
	})
	moved("replicationcontroller add", func() error {
		_, err := client.CoreV1().ReplicationControllers("default").Create(ctx, &v1.ReplicationController{ObjectMeta: meta}, metav1.CreateOptions{})
		return err
	})
	moved("replicaset add", func() error {
		_, err := client.AppsV1().ReplicaSets("default").Create(ctx, &appsv1.ReplicaSet{ObjectMeta: meta}, metav1.CreateOptions{})
		return err
	})
	moved("statefulset add", func() error {
		_, err := client.AppsV1().StatefulSets("default").Create(ctx, &appsv1.StatefulSet{ObjectMeta: meta}, metav1.CreateOptions{})
		return err
	})
	moved("replicaset delete", func() error {
		return client.AppsV1().ReplicaSets("default").Delete(ctx, "x", metav1.DeleteOptions{})
	})
	before := s.spreadOwners.Load()
	if _, err := client.CoreV1().Pods("default").Create(ctx, testPod("p", "1"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the pod to be bound", func() bool { return bindings(client)["p"] == "n1" })
	if after := s.spreadOwners.Load(); after != before {
		t.Fatalf("a pod moved the generation %d -> %d", before, after)
	}
}
