package apiserver

import (
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

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
