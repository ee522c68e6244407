package workloads

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"skiff.dev/skiff/internal/hollow"
	"skiff.dev/skiff/test/integration/framework"
)

const agentSet = `apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
spec:
  selector:
    matchLabels:
      app: agent
  template:
    metadata:
      labels:
        app: agent
    spec:
      containers:
      - name: c
        image: agent:1
`

func TestKubectlDaemonSetFollowsNodes(t *testing.T) {
	bins := framework.KubectlBinaries()
	if len(bins) == 0 {
		t.Skip("no kubectl binaries installed")
	}
	c, _, ctx := start(t, 2)
	for v, bin := range bins {
		t.Run(v, func(t *testing.T) {
			ns := "ds-" + strings.ReplaceAll(v, ".", "-")
			kubectl := func(stdin string, args ...string) string {
				t.Helper()
				out, err := c.Kubectl(t, bin, stdin, append([]string{"-n", ns}, args...)...)
				if err != nil {
					t.Fatalf("kubectl %v: %v\n%s", args, err, out)
				}
				return out
			}
			if out, err := c.Kubectl(t, bin, "", "create", "namespace", ns); err != nil {
				t.Fatalf("create namespace: %v\n%s", err, out)
			}
			kubectl(agentSet, "apply", "-f", "-")
			kubectl("", "rollout", "status", "daemonset/agent", "--timeout=60s")
			nodes, _ := c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
			assertOnePodPerNode(ctx, t, c, ns, len(nodes.Items))

			// A new node gets its pod through the scheduler.
			nodeCtx, stopNode := context.WithCancel(ctx)
			defer stopNode()
			extra := hollow.New(c.Client, hollow.Options{Count: 1, Prefix: "late-" + strings.ReplaceAll(v, ".", "-") + "-"})
			go func() { _ = extra.Run(nodeCtx) }()
			waitFor(t, 60*time.Second, "a running pod on the new node", func() (bool, error) {
				pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + extra.Names()[0]})
				return err == nil && len(pods.Items) == 1 && pods.Items[0].Status.Phase == v1.PodRunning, err
			})
			kubectl("", "rollout", "status", "daemonset/agent", "--timeout=60s")
			out := kubectl("", "get", "daemonset", "agent", "-o", "jsonpath={.status.desiredNumberScheduled} {.status.numberReady}")
			if want := len(nodes.Items) + 1; out != strconv.Itoa(want)+" "+strconv.Itoa(want) {
				t.Fatalf("desired/ready = %q, want %d", out, want)
			}

			// Rolling update and rollback through kubectl.
			kubectl("", "set", "image", "daemonset/agent", "c=agent:2")
			kubectl("", "rollout", "status", "daemonset/agent", "--timeout=60s")
			kubectl("", "rollout", "undo", "daemonset/agent")
			waitFor(t, 60*time.Second, "rollback to agent:1", func() (bool, error) {
				pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
				if err != nil {
					return false, err
				}
				n := 0
				for _, p := range pods.Items {
					if p.DeletionTimestamp == nil && p.Spec.Containers[0].Image == "agent:1" && p.Status.Phase == v1.PodRunning {
						n++
					}
				}
				return n == len(nodes.Items)+1, nil
			})

			// A removed node loses its pod.
			if err := c.Client.CoreV1().Nodes().Delete(ctx, extra.Names()[0], metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			stopNode()
			waitFor(t, 60*time.Second, "the removed node's pod to go", func() (bool, error) {
				pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + extra.Names()[0]})
				if err != nil {
					return false, err
				}
				for _, p := range pods.Items {
					if p.DeletionTimestamp == nil {
						return false, nil
					}
				}
				return true, nil
			})
		})
	}
}

func assertOnePodPerNode(ctx context.Context, t *testing.T, c *framework.Cluster, ns string, want int) {
	t.Helper()
	pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	perNode := map[string]int{}
	for _, p := range pods.Items {
		perNode[p.Spec.NodeName]++
	}
	if len(perNode) != want {
		t.Fatalf("pods per node = %v, want one on each of %d nodes", perNode, want)
	}
	for n, k := range perNode {
		if k != 1 || n == "" {
			t.Fatalf("pods per node = %v", perNode)
		}
	}
}
