package etcd3

import (
	"bytes"
	"fmt"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"

	"skiff.dev/skiff/internal/storage"
)

// A watch for a cache reports each change as a *storage.Stored: puts with
// the object decoded from exactly the bytes etcd holds at that revision
// (and those bytes), deletes with the key and delete revision alone; the
// initial state comes the same way. A predicate is refused.
func TestWatchForCache(t *testing.T) {
	s, client := newStore(t)
	c := ctx(t)
	if _, err := s.Watch(c, prefix, storage.WatchOptions{Recursive: true, ForCache: true,
		Predicate: func(runtime.Object) bool { return true }}); err == nil {
		t.Fatal("a watch for a cache with a predicate was accepted")
	}
	if _, err := s.Create(c, key("ns", "old"), pod("ns", "old", nil)); err != nil {
		t.Fatal(err)
	}
	start, err := s.CurrentRevision(c)
	if err != nil {
		t.Fatal(err)
	}
	w, err := s.Watch(c, prefix, storage.WatchOptions{Recursive: true, ResourceVersion: fmt.Sprint(start), ForCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	k := key("ns", "a")
	created, err := s.Create(c, k, pod("ns", "a", nil))
	if err != nil {
		t.Fatal(err)
	}
	updated, err := s.GuaranteedUpdate(c, k, false, func(cur runtime.Object) (runtime.Object, error) {
		cur.(*corev1.Pod).Labels = map[string]string{"v": "1"}
		return cur, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Delete(c, k, nil); err != nil {
		t.Fatal(err)
	}
	delRV, _ := s.CurrentRevision(c)

	expectStored(t, client, next(t, w), watch.Added, k, created)
	expectStored(t, client, next(t, w), watch.Modified, k, updated)
	ev := next(t, w)
	st, ok := ev.Object.(*storage.Stored)
	if ev.Type != watch.Deleted || !ok || st.Key != k || st.ResourceVersion != delRV || st.Object != nil || st.Data != nil {
		t.Fatalf("delete: got %s %+v, want DELETED of %s at %d with no object", ev.Type, ev.Object, k, delRV)
	}

	// Initial events from "0".
	w0, err := s.Watch(c, prefix, storage.WatchOptions{Recursive: true, ResourceVersion: "0", ForCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer w0.Stop()
	old, err := s.Get(c, key("ns", "old"), storage.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	expectStored(t, client, next(t, w0), watch.Added, key("ns", "old"), old)
}

// expectStored checks a Stored event against what etcd holds at want's
// revision.
func expectStored(t *testing.T, client *clientv3.Client, ev watch.Event, typ watch.EventType, k string, want runtime.Object) {
	t.Helper()
	st, ok := ev.Object.(*storage.Stored)
	if ev.Type != typ || !ok {
		t.Fatalf("got %s %T, want %s of a *storage.Stored", ev.Type, ev.Object, typ)
	}
	rv := rvOf(t, want)
	if st.Key != k || st.ResourceVersion != rv || rvOf(t, st.Object) != rv {
		t.Fatalf("got %s at %d (object at %d), want %s at %d", st.Key, st.ResourceVersion, rvOf(t, st.Object), k, rv)
	}
	resp, err := client.Get(ctx(t), k, clientv3.WithRev(rv))
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("reading %s at %d: %v", k, rv, err)
	}
	if !bytes.Equal(st.Data, resp.Kvs[0].Value) {
		t.Fatalf("event bytes differ from what etcd holds at %d", rv)
	}
	if !equality.Semantic.DeepEqual(st.Object, want) {
		t.Fatalf("event object %+v, want %+v", st.Object, want)
	}
}
