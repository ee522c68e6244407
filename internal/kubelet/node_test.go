package kubelet

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	testingclock "k8s.io/utils/clock/testing"
)

func TestRegisterNodeAndLease(t *testing.T) {
	clk := testingclock.NewFakeClock(t0)
	client := fake.NewClientset()
	f := newFakeCRI(clk.Now)
	k, err := New(Config{NodeName: "n1", NodeIP: "192.0.2.1", PodCIDR: netip.MustParsePrefix("10.42.7.0/24"), KubeletPort: 10250, DataDir: t.TempDir(),
		Reserved: Reserved{MemoryBytes: 100 << 20}},
		Deps{Client: client, Runtime: f, Image: f, Clock: clk, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	k.machine = Machine{CPUs: 2, MemoryBytes: 1 << 30, EphemeralBytes: 10 << 30, ContainerRuntime: "containerd://1.6.20"}
	ctx := context.Background()
	node, err := k.registerNode(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if node.Labels[v1.LabelHostname] != "n1" || node.Labels[v1.LabelOSStable] != "linux" || node.Labels[v1.LabelArchStable] == "" {
		t.Errorf("labels %v", node.Labels)
	}
	if node.Spec.PodCIDR != "10.42.7.0/24" {
		t.Errorf("podCIDR %q", node.Spec.PodCIDR)
	}
	mem := node.Status.Allocatable[v1.ResourceMemory]
	if cpu := node.Status.Capacity[v1.ResourceCPU]; cpu.Value() != 2 || mem.Value() != 1<<30-100<<20 {
		t.Errorf("capacity cpu %v allocatable memory %v", cpu.String(), mem.String())
	}
	var ready bool
	for _, c := range node.Status.Conditions {
		ready = ready || (c.Type == v1.NodeReady && c.Status == v1.ConditionTrue)
	}
	if !ready || node.Status.Addresses[0].Address != "192.0.2.1" || node.Status.DaemonEndpoints.KubeletEndpoint.Port != 10250 {
		t.Errorf("status %+v", node.Status)
	}

	// Re-registering keeps the node and refreshes it.
	if _, err := k.registerNode(ctx); err != nil {
		t.Fatal(err)
	}

	if err := k.renewLease(ctx, string(node.UID)); err != nil {
		t.Fatal(err)
	}
	clk.Step(10 * time.Second)
	if err := k.renewLease(ctx, string(node.UID)); err != nil {
		t.Fatal(err)
	}
	l, err := client.CoordinationV1().Leases(v1.NamespaceNodeLease).Get(ctx, "n1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !l.Spec.RenewTime.Time.Equal(t0.Add(10*time.Second)) || *l.Spec.HolderIdentity != "n1" || l.OwnerReferences[0].Kind != "Node" {
		t.Errorf("lease %+v", l)
	}
}
