package apiserver

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"

	"skiff.dev/skiff/internal/storage/cacher"
	"skiff.dev/skiff/test/integration/framework"
)

// recorder is an informer handler that keeps every notification.
type recorder struct {
	mu sync.Mutex
	// byName: resourceVersions seen per object, in delivery order; a
	// delete is recorded as "D" (its resourceVersion is the deletion's
	// revision, which the writer does not learn).
	byName map[string][]string
	// rvs: every resourceVersion delivered per object, deletes included,
	// which must increase.
	rvs    map[string][]int64
	events atomic.Int64
}

func newRecorder() *recorder {
	return &recorder{byName: map[string][]string{}, rvs: map[string][]int64{}}
}

func (r *recorder) add(name, entry, rv string) {
	n, _ := strconv.ParseInt(rv, 10, 64)
	r.mu.Lock()
	r.byName[name] = append(r.byName[name], entry)
	r.rvs[name] = append(r.rvs[name], n)
	r.mu.Unlock()
	r.events.Add(1)
}

func (r *recorder) handler() cache.ResourceEventHandlerFuncs {
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			cm := obj.(*corev1.ConfigMap)
			r.add(cm.Name, cm.ResourceVersion, cm.ResourceVersion)
		},
		UpdateFunc: func(_, obj any) {
			cm := obj.(*corev1.ConfigMap)
			r.add(cm.Name, cm.ResourceVersion, cm.ResourceVersion)
		},
		DeleteFunc: func(obj any) {
			if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			cm := obj.(*corev1.ConfigMap)
			r.add(cm.Name, "D", cm.ResourceVersion)
		},
	}
}

// writeLog is what the writers did, per object: the resourceVersion each
// successful create or update returned, "D" for a delete.
type writeLog struct {
	mu     sync.Mutex
	byName map[string][]string
}

func (l *writeLog) add(name, entry string) {
	l.mu.Lock()
	l.byName[name] = append(l.byName[name], entry)
	l.mu.Unlock()
}

func TestInformerSeesEveryWriteOnce(t *testing.T) {
	c := framework.Start(t, framework.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const ns = "informer"
	createNamespace(t, c, ns)
	cms := c.Client.CoreV1().ConfigMaps(ns)

	// A second informer lists now but cannot watch until the writes are
	// done and etcd is compacted: its resourceVersion is then too old and
	// it must get 410 and relist.
	staleList, err := cms.List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("listing: %v", err)
	}
	staleRV := staleList.ResourceVersion

	rec := newRecorder()
	inf := cache.NewSharedIndexInformer(cache.ToListWatcherWithWatchListSemantics(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return cms.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return cms.Watch(ctx, o)
		},
	}, c.Client), &corev1.ConfigMap{}, 0, cache.Indexers{})
	if _, err := inf.AddEventHandler(rec.handler()); err != nil {
		t.Fatalf("adding handler: %v", err)
	}
	go inf.Run(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		t.Fatalf("informer did not sync")
	}

	// 10,000 writes from 50 goroutines, each owning its own objects so
	// every write's outcome is known: creates, updates, deletes and
	// re-creates mixed.
	const writers, perWriter = 50, 200
	log := &writeLog{byName: map[string][]string{}}
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	start := time.Now()
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(w), 42))
			live := map[string]*corev1.ConfigMap{}
			names := make([]string, 5)
			for i := range names {
				names[i] = fmt.Sprintf("w%d-%d", w, i)
			}
			for i := 0; i < perWriter; i++ {
				name := names[rnd.IntN(len(names))]
				cur := live[name]
				var err error
				switch {
				case cur == nil:
					cur, err = cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"i": strconv.Itoa(i)}}, metav1.CreateOptions{})
					if err == nil {
						live[name] = cur
						log.add(name, cur.ResourceVersion)
					}
				case rnd.IntN(4) == 0:
					err = cms.Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &cur.ResourceVersion}})
					if err == nil {
						delete(live, name)
						log.add(name, "D")
					}
				default:
					upd := cur.DeepCopy()
					upd.Data["i"] = strconv.Itoa(i)
					cur, err = cms.Update(ctx, upd, metav1.UpdateOptions{})
					if err == nil {
						live[name] = cur
						log.add(name, cur.ResourceVersion)
					}
				}
				if err != nil {
					errs <- fmt.Errorf("writer %d op %d on %s: %w", w, i, name, err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("10000 writes in %v", time.Since(start))

	total := 0
	for _, l := range log.byName {
		total += len(l)
	}
	if total != writers*perWriter {
		t.Fatalf("logged %d writes, want %d", total, writers*perWriter)
	}
	waitFor(t, 30*time.Second, func() bool { return rec.events.Load() >= int64(total) }, func() string {
		return fmt.Sprintf("handler saw %d of %d events", rec.events.Load(), total)
	})
	// Give stray duplicates a moment to show up.
	time.Sleep(200 * time.Millisecond)
	rec.mu.Lock()
	for name, want := range log.byName {
		if got := rec.byName[name]; !reflect.DeepEqual(got, want) {
			t.Errorf("%s: handler saw %v, want %v", name, got, want)
		}
	}
	for name, rvs := range rec.rvs {
		if _, ok := log.byName[name]; !ok {
			t.Errorf("handler saw events for %s, which nobody wrote", name)
		}
		for i := 1; i < len(rvs); i++ {
			if rvs[i] <= rvs[i-1] {
				t.Errorf("%s: resourceVersions out of order: %v", name, rvs)
				break
			}
		}
	}
	rec.mu.Unlock()
	assertCacheMatchesList(t, inf.GetStore(), cms.List)

	// Restart after compaction. The watch cache replays from its window
	// of the last cacher.DefaultEventBufferSize events whatever etcd
	// compacted (as upstream's does), so first push the stale
	// resourceVersion out of that window, then compact etcd at the
	// current revision: a watch from the stale resourceVersion is 410
	// Gone, and an informer holding it relists and converges.
	filler, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "filler"}, Data: map[string]string{}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating filler: %v", err)
	}
	for i := total + 1; i <= cacher.DefaultEventBufferSize+10; i++ {
		filler.Data = map[string]string{"i": strconv.Itoa(i)}
		if filler, err = cms.Update(ctx, filler, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("updating filler: %v", err)
		}
	}
	fresh, err := cms.List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("listing: %v", err)
	}
	compact(t, c, fresh.ResourceVersion)
	_, err = cms.Watch(ctx, metav1.ListOptions{ResourceVersion: staleRV})
	if !apierrors.IsResourceExpired(err) && !apierrors.IsGone(err) {
		t.Fatalf("watch from compacted resourceVersion %s: err %v, want 410", staleRV, err)
	}

	var lists, expired atomic.Int64
	staleInf := cache.NewSharedIndexInformer(listWatchNoWatchList{&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			if lists.Add(1) == 1 {
				// The informer's memory from before the writes.
				return staleList.DeepCopy(), nil
			}
			return cms.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			w, err := cms.Watch(ctx, o)
			if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
				expired.Add(1)
			}
			return w, err
		},
	}}, &corev1.ConfigMap{}, 0, cache.Indexers{})
	go staleInf.Run(ctx.Done())
	waitFor(t, 30*time.Second, func() bool { return lists.Load() >= 2 && expired.Load() >= 1 && staleInf.HasSynced() }, func() string {
		return fmt.Sprintf("stale informer: %d lists, %d expired watches", lists.Load(), expired.Load())
	})
	// Converged: both informers agree with a fresh LIST, also after a
	// write made after the relist.
	if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "after-relist"}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating: %v", err)
	}
	waitFor(t, 10*time.Second, func() bool {
		_, ok1, _ := staleInf.GetStore().GetByKey(ns + "/after-relist")
		_, ok2, _ := inf.GetStore().GetByKey(ns + "/after-relist")
		return ok1 && ok2
	}, func() string { return "informers did not see the write after the relist" })
	assertCacheMatchesList(t, staleInf.GetStore(), cms.List)
	assertCacheMatchesList(t, inf.GetStore(), cms.List)
}

// listWatchNoWatchList makes a reflector use LIST then WATCH (not a
// streaming watch-list), so the stale list above is what it starts from.
type listWatchNoWatchList struct{ *cache.ListWatch }

func (listWatchNoWatchList) IsWatchListSemanticsUnSupported() bool { return true }

func assertCacheMatchesList(t *testing.T, store cache.Store, list func(context.Context, metav1.ListOptions) (*corev1.ConfigMapList, error)) {
	t.Helper()
	// The informer may lag a fresh list by a few events; retry briefly.
	var diff string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		l, err := list(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatalf("listing: %v", err)
		}
		want := map[string]string{}
		for _, cm := range l.Items {
			want[cm.Name] = cm.ResourceVersion
		}
		got := map[string]string{}
		for _, o := range store.List() {
			cm := o.(*corev1.ConfigMap)
			got[cm.Name] = cm.ResourceVersion
		}
		if reflect.DeepEqual(got, want) {
			return
		}
		diff = mapDiff(got, want)
	}
	t.Errorf("informer cache differs from a fresh LIST: %s", diff)
}

func mapDiff(got, want map[string]string) string {
	var out []string
	for k, v := range want {
		if got[k] != v {
			out = append(out, fmt.Sprintf("%s: cache %q list %q", k, got[k], v))
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			out = append(out, fmt.Sprintf("%s: cache %q, not in list", k, v))
		}
	}
	sort.Strings(out)
	if len(out) > 10 {
		out = append(out[:10], fmt.Sprintf("... %d more", len(out)-10))
	}
	return fmt.Sprint(out)
}

func waitFor(t *testing.T, d time.Duration, cond func() bool, msg func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v: %s", d, msg())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
