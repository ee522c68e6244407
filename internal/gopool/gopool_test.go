package gopool

import (
	"errors"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// goid is the current goroutine's id, from its stack header.
func goid() string {
	var b [64]byte
	n := runtime.Stack(b[:], false)
	return strings.Fields(string(b[:n]))[1]
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestDoReusesWorker(t *testing.T) {
	p := New(4, time.Minute)
	caller := goid()
	var ran []string
	for range 5 {
		p.Do(func() { ran = append(ran, goid()) })
	}
	for i, g := range ran {
		if g == caller {
			t.Fatalf("call %d ran on the caller's goroutine", i)
		}
		if g != ran[0] {
			t.Fatalf("call %d ran on goroutine %s, call 0 on %s: the worker was not reused", i, g, ran[0])
		}
	}
	if live, idle := p.Counts(); live != 1 || idle != 1 {
		t.Fatalf("live %d idle %d workers after sequential calls, want 1 and 1", live, idle)
	}
}

// Do returns only after its own function did, under churn: many callers,
// few idle workers.
func TestDoWaitsForItsFunction(t *testing.T) {
	p := New(2, time.Minute)
	var wg sync.WaitGroup
	var bad atomic.Int64
	for range 8 {
		wg.Go(func() {
			for range 2000 {
				wrote := false
				p.Do(func() {
					runtime.Gosched()
					wrote = true
				})
				if !wrote {
					bad.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if n := bad.Load(); n > 0 {
		t.Fatalf("%d of 16000 Do calls returned before their function ran", n)
	}
}

func TestDoPanicPropagates(t *testing.T) {
	p := New(4, time.Minute)
	boom := errors.New("boom")
	for _, v := range []any{boom, "text", 42} {
		got := func() (got any) {
			defer func() { got = recover() }()
			p.Do(func() { panic(v) })
			return nil
		}()
		if got != v {
			t.Fatalf("caller recovered %v, want the function's panic value %v", got, v)
		}
	}
	// The worker survives a panic and runs the next call.
	ran := false
	p.Do(func() { ran = true })
	if !ran {
		t.Fatal("no call ran after the panics")
	}
	if live, idle := p.Counts(); live != 1 || idle != 1 {
		t.Fatalf("live %d idle %d after panics, want one worker reused", live, idle)
	}
}

func TestDoGoexitEndsCaller(t *testing.T) {
	p := New(4, time.Minute)
	var after atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.Do(runtime.Goexit)
		after.Store(true)
	}()
	<-done
	if after.Load() {
		t.Fatal("Do returned normally after the function called runtime.Goexit")
	}
	if live, idle := p.Counts(); live != 0 || idle != 0 {
		t.Fatalf("live %d idle %d after Goexit, want the worker gone", live, idle)
	}
}

func TestDoBoundsIdleAndTimesOut(t *testing.T) {
	base := runtime.NumGoroutine()
	p := New(3, 100*time.Millisecond)
	const n = 10
	var wg sync.WaitGroup
	release := make(chan struct{})
	var inside sync.WaitGroup
	inside.Add(n)
	for range n {
		wg.Go(func() {
			p.Do(func() {
				inside.Done()
				<-release
			})
		})
	}
	inside.Wait()
	if live, idle := p.Counts(); live != n || idle != 0 {
		t.Fatalf("%d concurrent calls: live %d idle %d, want %d busy workers", n, live, idle, n)
	}
	close(release)
	wg.Wait()
	waitFor(t, "the surplus workers to exit", func() bool {
		live, idle := p.Counts()
		return live == 3 && idle == 3
	})
	waitFor(t, "idle workers to time out", func() bool {
		live, idle := p.Counts()
		return live == 0 && idle == 0
	})
	waitFor(t, "worker goroutines to end", func() bool { return runtime.NumGoroutine() <= base })
}

// A worker taken as its idle timer fires must still run the job.
func TestTimeoutRace(t *testing.T) {
	p := New(2, time.Millisecond)
	var ran atomic.Int64
	for i := range 300 {
		p.Do(func() { ran.Add(1) })
		time.Sleep(time.Duration(i%3) * 500 * time.Microsecond)
	}
	if ran.Load() != 300 {
		t.Fatalf("ran %d of 300", ran.Load())
	}
	waitFor(t, "idle workers to time out", func() bool {
		live, _ := p.Counts()
		return live == 0
	})
}

// Go never waits (more jobs than idle workers all run at once), finished
// workers wait idle up to maxIdle and take the next job, and idle workers
// leave after idleTimeout.
func TestGo(t *testing.T) {
	p := New(3, 2*time.Second)
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
	waitOrFail(t, "all jobs running at once", started.Wait)
	close(release)
	waitOrFail(t, "all jobs done", done.Wait)
	idle := func() int { _, i := p.Counts(); return i }
	waitFor(t, "3 idle workers", func() bool { return idle() == 3 })

	ran := make(chan struct{})
	hold := make(chan struct{})
	p.Go(func() { close(ran); <-hold })
	<-ran
	if got := idle(); got != 2 {
		t.Fatalf("a job on an idle worker left %d idle, want 2", got)
	}
	close(hold)
	waitFor(t, "worker back idle", func() bool { return idle() == 3 })
	waitFor(t, "idle workers retired", func() bool { live, i := p.Counts(); return live == 0 && i == 0 })
	// The pool still runs work after its workers left.
	ran2 := make(chan struct{})
	p.Go(func() { close(ran2) })
	waitOrFail(t, "job after retirement", func() { <-ran2 })
}

// A Go job that ends its goroutine with runtime.Goexit takes its worker
// out of the pool.
func TestGoGoexit(t *testing.T) {
	p := New(3, time.Minute)
	p.Go(runtime.Goexit)
	waitFor(t, "the worker to leave", func() bool { live, idle := p.Counts(); return live == 0 && idle == 0 })
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

// deep uses about n KiB of stack.
//
//go:noinline
func deep(n int) byte {
	var b [1000]byte
	b[n%len(b)] = byte(n)
	if n == 0 {
		return b[0]
	}
	return deep(n-1) + b[n%len(b)]
}

// BenchmarkDeep compares a function that needs ~40 KiB of stack run the
// way net/http runs a handler (a new goroutine per request) with and
// without the pool: without it, every call grows a fresh stack 8 -> 64
// KiB.
func BenchmarkDeep(b *testing.B) {
	run := func(b *testing.B, call func()) {
		done := make(chan struct{})
		for i := 0; i < b.N; i++ {
			go func() {
				call()
				done <- struct{}{}
			}()
			<-done
			if i%100 == 99 {
				b.StopTimer()
				runtime.GC() // as a busy server does: idle stacks are shrinkable
				b.StartTimer()
			}
		}
	}
	b.Run("goroutine", func(b *testing.B) {
		run(b, func() { deep(40) })
	})
	b.Run("pool", func(b *testing.B) {
		p := New(4, time.Minute)
		run(b, func() { p.Do(func() { deep(40) }) })
	})
}
