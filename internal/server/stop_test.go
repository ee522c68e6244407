package server

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testConfig is a server on loopback with free ports and no components.
func testConfig(t testing.TB) Config {
	return Config{
		DataDir: t.TempDir(), BindAddress: "127.0.0.1", AdvertiseAddress: "127.0.0.1",
		HTTPSPort: freePort(t), EtcdClientPort: freePort(t), EtcdPeerPort: freePort(t),
		DisableAgent: true, DisableScheduler: true, DisableControllerManager: true,
		UnsafeNoFsync: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestRunWaitsForComponentsToStop: a component that needs a moment to
// clean up once cancelled (the agent stops its containerd) finishes
// before Run returns and the process can exit.
func TestRunWaitsForComponentsToStop(t *testing.T) {
	s, err := New(testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	var started, cleaned atomic.Bool
	s.Components = []ComponentFactory{func(ctx context.Context, _ *Server) (Component, error) {
		return fakeComponent{run: func(ctx context.Context) error {
			started.Store(true)
			<-ctx.Done()
			time.Sleep(300 * time.Millisecond)
			cleaned.Store(true)
			return nil
		}}, nil
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for !started.Load() {
		if time.Now().After(deadline) {
			t.Fatal("component never started")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Run did not return")
	}
	if !cleaned.Load() {
		t.Error("Run returned before its component finished stopping")
	}
}

func TestWaitTimeout(t *testing.T) {
	var wg sync.WaitGroup
	wg.Add(1)
	if waitTimeout(&wg, 20*time.Millisecond) {
		t.Error("waitTimeout reported done for a group still running")
	}
	wg.Done()
	if !waitTimeout(&wg, time.Second) {
		t.Error("waitTimeout timed out on a finished group")
	}
}
