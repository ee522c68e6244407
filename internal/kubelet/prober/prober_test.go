package prober

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	testingclock "k8s.io/utils/clock/testing"
)

// scripted fails or succeeds per call from a script; the last entry repeats.
type scripted struct {
	mu     sync.Mutex
	script []bool
	calls  int
}

func (s *scripted) Check(context.Context, *v1.Probe, Target) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ok := s.script[min(s.calls, len(s.script)-1)]
	s.calls++
	if ok {
		return nil
	}
	return errors.New("probe failed")
}

func (s *scripted) n() int { s.mu.Lock(); defer s.mu.Unlock(); return s.calls }

func TestThresholds(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Unix(0, 0))
	checker := &scripted{script: []bool{true, false, false, false, true}}
	changes := make(chan types.UID, 10)
	m := NewManager(checker, clk, func(uid types.UID) { changes <- uid })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &v1.Container{Name: "app", ReadinessProbe: &v1.Probe{PeriodSeconds: 1, FailureThreshold: 3}}
	m.Ensure(ctx, Target{PodUID: "u", ContainerID: "c1", Container: c})
	m.Ensure(ctx, Target{PodUID: "u", ContainerID: "c1", Container: c}) // idempotent

	// want[i] is the result after probe i+1.
	want := []bool{true, true, true, false, true}
	for i, w := range want {
		waitCalls(t, checker, clk, i+1)
		r, known := m.Result("c1", Readiness)
		if !known || r != w {
			t.Fatalf("after probe %d: result %v known %v, want %v", i+1, r, known, w)
		}
	}
	if got := len(changes); got != 3 {
		t.Errorf("onChange called %d times, want 3 (unknown→ready, ready→unready, unready→ready)", got)
	}
	m.RetainPod("u", nil)
	if _, known := m.Result("c1", Readiness); known {
		t.Error("result kept after the container is gone")
	}
}

// waitCalls waits until the checker ran n times, stepping the clock
// whenever the worker is parked on its ticker.
func waitCalls(t *testing.T, c *scripted, clk *testingclock.FakeClock, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for c.n() < n {
		if time.Now().After(deadline) {
			t.Fatalf("checker ran %d times, want %d", c.n(), n)
		}
		if clk.HasWaiters() && c.n() < n {
			clk.Step(time.Second)
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(5 * time.Millisecond) // let the worker record the result
}
