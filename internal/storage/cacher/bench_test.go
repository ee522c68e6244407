package cacher

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"

	"skiff.dev/skiff/internal/cputime"
	"skiff.dev/skiff/internal/registry"
	"skiff.dev/skiff/internal/storage"
	"skiff.dev/skiff/internal/storage/storagetest"
)

// seedPods writes n pods straight to etcd in batched transactions (setup
// only; it bypasses the store to keep benchmark setup short).
func seedPods(b *testing.B, client *clientv3.Client, n int) {
	b.Helper()
	codec := storagetest.ProtobufCodec(registry.NewScheme())
	var ops []clientv3.Op
	flush := func() {
		if _, err := client.Txn(context.Background()).Then(ops...).Commit(); err != nil {
			b.Fatal(err)
		}
		ops = ops[:0]
	}
	for i := range n {
		ns, name := fmt.Sprintf("ns%d", i%10), fmt.Sprintf("pod-%05d", i)
		var buf bytes.Buffer
		if err := codec.Encode(pod(ns, name, map[string]string{"app": fmt.Sprint(i % 7)}), &buf); err != nil {
			b.Fatal(err)
		}
		ops = append(ops, clientv3.OpPut(key(ns, name), buf.String()))
		if len(ops) == 100 {
			flush()
		}
	}
	if len(ops) > 0 {
		flush()
	}
}

// BenchmarkList10k lists 10,000 pods from the cache.
func BenchmarkList10k(b *testing.B) {
	e := newEnv(b, Config{})
	seedPods(b, e.client, 10000)
	ctx := context.Background()
	for _, bc := range []struct {
		name string
		rv   string
	}{{"rv=0", "0"}, {"consistent", ""}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				l, err := e.c.List(ctx, prefix, storage.ListOptions{Recursive: true, ResourceVersion: bc.rv})
				if err != nil || len(l.Items) != 10000 {
					b.Fatalf("list: %v, %d items", err, len(l.Items))
				}
			}
		})
	}
	b.Run("etcd", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			l, err := e.store.Store.List(ctx, prefix, storage.ListOptions{Recursive: true})
			if err != nil || len(l.Items) != 10000 {
				b.Fatalf("list: %v", err)
			}
		}
	})
}

// BenchmarkFanout100 measures a write seen by 100 watchers.
func BenchmarkFanout100(b *testing.B) {
	e := newEnv(b, Config{})
	ctx := context.Background()
	rv, _ := e.c.CurrentRevision(ctx)
	var ws []watch.Interface
	for range 100 {
		w, err := e.c.Watch(ctx, prefix, storage.WatchOptions{Recursive: true, ResourceVersion: fmt.Sprint(rv)})
		if err != nil {
			b.Fatal(err)
		}
		ws = append(ws, w)
		defer w.Stop()
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		create(b, e.c, "ns", fmt.Sprintf("p%d", i), nil)
		i++
		for _, w := range ws {
			if _, ok := <-w.ResultChan(); !ok {
				b.Fatal("watcher terminated")
			}
		}
	}
}

// BenchmarkUpdateThroughCache is the API server's write path for one
// update of a cached pod: GuaranteedUpdate through the cacher (from the
// cached object) until the cache has seen the result, 1,000 pods cached.
// cpu-us/op is the process's CPU time per update (etcd included: it is
// embedded), which a loaded machine distorts far less than wall time.
// "plain" is a store that ignores WatchOptions.ForCache: the cache's
// watch asks etcd for previous values and gets no stored bytes, so
// updates encode the cached object for the unchanged-bytes check.
func BenchmarkUpdateThroughCache(b *testing.B) {
	for _, forCache := range []bool{true, false} {
		b.Run(map[bool]string{true: "forCache", false: "plain"}[forCache], func(b *testing.B) {
			e := newEnv(b, Config{})
			if !forCache {
				e = newEnvWrapped(b, Config{}, func(s *countingStore) storage.Interface { return plainStore{s} })
			}
			ctx := context.Background()
			var rv int64
			for i := range 1000 {
				rv = create(b, e.c, "ns", fmt.Sprintf("p%04d", i), map[string]string{"app": "web"})
			}
			if err := e.c.waitForRV(ctx, rv); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			i := 0
			cpu0 := cputime.Process()
			for b.Loop() {
				k := key("ns", fmt.Sprintf("p%04d", i%1000))
				i++
				out, err := e.c.GuaranteedUpdate(ctx, k, false, func(cur runtime.Object) (runtime.Object, error) {
					p := cur.(*corev1.Pod)
					p.Annotations = map[string]string{"n": fmt.Sprint(i)}
					return p, nil
				})
				if err != nil {
					b.Fatal(err)
				}
				if err := e.c.waitForRV(ctx, rvOf(b, out)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64((cputime.Process()-cpu0).Microseconds())/float64(b.N), "cpu-us/op")
		})
	}
}

// BenchmarkProcessModified is the cacher's work for one MODIFIED event
// of one of 10,000 cached pods (no watchers): the key map, the B-tree
// replacement, the stored index and the event ring.
func BenchmarkProcessModified(b *testing.B) {
	c := &Cacher{
		cfg:      Config{Prefix: prefix, EventBufferSize: 10000},
		log:      slog.New(slog.DiscardHandler),
		tree:     newTree(),
		byKey:    map[string]*entry{},
		ring:     make([]*event, 10000),
		watchers: map[int]*cacheWatcher{},
	}
	const n = 10000
	keys := make([]string, n)
	objs := make([]runtime.Object, n)
	data := []byte("stored")
	for i := range keys {
		keys[i] = key("bench", fmt.Sprintf("deployment-7d4b9c8f6d-%05d", i))
		objs[i] = pod("bench", fmt.Sprintf("deployment-7d4b9c8f6d-%05d", i), nil)
		if err := c.process(watch.Event{Type: watch.Added, Object: &storage.Stored{Key: keys[i], ResourceVersion: int64(i + 1), Object: objs[i], Data: data}}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		k := (i * 7919) % n // not in key order
		if err := c.process(watch.Event{Type: watch.Modified, Object: &storage.Stored{Key: keys[k], ResourceVersion: int64(n + i + 1), Object: objs[k], Data: data}}); err != nil {
			b.Fatal(err)
		}
	}
}
