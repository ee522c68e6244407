package nodeipam

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func node(name, cidr string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if cidr != "" {
		n.Spec.PodCIDR = cidr
		n.Spec.PodCIDRs = []string{cidr}
	}
	return n
}

func newTest(t *testing.T, cfg Config, objs ...runtime.Object) (*Controller, *fake.Clientset, informers.SharedInformerFactory) {
	t.Helper()
	client := fake.NewClientset(objs...)
	factory := informers.NewSharedInformerFactory(client, 0)
	c, err := New(cfg, client, factory, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if n, ok := o.(*corev1.Node); ok {
			factory.Core().V1().Nodes().Informer().GetIndexer().Add(n)
		}
	}
	if err := c.rebuild(); err != nil {
		t.Fatal(err)
	}
	client.ClearActions()
	return c, client, factory
}

func patchedCIDR(t *testing.T, client *fake.Clientset, name string) string {
	t.Helper()
	n, err := client.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(n.Spec.PodCIDRs) != 1 || n.Spec.PodCIDRs[0] != n.Spec.PodCIDR {
		t.Fatalf("podCIDRs %v does not match podCIDR %q", n.Spec.PodCIDRs, n.Spec.PodCIDR)
	}
	return n.Spec.PodCIDR
}

func TestAllocatesAfterRebuildingFromExistingNodes(t *testing.T) {
	ctx := context.Background()
	c, client, _ := newTest(t, Config{},
		node("a", "10.42.0.0/24"), node("b", "10.42.1.0/24"), node("c", ""))
	if err := c.sync(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	acts := client.Actions()
	if len(acts) != 1 || acts[0].GetVerb() != "patch" || acts[0].GetResource().Resource != "nodes" {
		t.Fatalf("unexpected actions %v", acts)
	}
	if got := patchedCIDR(t, client, "c"); got != "10.42.2.0/24" {
		t.Fatalf("node c got %s", got)
	}
	// A node that already has a CIDR is not patched.
	client.ClearActions()
	if err := c.sync(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if len(client.Actions()) != 0 {
		t.Fatalf("unexpected actions %v", client.Actions())
	}
}

func TestRetryReusesReservedSubnetAndDeleteReleases(t *testing.T) {
	ctx := context.Background()
	c, client, factory := newTest(t, Config{ClusterCIDR: "10.0.0.0/23", NodeMaskSize: 24},
		node("a", ""), node("b", ""))
	fail := true
	client.PrependReactor("patch", "nodes", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if fail {
			return true, nil, errors.New("boom")
		}
		return false, nil, nil
	})
	if err := c.sync(ctx, "a"); err == nil {
		t.Fatal("expected error from failing patch")
	}
	fail = false
	if err := c.sync(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if got := patchedCIDR(t, client, "a"); got != "10.0.0.0/24" {
		t.Fatalf("node a got %s after retry", got)
	}
	if err := c.sync(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if got := patchedCIDR(t, client, "b"); got != "10.0.1.0/24" {
		t.Fatalf("node b got %s", got)
	}
	// Exhausted: a third node fails.
	factory.Core().V1().Nodes().Informer().GetIndexer().Add(node("c", ""))
	if _, err := client.CoreV1().Nodes().Create(ctx, node("c", ""), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.sync(ctx, "c"); !errors.Is(err, ErrCIDRRangeExhausted) {
		t.Fatalf("expected exhaustion, got %v", err)
	}
	// Deleting a frees its subnet for c.
	a, _ := factory.Core().V1().Nodes().Lister().Get("a")
	factory.Core().V1().Nodes().Informer().GetIndexer().Delete(a)
	if err := c.sync(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if err := c.sync(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if got := patchedCIDR(t, client, "c"); got != "10.0.0.0/24" {
		t.Fatalf("node c got %s", got)
	}
}
