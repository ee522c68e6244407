package scheduler

import (
	"sync"
	"testing"
	"time"
)

// TestBindWorkers: Go never waits (more jobs than idle workers all run at
// once), finished workers wait idle up to maxIdle and take the next job,
// and idle workers leave after idleTimeout.
func TestBindWorkers(t *testing.T) {
	p := &bindWorkers{maxIdle: 3, idleTimeout: 2 * time.Second}
	const n = 8
	var started sync.WaitGroup
	started.Add(n)
	release := make(chan struct{})
	var done sync.WaitGroup
	done.Add(n)
	for range n {
		p.Go(func() {
			started.Done()
			<-release
			done.Done()
		})
	}
	waitOrFail(t, "all jobs running at once", func() { started.Wait() })
	close(release)
	waitOrFail(t, "all jobs done", func() { done.Wait() })
	waitFor(t, "3 idle workers", func() bool { return p.idleCount() == 3 })

	ran := make(chan struct{})
	hold := make(chan struct{})
	p.Go(func() { close(ran); <-hold })
	<-ran
	if got := p.idleCount(); got != 2 {
		t.Fatalf("a job on an idle worker left %d idle, want 2", got)
	}
	close(hold)
	waitFor(t, "worker back idle", func() bool { return p.idleCount() == 3 })
	waitFor(t, "idle workers retired", func() bool { return p.idleCount() == 0 })
	// The pool still runs work after its workers left.
	ran2 := make(chan struct{})
	p.Go(func() { close(ran2) })
	waitOrFail(t, "job after retirement", func() { <-ran2 })
}

func waitOrFail(t *testing.T, what string, f func()) {
	t.Helper()
	ch := make(chan struct{})
	go func() { f(); close(ch) }()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}
