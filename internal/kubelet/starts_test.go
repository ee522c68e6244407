package kubelet

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// gatedCRI holds every RunPodSandbox until open is closed and counts how
// many are in flight at once; containers start at once.
type gatedCRI struct {
	*fakeCRI
	open chan struct{}

	mu                  sync.Mutex
	inflight, maxFlight int
}

func (g *gatedCRI) RunPodSandbox(ctx context.Context, r *runtimeapi.RunPodSandboxRequest, o ...grpc.CallOption) (*runtimeapi.RunPodSandboxResponse, error) {
	g.mu.Lock()
	g.inflight++
	g.maxFlight = max(g.maxFlight, g.inflight)
	g.mu.Unlock()
	<-g.open
	g.mu.Lock()
	g.inflight--
	g.mu.Unlock()
	return g.fakeCRI.RunPodSandbox(ctx, r, o...)
}

func (g *gatedCRI) flight() (now, most int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.inflight, g.maxFlight
}

func TestParallelStartsBoundSandboxesNotContainers(t *testing.T) {
	f := newFakeCRI(time.Now)
	g := &gatedCRI{fakeCRI: f, open: make(chan struct{})}
	r := &runtimeAdapter{rt: g, img: f, puller: newImagePuller(f, nil, nil), logRoot: t.TempDir(),
		sandboxStarts: make(chan struct{}, 2), containerStarts: make(chan struct{}, 2)}
	pod := func(name string) *v1.Pod {
		return &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID("uid-" + name)},
			Spec: v1.PodSpec{Containers: []v1.Container{{Name: "app", Image: "img", ImagePullPolicy: v1.PullNever}}}}
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 5)
	for _, name := range []string{"a", "b", "c", "d", "e"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := r.runSandbox(ctx, r.sandboxConfig(pod(name), 0))
			errs <- err
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for now, _ := g.flight(); now < 2; now, _ = g.flight() {
		if time.Now().After(deadline) {
			t.Fatalf("%d sandboxes in flight, want 2", now)
		}
		time.Sleep(time.Millisecond)
	}
	// With both sandbox slots held, a pod whose sandbox is up still starts
	// its container.
	p := pod("z")
	sb := r.sandboxConfig(p, 0)
	done := make(chan error, 1)
	go func() {
		_, err := r.startContainer(ctx, p, &p.Spec.Containers[0], 0, "sb-z", sb, nil, nil)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("starting a container while sandboxes wait: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a container start waited behind sandbox starts")
	}
	time.Sleep(20 * time.Millisecond) // give a third sandbox the chance to sneak in
	if now, _ := g.flight(); now != 2 {
		t.Fatalf("%d sandboxes in flight with 2 slots", now)
	}
	close(g.open)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, most := g.flight(); most != 2 {
		t.Fatalf("at most %d sandboxes were in flight, want 2", most)
	}
	if len(f.sandboxes) != 5 {
		t.Fatalf("%d sandboxes created, want 5", len(f.sandboxes))
	}
}

func TestAcquireGoesAheadAfterWaiting(t *testing.T) {
	defer func(d time.Duration) { startSlotWait = d }(startSlotWait)
	startSlotWait = 20 * time.Millisecond
	pool := make(chan struct{}, 1)
	release, err := acquire(context.Background(), pool)
	if err != nil {
		t.Fatal(err)
	}
	// The slot is held (a hung runtime call): the next start waits, then
	// goes ahead without a slot; releasing it must not free the held one.
	begin := time.Now()
	extra, err := acquire(context.Background(), pool)
	if err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(begin); waited < startSlotWait {
		t.Fatalf("went ahead after %v, want at least %v", waited, startSlotWait)
	}
	extra()
	if len(pool) != 1 {
		t.Fatalf("pool holds %d slots after releasing an unslotted start, want 1", len(pool))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := acquire(ctx, pool); err == nil {
		t.Fatal("acquire on a full pool with a cancelled context succeeded")
	}
	release()
	if len(pool) != 0 {
		t.Fatalf("pool holds %d slots after release, want 0", len(pool))
	}
}
