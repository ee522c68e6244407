package etcd3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"

	"skiff.dev/skiff/internal/registry"
	"skiff.dev/skiff/internal/storage"
	"skiff.dev/skiff/internal/storage/storagetest"
)

const prefix = "/registry/pods/"

func newStore(t testing.TB) (*Store, *clientv3.Client) {
	t.Helper()
	if inProcess {
		return newInProcessStore(t)
	}
	c := storagetest.StartEtcd(t)
	return New(Config{
		Client:  c,
		Codec:   storagetest.ProtobufCodec(registry.NewScheme()),
		NewFunc: func() runtime.Object { return &corev1.Pod{} },
	}), c
}

func pod(ns, name string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
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

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestCreateGet(t *testing.T) {
	s, _ := newStore(t)
	c := ctx(t)
	out, err := s.Create(c, key("ns", "a"), pod("ns", "a", nil))
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	rv := rvOf(t, out)
	if rv == 0 {
		t.Fatal("created object has no resourceVersion")
	}
	if _, err := s.Create(c, key("ns", "a"), pod("ns", "a", nil)); !storage.IsExists(err) {
		t.Fatalf("second create: got %v, want exists", err)
	}
	got, err := s.Get(c, key("ns", "a"), storage.GetOptions{})
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	p := got.(*corev1.Pod)
	if p.Name != "a" || p.Spec.Containers[0].Image != "nginx" || rvOf(t, p) != rv {
		t.Fatalf("get returned %+v", p)
	}
	if p.APIVersion != "v1" || p.Kind != "Pod" {
		t.Fatalf("get returned apiVersion %q kind %q", p.APIVersion, p.Kind)
	}
	if _, err := s.Get(c, key("ns", "missing"), storage.GetOptions{}); !storage.IsNotFound(err) {
		t.Fatalf("get missing: got %v, want not found", err)
	}
	if _, err := s.Get(c, key("ns", "a"), storage.GetOptions{ResourceVersion: fmt.Sprint(rv + 100)}); !storage.HasCode(err, storage.ErrCodeTooLargeResourceVersion) {
		t.Fatalf("get with future rv: got %v, want too large rv", err)
	}
	// The stored bytes carry no resourceVersion.
	raw, err := s.client.Get(c, key("ns", "a"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw.Kvs[0].Value), fmt.Sprint(rv)) && rv > 9 {
		t.Fatalf("stored object contains its resourceVersion")
	}
	n, err := s.Count(c, prefix)
	if err != nil || n != 1 {
		t.Fatalf("count = %d, %v; want 1", n, err)
	}
	cur, err := s.CurrentRevision(c)
	if err != nil || cur != rv {
		t.Fatalf("current revision = %d, %v; want %d", cur, err, rv)
	}
}

func TestTooLarge(t *testing.T) {
	s, _ := newStore(t)
	p := pod("ns", "big", nil)
	p.Annotations = map[string]string{"x": strings.Repeat("a", storage.MaxObjectSize)}
	if _, err := s.Create(ctx(t), key("ns", "big"), p); !storage.HasCode(err, storage.ErrCodeTooLarge) {
		t.Fatalf("create huge: got %v, want too large", err)
	}
}

func TestGuaranteedUpdateConflictRetry(t *testing.T) {
	s, _ := newStore(t)
	c := ctx(t)
	k := key("ns", "a")
	if _, err := s.Create(c, k, pod("ns", "a", nil)); err != nil {
		t.Fatal(err)
	}
	calls := 0
	out, err := s.GuaranteedUpdate(c, k, false, func(cur runtime.Object) (runtime.Object, error) {
		calls++
		if calls == 1 {
			// A concurrent writer wins the race.
			if _, err := s.GuaranteedUpdate(c, k, false, func(cur runtime.Object) (runtime.Object, error) {
				p := cur.(*corev1.Pod)
				p.Labels = map[string]string{"other": "writer"}
				return p, nil
			}); err != nil {
				t.Errorf("concurrent update: %v", err)
			}
		}
		p := cur.(*corev1.Pod)
		if p.Annotations == nil {
			p.Annotations = map[string]string{}
		}
		p.Annotations["mine"] = "yes"
		return p, nil
	})
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	if calls != 2 {
		t.Fatalf("tryUpdate called %d times, want 2 (one conflict)", calls)
	}
	p := out.(*corev1.Pod)
	if p.Labels["other"] != "writer" || p.Annotations["mine"] != "yes" {
		t.Fatalf("lost an update: %+v", p.ObjectMeta)
	}
	got, err := s.Get(c, k, storage.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rvOf(t, got) != rvOf(t, out) {
		t.Fatalf("returned rv %d, stored rv %d", rvOf(t, out), rvOf(t, got))
	}

	// No change: nothing written, current object returned.
	rv := rvOf(t, got)
	out, err = s.GuaranteedUpdate(c, k, false, func(cur runtime.Object) (runtime.Object, error) { return cur, nil })
	if err != nil || rvOf(t, out) != rv {
		t.Fatalf("identical update: rv %d err %v; want rv %d", rvOf(t, out), err, rv)
	}
	out, err = s.GuaranteedUpdate(c, k, false, func(cur runtime.Object) (runtime.Object, error) {
		return nil, fmt.Errorf("nothing to do: %w", storage.ErrNoChange)
	})
	if err != nil || rvOf(t, out) != rv {
		t.Fatalf("ErrNoChange update: rv %d err %v; want rv %d", rvOf(t, out), err, rv)
	}
	if cur, _ := s.CurrentRevision(c); cur != rv {
		t.Fatalf("no-op updates wrote: revision %d, want %d", cur, rv)
	}
	// Errors abort unchanged.
	veto := errors.New("veto")
	if _, err := s.GuaranteedUpdate(c, k, false, func(runtime.Object) (runtime.Object, error) { return nil, veto }); err != veto {
		t.Fatalf("got %v, want veto", err)
	}
	// Missing key.
	if _, err := s.GuaranteedUpdate(c, key("ns", "b"), false, func(cur runtime.Object) (runtime.Object, error) { return cur, nil }); !storage.IsNotFound(err) {
		t.Fatalf("update missing: got %v, want not found", err)
	}
	out, err = s.GuaranteedUpdate(c, key("ns", "b"), true, func(cur runtime.Object) (runtime.Object, error) {
		if cur != nil {
			t.Errorf("ignoreNotFound: current = %v, want nil", cur)
		}
		return pod("ns", "b", nil), nil
	})
	if err != nil || rvOf(t, out) == 0 {
		t.Fatalf("create through update: %v", err)
	}
}

func TestDeleteCheck(t *testing.T) {
	s, _ := newStore(t)
	c := ctx(t)
	k := key("ns", "a")
	created, err := s.Create(c, k, pod("ns", "a", nil))
	if err != nil {
		t.Fatal(err)
	}
	veto := errors.New("veto")
	if _, err := s.Delete(c, k, func(runtime.Object) error { return veto }); err != veto {
		t.Fatalf("vetoed delete: got %v, want veto", err)
	}
	if _, err := s.Get(c, k, storage.GetOptions{}); err != nil {
		t.Fatalf("object gone after vetoed delete: %v", err)
	}
	// The object changes between check and delete: check runs again on the
	// new state.
	var seen []int64
	out, err := s.Delete(c, k, func(cur runtime.Object) error {
		seen = append(seen, rvOf(t, cur))
		if len(seen) == 1 {
			if _, err := s.GuaranteedUpdate(c, k, false, func(cur runtime.Object) (runtime.Object, error) {
				cur.(*corev1.Pod).Labels = map[string]string{"changed": "1"}
				return cur, nil
			}); err != nil {
				t.Errorf("concurrent update: %v", err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("delete: %v", err)
	}
	if len(seen) != 2 || seen[0] != rvOf(t, created) || seen[1] <= seen[0] {
		t.Fatalf("check saw revisions %v", seen)
	}
	if out.(*corev1.Pod).Labels["changed"] != "1" || rvOf(t, out) != seen[1] {
		t.Fatalf("delete returned %+v", out.(*corev1.Pod).ObjectMeta)
	}
	if _, err := s.Delete(c, k, nil); !storage.IsNotFound(err) {
		t.Fatalf("second delete: got %v, want not found", err)
	}
}

func names(items []runtime.Object) []string {
	var out []string
	for _, it := range items {
		out = append(out, it.(*corev1.Pod).Name)
	}
	return out
}

func TestListPaginationSnapshot(t *testing.T) {
	s, _ := newStore(t)
	c := ctx(t)
	for i := range 10 {
		n := fmt.Sprintf("p%02d", i)
		if _, err := s.Create(c, key("ns", n), pod("ns", n, nil)); err != nil {
			t.Fatal(err)
		}
	}
	page, err := s.List(c, prefix, storage.ListOptions{Recursive: true, Limit: 4})
	if err != nil {
		t.Fatal(err)
	}
	if got := names(page.Items); strings.Join(got, ",") != "p00,p01,p02,p03" || page.Continue == "" {
		t.Fatalf("page 1 = %v continue %q", got, page.Continue)
	}
	if page.RemainingItemCount == nil || *page.RemainingItemCount != 6 {
		t.Fatalf("remaining = %v, want 6", page.RemainingItemCount)
	}
	snap := page.ResourceVersion
	// Writes between pages must not show up.
	if _, err := s.Delete(c, key("ns", "p05"), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(c, key("ns", "p041"), pod("ns", "p041", nil)); err != nil {
		t.Fatal(err)
	}
	all := names(page.Items)
	for page.Continue != "" {
		page, err = s.List(c, prefix, storage.ListOptions{Recursive: true, Limit: 4, Continue: page.Continue})
		if err != nil {
			t.Fatal(err)
		}
		if page.ResourceVersion != snap {
			t.Fatalf("page rv %d, want snapshot %d", page.ResourceVersion, snap)
		}
		all = append(all, names(page.Items)...)
	}
	if got := strings.Join(all, ","); got != "p00,p01,p02,p03,p04,p05,p06,p07,p08,p09" {
		t.Fatalf("paged list = %s", got)
	}
	// A fresh list sees the writes.
	full, err := s.List(c, prefix, storage.ListOptions{Recursive: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(full.Items) != 10 || full.Continue != "" || full.ResourceVersion <= snap {
		t.Fatalf("full list: %v rv %d", names(full.Items), full.ResourceVersion)
	}
	// Exact read of the old snapshot.
	old, err := s.List(c, prefix, storage.ListOptions{Recursive: true, ResourceVersion: fmt.Sprint(snap), ResourceVersionMatch: metav1.ResourceVersionMatchExact})
	if err != nil || len(old.Items) != 10 || names(old.Items)[5] != "p05" {
		t.Fatalf("exact list: %v %v", err, names(old.Items))
	}
	if _, err := s.List(c, prefix, storage.ListOptions{Recursive: true, Continue: "garbage!"}); !storage.HasCode(err, storage.ErrCodeInvalidContinue) {
		t.Fatalf("bad continue: got %v", err)
	}
	if _, err := s.List(c, prefix, storage.ListOptions{Recursive: true, ResourceVersion: fmt.Sprint(full.ResourceVersion + 10), ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan}); !storage.HasCode(err, storage.ErrCodeTooLargeResourceVersion) {
		t.Fatalf("future list: got %v", err)
	}
	one, err := s.List(c, key("ns", "p01"), storage.ListOptions{})
	if err != nil || len(one.Items) != 1 {
		t.Fatalf("non-recursive list: %v %v", err, one)
	}
}

func TestListLimitPredicate(t *testing.T) {
	s, _ := newStore(t)
	c := ctx(t)
	var want []string
	for i := range 30 {
		n := fmt.Sprintf("p%02d", i)
		labels := map[string]string{}
		if i%7 == 3 {
			labels["pick"] = "yes"
			want = append(want, n)
		}
		if _, err := s.Create(c, key("ns", n), pod("ns", n, labels)); err != nil {
			t.Fatal(err)
		}
	}
	pred := func(obj runtime.Object) bool { return obj.(*corev1.Pod).Labels["pick"] == "yes" }
	var got []string
	opts := storage.ListOptions{Recursive: true, Limit: 2, Predicate: pred}
	pages := 0
	for {
		page, err := s.List(c, prefix, opts)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(page.Items) > 2 {
			t.Fatalf("page has %d items, limit 2", len(page.Items))
		}
		if page.Continue != "" && len(page.Items) != 2 {
			t.Fatalf("non-final page has %d items: pages must be filled", len(page.Items))
		}
		if page.RemainingItemCount != nil {
			t.Fatalf("remaining item count set with a predicate")
		}
		got = append(got, names(page.Items)...)
		if page.Continue == "" {
			break
		}
		opts.Continue = page.Continue
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("got %v, want %v", got, want)
	}
	if pages > 3 {
		t.Fatalf("took %d pages for %d items", pages, len(want))
	}
}

func compact(t *testing.T, c *clientv3.Client, rev int64) {
	t.Helper()
	if _, err := c.Compact(ctx(t), rev, clientv3.WithCompactPhysical()); err != nil {
		t.Fatalf("compacting: %v", err)
	}
}

func TestCompactionGone(t *testing.T) {
	s, client := newStore(t)
	c := ctx(t)
	var first int64
	for i := range 5 {
		n := fmt.Sprintf("p%d", i)
		out, err := s.Create(c, key("ns", n), pod("ns", n, nil))
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = rvOf(t, out)
		}
	}
	page, err := s.List(c, prefix, storage.ListOptions{Recursive: true, Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(c, key("ns", "late"), pod("ns", "late", nil)); err != nil {
		t.Fatal(err)
	}
	cur, _ := s.CurrentRevision(c)
	compact(t, client, cur)

	if _, err := s.List(c, prefix, storage.ListOptions{Recursive: true, Continue: page.Continue, Limit: 2}); !storage.IsGone(err) {
		t.Fatalf("list with compacted continue: got %v, want gone", err)
	}
	if _, err := s.List(c, prefix, storage.ListOptions{Recursive: true, ResourceVersion: fmt.Sprint(first), ResourceVersionMatch: metav1.ResourceVersionMatchExact}); !storage.IsGone(err) {
		t.Fatalf("exact list at compacted rv: got %v, want gone", err)
	}
	w, err := s.Watch(c, prefix, storage.WatchOptions{Recursive: true, ResourceVersion: fmt.Sprint(first)})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	ev := next(t, w)
	st, ok := ev.Object.(*metav1.Status)
	if ev.Type != watch.Error || !ok || st.Code != 410 || st.Reason != metav1.StatusReasonExpired || !strings.Contains(st.Message, "too old resource version") {
		t.Fatalf("watch from compacted rv: got %s %+v", ev.Type, ev.Object)
	}
	if _, open := <-w.ResultChan(); open {
		t.Fatal("watch still open after 410")
	}
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

func expectEvent(t *testing.T, w watch.Interface, typ watch.EventType, name string, rv int64) {
	t.Helper()
	ev := next(t, w)
	if ev.Type != typ {
		t.Fatalf("got %s %+v, want %s %s", ev.Type, ev.Object, typ, name)
	}
	p := ev.Object.(*corev1.Pod)
	if p.Name != name || (rv != 0 && rvOf(t, p) != rv) {
		t.Fatalf("got %s %s rv %s, want %s rv %d", ev.Type, p.Name, p.ResourceVersion, name, rv)
	}
}

func TestWatchPredicateTransitions(t *testing.T) {
	s, _ := newStore(t)
	c := ctx(t)
	k := key("ns", "a")
	start, err := s.CurrentRevision(c)
	if err != nil {
		t.Fatal(err)
	}
	pred := func(obj runtime.Object) bool { return obj.(*corev1.Pod).Labels["app"] == "web" }
	w, err := s.Watch(c, prefix, storage.WatchOptions{Recursive: true, ResourceVersion: fmt.Sprint(start), Predicate: pred})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	setLabel := func(v string) int64 {
		out, err := s.GuaranteedUpdate(c, k, false, func(cur runtime.Object) (runtime.Object, error) {
			cur.(*corev1.Pod).Labels = map[string]string{"app": v}
			return cur, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return rvOf(t, out)
	}
	if _, err := s.Create(c, k, pod("ns", "a", map[string]string{"app": "db"})); err != nil {
		t.Fatal(err)
	}
	rv := setLabel("web")
	expectEvent(t, w, watch.Added, "a", rv)
	rv = setLabel("web2")
	ev := next(t, w)
	if p := ev.Object.(*corev1.Pod); ev.Type != watch.Deleted || rvOf(t, p) != rv || p.Labels["app"] != "web" {
		t.Fatalf("leaving selection: got %s %+v, want DELETED of the old state at rv %d", ev.Type, p.ObjectMeta, rv)
	}
	rv = setLabel("web")
	expectEvent(t, w, watch.Added, "a", rv)
	// Keeping labels but changing an annotation is a modification.
	out, err := s.GuaranteedUpdate(c, k, false, func(cur runtime.Object) (runtime.Object, error) {
		cur.(*corev1.Pod).Annotations = map[string]string{"x": "y"}
		return cur, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	expectEvent(t, w, watch.Modified, "a", rvOf(t, out))
	if _, err := s.Delete(c, k, nil); err != nil {
		t.Fatal(err)
	}
	delRV, _ := s.CurrentRevision(c)
	expectEvent(t, w, watch.Deleted, "a", delRV)
	// A non-matching object's lifetime produces nothing; a matching one after it does.
	if _, err := s.Create(c, key("ns", "b"), pod("ns", "b", nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Delete(c, key("ns", "b"), nil); err != nil {
		t.Fatal(err)
	}
	out, err = s.Create(c, key("ns", "c"), pod("ns", "c", map[string]string{"app": "web"}))
	if err != nil {
		t.Fatal(err)
	}
	expectEvent(t, w, watch.Added, "c", rvOf(t, out))
}

func TestWatchInitialEventsAndBookmarks(t *testing.T) {
	s, _ := newStore(t)
	c := ctx(t)
	for _, n := range []string{"a", "b"} {
		if _, err := s.Create(c, key("ns", n), pod("ns", n, nil)); err != nil {
			t.Fatal(err)
		}
	}
	yes := true
	w, err := s.Watch(c, prefix, storage.WatchOptions{Recursive: true, SendInitialEvents: &yes, AllowBookmarks: true})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	expectEvent(t, w, watch.Added, "a", 0)
	expectEvent(t, w, watch.Added, "b", 0)
	ev := next(t, w)
	cur, _ := s.CurrentRevision(c)
	if p, ok := ev.Object.(*corev1.Pod); ev.Type != watch.Bookmark || !ok || p.Annotations[InitialEventsAnnotation] != "true" || rvOf(t, p) != cur {
		t.Fatalf("got %s %+v, want initial-events-end bookmark at %d", ev.Type, ev.Object, cur)
	}
	out, err := s.Create(c, key("ns", "c"), pod("ns", "c", nil))
	if err != nil {
		t.Fatal(err)
	}
	expectEvent(t, w, watch.Added, "c", rvOf(t, out))
	// Writes elsewhere move the revision; a progress request reports it.
	if _, err := s.client.Put(c, "/registry/other/x", "y"); err != nil {
		t.Fatal(err)
	}
	cur, _ = s.CurrentRevision(c)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := s.RequestWatchProgress(c); err != nil {
			t.Fatal(err)
		}
		select {
		case ev := <-w.ResultChan():
			if ev.Type != watch.Bookmark {
				t.Fatalf("got %s, want bookmark", ev.Type)
			}
			if rvOf(t, ev.Object) == cur {
				return
			}
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("no bookmark at the current revision")
		}
	}
}

func BenchmarkCreate(b *testing.B) {
	s, _ := newStore(b)
	c := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		n := fmt.Sprintf("p%d", i)
		if _, err := s.Create(c, key("ns", n), pod("ns", n, nil)); err != nil {
			b.Fatal(err)
		}
	}
}

// A decision that ends without a write (here an error from tryUpdate) is
// taken again on a linearizable read, since the first read is
// serializable and may be stale.
func TestGuaranteedUpdateRechecksFailuresOnAFreshRead(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	key := "/registry/pods/ns/recheck"
	if _, err := s.Create(ctx, key, pod("ns", "recheck", nil)); err != nil {
		t.Fatal(err)
	}
	calls := 0
	refuse := errors.New("refused")
	_, err := s.GuaranteedUpdate(ctx, key, false, func(cur runtime.Object) (runtime.Object, error) {
		calls++
		return nil, refuse
	})
	if !errors.Is(err, refuse) {
		t.Fatalf("err = %v, want the tryUpdate error", err)
	}
	if calls != 2 {
		t.Errorf("tryUpdate ran %d times, want 2 (serializable read, then a linearizable re-check)", calls)
	}
	// A successful write needs no re-check.
	calls = 0
	if _, err := s.GuaranteedUpdate(ctx, key, false, func(cur runtime.Object) (runtime.Object, error) {
		calls++
		p := cur.(*corev1.Pod)
		p.Spec.NodeName = "n1"
		return p, nil
	}); err != nil {
		t.Fatal(err)
	}
	if calls != 1 {
		t.Errorf("tryUpdate ran %d times for a clean write, want 1", calls)
	}
	// Not found is confirmed on a linearizable read too.
	if _, err := s.GuaranteedUpdate(ctx, "/registry/pods/ns/absent", false, func(cur runtime.Object) (runtime.Object, error) {
		t.Fatal("tryUpdate called for a missing key")
		return nil, nil
	}); !storage.IsNotFound(err) {
		t.Errorf("err = %v, want not found", err)
	}
}

// countingKV counts the reads a store issues.
type countingKV struct {
	clientv3.KV
	gets int
}

func (k *countingKV) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	k.gets++
	return k.KV.Get(ctx, key, opts...)
}

// An update started from a guess (the watch cache's copy): a current guess
// is written without reading the key, the guess itself is never modified,
// and a stale one or one of a deleted object costs a retry on the current
// state, never a lost write or a write of stale content. Guesses come with
// the bytes etcd holds for them (the watch cache's, from its watch) or
// without (then the store encodes them): both answer the same.
func TestGuaranteedUpdateFromGuess(t *testing.T) {
	for _, withData := range []bool{false, true} {
		t.Run(fmt.Sprintf("data=%v", withData), func(t *testing.T) { testGuaranteedUpdateFromGuess(t, withData) })
	}
}

func testGuaranteedUpdateFromGuess(t *testing.T, withData bool) {
	s, client := newStore(t)
	c := ctx(t)
	k := key("ns", "g")
	created, err := s.Create(c, k, pod("ns", "g", nil))
	if err != nil {
		t.Fatal(err)
	}
	guess := created.DeepCopyObject().(*corev1.Pod)
	pristine := guess.DeepCopy()
	raw := client.KV
	// stored is obj as a cache hands it over.
	stored := func(obj *corev1.Pod) *storage.Stored {
		st := &storage.Stored{Key: k, ResourceVersion: rvOf(t, obj), Object: obj}
		if withData {
			resp, err := raw.Get(c, k, clientv3.WithRev(st.ResourceVersion))
			if err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].ModRevision != st.ResourceVersion {
				t.Fatalf("reading the stored bytes at %d: %v %v", st.ResourceVersion, resp, err)
			}
			st.Data = resp.Kvs[0].Value
		}
		return st
	}
	guessSt := stored(guess)
	pristineData := append([]byte(nil), guessSt.Data...)
	kv := &countingKV{KV: client.KV}
	client.KV = kv
	t.Cleanup(func() { client.KV = kv.KV })

	label := func(v string) storage.UpdateFunc {
		return func(cur runtime.Object) (runtime.Object, error) {
			p := cur.(*corev1.Pod)
			if p == guess {
				t.Fatal("tryUpdate was handed the guess itself")
			}
			p.Labels = map[string]string{"v": v}
			return p, nil
		}
	}
	// Current guess: no read.
	out, err := s.GuaranteedUpdateFrom(c, k, false, label("1"), guessSt)
	if err != nil {
		t.Fatal(err)
	}
	if kv.gets != 0 {
		t.Errorf("%d reads for an update from a current guess, want 0", kv.gets)
	}
	if !reflect.DeepEqual(guess, pristine) {
		t.Fatalf("the guess was modified: %+v", guess.ObjectMeta)
	}
	if rvOf(t, out) <= rvOf(t, guess) {
		t.Fatalf("update from a current guess returned rv %d, guess was at %d", rvOf(t, out), rvOf(t, guess))
	}

	// Stale guess: the first attempt loses the compare-and-swap, the
	// second runs on the current object (label v=1 kept, annotation added).
	calls := 0
	out, err = s.GuaranteedUpdateFrom(c, k, false, func(cur runtime.Object) (runtime.Object, error) {
		calls++
		p := cur.(*corev1.Pod)
		if calls == 2 && p.Labels["v"] != "1" {
			t.Errorf("retry ran on %v, want the current object", p.Labels)
		}
		p.Annotations = map[string]string{"a": "b"}
		return p, nil
	}, guessSt)
	if err != nil {
		t.Fatal(err)
	}
	got := out.(*corev1.Pod)
	if calls != 2 || got.Labels["v"] != "1" || got.Annotations["a"] != "b" {
		t.Fatalf("stale guess: %d attempts, result %+v", calls, got.ObjectMeta)
	}

	// A refusal on a stale guess is re-taken on a fresh read, where the
	// update goes through (a resourceVersion precondition the cache had
	// not caught up with).
	want := rvOf(t, got)
	calls = 0
	out, err = s.GuaranteedUpdateFrom(c, k, false, func(cur runtime.Object) (runtime.Object, error) {
		calls++
		if rvOf(t, cur) != want {
			return nil, errors.New("conflict")
		}
		p := cur.(*corev1.Pod)
		p.Labels["v"] = "2"
		return p, nil
	}, guessSt)
	if err != nil || calls != 2 || out.(*corev1.Pod).Labels["v"] != "2" {
		t.Fatalf("refusal on a stale guess: %d attempts, err %v", calls, err)
	}

	// Unchanged content on a stale guess is not taken as "no change"
	// before a fresh read: the current object is returned, nothing written.
	cur := out.DeepCopyObject().(*corev1.Pod)
	client.KV = raw
	curSt := stored(cur)
	client.KV = kv
	rev, _ := s.CurrentRevision(c)
	out, err = s.GuaranteedUpdateFrom(c, k, false, func(runtime.Object) (runtime.Object, error) {
		return nil, storage.ErrNoChange
	}, guessSt)
	if err != nil || rvOf(t, out) != rvOf(t, cur) {
		t.Fatalf("no change from a stale guess: rv %d err %v, want the current rv %d", rvOf(t, out), err, rvOf(t, cur))
	}
	out, err = s.GuaranteedUpdateFrom(c, k, false, func(o runtime.Object) (runtime.Object, error) { return o, nil }, curSt)
	if err != nil || rvOf(t, out) != rvOf(t, cur) {
		t.Fatalf("identical content from a current guess: rv %d err %v, want %d", rvOf(t, out), err, rvOf(t, cur))
	}
	if now, _ := s.CurrentRevision(c); now != rev {
		t.Fatalf("no-op updates from guesses wrote: revision %d, want %d", now, rev)
	}

	// The object was deleted since the guess.
	if _, err := s.Delete(c, k, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GuaranteedUpdateFrom(c, k, false, label("3"), curSt); !storage.IsNotFound(err) {
		t.Fatalf("update from the guess of a deleted object: %v, want not found", err)
	}
	if !reflect.DeepEqual(guess, pristine) {
		t.Fatalf("the guess was modified: %+v", guess.ObjectMeta)
	}
	if !bytes.Equal(guessSt.Data, pristineData) {
		t.Fatal("the guess's stored bytes were modified")
	}
}
