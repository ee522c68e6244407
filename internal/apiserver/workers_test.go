package apiserver

import (
	"context"
	"errors"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"skiff.dev/skiff/internal/registry"
	"skiff.dev/skiff/internal/registry/core"
	"skiff.dev/skiff/internal/registry/generic"
)

// goid is the current goroutine's id, from its stack header.
func goid() string {
	var b [64]byte
	n := runtime.Stack(b[:], false)
	f := strings.Fields(string(b[:n]))
	return f[1]
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

func TestWorkerPoolReusesWorker(t *testing.T) {
	p := newWorkerPool(4, time.Minute)
	caller := goid()
	var ran []string
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ran = append(ran, goid())
		w.WriteHeader(http.StatusTeapot)
	})
	for i := 0; i < 5; i++ {
		rec := httptest.NewRecorder()
		p.serve(h, rec, httptest.NewRequest("GET", "/x", nil))
		if rec.Code != http.StatusTeapot {
			t.Fatalf("request %d: code %d, the handler's writes did not reach the caller's writer", i, rec.Code)
		}
	}
	for i, g := range ran {
		if g == caller {
			t.Fatalf("request %d ran on the caller's goroutine", i)
		}
		if g != ran[0] {
			t.Fatalf("request %d ran on goroutine %s, request 0 on %s: the worker was not reused", i, g, ran[0])
		}
	}
	if live, idle := p.counts(); live != 1 || idle != 1 {
		t.Fatalf("live %d idle %d workers after sequential requests, want 1 and 1", live, idle)
	}
}

// serve returns only after its own handler did, under churn: many
// callers, few idle workers.
func TestWorkerPoolServeWaitsForItsHandler(t *testing.T) {
	p := newWorkerPool(2, time.Minute)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runtime.Gosched()
		w.WriteHeader(http.StatusCreated)
	})
	var wg sync.WaitGroup
	var bad atomic.Int64
	for g := 0; g < 8; g++ {
		wg.Go(func() {
			for i := 0; i < 2000; i++ {
				rec := httptest.NewRecorder()
				p.serve(h, rec, httptest.NewRequest("GET", "/", nil))
				if rec.Code != http.StatusCreated {
					bad.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if n := bad.Load(); n > 0 {
		t.Fatalf("%d of 16000 serve calls returned before their handler wrote", n)
	}
}

func TestWorkerPoolSameRequestAndCancellation(t *testing.T) {
	p := newWorkerPool(4, time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	r := httptest.NewRequest("GET", "/x", nil).WithContext(ctx)
	started := make(chan struct{})
	var got *http.Request
	h := http.HandlerFunc(func(w http.ResponseWriter, r2 *http.Request) {
		got = r2
		close(started)
		<-r2.Context().Done()
	})
	done := make(chan struct{})
	go func() {
		p.serve(h, httptest.NewRecorder(), r)
		close(done)
	}()
	<-started
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("cancelling the request's context did not end the handler")
	}
	if got != r {
		t.Fatal("the handler got a different *http.Request")
	}
}

func TestWorkerPoolPanicPropagates(t *testing.T) {
	p := newWorkerPool(4, time.Minute)
	boom := errors.New("boom")
	for _, v := range []any{boom, http.ErrAbortHandler, "text"} {
		got := func() (got any) {
			defer func() { got = recover() }()
			p.serve(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic(v) }), httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
			return nil
		}()
		if got != v {
			t.Fatalf("caller recovered %v, want the handler's panic value %v", got, v)
		}
	}
	// The worker survives a panic and serves the next request.
	rec := httptest.NewRecorder()
	p.serve(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusAccepted) }), rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != http.StatusAccepted {
		t.Fatalf("after panics: code %d", rec.Code)
	}
	if live, idle := p.counts(); live != 1 || idle != 1 {
		t.Fatalf("live %d idle %d after panics, want one worker reused", live, idle)
	}
}

func TestWorkerPoolGoexitEndsCaller(t *testing.T) {
	p := newWorkerPool(4, time.Minute)
	var after atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.serve(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { runtime.Goexit() }), httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
		after.Store(true)
	}()
	<-done
	if after.Load() {
		t.Fatal("serve returned normally after the handler called runtime.Goexit")
	}
	if live, idle := p.counts(); live != 0 || idle != 0 {
		t.Fatalf("live %d idle %d after Goexit, want the worker gone", live, idle)
	}
}

func TestWorkerPoolBoundsIdleAndTimesOut(t *testing.T) {
	base := runtime.NumGoroutine()
	p := newWorkerPool(3, 100*time.Millisecond)
	const n = 10
	var wg sync.WaitGroup
	release := make(chan struct{})
	var inside sync.WaitGroup
	inside.Add(n)
	h := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		inside.Done()
		<-release
	})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.serve(h, httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
		}()
	}
	inside.Wait()
	if live, idle := p.counts(); live != n || idle != 0 {
		t.Fatalf("%d concurrent requests: live %d idle %d, want %d busy workers", n, live, idle, n)
	}
	close(release)
	wg.Wait()
	waitFor(t, "the surplus workers to exit", func() bool {
		live, idle := p.counts()
		return live == 3 && idle == 3
	})
	waitFor(t, "idle workers to time out", func() bool {
		live, idle := p.counts()
		return live == 0 && idle == 0
	})
	waitFor(t, "worker goroutines to end", func() bool { return runtime.NumGoroutine() <= base })
}

// A worker taken as its idle timer fires must still run the job.
func TestWorkerPoolTimeoutRace(t *testing.T) {
	p := newWorkerPool(2, time.Millisecond)
	var served atomic.Int64
	h := http.HandlerFunc(func(http.ResponseWriter, *http.Request) { served.Add(1) })
	for i := 0; i < 300; i++ {
		p.serve(h, httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
		time.Sleep(time.Duration(i%3) * 500 * time.Microsecond)
	}
	if served.Load() != 300 {
		t.Fatalf("served %d of 300", served.Load())
	}
	waitFor(t, "idle workers to time out", func() bool {
		live, _ := p.counts()
		return live == 0
	})
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

// BenchmarkDeepHandler compares a handler that needs ~40 KiB of stack run
// the way net/http runs it (a new goroutine per request) with and without
// the pool: without it, every request grows a fresh stack 8 -> 64 KiB.
func BenchmarkDeepHandler(b *testing.B) {
	h := http.HandlerFunc(func(http.ResponseWriter, *http.Request) { deep(40) })
	r := httptest.NewRequest("GET", "/", nil)
	run := func(b *testing.B, serve func()) {
		done := make(chan struct{})
		for i := 0; i < b.N; i++ {
			go func() {
				serve()
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
		run(b, func() { h.ServeHTTP(nil, r) })
	})
	b.Run("pool", func(b *testing.B) {
		p := newWorkerPool(4, time.Minute)
		run(b, func() { p.serve(h, nil, r) })
	})
}

// panicky panics with the value named by the subresource; "log" and
// "where" answer with the goroutine they ran on.
type panicky struct{}

func (panicky) Handle(w http.ResponseWriter, r *http.Request, ri *RequestInfo, s *Server) bool {
	switch ri.Subresource {
	case "log", "where":
		_, _ = io.WriteString(w, goid())
		return true
	case "abort":
		panic(http.ErrAbortHandler)
	case "boom":
		panic("boom")
	}
	return false
}

func newPanickyServer(t *testing.T) *Server {
	t.Helper()
	sch := registry.NewScheme()
	var stores []*generic.Store
	for _, r := range core.Resources() {
		gvr := r.StorageGVR()
		stores = append(stores, generic.NewStore(r, newMemStorage(), "/registry/"+gvr.Group+"/"+gvr.Resource))
	}
	s, err := New(Config{Scheme: sch, Stores: stores, Extra: panicky{}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Panics in handlers behave as they did without the pool: the recover
// filter answers 500 for a plain panic, http.ErrAbortHandler reaches
// net/http, which resets the stream.
func TestServerPanicsThroughWorkers(t *testing.T) {
	s := newPanickyServer(t)
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/api/v1/namespaces/ns/pods/p/boom", nil))
	if rec.Code != http.StatusInternalServerError || !strings.Contains(rec.Body.String(), `"kind":"Status"`) {
		t.Fatalf("plain panic: %d %s, want a 500 Status", rec.Code, rec.Body.String())
	}
	got := func() (v any) {
		defer func() { v = recover() }()
		s.Handler().ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/api/v1/namespaces/ns/pods/p/abort", nil))
		return nil
	}()
	if got != http.ErrAbortHandler {
		t.Fatalf("ErrAbortHandler: the caller recovered %v", got)
	}

	srv := httptest.NewUnstartedServer(s.Handler())
	srv.EnableHTTP2 = true
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	c := srv.Client()
	resp, err := c.Get(srv.URL + "/api/v1/namespaces/ns/pods/p/abort")
	if err == nil {
		resp.Body.Close()
		t.Fatalf("ErrAbortHandler over HTTP/2: got a response (%s), want the stream reset", resp.Status)
	}
	resp, err = c.Get(srv.URL + "/api/v1/namespaces/ns/pods/p/boom")
	if err != nil {
		t.Fatalf("plain panic over HTTP/2: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError || resp.ProtoMajor != 2 {
		t.Fatalf("plain panic over HTTP/2: %s %s, want 500 over HTTP/2", resp.Proto, resp.Status)
	}
}

// Long-running requests stay on their own goroutine; others go to a
// worker.
func TestServerLongRunningSkipsWorkers(t *testing.T) {
	s := newPanickyServer(t)
	for _, tc := range []struct {
		path   string
		worker bool
	}{
		{"/api/v1/namespaces/ns/pods/p/where", true},
		{"/api/v1/namespaces/ns/pods/p/log", false},
		{"/api/v1/namespaces/ns/pods/p/where?watch=true", false},
		{"/api/v1/namespaces/ns/pods/p/where?watch=false", true},
	} {
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", tc.path, nil))
		if onWorker := rec.Body.String() != goid(); onWorker != tc.worker {
			t.Errorf("%s: on a worker %v, want %v", tc.path, onWorker, tc.worker)
		}
	}
}
