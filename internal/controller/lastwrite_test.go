package controller

import (
	"strconv"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func rsAt(uid, rv string, replicas int32) *appsv1.ReplicaSet {
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns", UID: types.UID(uid), ResourceVersion: rv},
		Status:     appsv1.ReplicaSetStatus{Replicas: replicas},
	}
}

func TestLastWrites(t *testing.T) {
	const key = "ns/web"
	type step struct {
		wrote  *appsv1.ReplicaSet // record a write of this answer...
		base   string             // ...replacing this version
		cached *appsv1.ReplicaSet // else: Newest(cached) must return want
		want   string             // resourceVersion Newest returns
		echo   bool               // IsEcho(cached)
		len    int                // Len afterwards
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"nothing written: the cache", []step{
			{cached: rsAt("u", "5", 0), want: "5"},
		}},
		{"cache behind our write: the write", []step{
			{wrote: rsAt("u", "6", 1), base: "5", len: 1},
			{cached: rsAt("u", "5", 0), want: "6", len: 1},
			{cached: rsAt("u", "5", 0), want: "6", len: 1},
		}},
		{"cache caught up: the cache, and its event is our echo", []step{
			{wrote: rsAt("u", "6", 1), base: "5", len: 1},
			{cached: rsAt("u", "6", 1), want: "6", echo: true, len: 1},
			// A later stale read cannot happen (caches only move
			// forward), and the chain was dropped: 5 is not ours.
			{cached: rsAt("u", "5", 0), want: "5", len: 0},
		}},
		{"cache past our write (another client wrote): the cache", []step{
			{wrote: rsAt("u", "6", 1), base: "5", len: 1},
			{cached: rsAt("u", "9", 3), want: "9", len: 0},
		}},
		{"two writes before the cache caught up: both replaced versions are stale", []step{
			{wrote: rsAt("u", "6", 1), base: "5", len: 1},
			{wrote: rsAt("u", "7", 2), base: "6", len: 1},
			{cached: rsAt("u", "5", 0), want: "7", len: 1},
			{cached: rsAt("u", "6", 1), want: "7", echo: false, len: 1},
			{cached: rsAt("u", "7", 2), want: "7", echo: true, len: 1},
		}},
		{"a write from a newer cache starts a new chain", []step{
			{wrote: rsAt("u", "6", 1), base: "5", len: 1},
			{wrote: rsAt("u", "10", 2), base: "9", len: 1},
			{cached: rsAt("u", "9", 0), want: "10", len: 1},
			{cached: rsAt("u", "5", 0), want: "5", len: 0},
		}},
		{"a namesake (other uid) is never replaced by our write", []step{
			{wrote: rsAt("u", "6", 1), base: "5", len: 1},
			{cached: rsAt("other", "5", 0), want: "5", len: 0},
		}},
		{"writes without versions are not remembered", []step{
			{wrote: rsAt("u", "6", 1), base: "", len: 0},
			{cached: rsAt("u", "", 0), want: "", len: 0},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var w LastWrites[*appsv1.ReplicaSet]
			for i, s := range tc.steps {
				if s.wrote != nil {
					w.Wrote(key, s.base, s.wrote)
				} else {
					if echo := w.IsEcho(key, s.cached); echo != s.echo {
						t.Fatalf("step %d: IsEcho %v, want %v", i, echo, s.echo)
					}
					if got := w.Newest(key, s.cached).ResourceVersion; got != s.want {
						t.Fatalf("step %d: Newest at %q, want %q", i, got, s.want)
					}
				}
				if w.Len() != s.len {
					t.Fatalf("step %d: %d remembered, want %d", i, w.Len(), s.len)
				}
			}
		})
	}
}

func TestLastWritesChainIsBounded(t *testing.T) {
	var w LastWrites[*appsv1.ReplicaSet]
	base := "1"
	for i := 2; i < 2+3*maxReplaced; i++ {
		rv := strconv.Itoa(i)
		w.Wrote("k", base, rsAt("u", rv, 0))
		base = rv
	}
	if n := len(w.m["k"].replaced); n != maxReplaced {
		t.Fatalf("%d replaced versions kept, want %d", n, maxReplaced)
	}
	// The newest replaced versions are kept, the oldest forgotten.
	if got := w.Newest("k", rsAt("u", strconv.Itoa(1+3*maxReplaced-1), 0)).ResourceVersion; got != base {
		t.Fatalf("Newest %s, want %s", got, base)
	}
	w.Forget("k")
	if w.Len() != 0 {
		t.Fatal("Forget kept the entry")
	}
}
