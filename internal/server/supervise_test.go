package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"
)

type fakeComponent struct {
	run func(ctx context.Context) error
}

func (f fakeComponent) Run(ctx context.Context) error { return f.run(ctx) }

func TestSuperviseRestartsComponentsThatStopAfterWorking(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var builds, runs atomic.Int32
	lost := fakeComponent{run: func(context.Context) error {
		runs.Add(1)
		time.Sleep(20 * time.Millisecond)
		return errors.New("lost leadership")
	}}
	healthy := fakeComponent{run: func(ctx context.Context) error {
		runs.Add(1)
		<-ctx.Done()
		return nil
	}}
	done := make(chan error, 1)
	go func() {
		done <- supervise(ctx, lost, func() (Component, error) {
			if builds.Add(1) == 1 {
				return lost, nil
			}
			return healthy, nil
		}, 10*time.Millisecond, log)
	}()
	deadline := time.Now().Add(8 * time.Second)
	for runs.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if runs.Load() < 3 || builds.Load() != 2 {
		t.Fatalf("runs=%d builds=%d, want the lost component rebuilt twice and running", runs.Load(), builds.Load())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("supervise after cancel = %v", err)
	}
}

func TestSuperviseFailsOnComponentsThatCannotStart(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	broken := fakeComponent{run: func(context.Context) error { return errors.New("containerd not found") }}
	err := supervise(context.Background(), broken, func() (Component, error) {
		t.Fatal("a component that failed at once was rebuilt")
		return nil, nil
	}, time.Minute, log)
	if err == nil || err.Error() != "containerd not found" {
		t.Fatalf("supervise = %v, want the component's own error", err)
	}
}
