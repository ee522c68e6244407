// Package workloads holds integration tests of the StatefulSet, DaemonSet,
// Job and CronJob controllers on skiff's real API server, with the
// scheduler and hollow nodes (pods bound to a hollow node become Running
// and Ready; tests finish Job pods themselves through the status
// subresource), plus scenarios driven by real kubectl binaries.
package workloads

import (
	"context"
	"sort"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"skiff.dev/skiff/internal/hollow"
	"skiff.dev/skiff/test/integration/framework"
)

// start runs a control plane with the controller manager, the scheduler and
// n hollow nodes.
func start(t *testing.T, n int) (*framework.Cluster, *hollow.Nodes, context.Context) {
	t.Helper()
	c := framework.Start(t, framework.Options{ControllerManager: true, Scheduler: true})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	nodes := hollow.New(c.Client, hollow.Options{Count: n})
	go func() { _ = nodes.Run(ctx) }()
	waitFor(t, 30*time.Second, "hollow nodes ready", func() (bool, error) {
		l, err := c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		return err == nil && len(l.Items) >= n, err
	})
	return c, nodes, ctx
}

// waitFor polls cond every 100 ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var lastErr error
	for time.Now().Before(deadline) {
		ok, err := cond()
		if ok {
			return
		}
		lastErr = err
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s (last error: %v)", what, lastErr)
}

// succeedPods keeps turning Running pods matching selector in ns into
// Succeeded ones until ctx ends, as a kubelet would when their command exits.
func succeedPods(ctx context.Context, t *testing.T, client kubernetes.Interface, ns, selector string) {
	go func() {
		for ctx.Err() == nil {
			l, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
			if err == nil {
				for i := range l.Items {
					p := &l.Items[i]
					if p.Status.Phase != v1.PodRunning || p.DeletionTimestamp != nil {
						continue
					}
					now := metav1.Now()
					p.Status.Phase = v1.PodSucceeded
					for j := range p.Status.ContainerStatuses {
						p.Status.ContainerStatuses[j].Ready = false
						p.Status.ContainerStatuses[j].State = v1.ContainerState{Terminated: &v1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed", FinishedAt: now}}
					}
					for j := range p.Status.Conditions {
						if p.Status.Conditions[j].Type == v1.PodReady {
							p.Status.Conditions[j].Status = v1.ConditionFalse
						}
					}
					_, _ = client.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{})
				}
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()
}

func podNames(pods []v1.Pod) []string {
	var out []string
	for _, p := range pods {
		out = append(out, p.Name)
	}
	sort.Strings(out)
	return out
}
