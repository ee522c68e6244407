package inprocess

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"skiff.dev/skiff/internal/apiserver/authn"
)

var testUser = &authn.User{Name: "system:admin", Groups: []string{"system:masters", "system:authenticated"}}

func newTransport(t *testing.T, h http.Handler) *Transport {
	t.Helper()
	tr, err := New(h, testUser)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// checkNoLeak fails the test if goroutines started during it are still
// running a few seconds after it ended (handlers and their pipes).
func checkNoLeak(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for {
			n := runtime.NumGoroutine()
			if n <= before {
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				t.Errorf("%d goroutines before, %d after:\n%s", before, n, buf)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

type closeTracker struct {
	io.Reader
	closed atomic.Bool
}

func (c *closeTracker) Close() error { c.closed.Store(true); return nil }

func TestRoundTrip(t *testing.T) {
	checkNoLeak(t)
	var seen struct {
		method, path, rawQuery, host, requestURI, accept, remote string
		urlHost                                                  string
		body                                                     []byte
		length                                                   int64
		user                                                     *authn.User
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.method, seen.path, seen.rawQuery = r.Method, r.URL.Path, r.URL.RawQuery
		seen.host, seen.requestURI, seen.accept = r.Host, r.RequestURI, r.Header.Get("Accept")
		seen.urlHost, seen.remote, seen.length = r.URL.Host, r.RemoteAddr, r.ContentLength
		seen.body, _ = io.ReadAll(r.Body)
		seen.user, _ = UserFrom(r.Context())
		w.Header().Set("Content-Type", "application/vnd.kubernetes.protobuf")
		w.Header().Set("X-Echo", r.Header.Get("X-Request"))
		w.WriteHeader(http.StatusCreated)
		w.Write([]byte("created:"))
		w.Write(seen.body)
		w.Header().Set("X-Too-Late", "1") // after WriteHeader: not sent, as on a connection
	})
	body := &closeTracker{Reader: strings.NewReader("hello")}
	req, err := http.NewRequest(http.MethodPost, "https://127.0.0.1:6443/api/v1/namespaces/default/pods?fieldManager=x&dryRun=All", body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = 5
	req.Header.Set("Accept", "application/vnd.kubernetes.protobuf, application/json")
	req.Header.Set("X-Request", "abc")
	resp, err := newTransport(t, h).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusCreated || resp.Status != "201 Created" {
		t.Errorf("status %d %q", resp.StatusCode, resp.Status)
	}
	if string(got) != "created:hello" || resp.ContentLength != int64(len(got)) {
		t.Errorf("body %q, ContentLength %d", got, resp.ContentLength)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/vnd.kubernetes.protobuf" {
		t.Errorf("Content-Type %q", ct)
	}
	if resp.Header.Get("X-Echo") != "abc" || resp.Header.Get("X-Too-Late") != "" {
		t.Errorf("headers %v", resp.Header)
	}
	if resp.Request != req {
		t.Error("response does not point at the request")
	}
	if seen.method != "POST" || seen.path != "/api/v1/namespaces/default/pods" || seen.rawQuery != "fieldManager=x&dryRun=All" {
		t.Errorf("handler saw %s %s ? %s", seen.method, seen.path, seen.rawQuery)
	}
	if seen.host != "127.0.0.1:6443" || seen.urlHost != "" || seen.requestURI != "/api/v1/namespaces/default/pods?fieldManager=x&dryRun=All" {
		t.Errorf("handler saw Host %q URL.Host %q RequestURI %q", seen.host, seen.urlHost, seen.requestURI)
	}
	if seen.accept != "application/vnd.kubernetes.protobuf, application/json" || string(seen.body) != "hello" || seen.length != 5 {
		t.Errorf("handler saw Accept %q body %q length %d", seen.accept, seen.body, seen.length)
	}
	if seen.user != testUser {
		t.Errorf("handler saw user %+v, want the transport's", seen.user)
	}
	if seen.remote == "" {
		t.Error("RemoteAddr is empty")
	}
	if !body.closed.Load() {
		t.Error("request body not closed")
	}
	if req.URL.Host != "127.0.0.1:6443" || req.URL.Scheme != "https" || req.Host != "127.0.0.1:6443" || req.RequestURI != "" {
		t.Error("the client's request was modified")
	}
}

func TestUserOnlyFromTransport(t *testing.T) {
	if _, ok := UserFrom(context.Background()); ok {
		t.Fatal("a plain context claims an in-process user")
	}
	// authn's own context value is not the in-process one.
	if _, ok := UserFrom(authn.WithUser(context.Background(), testUser)); ok {
		t.Fatal("authn.WithUser is taken for an in-process user")
	}
	if _, err := New(http.NotFoundHandler(), nil); err == nil {
		t.Error("New accepted a nil user")
	}
	if _, err := New(nil, testUser); err == nil {
		t.Error("New accepted a nil handler")
	}
}

func TestResponseShapes(t *testing.T) {
	checkNoLeak(t)
	tr := newTransport(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/sniff":
			w.Write([]byte("<html><body>x</body></html>"))
		case "/nocontent":
			w.WriteHeader(http.StatusNoContent)
			if _, err := w.Write([]byte("x")); !errors.Is(err, http.ErrBodyNotAllowed) {
				panic(fmt.Sprintf("write on 204: %v", err))
			}
		case "/empty":
		case "/head":
			w.Header().Set("Content-Length", "3")
			w.Write([]byte("abc"))
		case "/twice":
			w.WriteHeader(http.StatusTooManyRequests)
			w.WriteHeader(http.StatusOK)
			w.Write([]byte("x"))
		case "/chunked":
			w.Header().Set("Transfer-Encoding", "chunked")
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte("{}"))
		}
	}))
	for _, tc := range []struct {
		method, path string
		code         int
		body, ct     string
		length       int64
	}{
		{"GET", "/sniff", 200, "<html><body>x</body></html>", "text/html; charset=utf-8", 27},
		{"GET", "/nocontent", 204, "", "", 0},
		{"GET", "/empty", 200, "", "", 0},
		{"HEAD", "/head", 200, "", "text/plain; charset=utf-8", 3},
		{"GET", "/twice", 429, "x", "text/plain; charset=utf-8", 1},
		{"GET", "/chunked", 200, "{}", "application/json", 2},
	} {
		req, _ := http.NewRequest(tc.method, "http://x"+tc.path, nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatalf("%s %s: %v", tc.method, tc.path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code || string(b) != tc.body || resp.Header.Get("Content-Type") != tc.ct || resp.ContentLength != tc.length {
			t.Errorf("%s %s: %d %q Content-Type %q length %d; want %d %q %q %d", tc.method, tc.path, resp.StatusCode, b, resp.Header.Get("Content-Type"), resp.ContentLength, tc.code, tc.body, tc.ct, tc.length)
		}
		if _, ok := resp.Header["Transfer-Encoding"]; ok {
			t.Errorf("%s: Transfer-Encoding left in the response header", tc.path)
		}
	}
}

// TestWatchStreamsIncrementally: each flushed event reaches the client
// while the handler is still running, before it writes the next one;
// closing the body ends the handler promptly.
func TestWatchStreamsIncrementally(t *testing.T) {
	checkNoLeak(t)
	next := make(chan struct{})
	handlerDone := make(chan error, 1)
	tr := newTransport(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Transfer-Encoding", "chunked")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		for i := 0; ; i++ {
			select {
			case <-next:
			case <-r.Context().Done():
				handlerDone <- r.Context().Err()
				return
			}
			if _, err := fmt.Fprintf(w, "{\"event\":%d}\n", i); err != nil {
				handlerDone <- err
				return
			}
			w.(http.Flusher).Flush()
		}
	}))
	req, _ := http.NewRequest("GET", "http://x/api/v1/pods?watch=true", nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.ContentLength != -1 || resp.StatusCode != 200 {
		t.Fatalf("streaming response: status %d length %d", resp.StatusCode, resp.ContentLength)
	}
	buf := make([]byte, 100)
	for i := 0; i < 3; i++ {
		next <- struct{}{}
		n, err := resp.Body.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("{\"event\":%d}\n", i); string(buf[:n]) != want {
			t.Fatalf("read %q, want %q", buf[:n], want)
		}
	}
	// Nothing more was written: a read now would wait.
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		if n, err := resp.Body.Read(buf); err == nil || n != 0 {
			t.Errorf("read after close: %d, %v", n, err)
		}
	}()
	select {
	case <-readDone:
		t.Fatal("read returned with nothing written")
	case <-time.After(50 * time.Millisecond):
	}
	resp.Body.Close()
	select {
	case err := <-handlerDone:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("handler ended with %v, want its context cancelled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("handler still running after the body was closed")
	}
	<-readDone
}

// TestWatchEndsWithRequestContext: cancelling the request's context ends
// a streaming handler and fails the client's read.
func TestWatchEndsWithRequestContext(t *testing.T) {
	checkNoLeak(t)
	handlerDone := make(chan struct{})
	tr := newTransport(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(handlerDone)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://x/watch", nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	go func() {
		time.Sleep(20 * time.Millisecond)
		cancel()
	}()
	if _, err := resp.Body.Read(make([]byte, 10)); !errors.Is(err, context.Canceled) {
		t.Errorf("read: %v, want context.Canceled", err)
	}
	select {
	case <-handlerDone:
	case <-time.After(5 * time.Second):
		t.Fatal("handler still running after the request context ended")
	}
}

// TestCancelBeforeResponse: RoundTrip returns the context's error while
// the handler has not answered yet, and the handler sees it.
func TestCancelBeforeResponse(t *testing.T) {
	checkNoLeak(t)
	handlerErr := make(chan error, 1)
	tr := newTransport(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
		handlerErr <- r.Context().Err()
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://x/slow", nil)
	start := time.Now()
	_, err := tr.RoundTrip(req)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("RoundTrip: %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("RoundTrip returned after %v", d)
	}
	select {
	case err := <-handlerErr:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("handler context: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("handler never saw the deadline")
	}
	// An already-ended context does not reach the handler at all.
	req, _ = http.NewRequestWithContext(ctx, "GET", "http://x/slow", nil)
	if _, err := tr.RoundTrip(req); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("RoundTrip with an ended context: %v", err)
	}
}

// TestClientTimeout: http.Client's Timeout works as over the network.
func TestClientTimeout(t *testing.T) {
	checkNoLeak(t)
	c := &http.Client{Transport: newTransport(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
			w.Write([]byte("late"))
		}
	})), Timeout: 50 * time.Millisecond}
	start := time.Now()
	_, err := c.Get("http://x/slow")
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Get: %v, want a timeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("timed out after %v", d)
	}
}

func TestLargeBodies(t *testing.T) {
	checkNoLeak(t)
	in := make([]byte, 20<<20)
	rand.Read(in)
	tr := newTransport(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			panic(err)
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		// Many small writes, never flushed: more than the handler buffers.
		for len(b) > 0 {
			n := min(len(b), 1000)
			w.Write(b[:n])
			b = b[n:]
		}
	}))
	req, _ := http.NewRequest("PUT", "http://x/big", bytes.NewReader(in))
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(in, out) {
		t.Fatalf("echoed %d bytes differ from the %d sent", len(out), len(in))
	}
}

// TestSlowReaderHoldsBackWriter: a streaming handler cannot get more than
// the pipe's bound ahead of a reader that does not read.
func TestSlowReaderHoldsBackWriter(t *testing.T) {
	checkNoLeak(t)
	var written atomic.Int64
	done := make(chan error, 1)
	chunk := make([]byte, 64<<10)
	tr := newTransport(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i < 1000; i++ {
			if _, err := w.Write(chunk); err != nil {
				done <- err
				return
			}
			w.(http.Flusher).Flush()
			written.Add(int64(len(chunk)))
		}
		done <- nil
	}))
	req, _ := http.NewRequest("GET", "http://x/stream", nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if w := written.Load(); w > maxPipeBuffer+int64(len(chunk)) {
		t.Errorf("handler wrote %d bytes ahead of a reader that read nothing (bound %d)", w, maxPipeBuffer)
	}
	// Reading a little lets it go on; closing stops it.
	if _, err := io.ReadFull(resp.Body, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Error("handler wrote everything into a closed body")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("handler blocked after the body was closed")
	}
}

func TestHandlerPanics(t *testing.T) {
	checkNoLeak(t)
	tr := newTransport(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/after-flush" {
			w.Write([]byte("partial"))
			w.(http.Flusher).Flush()
		}
		panic(http.ErrAbortHandler)
	}))
	req, _ := http.NewRequest("GET", "http://x/before", nil)
	if _, err := tr.RoundTrip(req); err == nil || !strings.Contains(err.Error(), "panicked") {
		t.Errorf("RoundTrip of a panicking handler: %v", err)
	}
	req, _ = http.NewRequest("GET", "http://x/after-flush", nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "partial" || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("read %q, %v; want the flushed part and an unexpected EOF", b, err)
	}
}

// TestClose: closing the transport (the server stopping) cancels what is
// in flight, streams included, and fails later requests.
func TestClose(t *testing.T) {
	checkNoLeak(t)
	tr := newTransport(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/watch" {
			w.Write([]byte("event"))
			w.(http.Flusher).Flush()
		}
		<-r.Context().Done()
	}))
	req, _ := http.NewRequest("GET", "http://x/watch", nil)
	stream, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	blocked := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest("GET", "http://x/slow", nil)
		_, err := tr.RoundTrip(req)
		blocked <- err
	}()
	time.Sleep(20 * time.Millisecond)
	tr.Close()
	select {
	case err := <-blocked:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("request in flight: %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("request in flight not ended by Close")
	}
	b, err := io.ReadAll(stream.Body)
	if string(b) != "event" || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("stream after Close: %q, %v; want what was flushed, then an unexpected EOF", b, err)
	}
	req, _ = http.NewRequest("GET", "http://x/after", nil)
	if _, err := tr.RoundTrip(req); !errors.Is(err, ErrClosed) {
		t.Errorf("request after Close: %v", err)
	}
}

func TestUpgradeRefused(t *testing.T) {
	called := false
	tr := newTransport(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { called = true }))
	req, _ := http.NewRequest("POST", "http://x/api/v1/namespaces/a/pods/b/exec", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "SPDY/3.1")
	if _, err := tr.RoundTrip(req); !errors.Is(err, ErrUpgradeNotSupported) {
		t.Errorf("RoundTrip: %v", err)
	}
	if called {
		t.Error("handler called for an upgrade")
	}
}

// TestConcurrent runs short requests and streams at once (run with -race).
func TestConcurrent(t *testing.T) {
	checkNoLeak(t)
	tr := newTransport(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.URL.Query().Get("watch") == "1" {
			for i := 0; i < 20; i++ {
				w.Write(b)
				w.(http.Flusher).Flush()
			}
			return
		}
		w.Write(b)
	}))
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				msg := fmt.Sprintf("g%d-i%d;", g, i)
				watch := i%5 == 0
				url := "http://x/echo"
				want := msg
				if watch {
					url += "?watch=1"
					want = strings.Repeat(msg, 20)
				}
				req, _ := http.NewRequest("POST", url, strings.NewReader(msg))
				resp, err := tr.RoundTrip(req)
				if err != nil {
					t.Error(err)
					return
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || string(b) != want {
					t.Errorf("got %q, %v; want %q", b, err, want)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func BenchmarkRoundTrip(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 4096)
	tr, _ := New(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}), testUser)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		req, _ := http.NewRequest("PUT", "http://x/api/v1/namespaces/default/pods/p/status", bytes.NewReader(body))
		resp, err := tr.RoundTrip(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}
