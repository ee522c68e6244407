package cacher

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	testingclock "k8s.io/utils/clock/testing"

	"skiff.dev/skiff/internal/registry"
	"skiff.dev/skiff/internal/storage"
	"skiff.dev/skiff/internal/storage/etcd3"
	"skiff.dev/skiff/internal/storage/storagetest"
)

const prefix = "/registry/pods/"

// countingStore counts reads that reach the underlying store.
type countingStore struct {
	*etcd3.Store
	gets, lists, guesses atomic.Int64
}

func (s *countingStore) Get(ctx context.Context, key string, opts storage.GetOptions) (runtime.Object, error) {
	s.gets.Add(1)
	return s.Store.Get(ctx, key, opts)
}

// GuaranteedUpdateFrom counts the updates handed a guess.
func (s *countingStore) GuaranteedUpdateFrom(ctx context.Context, key string, ignoreNotFound bool, tryUpdate storage.UpdateFunc, guess *storage.Stored) (runtime.Object, error) {
	if guess != nil {
		s.guesses.Add(1)
	}
	return s.Store.GuaranteedUpdateFrom(ctx, key, ignoreNotFound, tryUpdate, guess)
}

func (s *countingStore) List(ctx context.Context, p string, opts storage.ListOptions) (*storage.ListResult, error) {
	s.lists.Add(1)
	return s.Store.List(ctx, p, opts)
}

type env struct {
	client *clientv3.Client
	store  *countingStore
	c      *Cacher
}

func newEnv(t testing.TB, cfg Config) *env {
	t.Helper()
	return newEnvWrapped(t, cfg, nil)
}

// newEnvWrapped is newEnv with the cacher's store wrapped by wrap.
func newEnvWrapped(t testing.TB, cfg Config, wrap func(*countingStore) storage.Interface) *env {
	t.Helper()
	client := storagetest.StartEtcd(t)
	newFunc := func() runtime.Object { return &corev1.Pod{} }
	st := &countingStore{Store: etcd3.New(etcd3.Config{
		Client: client, Codec: storagetest.ProtobufCodec(registry.NewScheme()), NewFunc: newFunc,
	})}
	if cfg.Storage == nil {
		cfg.Storage = st
		if wrap != nil {
			cfg.Storage = wrap(st)
		}
	}
	cfg.Prefix, cfg.NewFunc = prefix, newFunc
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	select {
	case <-c.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("cacher not ready")
	}
	return &env{client: client, store: st, c: c}
}

func pod(ns, name string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "nginx"}}},
	}
}

func key(ns, name string) string { return prefix + ns + "/" + name }

func rvOf(t testing.TB, obj runtime.Object) int64 {
	t.Helper()
	rv, err := storage.ObjectResourceVersion(obj)
	if err != nil {
		t.Fatal(err)
	}
	return rv
}

func tctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func create(t testing.TB, s storage.Interface, ns, name string, labels map[string]string) int64 {
	t.Helper()
	out, err := s.Create(context.Background(), key(ns, name), pod(ns, name, labels))
	if err != nil {
		t.Fatalf("create %s/%s: %v", ns, name, err)
	}
	return rvOf(t, out)
}

func next(t *testing.T, w watch.Interface) watch.Event {
	t.Helper()
	select {
	case ev, ok := <-w.ResultChan():
		if !ok {
			t.Fatal("watch closed")
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no watch event in 10s")
	}
	return watch.Event{}
}

func expectEvent(t *testing.T, w watch.Interface, typ watch.EventType, name string, rv int64) watch.Event {
	t.Helper()
	ev := next(t, w)
	p, ok := ev.Object.(*corev1.Pod)
	if ev.Type != typ || !ok || p.Name != name || (rv != 0 && rvOf(t, p) != rv) {
		t.Fatalf("got %s %+v, want %s %s rv %d", ev.Type, ev.Object, typ, name, rv)
	}
	return ev
}

func TestConsistentReadWaitsForCache(t *testing.T) {
	e := newEnv(t, Config{ReadWaitTimeout: 5 * time.Second})
	c := tctx(t)
	for i := range 20 {
		rv := create(t, e.c, "ns", fmt.Sprintf("p%d", i), nil)
		// Read-your-writes through the cache.
		got, err := e.c.Get(c, key("ns", fmt.Sprintf("p%d", i)), storage.GetOptions{})
		if err != nil || rvOf(t, got) != rv {
			t.Fatalf("consistent get after create: %v", err)
		}
	}
	list, err := e.c.List(c, prefix, storage.ListOptions{Recursive: true})
	if err != nil || len(list.Items) != 20 {
		t.Fatalf("consistent list: %v, %d items", err, len(list.Items))
	}
	// Writes to other resources move etcd's revision past every pod
	// event; a consistent read must still be served by the cache (via a
	// progress bookmark), not by a fallback to etcd.
	for i := range 5 {
		if _, err := e.client.Put(c, fmt.Sprintf("/registry/other/%d", i), "x"); err != nil {
			t.Fatal(err)
		}
	}
	rev, _ := e.c.CurrentRevision(c)
	start := time.Now()
	list, err = e.c.List(c, prefix+"ns/", storage.ListOptions{Recursive: true})
	if err != nil || len(list.Items) != 20 || list.ResourceVersion < rev {
		t.Fatalf("consistent list after foreign writes: err %v, %d items at rv %d, want rv >= %d", err, len(list.Items), list.ResourceVersion, rev)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("consistent list took %s", d)
	}
	if n := e.store.gets.Load() + e.store.lists.Load(); n != 1 {
		t.Fatalf("%d reads reached etcd, want only the cacher's initial list", n)
	}
	// rv "0" is served without waiting; a future rv times out.
	if _, err := e.c.Get(c, key("ns", "p0"), storage.GetOptions{ResourceVersion: "0"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Get(c, key("ns", "nope"), storage.GetOptions{ResourceVersion: "0"}); !storage.IsNotFound(err) {
		t.Fatalf("get missing: %v", err)
	}
	e2 := newEnv(t, Config{ReadWaitTimeout: 200 * time.Millisecond})
	if _, err := e2.c.Get(c, key("ns", "p0"), storage.GetOptions{ResourceVersion: fmt.Sprint(rev + 1000)}); !storage.HasCode(err, storage.ErrCodeTooLargeResourceVersion) {
		t.Fatalf("future rv: got %v, want too large resource version", err)
	}
	// Paginated lists go to etcd.
	before := e.store.lists.Load()
	page, err := e.c.List(c, prefix, storage.ListOptions{Recursive: true, Limit: 5})
	if err != nil || len(page.Items) != 5 || page.Continue == "" || e.store.lists.Load() != before+1 {
		t.Fatalf("paginated list: %v %d items", err, len(page.Items))
	}
	if n, err := e.c.Count(c, prefix); err != nil || n != 20 {
		t.Fatalf("count = %d, %v", n, err)
	}
}

func TestWatchReplayFromOldRV(t *testing.T) {
	e := newEnv(t, Config{})
	c := tctx(t)
	var rvs []int64
	for i := range 5 {
		rvs = append(rvs, create(t, e.c, "ns", fmt.Sprintf("p%d", i), nil))
	}
	w1, err := e.c.Watch(c, prefix, storage.WatchOptions{Recursive: true, ResourceVersion: fmt.Sprint(rvs[1])})
	if err != nil {
		t.Fatal(err)
	}
	defer w1.Stop()
	w2, err := e.c.Watch(c, prefix+"ns/", storage.WatchOptions{Recursive: true, ResourceVersion: fmt.Sprint(rvs[1])})
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Stop()
	for i := 2; i < 5; i++ {
		a := expectEvent(t, w1, watch.Added, fmt.Sprintf("p%d", i), rvs[i])
		b := expectEvent(t, w2, watch.Added, fmt.Sprintf("p%d", i), rvs[i])
		if a.Object != b.Object {
			t.Fatal("watchers got different objects for one event")
		}
	}
	// Live events follow the replay, still shared.
	rv := create(t, e.c, "ns", "live", nil)
	a := expectEvent(t, w1, watch.Added, "live", rv)
	b := expectEvent(t, w2, watch.Added, "live", rv)
	if a.Object != b.Object {
		t.Fatal("watchers got different objects for one live event")
	}
	// Watch from "0": initial state then changes; with SendInitialEvents a
	// closing bookmark.
	yes := true
	w3, err := e.c.Watch(c, prefix, storage.WatchOptions{Recursive: true, SendInitialEvents: &yes, AllowBookmarks: true})
	if err != nil {
		t.Fatal(err)
	}
	defer w3.Stop()
	for _, n := range []string{"live", "p0", "p1", "p2", "p3", "p4"} {
		expectEvent(t, w3, watch.Added, n, 0)
	}
	ev := next(t, w3)
	if p, ok := ev.Object.(*corev1.Pod); ev.Type != watch.Bookmark || !ok || p.Annotations[InitialEventsAnnotation] != "true" || rvOf(t, p) != rv {
		t.Fatalf("got %s %+v, want initial-events-end bookmark at %d", ev.Type, ev.Object, rv)
	}
	// A single-key watch sees only its key.
	w4, err := e.c.Watch(c, key("ns", "p3"), storage.WatchOptions{ResourceVersion: fmt.Sprint(rv)})
	if err != nil {
		t.Fatal(err)
	}
	defer w4.Stop()
	create(t, e.c, "ns", "other", nil)
	out, err := e.c.Delete(c, key("ns", "p3"), nil)
	if err != nil {
		t.Fatal(err)
	}
	ev = next(t, w4)
	if ev.Type != watch.Deleted || ev.Object.(*corev1.Pod).Name != "p3" || rvOf(t, ev.Object) <= rvOf(t, out) {
		t.Fatalf("single-key watch got %s %+v", ev.Type, ev.Object)
	}
}

func TestWatchTooOldRV(t *testing.T) {
	e := newEnv(t, Config{EventBufferSize: 3})
	c := tctx(t)
	var rvs []int64
	for i := range 10 {
		rvs = append(rvs, create(t, e.c, "ns", fmt.Sprintf("p%d", i), nil))
	}
	// Let the cache see everything.
	if _, err := e.c.Get(c, key("ns", "p9"), storage.GetOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Watch(c, prefix, storage.WatchOptions{Recursive: true, ResourceVersion: fmt.Sprint(rvs[0])}); !storage.IsGone(err) {
		t.Fatalf("watch from evicted rv: got %v, want gone", err)
	}
	// rvs[6] is the newest revision not in a 3-event buffer.
	w, err := e.c.Watch(c, prefix, storage.WatchOptions{Recursive: true, ResourceVersion: fmt.Sprint(rvs[6])})
	if err != nil {
		t.Fatalf("watch from oldest buffered rv: %v", err)
	}
	defer w.Stop()
	for i := 7; i < 10; i++ {
		expectEvent(t, w, watch.Added, fmt.Sprintf("p%d", i), rvs[i])
	}
	if _, err := e.c.Watch(c, prefix, storage.WatchOptions{Recursive: true, ResourceVersion: fmt.Sprint(rvs[5])}); !storage.IsGone(err) {
		t.Fatalf("watch from just-evicted rv: got %v, want gone", err)
	}
}

func TestWatchPredicateTransitions(t *testing.T) {
	e := newEnv(t, Config{})
	c := tctx(t)
	rv0 := create(t, e.c, "ns", "a", map[string]string{"app": "db"})
	pred := func(obj runtime.Object) bool { return obj.(*corev1.Pod).Labels["app"] == "web" }
	w, err := e.c.Watch(c, prefix, storage.WatchOptions{Recursive: true, ResourceVersion: fmt.Sprint(rv0), Predicate: pred})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	set := func(v string) int64 {
		out, err := e.c.GuaranteedUpdate(c, key("ns", "a"), false, func(cur runtime.Object) (runtime.Object, error) {
			cur.(*corev1.Pod).Labels = map[string]string{"app": v}
			return cur, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return rvOf(t, out)
	}
	expectEvent(t, w, watch.Added, "a", set("web"))
	rv := set("web2")
	ev := expectEvent(t, w, watch.Deleted, "a", rv)
	if ev.Object.(*corev1.Pod).Labels["app"] != "web" {
		t.Fatalf("DELETED on leaving the selection should carry the old state, got %v", ev.Object.(*corev1.Pod).Labels)
	}
	expectEvent(t, w, watch.Added, "a", set("web"))
	out, err := e.c.GuaranteedUpdate(c, key("ns", "a"), false, func(cur runtime.Object) (runtime.Object, error) {
		cur.(*corev1.Pod).Annotations = map[string]string{"x": "y"}
		return cur, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	expectEvent(t, w, watch.Modified, "a", rvOf(t, out))
}

func TestSlowWatcherIsCutOff(t *testing.T) {
	e := newEnv(t, Config{WatcherBufferSize: 100})
	c := tctx(t)
	start, _ := e.c.CurrentRevision(c)
	from := storage.WatchOptions{Recursive: true, ResourceVersion: fmt.Sprint(start)}
	slow, err := e.c.Watch(c, prefix, from)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Stop()
	fast, err := e.c.Watch(c, prefix, from)
	if err != nil {
		t.Fatal(err)
	}
	defer fast.Stop()
	// The writer waits for the fast watcher to see each event, so only
	// the slow one falls behind, however loaded the machine is.
	const n = 300
	for i := range n {
		rv := create(t, e.c, "ns", fmt.Sprintf("p%d", i), nil)
		expectEvent(t, fast, watch.Added, fmt.Sprintf("p%d", i), rv)
	}
	// The slow watcher was terminated: its channel closes after at most
	// the events it had already taken.
	received := 0
	timeout := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-slow.ResultChan():
			if !ok {
				if received >= n {
					t.Fatalf("slow watcher got all %d events: not cut off", received)
				}
				return
			}
			received++
		case <-timeout:
			t.Fatal("slow watcher not terminated")
		}
	}
}

func TestBookmarks(t *testing.T) {
	fc := testingclock.NewFakeClock(time.Now())
	e := newEnv(t, Config{Clock: fc, BookmarkInterval: time.Second})
	c := tctx(t)
	rv := create(t, e.c, "ns", "a", nil)
	withBM, err := e.c.Watch(c, prefix, storage.WatchOptions{Recursive: true, ResourceVersion: "0", AllowBookmarks: true})
	if err != nil {
		t.Fatal(err)
	}
	defer withBM.Stop()
	without, err := e.c.Watch(c, prefix, storage.WatchOptions{Recursive: true, ResourceVersion: "0"})
	if err != nil {
		t.Fatal(err)
	}
	defer without.Stop()
	// Initial state: the cache was ready, but make sure it has seen a.
	expectEvent(t, withBM, watch.Added, "a", 0)
	expectEvent(t, without, watch.Added, "a", 0)
	for !fc.HasWaiters() {
		time.Sleep(time.Millisecond)
	}
	fc.Step(time.Second)
	ev := next(t, withBM)
	p, ok := ev.Object.(*corev1.Pod)
	if ev.Type != watch.Bookmark || !ok || rvOf(t, p) < rv || p.Name != "" {
		t.Fatalf("got %s %+v, want an empty pod bookmark at rv >= %d", ev.Type, ev.Object, rv)
	}
	// The watcher without bookmarks sees only the next real event.
	rv2 := create(t, e.c, "ns", "b", nil)
	expectEvent(t, without, watch.Added, "b", rv2)
	expectEvent(t, withBM, watch.Added, "b", rv2)
}

// TestManyWritesExactlyOnce writes 10,000 objects from several goroutines
// while a watcher started from an earlier revision (replaying from the ring
// buffer, then live) must see each exactly once, in revision order.
func TestManyWritesExactlyOnce(t *testing.T) {
	e := newEnv(t, Config{})
	// 10,000 etcd writes take ~30 s when the machine is shared (load
	// 20+), the default test context's whole budget.
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	const writers, perWriter = 8, 1250
	start, err := e.c.CurrentRevision(c)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var written atomic.Int64
	for g := range writers {
		wg.Go(func() {
			for i := range perWriter {
				name := fmt.Sprintf("w%d-%d", g, i)
				if _, err := e.c.Create(c, key("ns", name), pod("ns", name, nil)); err != nil {
					t.Errorf("create: %v", err)
					return
				}
				written.Add(1)
			}
		})
	}
	// Start the watcher once part of the writes are done so it replays
	// some from the buffer and receives the rest live.
	for written.Load() < 2000 && !t.Failed() {
		time.Sleep(5 * time.Millisecond)
	}
	w, err := e.c.Watch(c, prefix, storage.WatchOptions{Recursive: true, ResourceVersion: fmt.Sprint(start)})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	seen := make(map[string]bool, writers*perWriter)
	last := start
	for len(seen) < writers*perWriter {
		var ev watch.Event
		select {
		case e, ok := <-w.ResultChan():
			if !ok {
				t.Fatalf("watch closed after %d events", len(seen))
			}
			ev = e
		case <-time.After(20 * time.Second):
			t.Fatalf("stalled after %d events", len(seen))
		}
		p := ev.Object.(*corev1.Pod)
		if ev.Type != watch.Added {
			t.Fatalf("unexpected %s %s", ev.Type, p.Name)
		}
		rv := rvOf(t, p)
		if rv <= last {
			t.Fatalf("event rv %d after %d: out of order", rv, last)
		}
		last = rv
		if seen[p.Name] {
			t.Fatalf("duplicate event for %s", p.Name)
		}
		seen[p.Name] = true
	}
	wg.Wait()
	cur, _ := e.c.CurrentRevision(c)
	if last != cur {
		t.Fatalf("last event rv %d, store at %d", last, cur)
	}
	select {
	case ev := <-w.ResultChan():
		t.Fatalf("extra event %s", ev.Type)
	case <-time.After(50 * time.Millisecond):
	}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// stuckWatchStore's watches deliver the underlying events but never close
// their channel, not even when stopped: as etcd's in-process client does
// when its cancel request cannot reach a server that is blocked sending.
type stuckWatchStore struct{ storage.Interface }

type stuckWatch struct {
	inner watch.Interface
	out   chan watch.Event
}

func (s stuckWatchStore) Watch(ctx context.Context, prefix string, opts storage.WatchOptions) (watch.Interface, error) {
	w, err := s.Interface.Watch(ctx, prefix, opts)
	if err != nil {
		return nil, err
	}
	sw := &stuckWatch{inner: w, out: make(chan watch.Event)}
	go func() {
		for ev := range w.ResultChan() {
			sw.out <- ev
		}
	}()
	return sw, nil
}

func (w *stuckWatch) Stop()                          { w.inner.Stop() }
func (w *stuckWatch) ResultChan() <-chan watch.Event { return w.out }

// TestStopDoesNotWaitForUnderlyingWatch: Stop returns even when the
// underlying watch never closes its channel (skiff server's shutdown hung
// there with the in-process etcd client).
func TestStopDoesNotWaitForUnderlyingWatch(t *testing.T) {
	client := storagetest.StartEtcd(t)
	newFunc := func() runtime.Object { return &corev1.Pod{} }
	st := stuckWatchStore{etcd3.New(etcd3.Config{Client: client, Codec: storagetest.ProtobufCodec(registry.NewScheme()), NewFunc: newFunc})}
	c, err := New(Config{Storage: st, Prefix: prefix, NewFunc: newFunc})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("cacher not ready")
	}
	rv := create(t, st, "ns", "a", nil)
	if err := c.waitForRV(tctx(t), rv); err != nil {
		t.Fatalf("cache did not see the write: %v", err)
	}
	stopped := make(chan struct{})
	go func() { c.Stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("Stop did not return while the underlying watch stayed open")
	}
}

// An update through the cacher starts from the cached object (which it
// leaves untouched); a key the cache has not seen is read as usual.
func TestGuaranteedUpdateStartsFromCache(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := tctx(t)
	rv := create(t, e.c, "ns", "a", map[string]string{"v": "0"})
	cached, err := e.c.Get(ctx, key("ns", "a"), storage.GetOptions{ResourceVersion: fmt.Sprint(rv)})
	if err != nil {
		t.Fatal(err)
	}
	before := cached.DeepCopyObject()
	out, err := e.c.GuaranteedUpdate(ctx, key("ns", "a"), false, func(cur runtime.Object) (runtime.Object, error) {
		p := cur.(*corev1.Pod)
		p.Labels["v"] = "1"
		return p, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := e.store.guesses.Load(); n != 1 {
		t.Fatalf("%d updates started from the cache, want 1", n)
	}
	if out.(*corev1.Pod).Labels["v"] != "1" || rvOf(t, out) <= rv {
		t.Fatalf("update from the cache: %+v", out.(*corev1.Pod).ObjectMeta)
	}
	if !equality.Semantic.DeepEqual(cached, before) {
		t.Fatal("the update modified the cached object")
	}
	if _, err := e.c.GuaranteedUpdate(ctx, key("ns", "absent"), true, func(runtime.Object) (runtime.Object, error) {
		return pod("ns", "absent", nil), nil
	}); err != nil {
		t.Fatal(err)
	}
	if n := e.store.guesses.Load(); n != 1 {
		t.Fatalf("a key the cache does not hold was updated from a guess (%d)", n)
	}
}

// A read at a revision the cache has not seen returns as soon as the
// event bringing it is processed: the event wakes the waiter (the fake
// clock never fires the retry timer that would otherwise end the wait).
func TestReadAtRevisionWokenByEvent(t *testing.T) {
	fc := testingclock.NewFakeClock(time.Now())
	e := newEnv(t, Config{Clock: fc})
	c := tctx(t)
	rv0 := create(t, e.c, "ns", "a", nil)
	got := make(chan error, 1)
	go func() {
		_, err := e.c.Get(c, key("ns", "b"), storage.GetOptions{ResourceVersion: fmt.Sprint(rv0 + 1)})
		got <- err
	}()
	waitFor(t, "the reader to wait", func() bool {
		e.c.mu.Lock()
		defer e.c.mu.Unlock()
		return e.c.rvCh != nil && e.c.rv >= rv0
	})
	create(t, e.c, "ns", "b", nil)
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("read at %d: %v", rv0+1, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("reader not woken by the event")
	}
}
