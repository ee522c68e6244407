package apiserver

import (
	"encoding/json"
	"fmt"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"skiff.dev/skiff/internal/apiserver/authn"
	"skiff.dev/skiff/internal/apiserver/inprocess"
)

// MaxRequestBodyBytes is upstream's 3 MiB request limit.
const MaxRequestBodyBytes = 3 * 1024 * 1024

// buildHandler wires the filter chain:
// workers -> recover -> metrics -> authn -> in-flight limit -> router.
func (s *Server) buildHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", s.health(nil))
	mux.HandleFunc("/livez", s.health(nil))
	mux.HandleFunc("/readyz", s.health(s.cfg.Ready))
	mux.HandleFunc("/healthz/", s.health(nil))
	mux.HandleFunc("/livez/", s.health(nil))
	mux.HandleFunc("/readyz/", s.health(s.cfg.Ready))
	mux.HandleFunc("/version", s.version)
	mux.HandleFunc("/version/", s.version)
	mux.Handle("/metrics", s.metrics.handler())
	if s.cfg.OpenAPI != nil {
		mux.Handle("/openapi/", s.cfg.OpenAPI)
	}
	mux.HandleFunc("/api", s.serveAPI)
	mux.HandleFunc("/api/", s.serveAPI)
	mux.HandleFunc("/apis", s.serveAPI)
	mux.HandleFunc("/apis/", s.serveAPI)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/" {
			paths := []string{"/api", "/api/v1", "/apis", "/healthz", "/livez", "/metrics", "/openapi/v2", "/openapi/v3", "/readyz", "/version"}
			for _, g := range s.groups {
				if g.name == "" {
					continue
				}
				paths = append(paths, "/apis/"+g.name)
				for _, v := range g.versions {
					paths = append(paths, "/apis/"+g.name+"/"+v)
				}
			}
			writeJSON(w, http.StatusOK, metav1.RootPaths{Paths: paths})
			return
		}
		s.writeError(w, r, apierrors.NewNotFound(schemaGR(""), ""))
	})
	return s.withWorkers(s.withRecover(s.withMetrics(s.withAuthn(s.withInflightLimit(mux)))))
}

// withWorkers runs requests that end on their own on the worker pool
// (internal/gopool), whose goroutines keep the stacks earlier requests
// grew; panics and runtime.Goexit reach this goroutine as if the handler
// ran here (net/http's http.ErrAbortHandler handling and the recover
// filter behave as without the pool).
// Long-running ones (watches, exec, logs, proxies) stay on their own
// goroutine: they would hold a worker for minutes.
func (s *Server) withWorkers(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isLongRunning(r) {
			h.ServeHTTP(w, r)
			return
		}
		s.workers.Do(func() { h.ServeHTTP(w, r) })
	})
}

func (s *Server) withRecover(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("panic serving request", "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
				s.writeError(w, r, apierrors.NewInternalError(fmt.Errorf("%v", v)))
			}
		}()
		h.ServeHTTP(w, r)
	})
}

// anonymousPaths may be reached without credentials.
var anonymousPaths = map[string]bool{
	"/healthz": true, "/livez": true, "/readyz": true, "/version": true, "/version/": true,
}

func (s *Server) withAuthn(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A request from a component in this process through an
		// inprocess.Transport: its user was set by that transport, in a
		// context value no request read from the network can carry.
		if u, ok := inprocess.UserFrom(r.Context()); ok {
			h.ServeHTTP(w, r.WithContext(authn.WithUser(r.Context(), u)))
			return
		}
		if s.cfg.Authenticator == nil {
			h.ServeHTTP(w, r.WithContext(authn.WithUser(r.Context(), &authn.User{Name: "system:admin", Groups: []string{"system:masters", "system:authenticated"}})))
			return
		}
		u, ok, err := s.cfg.Authenticator.Authenticate(r)
		if err == nil && ok {
			h.ServeHTTP(w, r.WithContext(authn.WithUser(r.Context(), u)))
			return
		}
		// Anonymous access to the health and version endpoints is for
		// requests without credentials; bad credentials are always 401.
		if err == nil && (anonymousPaths[r.URL.Path] || hasPrefixAny(r.URL.Path, "/healthz/", "/livez/", "/readyz/")) {
			h.ServeHTTP(w, r.WithContext(authn.WithUser(r.Context(), authn.Anonymous())))
			return
		}
		st := apierrors.NewUnauthorized("Unauthorized")
		s.writeError(w, r, st)
	})
}

func hasPrefixAny(p string, prefixes ...string) bool {
	for _, pr := range prefixes {
		if len(p) >= len(pr) && p[:len(pr)] == pr {
			return true
		}
	}
	return false
}

// withInflightLimit bounds concurrent non-long-running requests; beyond
// the limit the client gets 429 with Retry-After (client-go retries).
func (s *Server) withInflightLimit(h http.Handler) http.Handler {
	limit := int64(s.cfg.MaxRequestsInFlight)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isLongRunning(r) {
			h.ServeHTTP(w, r)
			return
		}
		if n := s.inflight.Add(1); n > limit {
			s.inflight.Add(-1)
			w.Header().Set("Retry-After", "1")
			st := apierrors.NewTooManyRequests("too many requests, please try again later", 1)
			s.writeError(w, r, st)
			return
		}
		defer s.inflight.Add(-1)
		h.ServeHTTP(w, r)
	})
}

func isLongRunning(r *http.Request) bool {
	if isTrue(queryOf(r).Get("watch")) {
		return true
	}
	p := r.URL.Path
	for _, seg := range longRunningSegments {
		if strings.Contains(p, seg) {
			return true
		}
	}
	return false
}

// longRunningSegments mark the paths of requests that do not end on their
// own. strings.Contains, not a byte-by-byte comparison at every offset:
// this runs twice on every request (in-flight limit and workers), and the
// naive search was 0.2 CPU-s per 10,000 pods in the controllers benchmark.
var longRunningSegments = []string{"/watch/", "/log", "/exec", "/attach", "/portforward", "/proxy"}

func (s *Server) health(check func() error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if check != nil {
			if err := check(); err != nil {
				w.Header().Set("Content-Type", "text/plain; charset=utf-8")
				w.WriteHeader(http.StatusInternalServerError)
				fmt.Fprintf(w, "[-]%v\nreadyz check failed\n", err)
				return
			}
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if queryOf(r).Has("verbose") {
			fmt.Fprint(w, "[+]ping ok\n[+]etcd ok\nhealthz check passed\n")
			return
		}
		fmt.Fprint(w, "ok")
	}
}

func (s *Server) version(w http.ResponseWriter, r *http.Request) {
	v := s.cfg.Version
	writeJSON(w, http.StatusOK, map[string]string{
		"major": v.Major, "minor": v.Minor, "gitVersion": v.GitVersion, "gitCommit": v.GitCommit,
		"gitTreeState": "clean", "buildDate": v.BuildDate, "goVersion": v.GoVersion,
		"compiler": "gc", "platform": v.Platform,
	})
}

func writeJSON(w http.ResponseWriter, code int, v interface{}) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

// statusRecorder captures the response code for metrics.
type statusRecorder struct {
	http.ResponseWriter
	code int
	// ri is the request's info if serveAPI parsed it (nil otherwise).
	ri *RequestInfo
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the real writer (hijacking
// for exec/port-forward upgrades).
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (s *Server) withMetrics(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		h.ServeHTTP(rec, r)
		ri := rec.ri
		if ri == nil {
			ri = parseRequestInfo(r)
		}
		verb, resource := metricsVerb(ri, r), ri.Resource
		if !ri.IsResourceRequest {
			verb, resource = r.Method, ""
		}
		code := rec.code
		if code == 0 {
			code = http.StatusOK
		}
		s.metrics.observe(verb, ri.APIGroup, ri.APIVersion, resource, ri.Subresource, code, time.Since(start))
	})
}

// metricsVerb is upstream's verb label for a resource request: the REST
// action (POST, PUT, LIST ...) rather than the authorization verb, with
// server-side apply counted as APPLY.
func metricsVerb(ri *RequestInfo, r *http.Request) string {
	switch ri.Verb {
	case "create":
		return "POST"
	case "update":
		return "PUT"
	case "patch":
		if strings.HasPrefix(r.Header.Get("Content-Type"), "application/apply-patch") {
			return "APPLY"
		}
		return "PATCH"
	}
	return strings.ToUpper(ri.Verb)
}
