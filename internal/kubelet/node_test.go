package kubelet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	testingclock "k8s.io/utils/clock/testing"
)

// fakeImageList is a CRI image service whose ListImages answers what the
// test put in it (or an error).
type fakeImageList struct {
	runtimeapi.ImageServiceClient
	mu     sync.Mutex
	images []*runtimeapi.Image
	err    error
}

func (f *fakeImageList) set(err error, imgs ...*runtimeapi.Image) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.images, f.err = imgs, err
}

func (f *fakeImageList) ListImages(context.Context, *runtimeapi.ListImagesRequest, ...grpc.CallOption) (*runtimeapi.ListImagesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	return &runtimeapi.ListImagesResponse{Images: f.images}, nil
}

func TestNodeImages(t *testing.T) {
	img := func(id string, size uint64, tags, digests []string) *runtimeapi.Image {
		return &runtimeapi.Image{Id: id, Size: size, RepoTags: tags, RepoDigests: digests}
	}
	got := nodeImages([]*runtimeapi.Image{
		img("sha256:small", 10, []string{"localhost/skiff/pause:v1"}, nil),
		img("sha256:big", 300, []string{"a:1", "a:2"}, []string{"a@sha256:1"}),
		img("sha256:nameless", 1000, nil, nil),
		img("sha256:tie-b", 20, []string{"b:1"}, nil),
		img("sha256:tie-a", 20, []string{"c:1"}, nil),
		img("sha256:many", 5, []string{"t1", "t2", "t3", "t4"}, []string{"d1", "d2"}),
	})
	want := []v1.ContainerImage{
		{Names: []string{"a@sha256:1", "a:1", "a:2"}, SizeBytes: 300},
		{Names: []string{"c:1"}, SizeBytes: 20}, // equal sizes: by image ID
		{Names: []string{"b:1"}, SizeBytes: 20},
		{Names: []string{"localhost/skiff/pause:v1"}, SizeBytes: 10},
		{Names: []string{"d1", "d2", "t1", "t2", "t3"}, SizeBytes: 5}, // digests first, at most 5 names
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("nodeImages:\n got %v\nwant %v", got, want)
	}

	var lots []*runtimeapi.Image
	for i := range 80 {
		lots = append(lots, img(fmt.Sprintf("sha256:%03d", i), uint64(i+1), []string{fmt.Sprintf("img:%d", i)}, nil))
	}
	got = nodeImages(lots)
	if len(got) != nodeStatusMaxImages || got[0].SizeBytes != 80 || got[49].SizeBytes != 31 {
		t.Errorf("80 images: %d reported, first %d bytes, last %d bytes; want the 50 largest (80 … 31)", len(got), got[0].SizeBytes, got[len(got)-1].SizeBytes)
	}
	if lots[0].GetId() != "sha256:000" {
		t.Error("nodeImages reordered its input")
	}
}

// TestNodeStatusImages: status.images follows the runtime's images on the
// status-update cycle, and an unchanged status is not rewritten until the
// report interval has passed.
func TestNodeStatusImages(t *testing.T) {
	clk := testingclock.NewFakeClock(t0)
	client := fake.NewClientset()
	imgs := &fakeImageList{}
	pause := &runtimeapi.Image{Id: "sha256:p", Size: 300 << 10, RepoTags: []string{"localhost/skiff/pause:v1"}}
	testapp := &runtimeapi.Image{Id: "sha256:t", Size: 9 << 20, RepoTags: []string{"localhost/skiff/testapp:v1"}, RepoDigests: []string{"localhost/skiff/testapp@sha256:t"}}
	imgs.set(nil, pause)
	k, err := New(Config{NodeName: "n1", NodeIP: "192.0.2.1", DataDir: t.TempDir()},
		Deps{Client: client, Runtime: newFakeCRI(clk.Now), Image: imgs, Clock: clk, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	k.machine = Machine{CPUs: 2, MemoryBytes: 1 << 30}
	ctx := context.Background()
	writes := func() int {
		n := 0
		for _, a := range client.Actions() {
			if a.GetVerb() == "update" && a.GetSubresource() == "status" {
				n++
			}
		}
		return n
	}
	names := func(n *v1.Node) [][]string {
		var out [][]string
		for _, i := range n.Status.Images {
			out = append(out, i.Names)
		}
		return out
	}
	// cycle is one tick of the kubelet's status loop: read the node, update.
	cycle := func(step time.Duration) *v1.Node {
		t.Helper()
		clk.Step(step)
		n, err := client.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := k.updateNodeStatus(ctx, n, clk.Now()); err != nil {
			t.Fatal(err)
		}
		n, err = client.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	node, err := k.registerNode(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(node); !slices.EqualFunc(got, [][]string{{"localhost/skiff/pause:v1"}}, slices.Equal) || node.Status.Images[0].SizeBytes != 300<<10 {
		t.Fatalf("registered node images %v", node.Status.Images)
	}
	w := writes()

	// Nothing changed: no write.
	n := cycle(time.Minute)
	if writes() != w {
		t.Fatalf("unchanged status was rewritten")
	}

	// A new image appears: written, largest first.
	imgs.set(nil, pause, testapp)
	n = cycle(time.Minute)
	if writes() != w+1 {
		t.Fatalf("%d status writes after a new image, want %d", writes(), w+1)
	}
	if got := names(n); !slices.EqualFunc(got, [][]string{{"localhost/skiff/testapp@sha256:t", "localhost/skiff/testapp:v1"}, {"localhost/skiff/pause:v1"}}, slices.Equal) {
		t.Fatalf("images after the pull: %v", got)
	}
	w = writes()

	// Listing fails: the images are kept and nothing is written.
	imgs.set(errors.New("runtime down"))
	n = cycle(time.Minute)
	if writes() != w || len(n.Status.Images) != 2 {
		t.Fatalf("after a failed listing: %d writes (want %d), images %v", writes(), w, names(n))
	}

	// Unchanged but the last write is older than the report interval:
	// written again, with a fresh heartbeat.
	imgs.set(nil, testapp, pause)
	n = cycle(nodeStatusReportInterval)
	if writes() != w+1 {
		t.Fatalf("%d status writes after the report interval, want %d", writes(), w+1)
	}
	if hb := lastHeartbeat(&n.Status); !hb.Equal(clk.Now().Truncate(time.Second)) {
		t.Errorf("heartbeat %s, want %s", hb, clk.Now())
	}
	w = writes()

	// An image removed: written.
	imgs.set(nil, pause)
	n = cycle(10 * time.Second)
	if writes() != w+1 || len(n.Status.Images) != 1 {
		t.Fatalf("after removing an image: %d writes (want %d), images %v", writes(), w+1, names(n))
	}
}

func TestRegisterNodeAndLease(t *testing.T) {
	clk := testingclock.NewFakeClock(t0)
	client := fake.NewClientset()
	f := newFakeCRI(clk.Now)
	k, err := New(Config{NodeName: "n1", NodeIP: "192.0.2.1", PodCIDR: netip.MustParsePrefix("10.42.7.0/24"), KubeletPort: 10250, DataDir: t.TempDir(),
		Reserved: Reserved{MemoryBytes: 100 << 20}},
		Deps{Client: client, Runtime: f, Image: &fakeImageList{}, Clock: clk, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
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
