package cache

import (
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"

	"skiff.dev/skiff/internal/scheduler/framework"
)

func node(name, zone string) *v1.Node {
	rl := v1.ResourceList{v1.ResourceCPU: resource.MustParse("4"), v1.ResourcePods: resource.MustParse("110")}
	return &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{v1.LabelTopologyZone: zone}},
		Status: v1.NodeStatus{Allocatable: rl}}
}

func pod(name, nodeName, cpu string) *v1.Pod {
	return &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID(name), Labels: map[string]string{"app": "x"}},
		Spec: v1.PodSpec{NodeName: nodeName, Containers: []v1.Container{{Name: "c", Resources: v1.ResourceRequirements{
			Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse(cpu)}}}}}}
}

func newCache(ttl time.Duration) (*Cache, *clocktesting.FakeClock) {
	clk := clocktesting.NewFakeClock(time.Unix(1000, 0))
	return New(clk, ttl), clk
}

func requestedCPU(t *testing.T, c *Cache, n string) int64 {
	t.Helper()
	ni, ok := c.NodeInfo(n)
	if !ok {
		t.Fatalf("node %s not in cache", n)
	}
	return ni.Requested.MilliCPU
}

func TestAssumeThenConfirm(t *testing.T) {
	c, _ := newCache(0)
	c.AddNode(node("n1", "a"))
	p := pod("p", "n1", "1")
	if err := c.AssumePod(p); err != nil {
		t.Fatal(err)
	}
	if !c.IsAssumedPod(p) {
		t.Fatal("pod not assumed")
	}
	if err := c.AssumePod(p); err == nil {
		t.Fatal("assuming a pod twice succeeded")
	}
	if got := requestedCPU(t, c, "n1"); got != 1000 {
		t.Fatalf("requested %dm after assume, want 1000m", got)
	}
	if err := c.FinishBinding(p); err != nil {
		t.Fatal(err)
	}
	if err := c.AddPod(p); err != nil {
		t.Fatal(err)
	}
	if c.IsAssumedPod(p) {
		t.Fatal("pod still assumed after the informer confirmed it")
	}
	if got := requestedCPU(t, c, "n1"); got != 1000 {
		t.Fatalf("requested %dm after confirm, want 1000m (counted once)", got)
	}
	if _, pods := c.Counts(); pods != 1 {
		t.Fatalf("%d pods in cache, want 1", pods)
	}
}

func TestConfirmOnAnotherNodeMovesThePod(t *testing.T) {
	c, _ := newCache(0)
	c.AddNode(node("n1", "a"))
	c.AddNode(node("n2", "a"))
	if err := c.AssumePod(pod("p", "n1", "1")); err != nil {
		t.Fatal(err)
	}
	if err := c.AddPod(pod("p", "n2", "1")); err != nil {
		t.Fatal(err)
	}
	if requestedCPU(t, c, "n1") != 0 || requestedCPU(t, c, "n2") != 1000 {
		t.Fatalf("n1 %dm, n2 %dm: want the pod on n2 only", requestedCPU(t, c, "n1"), requestedCPU(t, c, "n2"))
	}
}

func TestForget(t *testing.T) {
	c, _ := newCache(0)
	c.AddNode(node("n1", "a"))
	p := pod("p", "n1", "1")
	if err := c.ForgetPod(p); err == nil {
		t.Fatal("forgetting an unknown pod succeeded")
	}
	if err := c.AssumePod(p); err != nil {
		t.Fatal(err)
	}
	if err := c.ForgetPod(p); err != nil {
		t.Fatal(err)
	}
	if c.IsAssumedPod(p) || requestedCPU(t, c, "n1") != 0 {
		t.Fatal("forgotten pod still occupies the node")
	}
	// A confirmed pod cannot be forgotten.
	if err := c.AddPod(p); err != nil {
		t.Fatal(err)
	}
	if err := c.ForgetPod(p); err == nil {
		t.Fatal("forgetting a confirmed pod succeeded")
	}
}

func TestAssumedPodsExpireOnlyAfterBindingFinished(t *testing.T) {
	c, clk := newCache(30 * time.Second)
	c.AddNode(node("n1", "a"))
	binding, bound := pod("binding", "n1", "1"), pod("bound", "n1", "1")
	for _, p := range []*v1.Pod{binding, bound} {
		if err := c.AssumePod(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.FinishBinding(bound); err != nil {
		t.Fatal(err)
	}
	clk.Step(29 * time.Second)
	c.CleanupExpiredAssumedPods()
	if !c.IsAssumedPod(bound) {
		t.Fatal("expired before the TTL")
	}
	clk.Step(2 * time.Second)
	c.CleanupExpiredAssumedPods()
	if c.IsAssumedPod(bound) {
		t.Fatal("not expired after the TTL")
	}
	if !c.IsAssumedPod(binding) {
		t.Fatal("a pod still binding expired")
	}
	if got := requestedCPU(t, c, "n1"); got != 1000 {
		t.Fatalf("requested %dm, want only the binding pod's 1000m", got)
	}
}

func TestNoTTLNeverExpires(t *testing.T) {
	c, clk := newCache(0)
	c.AddNode(node("n1", "a"))
	p := pod("p", "n1", "1")
	_ = c.AssumePod(p)
	_ = c.FinishBinding(p)
	clk.Step(time.Hour)
	c.CleanupExpiredAssumedPods()
	if !c.IsAssumedPod(p) {
		t.Fatal("assumed pod expired with TTL 0")
	}
}

func TestUpdateAndRemovePod(t *testing.T) {
	c, _ := newCache(0)
	c.AddNode(node("n1", "a"))
	p := pod("p", "n1", "1")
	if err := c.AddPod(p); err != nil {
		t.Fatal(err)
	}
	if err := c.AddPod(p); err == nil {
		t.Fatal("adding a pod twice succeeded")
	}
	bigger := pod("p", "n1", "3")
	if err := c.UpdatePod(p, bigger); err != nil {
		t.Fatal(err)
	}
	if got := requestedCPU(t, c, "n1"); got != 3000 {
		t.Fatalf("requested %dm after update, want 3000m", got)
	}
	if err := c.RemovePod(bigger); err != nil {
		t.Fatal(err)
	}
	if got := requestedCPU(t, c, "n1"); got != 0 {
		t.Fatalf("requested %dm after remove, want 0", got)
	}
}

func TestRemoveNodeKeepsPodsUntilDeleted(t *testing.T) {
	c, _ := newCache(0)
	n := node("n1", "a")
	c.AddNode(n)
	p := pod("p", "n1", "1")
	_ = c.AddPod(p)
	c.RemoveNode(n)
	if nodes, pods := c.Counts(); nodes != 0 || pods != 1 {
		t.Fatalf("counts (%d nodes, %d pods), want (0, 1)", nodes, pods)
	}
	snap := &framework.Snapshot{}
	c.UpdateSnapshot(snap)
	if snap.NumNodes() != 0 {
		t.Fatalf("snapshot lists %d nodes, want 0", snap.NumNodes())
	}
	_ = c.RemovePod(p)
	if _, ok := c.NodeInfo("n1"); ok {
		t.Fatal("empty removed node still in cache")
	}
}

// TestUpdateSnapshotIsIncremental checks that a snapshot updated from the
// cache matches one built from scratch, that untouched nodes are not
// copied again, and that the snapshot's index follows.
func TestUpdateSnapshotIsIncremental(t *testing.T) {
	c, _ := newCache(0)
	for _, n := range []*v1.Node{node("n1", "a"), node("n2", "a"), node("n3", "b")} {
		c.AddNode(n)
	}
	snap := &framework.Snapshot{}
	c.UpdateSnapshot(snap)
	if snap.NumNodes() != 3 {
		t.Fatalf("%d nodes in snapshot", snap.NumNodes())
	}
	n3 := snap.NodeInfoMap["n3"]
	ix := snap.Index()
	sel := labels.SelectorFromSet(labels.Set{"app": "x"})
	count := func() map[string]int64 {
		return ix.DomainCounts("app=x", v1.LabelTopologyZone, sel, func(p *v1.Pod) bool { return sel.Matches(labels.Set(p.Labels)) })
	}
	if got := count(); len(got) != 0 {
		t.Fatalf("counts before any pod: %v", got)
	}

	_ = c.AssumePod(pod("p1", "n1", "1"))
	_ = c.AddPod(pod("p2", "n2", "1"))
	_ = c.AddPod(pod("p3", "n3", "1"))
	gen := n3.Generation
	_ = c.RemovePod(pod("p3", "n3", "1"))
	c.UpdateSnapshot(snap)
	if got := count(); got["a"] != 2 || got["b"] != 0 {
		t.Fatalf("zone counts %v, want a=2 b=0", got)
	}
	if snap.NodeInfoMap["n3"] != n3 {
		t.Fatal("NodeInfo pointer of n3 changed: NodeInfoList would go stale")
	}
	if snap.NodeInfoMap["n3"].Generation == gen {
		t.Fatal("n3 changed but its generation did not move")
	}
	g1 := snap.NodeInfoMap["n1"].Generation
	_ = c.AddPod(pod("p4", "n3", "2"))
	c.UpdateSnapshot(snap)
	if snap.NodeInfoMap["n1"].Generation != g1 {
		t.Fatal("untouched n1 was copied again")
	}
	if snap.NodeInfoMap["n3"].Requested.MilliCPU != 2000 {
		t.Fatalf("n3 requested %dm in snapshot, want 2000m", snap.NodeInfoMap["n3"].Requested.MilliCPU)
	}
	// Relabelling a node moves its pods to the new domain.
	c.UpdateNode(nil, node("n3", "a"))
	c.UpdateSnapshot(snap)
	if got := count(); got["a"] != 3 || got["b"] != 0 {
		t.Fatalf("zone counts after relabel %v, want a=3", got)
	}
	// Removing a node drops it from the list and its pods from the counts.
	c.RemoveNode(node("n2", "a"))
	c.UpdateSnapshot(snap)
	if snap.NumNodes() != 2 || ix.NumNodes() != 2 {
		t.Fatalf("nodes after removal: snapshot %d, index %d; want 2", snap.NumNodes(), ix.NumNodes())
	}
	if got := count(); got["a"] != 2 {
		t.Fatalf("zone counts after node removal %v, want a=2", got)
	}
	// Forgetting the assumed pod is seen too.
	_ = c.ForgetPod(pod("p1", "n1", "1"))
	c.UpdateSnapshot(snap)
	if got := count(); got["a"] != 1 {
		t.Fatalf("zone counts after forget %v, want a=1", got)
	}
}
