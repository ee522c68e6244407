package cacher

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"

	"skiff.dev/skiff/internal/storage"
)

// plainStore does not know WatchOptions.ForCache: its watch sends plain
// objects (with the previous state read by etcd), as any store may.
type plainStore struct{ *countingStore }

func (p plainStore) Watch(ctx context.Context, prefix string, opts storage.WatchOptions) (watch.Interface, error) {
	opts.ForCache = false
	return p.countingStore.Watch(ctx, prefix, opts)
}

// The cache's watch events are the ones etcd's own watch reports (type,
// object content, revision; a delete carries the last state at the delete
// revision), whether the underlying watch reports changes as
// *storage.Stored (deletes by key alone) or as plain objects.
func TestCacheWatchMatchesStoreWatch(t *testing.T) {
	for _, forCache := range []bool{true, false} {
		t.Run(fmt.Sprintf("forCache=%v", forCache), func(t *testing.T) {
			var e *env
			if forCache {
				e = newEnv(t, Config{})
			} else {
				e = newEnvWrapped(t, Config{}, func(s *countingStore) storage.Interface { return plainStore{s} })
			}
			ctx := tctx(t)
			start := create(t, e.c, "ns", "pre", nil)
			if err := e.c.waitForRV(ctx, start); err != nil {
				t.Fatal(err)
			}
			opts := storage.WatchOptions{Recursive: true, ResourceVersion: fmt.Sprint(start)}
			cw, err := e.c.Watch(ctx, prefix, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer cw.Stop()
			sw, err := e.store.Store.Watch(ctx, prefix, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer sw.Stop()

			create(t, e.c, "ns", "a", nil)
			create(t, e.c, "ns", "b", map[string]string{"x": "1"})
			for i := range 3 {
				if _, err := e.c.GuaranteedUpdate(ctx, key("ns", "a"), false, func(cur runtime.Object) (runtime.Object, error) {
					cur.(*corev1.Pod).Labels = map[string]string{"v": fmt.Sprint(i)}
					return cur, nil
				}); err != nil {
					t.Fatal(err)
				}
			}
			for _, n := range []string{"b", "pre", "a"} {
				if _, err := e.c.Delete(ctx, key("ns", n), nil); err != nil {
					t.Fatal(err)
				}
			}
			create(t, e.c, "ns", "b", nil)
			for i := range 8 {
				want, got := next(t, sw), next(t, cw)
				if got.Type != want.Type || !equality.Semantic.DeepEqual(got.Object, want.Object) {
					t.Fatalf("event %d: cache sent %s %+v, etcd %s %+v", i, got.Type, got.Object, want.Type, want.Object)
				}
			}
			// The cache holds what etcd holds: objects and, from a watch
			// for a cache, their stored bytes (which updates start from).
			rv, _ := e.c.CurrentRevision(ctx)
			if err := e.c.waitForRV(ctx, rv); err != nil {
				t.Fatal(err)
			}
			resp, err := e.client.Get(ctx, prefix, clientv3.WithPrefix())
			if err != nil {
				t.Fatal(err)
			}
			e.c.mu.Lock()
			defer e.c.mu.Unlock()
			if len(resp.Kvs) != len(e.c.byKey) || e.c.tree.Len() != len(e.c.byKey) {
				t.Fatalf("etcd holds %d keys, the cache %d (tree %d)", len(resp.Kvs), len(e.c.byKey), e.c.tree.Len())
			}
			for _, kv := range resp.Kvs {
				ent := e.c.byKey[string(kv.Key)]
				if ent == nil || rvOf(t, ent.obj) != kv.ModRevision || ent.rv != kv.ModRevision {
					t.Fatalf("cache entry for %s: %+v, etcd at %d", kv.Key, ent, kv.ModRevision)
				}
				if forCache && !bytes.Equal(ent.data, kv.Value) {
					t.Fatalf("cached bytes of %s differ from etcd's", kv.Key)
				}
				if !forCache && ent.data != nil {
					t.Fatalf("cached bytes of %s from a plain watch", kv.Key)
				}
			}
		})
	}
}

// A delete the cache cannot account for (a key it does not hold) is an
// inconsistency: processing fails, so the cacher re-lists.
func TestDeleteOfUnknownKeyFails(t *testing.T) {
	e := newEnv(t, Config{})
	err := e.c.process(watch.Event{Type: watch.Deleted, Object: &storage.Stored{Key: key("ns", "ghost"), ResourceVersion: 1 << 40}})
	if err == nil {
		t.Fatal("a delete of a key the cache does not hold was accepted")
	}
}
