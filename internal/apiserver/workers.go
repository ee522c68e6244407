package apiserver

import (
	"net/http"
	"runtime"
	"sync"
	"time"
)

// Request workers.
//
// net/http's HTTP/2 server (and the in-process transport) runs every
// request on a goroutine of its own, which starts with a small stack. A
// write request goes deep (decoding, field management's structured merge,
// protobuf Size/Marshal of a pod), so that stack is grown several times,
// and each growth copies every frame (runtime.copystack, 3-4% of the
// server's CPU in the controllers benchmark). Go's adaptive initial stack
// size does not help: it follows the average goroutine, and most of this
// process's goroutines are idle watchers with small stacks.
//
// A workerPool runs handlers on goroutines that outlive their requests
// and keep their grown stacks: the request's own goroutine hands the
// handler to an idle worker (or a new one) and waits for it. The pool
// keeps at most maxIdle idle workers, each for at most idleTimeout, so a
// quiet server holds none. What the caller sees does not change: the
// handler gets the same ResponseWriter and *http.Request (its context and
// cancellation included), a panic the handler does not recover is
// re-raised with the same value on the caller's goroutine (net/http's
// http.ErrAbortHandler handling and the recover filter behave as before),
// and runtime.Goexit in the handler ends the caller's goroutine too.
//
// The garbage collector halves the stack of a goroutine that uses less
// than a quarter of it when it is scanned, which would undo the point of
// keeping a worker between requests: a worker therefore waits for work
// beneath a stackReserve-byte frame, so a stack of up to 4*stackReserve
// is never shrunk while the worker idles (the trick of CockroachDB's
// growstack package, used the other way round).
type workerPool struct {
	maxIdle     int
	idleTimeout time.Duration

	mu sync.Mutex
	// idle workers, most recently parked last: work goes to the warmest
	// one; the coldest time out first.
	idle []*worker
	// live counts workers (busy or idle), for tests and metrics.
	live int
}

const (
	// defaultMaxIdleWorkers bounds the stacks kept while idle (each up to
	// 4*stackReserve).
	defaultMaxIdleWorkers = 64
	defaultWorkerIdle     = 10 * time.Second
	// stackReserve is the frame an idle worker waits beneath (see above).
	// A pod write needs 16-32 KiB of stack.
	stackReserve = 16 << 10
)

func newWorkerPool(maxIdle int, idleTimeout time.Duration) *workerPool {
	return &workerPool{maxIdle: maxIdle, idleTimeout: idleTimeout}
}

type worker struct {
	pool *workerPool
	jobs chan job // capacity 1: the caller that took the worker never waits
	// timer ends an idle period; only the worker's goroutine touches it.
	timer *time.Timer
}

type job struct {
	h http.Handler
	w http.ResponseWriter
	r *http.Request
	// done is the caller's (capacity 1): the worker is back on the idle
	// list, possibly serving another caller, before this one reads it.
	done chan outcome
}

// outcomeChans are the callers' done channels, reused.
var outcomeChans = sync.Pool{New: func() any { return make(chan outcome, 1) }}

// outcome is how a job ended.
type outcome struct {
	state  uint8
	panicV any
}

const (
	returned uint8 = iota
	panicked
	exited // runtime.Goexit
)

// serve runs h.ServeHTTP(w, r) on a worker and returns when it has.
func (p *workerPool) serve(h http.Handler, w http.ResponseWriter, r *http.Request) {
	done := outcomeChans.Get().(chan outcome)
	p.take().jobs <- job{h: h, w: w, r: r, done: done}
	o := <-done
	outcomeChans.Put(done)
	switch o.state {
	case panicked:
		panic(o.panicV)
	case exited:
		runtime.Goexit()
	}
}

// take returns an idle worker, or starts one.
func (p *workerPool) take() *worker {
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
func (p *workerPool) park(wk *worker) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.idle) >= p.maxIdle {
		p.live--
		return false
	}
	p.idle = append(p.idle, wk)
	return true
}

// retire takes wk off the idle list after its idle timeout; false if a
// caller took it in the meantime (its job is on the way).
func (p *workerPool) retire(wk *worker) bool {
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

// counts reports the live and idle workers.
func (p *workerPool) counts() (live, idle int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.live, len(p.idle)
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
		// Idle before the caller wakes up: a request arriving meanwhile
		// finds this worker rather than starting another.
		parked := wk.pool.park(wk)
		j.done <- o
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
			// A caller took this worker as the timer fired: its job is
			// on the way.
		}
	}
}

// run serves one job and returns how it ended. If the handler calls
// runtime.Goexit, run does not return: the worker's goroutine ends, after
// telling the caller to end its own.
func (wk *worker) run(j job) (o outcome) {
	normal := false
	defer func() {
		if normal {
			return
		}
		if v := recover(); v != nil {
			o = outcome{state: panicked, panicV: v}
			return
		}
		// Neither a return nor a panic: runtime.Goexit, which a deferred
		// call cannot stop.
		wk.pool.mu.Lock()
		wk.pool.live--
		wk.pool.mu.Unlock()
		j.done <- outcome{state: exited}
	}()
	j.h.ServeHTTP(j.w, j.r)
	normal = true
	return outcome{state: returned}
}
