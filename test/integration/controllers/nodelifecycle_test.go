package controllers

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"

	"skiff.dev/skiff/internal/controller/nodeipam"
	"skiff.dev/skiff/internal/controller/nodelifecycle"
	"skiff.dev/skiff/internal/hollow"
	"skiff.dev/skiff/test/integration/framework"
)

// TestNodeLifecycle runs the node lifecycle and IPAM controllers against the
// real server with a 2 s grace period (the controller manager's is
// upstream's 50 s), so this cluster runs without the controller manager.
func TestNodeLifecycle(t *testing.T) {
	c := framework.Start(t, framework.Options{Scheduler: true})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	factory := informers.NewSharedInformerFactory(c.Client, 0)
	logger := slog.New(slog.DiscardHandler)
	nlc, err := nodelifecycle.New(nodelifecycle.Config{GracePeriod: 2 * time.Second, MonitorPeriod: 200 * time.Millisecond}, c.Client, factory, logger)
	if err != nil {
		t.Fatalf("building node lifecycle controller: %v", err)
	}
	ipam, err := nodeipam.New(nodeipam.Config{ClusterCIDR: "10.42.0.0/16"}, c.Client, factory, logger)
	if err != nil {
		t.Fatalf("building node ipam controller: %v", err)
	}
	factory.Start(ctx.Done())
	t.Cleanup(factory.Shutdown)
	for _, r := range []interface {
		Run(context.Context, int) error
	}{nlc, ipam} {
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx, 1) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	e := &env{c: c, client: c.Client, ctx: ctx}
	e.ns = e.namespace(t, "nlc")

	// Nodes get pod CIDRs from the cluster CIDR.
	cluster := netip.MustParsePrefix("10.42.0.0/16")
	for _, name := range []string{"bare-a", "bare-b"} {
		if _, err := c.Client.CoreV1().Nodes().Create(ctx, &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating node %s: %v", name, err)
		}
	}
	cidrs := map[string]string{}
	for _, name := range []string{"bare-a", "bare-b"} {
		waitFor(t, 10*time.Second, "pod CIDR for "+name, func() (bool, error) {
			n, err := c.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil || n.Spec.PodCIDR == "" {
				return false, err
			}
			p, err := netip.ParsePrefix(n.Spec.PodCIDR)
			if err != nil || p.Bits() != 24 || !cluster.Contains(p.Addr()) || len(n.Spec.PodCIDRs) != 1 || n.Spec.PodCIDRs[0] != n.Spec.PodCIDR {
				return false, fmt.Errorf("podCIDR %q podCIDRs %v (%v)", n.Spec.PodCIDR, n.Spec.PodCIDRs, err)
			}
			cidrs[name] = n.Spec.PodCIDR
			return true, nil
		})
	}
	if cidrs["bare-a"] == cidrs["bare-b"] {
		t.Errorf("two nodes share pod CIDR %s", cidrs["bare-a"])
	}
	for _, name := range []string{"bare-a", "bare-b"} {
		if err := c.Client.CoreV1().Nodes().Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatalf("deleting node %s: %v", name, err)
		}
	}

	// One node keeps heartbeating, one will stop.
	runHollow(t, ctx, c.Client, hollow.Options{Count: 1, Prefix: "healthy-", LeaseInterval: 200 * time.Millisecond})
	doomedCtx, kill := context.WithCancel(ctx)
	runHollow(t, doomedCtx, c.Client, hollow.Options{Count: 1, Prefix: "doomed-", LeaseInterval: 200 * time.Millisecond})
	mkPod := func(name string, tolerations []v1.Toleration) {
		t.Helper()
		p := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "nlc"}}, Spec: podTemplate("nlc", "nginx:1").Spec}
		p.Spec.NodeSelector = map[string]string{v1.LabelHostname: "doomed-0"}
		p.Spec.Tolerations = tolerations
		if _, err := c.Client.CoreV1().Pods(e.ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating pod %s: %v", name, err)
		}
	}
	mkPod("short", []v1.Toleration{
		{Key: v1.TaintNodeUnreachable, Operator: v1.TolerationOpExists, Effect: v1.TaintEffectNoExecute, TolerationSeconds: ptr(int64(2))},
		{Key: v1.TaintNodeNotReady, Operator: v1.TolerationOpExists, Effect: v1.TaintEffectNoExecute, TolerationSeconds: ptr(int64(2))},
	})
	mkPod("default", nil) // admission adds 300 s tolerations
	e.waitRunning(t, "nlc", 2, 30*time.Second)
	def, err := c.Client.CoreV1().Pods(e.ns).Get(ctx, "default", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !tolerates(def, v1.TaintNodeUnreachable, 300) || !tolerates(def, v1.TaintNodeNotReady, 300) {
		t.Errorf("pod without tolerations got %+v, want the default 300 s ones", def.Spec.Tolerations)
	}
	// Healthy for a while: no taints, Ready stays True.
	time.Sleep(3 * time.Second)
	if n, err := c.Client.CoreV1().Nodes().Get(ctx, "doomed-0", metav1.GetOptions{}); err != nil || len(n.Spec.Taints) != 0 || nodeReady(n) != v1.ConditionTrue {
		t.Fatalf("heartbeating node: taints %v ready %v (%v)", n.Spec.Taints, nodeReady(n), err)
	}

	kill()
	stopped := time.Now()
	var taintAdded time.Time
	waitFor(t, 15*time.Second, "doomed node Ready=Unknown with the unreachable taint", func() (bool, error) {
		n, err := c.Client.CoreV1().Nodes().Get(ctx, "doomed-0", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		tainted := false
		for _, tt := range n.Spec.Taints {
			if tt.Key == v1.TaintNodeUnreachable && tt.Effect == v1.TaintEffectNoExecute {
				tainted = true
				if tt.TimeAdded != nil {
					taintAdded = tt.TimeAdded.Time
				}
			}
		}
		return tainted && nodeReady(n) == v1.ConditionUnknown, fmt.Errorf("taints %v ready %v", n.Spec.Taints, nodeReady(n))
	})
	tainted := time.Now()
	if taintAdded.IsZero() {
		t.Fatal("the unreachable taint has no timeAdded")
	}
	t.Logf("node marked unreachable %v after its heartbeats stopped", tainted.Sub(stopped).Round(time.Millisecond))
	waitFor(t, 15*time.Second, "pod with a 2 s toleration evicted", func() (bool, error) {
		p, err := c.Client.CoreV1().Pods(e.ns).Get(ctx, "short", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return p.DeletionTimestamp != nil, nil
	})
	evicted := time.Since(stopped)
	t.Logf("pod evicted %v after heartbeats stopped", evicted.Round(time.Millisecond))
	// The deadline counts from the taint's timeAdded (kept to the second,
	// as upstream, so never later than the taint): the eviction cannot be
	// seen sooner than 2 s after it. Measured from timeAdded, not from when
	// this test saw the taint, which a loaded machine can delay by seconds.
	if early := time.Since(taintAdded); early < 2*time.Second {
		t.Errorf("pod evicted %v after the taint's timeAdded %v, before its 2 s toleration", early, taintAdded)
	}
	if p, err := c.Client.CoreV1().Pods(e.ns).Get(ctx, "default", metav1.GetOptions{}); err != nil || p.DeletionTimestamp != nil {
		t.Errorf("pod tolerating 300 s was evicted early (%v)", err)
	}
	if n, err := c.Client.CoreV1().Nodes().Get(ctx, "healthy-0", metav1.GetOptions{}); err != nil || len(n.Spec.Taints) != 0 || nodeReady(n) != v1.ConditionTrue {
		t.Errorf("healthy node: taints %v ready %v (%v)", n.Spec.Taints, nodeReady(n), err)
	}
}

func tolerates(p *v1.Pod, key string, secs int64) bool {
	for _, t := range p.Spec.Tolerations {
		if t.Key == key && t.Effect == v1.TaintEffectNoExecute && t.TolerationSeconds != nil && *t.TolerationSeconds == secs {
			return true
		}
	}
	return false
}

func nodeReady(n *v1.Node) v1.ConditionStatus {
	if n == nil {
		return ""
	}
	for _, c := range n.Status.Conditions {
		if c.Type == v1.NodeReady {
			return c.Status
		}
	}
	return ""
}
