package cacher

import (
	"bytes"
	"fmt"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"

	"skiff.dev/skiff/internal/storage"
)

// Every object the cache hands out from a ForCache watch maps to the
// bytes etcd holds for it (a delete's object to the last state's bytes),
// and the index holds no more than the tree and the ring refer to, however
// many events pass through a small ring.
func TestStoredDataOfHandedOutObjects(t *testing.T) {
	e := newEnv(t, Config{EventBufferSize: 4})
	ctx := tctx(t)
	start := create(t, e.c, "ns", "pre", nil)
	if err := e.c.waitForRV(ctx, start); err != nil {
		t.Fatal(err)
	}
	w, err := e.c.Watch(ctx, prefix, storage.WatchOptions{Recursive: true, ResourceVersion: fmt.Sprint(start)})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	const keys, updates = 5, 6
	for i := range keys {
		create(t, e.c, "ns", fmt.Sprint("p", i), nil)
	}
	for u := range updates {
		for i := range keys {
			if _, err := e.c.GuaranteedUpdate(ctx, key("ns", fmt.Sprint("p", i)), false, func(cur runtime.Object) (runtime.Object, error) {
				cur.(*corev1.Pod).Labels = map[string]string{"u": fmt.Sprint(u)}
				return cur, nil
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := e.c.Delete(ctx, key("ns", "p0"), nil); err != nil {
		t.Fatal(err)
	}
	hits := 0
	for range keys*(1+updates) + 1 {
		ev := next(t, w)
		data := e.c.StoredData(ev.Object)
		rv := rvOf(t, ev.Object)
		if ev.Type == watch.Deleted {
			// The last event: its bytes are the previous state's.
			e.c.mu.Lock()
			rv = rvOf(t, e.c.ring[(e.c.ringStart+e.c.ringLen-1)%len(e.c.ring)].prev)
			e.c.mu.Unlock()
		}
		if data == nil {
			// Replaced and out of the ring already: allowed, a miss.
			continue
		}
		hits++
		p := ev.Object.(*corev1.Pod)
		resp, err := e.client.Get(ctx, key(p.Namespace, p.Name), clientv3.WithRev(rv))
		if err != nil || len(resp.Kvs) != 1 {
			t.Fatalf("reading %s at %d: %v", p.Name, rv, err)
		}
		if !bytes.Equal(data, resp.Kvs[0].Value) {
			t.Fatalf("%s %s at %d: stored data differs from etcd's", ev.Type, p.Name, rv)
		}
	}
	// The ring's events at least are still indexed.
	if hits < 4 {
		t.Fatalf("only %d of %d events had their stored bytes", hits, keys*(1+updates)+1)
	}
	// The current objects' bytes are known (Get hands out the tree's).
	for i := 1; i < keys; i++ {
		obj, err := e.c.Get(ctx, key("ns", fmt.Sprint("p", i)), storage.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := e.client.Get(ctx, key("ns", fmt.Sprint("p", i)))
		if err != nil {
			t.Fatal(err)
		}
		if d := e.c.StoredData(obj); !bytes.Equal(d, resp.Kvs[0].Value) {
			t.Fatalf("p%d: stored data %q, etcd %q", i, d, resp.Kvs[0].Value)
		}
	}
	// No leak: every indexed object is in the tree, the ring or the
	// recent writes.
	e.c.mu.Lock()
	defer e.c.mu.Unlock()
	held := map[runtime.Object]bool{}
	for _, ent := range e.c.byKey {
		held[ent.obj] = true
	}
	for i := 0; i < e.c.ringLen; i++ {
		held[e.c.ring[(e.c.ringStart+i)%len(e.c.ring)].obj] = true
	}
	e.c.stored.wmu.Lock()
	for _, obj := range e.c.stored.writes {
		if obj != nil {
			held[obj] = true
		}
	}
	e.c.stored.wmu.Unlock()
	n := 0
	e.c.stored.m.Range(func(k, _ any) bool {
		n++
		if !held[k.(runtime.Object)] {
			t.Errorf("index holds %p, which neither the tree nor the ring does", k)
		}
		return true
	})
	if n > len(held) || n == 0 {
		t.Errorf("index holds %d objects, tree and ring %d", n, len(held))
	}
}

// The objects writes through the cache return map to the bytes etcd
// holds for them, for the last recentWrites writes.
func TestStoredDataOfWrites(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := tctx(t)
	e.c.stored.wmu.Lock()
	e.c.stored.writes = make([]runtime.Object, 3) // a short memory
	e.c.stored.wmu.Unlock()
	check := func(obj runtime.Object, what string) {
		t.Helper()
		p := obj.(*corev1.Pod)
		resp, err := e.client.Get(ctx, key(p.Namespace, p.Name), clientv3.WithRev(rvOf(t, p)))
		if err != nil || len(resp.Kvs) != 1 {
			t.Fatalf("reading %s: %v", p.Name, err)
		}
		if d := e.c.StoredData(obj); !bytes.Equal(d, resp.Kvs[0].Value) {
			t.Fatalf("%s of %s: stored data %q, etcd %q", what, p.Name, d, resp.Kvs[0].Value)
		}
	}
	created, err := e.c.Create(ctx, key("ns", "w"), pod("ns", "w", nil))
	if err != nil {
		t.Fatal(err)
	}
	check(created, "create")
	update := func(labels map[string]string) runtime.Object {
		out, err := e.c.GuaranteedUpdate(ctx, key("ns", "w"), false, func(cur runtime.Object) (runtime.Object, error) {
			cur.(*corev1.Pod).Labels = labels
			return cur, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	updated := update(map[string]string{"a": "1"})
	check(updated, "update")
	unchanged := update(map[string]string{"a": "1"})
	check(unchanged, "unchanged update")
	// Three more writes push the first out of the short memory.
	for i := range 3 {
		update(map[string]string{"a": fmt.Sprint(i + 2)})
	}
	if d := e.c.StoredData(created); d != nil {
		t.Fatalf("the created object is still indexed after %d writes", 5)
	}
}
