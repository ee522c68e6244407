package hollow

import (
	"context"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
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
