package hollow

import (
	"context"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"
)

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

func TestHollowNodes(t *testing.T) {
	client := fake.NewClientset()
	clk := clocktesting.NewFakeClock(time.Unix(1000, 0))
	n := New(client, Options{Count: 2, Labels: map[string]string{"zone": "z1"}, Clock: clk,
		Taints: []v1.Taint{{Key: "hollow", Effect: v1.TaintEffectPreferNoSchedule}}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	bg := context.Background()

	waitFor(t, "nodes registered", func() bool {
		l, _ := client.CoreV1().Nodes().List(bg, metav1.ListOptions{})
		return len(l.Items) == 2
	})
	node, _ := client.CoreV1().Nodes().Get(bg, "hollow-node-1", metav1.GetOptions{})
	if node.Labels[v1.LabelHostname] != "hollow-node-1" || node.Labels["zone"] != "z1" || len(node.Spec.Taints) != 1 {
		t.Errorf("node labels/taints wrong: %v %v", node.Labels, node.Spec.Taints)
	}
	if q := node.Status.Allocatable[v1.ResourceCPU]; q.String() != "32" {
		t.Errorf("cpu allocatable %s, want 32", q.String())
	}
	if node.Status.Conditions[0].Type != v1.NodeReady || node.Status.Conditions[0].Status != v1.ConditionTrue {
		t.Errorf("node not Ready: %v", node.Status.Conditions)
	}

	waitFor(t, "lease created", func() bool {
		l, err := client.CoordinationV1().Leases(v1.NamespaceNodeLease).Get(bg, "hollow-node-0", metav1.GetOptions{})
		return err == nil && l.Spec.RenewTime.Time.Equal(time.Unix(1000, 0))
	})
	// Advance past one interval: the lease is renewed at the new time.
	waitFor(t, "lease renewed", func() bool {
		clk.Step(5 * time.Second)
		l, err := client.CoordinationV1().Leases(v1.NamespaceNodeLease).Get(bg, "hollow-node-0", metav1.GetOptions{})
		return err == nil && l.Spec.RenewTime.Time.After(time.Unix(1000, 0))
	})

	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default", UID: "u1"},
		Spec: v1.PodSpec{NodeName: "hollow-node-1", Containers: []v1.Container{{Name: "c", Image: "nginx"}}}}
	if _, err := client.CoreV1().Pods("default").Create(bg, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "pod running", func() bool {
		p, _ := client.CoreV1().Pods("default").Get(bg, "p", metav1.GetOptions{})
		return p != nil && p.Status.Phase == v1.PodRunning
	})
	p, _ := client.CoreV1().Pods("default").Get(bg, "p", metav1.GetOptions{})
	if p.Status.PodIP != "10.0.1.2" || p.Status.HostIP != NodeIP(1) || !p.Status.ContainerStatuses[0].Ready || p.Status.StartTime == nil {
		t.Errorf("status incomplete: ip=%s host=%s cs=%v", p.Status.PodIP, p.Status.HostIP, p.Status.ContainerStatuses)
	}
	ready := false
	for _, c := range p.Status.Conditions {
		if c.Type == v1.PodReady && c.Status == v1.ConditionTrue {
			ready = true
		}
	}
	if !ready {
		t.Errorf("pod not Ready: %v", p.Status.Conditions)
	}

	// A graceful delete: the fake clientset has no grace periods, so mark
	// the deletion the way the API server would, then expect removal.
	now := metav1.Now()
	p.DeletionTimestamp = &now
	if _, err := client.CoreV1().Pods("default").Update(bg, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "pod deleted", func() bool {
		_, err := client.CoreV1().Pods("default").Get(bg, "p", metav1.GetOptions{})
		return err != nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestDeletedPodIsKilled: a pod deleted while it runs is reported the way
// a kubelet reports it, Failed with its containers killed by a signal,
// never Succeeded with exit code 0 (a Job would count that a completion).
func TestDeletedPodIsKilled(t *testing.T) {
	client := fake.NewClientset()
	n := New(client, Options{Count: 1, Clock: clocktesting.NewFakeClock(time.Unix(1000, 0))})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	bg := context.Background()
	pods := client.CoreV1().Pods("default")
	newPod := func(name string) *v1.Pod {
		return &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("uid-" + name)},
			Spec: v1.PodSpec{NodeName: "hollow-node-0", Containers: []v1.Container{{Name: "a", Image: "x"}, {Name: "b", Image: "x"}}}}
	}
	// lastStatus is the status the node wrote for the pod before deleting it.
	lastStatus := func(name string) *v1.Pod {
		t.Helper()
		var last *v1.Pod
		for _, a := range client.Actions() {
			if u, ok := a.(k8stesting.UpdateAction); ok && a.GetSubresource() == "status" && a.GetResource().Resource == "pods" {
				if p := u.GetObject().(*v1.Pod); p.Name == name {
					last = p
				}
			}
		}
		if last == nil {
			t.Fatalf("no status written for pod %s", name)
		}
		return last
	}
	deleteRunning := func(name string, grace int64) {
		t.Helper()
		if _, err := pods.Create(bg, newPod(name), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, name+" running", func() bool {
			p, err := pods.Get(bg, name, metav1.GetOptions{})
			return err == nil && p.Status.Phase == v1.PodRunning
		})
		p, _ := pods.Get(bg, name, metav1.GetOptions{})
		now := metav1.Now()
		p.DeletionTimestamp, p.DeletionGracePeriodSeconds = &now, &grace
		if _, err := pods.Update(bg, p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, name+" deleted", func() bool { _, err := pods.Get(bg, name, metav1.GetOptions{}); return err != nil })
	}
	check := func(name string, code int32, reason string) {
		t.Helper()
		st := lastStatus(name).Status
		if st.Phase != v1.PodFailed {
			t.Errorf("%s: phase %s, want Failed", name, st.Phase)
		}
		if len(st.ContainerStatuses) != 2 {
			t.Fatalf("%s: %d container statuses, want 2", name, len(st.ContainerStatuses))
		}
		for _, cs := range st.ContainerStatuses {
			term := cs.State.Terminated
			if term == nil || term.ExitCode != code || term.Reason != reason || cs.Ready {
				t.Errorf("%s: container %s state %+v ready=%v, want terminated with %d (%s)", name, cs.Name, cs.State, cs.Ready, code, reason)
			}
		}
	}

	deleteRunning("graceful", 30)
	check("graceful", 143, "Error")
	deleteRunning("forced", 0)
	check("forced", 137, "Error")

	// Deleted before the node ever ran it: reported lost, not completed.
	p := newPod("never-ran")
	now := metav1.Now()
	p.DeletionTimestamp = &now
	if _, err := pods.Create(bg, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "never-ran deleted", func() bool { _, err := pods.Get(bg, "never-ran", metav1.GetOptions{}); return err != nil })
	check("never-ran", 137, "ContainerStatusUnknown")

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestLeaseRenewalRequests: a renewal is one Update from the Lease the
// last write returned; the node's UID comes from registration; a
// conflict makes the next renewal read the Lease again.
func TestLeaseRenewalRequests(t *testing.T) {
	client := fake.NewClientset()
	clk := clocktesting.NewFakeClock(time.Unix(1000, 0))
	n := New(client, Options{Count: 1, Clock: clk})
	bg := context.Background()
	if err := n.Register(bg); err != nil {
		t.Fatal(err)
	}
	// The fake clientset leaves UIDs empty: give the registered node one.
	n.uids[0] = "node-uid"
	actions := func(f func()) []string {
		t.Helper()
		client.ClearActions()
		f()
		var out []string
		for _, a := range client.Actions() {
			out = append(out, a.GetVerb()+" "+a.GetResource().Resource)
		}
		return out
	}
	renew := func() {
		t.Helper()
		if err := n.RenewLease(bg, 0); err != nil {
			t.Fatal(err)
		}
	}
	if got := actions(renew); !equal(got, []string{"get leases", "create leases"}) {
		t.Errorf("first renewal: %v, want get and create of the lease (no node read)", got)
	}
	l, err := client.CoordinationV1().Leases(v1.NamespaceNodeLease).Get(bg, "hollow-node-0", metav1.GetOptions{})
	if err != nil || l.OwnerReferences[0].UID != "node-uid" {
		t.Fatalf("lease %v, %v: want owner UID node-uid", l, err)
	}
	clk.Step(10 * time.Second)
	if got := actions(renew); !equal(got, []string{"update leases"}) {
		t.Errorf("second renewal: %v, want one update", got)
	}
	l, _ = client.CoordinationV1().Leases(v1.NamespaceNodeLease).Get(bg, "hollow-node-0", metav1.GetOptions{})
	if !l.Spec.RenewTime.Time.Equal(time.Unix(1010, 0)) {
		t.Errorf("renew time %v, want %v", l.Spec.RenewTime.Time, time.Unix(1010, 0))
	}

	conflicts := 1
	client.PrependReactor("update", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
		if conflicts > 0 {
			conflicts--
			return true, nil, apierrors.NewConflict(schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}, "hollow-node-0", nil)
		}
		return false, nil, nil
	})
	clk.Step(10 * time.Second)
	if got := actions(renew); !equal(got, []string{"update leases", "get leases", "update leases"}) {
		t.Errorf("renewal after a conflict: %v, want update, get, update", got)
	}
	clk.Step(10 * time.Second)
	if got := actions(renew); !equal(got, []string{"update leases"}) {
		t.Errorf("renewal after the re-read: %v, want one update", got)
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Every node gets its Lease right after registration, as a kubelet's lease
// controller syncs at start: the first pass over the nodes does not wait
// for the renewal interval (here a fake clock that never moves).
func TestLeasesCreatedAtStart(t *testing.T) {
	client := fake.NewClientset()
	clk := clocktesting.NewFakeClock(time.Unix(1000, 0))
	const count = 20 // more than leaseShards: each shard owns several nodes
	n := New(client, Options{Count: count, Clock: clk})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	waitFor(t, "a Lease for every node", func() bool {
		l, err := client.CoordinationV1().Leases(v1.NamespaceNodeLease).List(context.Background(), metav1.ListOptions{})
		return err == nil && len(l.Items) == count
	})
}
