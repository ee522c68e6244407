// Package gopool runs functions on goroutines that outlive them and keep
// their grown stacks.
//
// A goroutine starts with a small stack; work that goes deep (an API
// request's decoding, structured merge and protobuf Size/Marshal of a
// pod; client-go's request path) grows it several times, and each growth
// copies every frame (runtime.copystack: 3-4% of the CPU of the
// controllers benchmark when every request and every binding ran on a
// goroutine of its own). Go's adaptive initial stack size does not help
// in skiff: it follows the average goroutine, and most of a server's
// goroutines are idle watchers with small stacks.
//
// A Pool hands each function to an idle worker, or starts one when none
// is idle, so it never queues work behind other work. It keeps at most
// maxIdle idle workers, each for at most idleTimeout, so a quiet process
// holds none. The garbage collector halves the stack of a goroutine that
// uses less than a quarter of it, which would undo the point of keeping a
// worker: a worker therefore waits for work beneath a stackReserve-byte
// frame, so a stack of up to 4*stackReserve is never shrunk while it
// idles (the trick of CockroachDB's growstack package, used the other way
// round).
package gopool

import (
	"runtime"
	"sync"
	"time"
)

// stackReserve is the frame an idle worker waits beneath. A pod write
// needs 16-32 KiB of stack.
const stackReserve = 16 << 10

// Pool is a set of reusable worker goroutines. The zero value is not
// usable; call New.
type Pool struct {
	maxIdle     int
	idleTimeout time.Duration

	mu sync.Mutex
	// idle workers, most recently parked last: work goes to the warmest
	// one; the coldest time out first.
	idle []*worker
	// live counts workers, busy or idle.
	live int
}

// New returns a pool keeping at most maxIdle idle workers, each for at
// most idleTimeout.
func New(maxIdle int, idleTimeout time.Duration) *Pool {
	return &Pool{maxIdle: maxIdle, idleTimeout: idleTimeout}
}

type worker struct {
	pool *Pool
	jobs chan job // capacity 1: whoever took the worker never waits
	// timer ends an idle period; only the worker's goroutine touches it.
	timer *time.Timer
}

type job struct {
	f func()
	// done is Do's caller's (capacity 1), nil for Go: the worker is back
	// on the idle list, possibly running other work, before the caller
	// reads it.
	done chan outcome
}

// outcomeChans are Do's callers' done channels, reused.
var outcomeChans = sync.Pool{New: func() any { return make(chan outcome, 1) }}

// outcome is how a Do job ended.
type outcome struct {
	state  uint8
	panicV any
}

const (
	returned uint8 = iota
	panicked
	exited // runtime.Goexit
)

// Go runs f on a worker and returns at once. As with a go statement, a
// panic in f that f does not recover ends the process.
func (p *Pool) Go(f func()) {
	p.take().jobs <- job{f: f}
}

// Do runs f on a worker and returns when f has. To the caller it behaves
// like calling f: a panic f does not recover is re-raised here with the
// same value, and runtime.Goexit in f ends the caller's goroutine too.
func (p *Pool) Do(f func()) {
	done := outcomeChans.Get().(chan outcome)
	p.take().jobs <- job{f: f, done: done}
	o := <-done
	outcomeChans.Put(done)
	switch o.state {
	case panicked:
		panic(o.panicV)
	case exited:
		runtime.Goexit()
	}
}

// Counts reports the live (busy or idle) and idle workers.
func (p *Pool) Counts() (live, idle int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.live, len(p.idle)
}

// take returns an idle worker, or starts one.
func (p *Pool) take() *worker {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		wk := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return wk
	}
	p.live++
	p.mu.Unlock()
	wk := &worker{pool: p, jobs: make(chan job, 1)}
	go wk.start()
	return wk
}

// park puts wk on the idle list; false if the list is full (the worker
// then exits).
func (p *Pool) park(wk *worker) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.idle) >= p.maxIdle {
		p.live--
		return false
	}
	p.idle = append(p.idle, wk)
	return true
}

// retire takes wk off the idle list after its idle timeout; false if
// someone took it in the meantime (its job is on the way).
func (p *Pool) retire(wk *worker) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, x := range p.idle {
		if x == wk {
			copy(p.idle[i:], p.idle[i+1:])
			p.idle[len(p.idle)-1] = nil
			p.idle = p.idle[:len(p.idle)-1]
			p.live--
			return true
		}
	}
	return false
}

// start reserves the stack frame the worker idles beneath, then loops.
func (wk *worker) start() {
	var reserve [stackReserve]byte
	wk.loop(&reserve)
}

//go:noinline
func (wk *worker) loop(reserve *[stackReserve]byte) {
	_ = reserve
	j := <-wk.jobs
	for {
		o := wk.run(j)
		// Idle before Do's caller wakes up: work arriving meanwhile finds
		// this worker rather than starting another.
		parked := wk.pool.park(wk)
		if j.done != nil {
			j.done <- o
		}
		if !parked {
			return
		}
		var ok bool
		if j, ok = wk.next(); !ok {
			return
		}
	}
}

// next waits for the next job; false if the worker timed out and left
// the pool.
func (wk *worker) next() (job, bool) {
	if wk.timer == nil {
		wk.timer = time.NewTimer(wk.pool.idleTimeout)
	} else {
		// Timers are synchronous (Go 1.23+): Reset drops an expiry left
		// from a previous idle period.
		wk.timer.Reset(wk.pool.idleTimeout)
	}
	for {
		select {
		case j := <-wk.jobs:
			return j, true
		case <-wk.timer.C:
			if wk.pool.retire(wk) {
				return job{}, false
			}
			// Someone took this worker as the timer fired: its job is on
			// the way.
		}
	}
}

// run runs one job and returns how it ended. If f calls runtime.Goexit
// (or, for Go, panics), run does not return: the worker's goroutine ends,
// leaving the pool, after telling Do's caller to end its own.
func (wk *worker) run(j job) (o outcome) {
	normal := false
	defer func() {
		if normal {
			return
		}
		if j.done != nil {
			if v := recover(); v != nil {
				o = outcome{state: panicked, panicV: v}
				return
			}
		}
		// Goexit, which a deferred call cannot stop, or a Go job's panic
		// on its way to ending the process.
		wk.pool.mu.Lock()
		wk.pool.live--
		wk.pool.mu.Unlock()
		if j.done != nil {
			j.done <- outcome{state: exited}
		}
	}()
	j.f()
	normal = true
	return outcome{state: returned}
}
