package controller

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"
)

// outcome is how a test API server answers one POST pods.
type outcome func(w http.ResponseWriter, r *http.Request, n int)

// TestDirectPostMatchesClientGo: a PodCreator sends its requests without
// a rest.Request, and whatever the API server answers (created, an API
// error with a Status, an error without one, a throttled request retried
// after Retry-After, a warning, an unexpected 200, a broken body, no
// server at all) the caller sees what createEncodedPod (the whole of
// client-go) reports: the same name or error, after the same number of
// requests.
func TestDirectPostMatchesClientGo(t *testing.T) {
	rs, tpl := testTemplate()
	ref := NewControllerRef(rs, appsv1.SchemeGroupVersion.WithKind("ReplicaSet"))
	ok := func(w http.ResponseWriter, r *http.Request, n int) { (&podServer{}).ServeHTTP(w, r) }
	status := func(err *apierrors.StatusError) outcome {
		return func(w http.ResponseWriter, r *http.Request, n int) { (&podServer{fail: err}).ServeHTTP(w, r) }
	}
	terminating := apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "", fmt.Errorf("ns is terminating"))
	cases := map[string]outcome{
		"created": ok,
		"created with a warning": func(w http.ResponseWriter, r *http.Request, n int) {
			w.Header().Add("Warning", `299 - "deprecated field"`)
			ok(w, r, n)
		},
		"ok instead of created": func(w http.ResponseWriter, r *http.Request, n int) {
			rec := httptest.NewRecorder()
			ok(rec, r, n)
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(rec.Body.Bytes())
		},
		"forbidden":    status(terminating),
		"conflict":     status(apierrors.NewAlreadyExists(schema.GroupResource{Resource: "pods"}, "p")),
		"internal":     status(apierrors.NewInternalError(fmt.Errorf("storage"))),
		"not a status": func(w http.ResponseWriter, r *http.Request, n int) { http.Error(w, "boom", http.StatusBadGateway) },
		"throttled once": func(w http.ResponseWriter, r *http.Request, n int) {
			if n == 1 {
				w.Header().Set("Retry-After", "0")
				http.Error(w, "slow down", http.StatusTooManyRequests)
				return
			}
			ok(w, r, n)
		},
		"always throttled": func(w http.ResponseWriter, r *http.Request, n int) {
			w.Header().Set("Retry-After", "0")
			http.Error(w, "slow down", http.StatusTooManyRequests)
		},
		"body cut short": func(w http.ResponseWriter, r *http.Request, n int) {
			conn, buf, err := w.(http.Hijacker).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			fmt.Fprint(buf, "HTTP/1.1 201 Created\r\nContent-Type: application/vnd.kubernetes.protobuf\r\nContent-Length: 100\r\n\r\nk8s\x00")
			_ = buf.Flush()
		},
		"no server": nil,
	}
	type result struct {
		name     string
		err      string
		reason   string
		requests int32
	}
	run := func(t *testing.T, o outcome, contentType string, direct bool) result {
		var n atomic.Int32
		hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			o(w, r, int(n.Add(1)))
		}))
		defer hs.Close()
		client, err := kubernetes.NewForConfig(&rest.Config{Host: hs.URL, QPS: -1, ContentConfig: rest.ContentConfig{ContentType: contentType}})
		if err != nil {
			t.Fatal(err)
		}
		if o == nil {
			hs.Close()
		}
		rc := CoreREST(client)
		body := encodePod(rc, "ns", podSharingTemplate(tpl, rs, ref))
		var name string
		if direct {
			d := newDirectPost(rc, "ns", body)
			if d == nil {
				t.Fatal("no direct post for a REST client of a plain configuration")
			}
			name, err = d.create(context.Background())
		} else {
			name, err = createEncodedPod(context.Background(), rc, "ns", body)
		}
		res := result{name: name, requests: n.Load()}
		if err != nil {
			// Each run has its own server.
			res.err = strings.ReplaceAll(err.Error(), hs.Listener.Addr().String(), "SERVER")
			res.reason = string(apierrors.ReasonForError(err))
		}
		return res
	}
	for name, o := range cases {
		for _, ct := range []string{"", "application/json"} {
			t.Run(name+" "+ct, func(t *testing.T) {
				want, got := run(t, o, ct, false), run(t, o, ct, true)
				if got != want {
					t.Fatalf("direct: %+v\nclient-go: %+v", got, want)
				}
				if want.err == "" && want.name == "" {
					t.Fatalf("neither a name nor an error: %+v", want)
				}
			})
		}
	}
}

// countingLimiter counts the waits of a rate limiter that never waits.
type countingLimiter struct {
	flowcontrol.RateLimiter
	waits atomic.Int32
}

func (l *countingLimiter) Wait(ctx context.Context) error { l.waits.Add(1); return nil }

// TestDirectPostRateLimited: every pod a PodCreator creates waits for the
// REST client's rate limiter first, as client-go's requests do; a client
// with its own warning handler keeps client-go's path.
func TestDirectPostRateLimited(t *testing.T) {
	rs, tpl := testTemplate()
	ref := NewControllerRef(rs, appsv1.SchemeGroupVersion.WithKind("ReplicaSet"))
	srv := &podServer{}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	lim := &countingLimiter{RateLimiter: flowcontrol.NewFakeAlwaysRateLimiter()}
	client, err := kubernetes.NewForConfig(&rest.Config{Host: hs.URL, RateLimiter: lim})
	if err != nil {
		t.Fatal(err)
	}
	create := PodCreator(RealPodControl{Client: client}, "ns", tpl, rs, ref)
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() {
			if err := create(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if got := lim.waits.Load(); got != 5 || len(srv.requests) != 5 {
		t.Fatalf("%d waits for %d requests, want 5 and 5", got, len(srv.requests))
	}

	warned, err := kubernetes.NewForConfig(&rest.Config{Host: hs.URL, WarningHandler: rest.NoWarnings{}})
	if err != nil {
		t.Fatal(err)
	}
	rc := CoreREST(warned)
	if d := newDirectPost(rc, "ns", encodePod(rc, "ns", podSharingTemplate(tpl, rs, ref))); d != nil {
		t.Fatal("a direct post for a client with its own warning handler")
	}
}
