// Package policy holds integration tests for PodDisruptionBudgets and the
// eviction API, ResourceQuota and LimitRange on an in-process control plane
// with hollow nodes.
package policy

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"skiff.dev/skiff/internal/hollow"
	"skiff.dev/skiff/test/integration/framework"
)

func startNodes(t *testing.T, client kubernetes.Interface, count int) *hollow.Nodes {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	nodes := hollow.New(client, hollow.Options{Count: count, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	done := make(chan struct{})
	go func() { defer close(done); _ = nodes.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return nodes
}

func poll(t *testing.T, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 60*time.Second, true, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

func webLabels() map[string]string { return map[string]string{"app": "web"} }

func TestEvictionHonoursBudget(t *testing.T) {
	c := framework.Start(t, framework.Options{ControllerManager: true, Scheduler: true})
	startNodes(t, c.Client, 2)
	ctx := context.Background()
	ns := "default"
	replicas := int32(3)
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: webLabels()},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: webLabels()},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "nginx"}}},
			},
		},
	}
	if _, err := c.Client.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	maxU := intstr.FromInt32(1)
	pdb := &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec:       policyv1.PodDisruptionBudgetSpec{MaxUnavailable: &maxU, Selector: &metav1.LabelSelector{MatchLabels: webLabels()}},
	}
	if _, err := c.Client.PolicyV1().PodDisruptionBudgets(ns).Create(ctx, pdb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitAllowed := func(want int32) {
		poll(t, fmt.Sprintf("disruptionsAllowed=%d", want), func(ctx context.Context) (bool, error) {
			p, err := c.Client.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, "web", metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			t.Logf("status %+v", p.Status)
			return p.Status.ObservedGeneration == p.Generation && p.Status.ExpectedPods == 3 &&
				p.Status.CurrentHealthy == 3 && p.Status.DesiredHealthy == 2 && p.Status.DisruptionsAllowed == want, nil
		})
	}
	waitAllowed(1)

	pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != 3 {
		t.Fatalf("got %d pods, want 3", len(pods.Items))
	}
	evict := func(name string) error {
		return c.Client.PolicyV1().Evictions(ns).Evict(ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}})
	}
	// Cordon the nodes so the replacement of an evicted pod stays
	// pending: on a quiet machine hollow nodes make it ready within
	// milliseconds, which would (rightly) restore the budget before the
	// second eviction.
	cordon := func(unschedulable bool) {
		t.Helper()
		nodes, err := c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range nodes.Items {
			patch := fmt.Sprintf(`{"spec":{"unschedulable":%t}}`, unschedulable)
			if _, err := c.Client.CoreV1().Nodes().Patch(ctx, n.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
				t.Fatalf("cordoning %s: %v", n.Name, err)
			}
		}
	}
	cordon(true)
	if err := evict(pods.Items[0].Name); err != nil {
		t.Fatalf("first eviction: %v", err)
	}
	// The budget is spent until the replacement is ready.
	err = evict(pods.Items[1].Name)
	if !apierrors.IsTooManyRequests(err) {
		t.Fatalf("second eviction: got %v, want 429 TooManyRequests", err)
	}
	// Once the deployment has replaced the evicted pod, one more may go.
	cordon(false)
	waitAllowed(1)
	if err := evict(pods.Items[1].Name); err != nil {
		t.Fatalf("eviction after recovery: %v", err)
	}
}

func TestBudgetWithMinAvailableBlocksEveryEviction(t *testing.T) {
	c := framework.Start(t, framework.Options{ControllerManager: true, Scheduler: true})
	startNodes(t, c.Client, 1)
	ctx := context.Background()
	ns := "default"
	for i := 0; i < 2; i++ {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p%d", i), Namespace: ns, Labels: webLabels()},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "nginx"}}},
		}
		if _, err := c.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	minA := intstr.FromInt32(2)
	pdb := &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec:       policyv1.PodDisruptionBudgetSpec{MinAvailable: &minA, Selector: &metav1.LabelSelector{MatchLabels: webLabels()}},
	}
	if _, err := c.Client.PolicyV1().PodDisruptionBudgets(ns).Create(ctx, pdb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, "two healthy pods counted", func(ctx context.Context) (bool, error) {
		p, err := c.Client.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		t.Logf("status %+v", p.Status)
		return p.Status.ObservedGeneration == p.Generation && p.Status.CurrentHealthy == 2, nil
	})
	p, err := c.Client.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Status.DisruptionsAllowed != 0 || p.Status.DesiredHealthy != 2 || p.Status.ExpectedPods != 2 {
		t.Fatalf("status = %+v", p.Status)
	}
	err = c.Client.PolicyV1().Evictions(ns).Evict(ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: "p0", Namespace: ns}})
	if !apierrors.IsTooManyRequests(err) {
		t.Fatalf("eviction: got %v, want 429", err)
	}
}
