package scheduler

import (
	"sync"
	"time"
)

// bindWorkers runs each pod's binding cycle (PreBind, Bind: the API call)
// on a goroutine that outlives it and keeps its grown stack. A new
// goroutine per pod, as `go s.bind(...)` was, starts with a small stack
// and grows it (copying every frame) in client-go's request path:
// runtime.copystack was 0.15-0.21 s of the 0.7 s of bind CPU per 10,000
// pods in the controllers benchmark. Concurrency is not bounded, as
// before: Go hands the job to an idle worker if there is one and starts a
// new one otherwise, so a slow API server never queues bindings behind
// each other. At most maxIdle workers wait, each for at most idleTimeout.
//
// The garbage collector halves the stack of a goroutine that uses less
// than a quarter of it, which would undo the point of keeping a worker:
// an idle worker therefore waits beneath a bindStackReserve-byte frame, so
// a stack of up to 4*bindStackReserve is not shrunk while it idles (as the
// API server's request workers do).
type bindWorkers struct {
	maxIdle     int
	idleTimeout time.Duration

	mu sync.Mutex
	// idle workers, most recently parked last: work goes to the warmest.
	idle []*bindWorker
}

const (
	defaultBindIdleWorkers = 16
	defaultBindWorkerIdle  = 10 * time.Second
	bindStackReserve       = 8 << 10
)

type bindWorker struct {
	pool *bindWorkers
	// jobs has capacity 1: Go never waits for the worker it took.
	jobs chan func()
	// timer ends an idle period; only the worker's goroutine touches it.
	timer *time.Timer
}

// Go runs f on an idle worker, or on a new one; it never blocks.
func (p *bindWorkers) Go(f func()) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		wk := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		wk.jobs <- f
		return
	}
	p.mu.Unlock()
	wk := &bindWorker{pool: p, jobs: make(chan func(), 1)}
	wk.jobs <- f
	go wk.start()
}

// idleCount reports the idle workers (tests).
func (p *bindWorkers) idleCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}

func (p *bindWorkers) park(wk *bindWorker) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.idle) >= p.maxIdle {
		return false
	}
	p.idle = append(p.idle, wk)
	return true
}

// retire takes wk off the idle list; false if Go took it meanwhile (its
// job is on the way).
func (p *bindWorkers) retire(wk *bindWorker) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, x := range p.idle {
		if x == wk {
			copy(p.idle[i:], p.idle[i+1:])
			p.idle[len(p.idle)-1] = nil
			p.idle = p.idle[:len(p.idle)-1]
			return true
		}
	}
	return false
}

// start reserves the frame the worker idles beneath, then loops.
func (wk *bindWorker) start() {
	var reserve [bindStackReserve]byte
	wk.loop(&reserve)
}

//go:noinline
func (wk *bindWorker) loop(reserve *[bindStackReserve]byte) {
	_ = reserve
	f := <-wk.jobs
	for {
		f()
		if !wk.pool.park(wk) {
			return
		}
		var ok bool
		if f, ok = wk.next(); !ok {
			return
		}
	}
}

// next waits for the next job; false if the worker timed out and left
// the idle list.
func (wk *bindWorker) next() (func(), bool) {
	if wk.timer == nil {
		wk.timer = time.NewTimer(wk.pool.idleTimeout)
	} else {
		wk.timer.Reset(wk.pool.idleTimeout) // synchronous timers (Go 1.23+)
	}
	for {
		select {
		case f := <-wk.jobs:
			return f, true
		case <-wk.timer.C:
			if wk.pool.retire(wk) {
				return nil, false
			}
		}
	}
}
