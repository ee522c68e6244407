package cli

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"

	"skiff.dev/skiff/internal/controllermanager"
	"skiff.dev/skiff/internal/scheduler"
	"skiff.dev/skiff/internal/server"
)

// A component's Start and Shutdown do not decide how long shared informers
// run: the owner's stop channel does.
func TestOwnedFactoryOutlivesComponents(t *testing.T) {
	client := fake.NewClientset()
	owner := make(chan struct{})
	f := ownedFactory{informers.NewSharedInformerFactory(client, 0), owner}
	inf := f.Core().V1().Pods().Informer()
	component := make(chan struct{})
	f.Start(component)
	if !cache.WaitForCacheSync(owner, inf.HasSynced) {
		t.Fatal("informer did not sync")
	}
	close(component)
	f.Shutdown()
	if _, err := client.CoreV1().Pods("default").Create(context.Background(), &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, ok, _ := inf.GetStore().GetByKey("default/p"); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("informer stopped with the component's channel: the pod created afterwards never arrived")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if inf.IsStopped() {
		t.Fatal("informer stopped before its owner")
	}
	close(owner)
	for !inf.IsStopped() {
		if time.Now().After(deadline) {
			t.Fatal("informer still running after its owner stopped")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// skiff server's controller manager and scheduler are built on one
// informer factory; a rebuilt component (the supervisor's restart) gets
// one of its own.
func TestServerComponentsShareInformers(t *testing.T) {
	s := runServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := s.Config()
	cfg.DisableControllerManager, cfg.DisableScheduler, cfg.DisableAgent = false, false, true
	fs := components(cfg)
	if len(fs) != 2 {
		t.Fatalf("%d component factories, want controller manager and scheduler", len(fs))
	}
	build := func(f server.ComponentFactory) server.Component {
		t.Helper()
		c, err := f(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	cm := build(fs[0]).(*controllermanager.ControllerManager)
	sched := build(fs[1]).(*scheduler.Scheduler)
	if cm.SharedInformers() == nil || cm.SharedInformers() != sched.Informers() {
		t.Fatalf("controller manager informers %v, scheduler's %v: not one factory", cm.SharedInformers(), sched.Informers())
	}
	cm2 := build(fs[0]).(*controllermanager.ControllerManager)
	sched2 := build(fs[1]).(*scheduler.Scheduler)
	if cm2.SharedInformers() != nil {
		t.Fatal("rebuilt controller manager got the shared informers again (its first run's handlers are still on them)")
	}
	if sched2.Informers() == sched.Informers() {
		t.Fatal("rebuilt scheduler got the shared informers again")
	}
}

// runServer runs an API server without components until the test ends.
func runServer(t *testing.T) *server.Server {
	t.Helper()
	port := func() int {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port
	}
	s, err := server.New(server.Config{
		DataDir: t.TempDir(), BindAddress: "127.0.0.1", AdvertiseAddress: "127.0.0.1",
		HTTPSPort: port(), EtcdClientPort: port(), EtcdPeerPort: port(),
		DisableAgent: true, DisableControllerManager: true, DisableScheduler: true,
		UnsafeNoFsync: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(time.Minute):
			t.Error("server did not stop within a minute")
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for !s.Ready() {
		select {
		case err := <-done:
			t.Fatalf("server exited during start: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("server not ready after 30s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return s
}
