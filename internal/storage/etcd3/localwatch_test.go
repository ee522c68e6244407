package etcd3

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/etcdserver/api/v3rpc"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"

	"skiff.dev/skiff/internal/registry"
	"skiff.dev/skiff/internal/storage"
	"skiff.dev/skiff/internal/storage/storagetest"
)

// localAndClient returns two stores on one in-process member: local's
// watch cache watches read the member's watch streams (its KV is the
// member's InProcessKV, a LocalWatchable), viaClient's go through
// clientv3.
func localAndClient(t *testing.T) (local, viaClient *Store) {
	t.Helper()
	local, client := newInProcessStore(t)
	if local.local == nil {
		t.Fatalf("InProcessKV (%T) is not a LocalWatchable", local.kv)
	}
	viaClient = New(Config{
		Client:  client,
		Codec:   storagetest.ProtobufCodec(registry.NewScheme()),
		NewFunc: func() runtime.Object { return &corev1.Pod{} },
	})
	return local, viaClient
}

// sameEvent fails unless a and b are the same watch event: type, and for
// a *storage.Stored the key, revision, stored bytes and decoded object;
// for a bookmark the revision; for an error the status.
func sameEvent(t *testing.T, i int, a, b watch.Event) {
	t.Helper()
	if a.Type != b.Type {
		t.Fatalf("event %d: local %s %+v, clientv3 %s %+v", i, a.Type, a.Object, b.Type, b.Object)
	}
	sa, oka := a.Object.(*storage.Stored)
	sb, okb := b.Object.(*storage.Stored)
	if oka != okb {
		t.Fatalf("event %d: local %T, clientv3 %T", i, a.Object, b.Object)
	}
	if oka {
		if sa.Key != sb.Key || sa.ResourceVersion != sb.ResourceVersion || !bytes.Equal(sa.Data, sb.Data) ||
			(sa.Data == nil) != (sb.Data == nil) || !equality.Semantic.DeepEqual(sa.Object, sb.Object) {
			t.Fatalf("event %d differs:\nlocal   %s %d %+v\nclientv3 %s %d %+v", i, sa.Key, sa.ResourceVersion, sa.Object,
				sb.Key, sb.ResourceVersion, sb.Object)
		}
		return
	}
	if !equality.Semantic.DeepEqual(a.Object, b.Object) {
		t.Fatalf("event %d differs:\nlocal   %+v\nclientv3 %+v", i, a.Object, b.Object)
	}
}

// The watch cache's watch read from the member's watch streams delivers
// exactly what the clientv3 watch delivers: the same events (types, keys,
// revisions, bytes, objects) for creates, updates and deletes under the
// prefix, from a revision and from "now" with the initial state, for a
// recursive and a single-key watch; bookmarks at the same revisions on a
// progress request; a 410 for a compacted revision.
func TestLocalWatchMatchesClientv3(t *testing.T) {
	local, viaClient := localAndClient(t)
	c := ctx(t)
	if _, err := local.Create(c, key("ns", "old"), pod("ns", "old", nil)); err != nil {
		t.Fatal(err)
	}
	start, err := local.CurrentRevision(c)
	if err != nil {
		t.Fatal(err)
	}
	open := func(name, pfx string, opts storage.WatchOptions) [2]watch.Interface {
		var ws [2]watch.Interface
		for i, s := range []*Store{local, viaClient} {
			w, err := s.Watch(c, pfx, opts)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			t.Cleanup(w.Stop)
			ws[i] = w
		}
		return ws
	}
	fromRev := open("from revision", prefix, storage.WatchOptions{Recursive: true, ResourceVersion: fmt.Sprint(start), ForCache: true, AllowBookmarks: true})
	fromNow := open("from now", prefix, storage.WatchOptions{Recursive: true, ForCache: true})
	oneKey := open("one key", key("ns", "a"), storage.WatchOptions{ResourceVersion: fmt.Sprint(start), ForCache: true})
	// "from now" starts with the initial state read when its goroutine
	// runs: take it before writing, so both read the same state.
	sameEvent(t, -1, next(t, fromNow[0]), next(t, fromNow[1]))

	ka, kb := key("ns", "a"), key("other", "b")
	writes := 0
	write := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		writes++
	}
	_, err = local.Create(c, ka, pod("ns", "a", nil))
	write(err)
	_, err = viaClient.Create(c, kb, pod("other", "b", map[string]string{"x": "y"}))
	write(err)
	for i := range 3 {
		_, err = local.GuaranteedUpdate(c, ka, false, func(cur runtime.Object) (runtime.Object, error) {
			cur.(*corev1.Pod).Labels = map[string]string{"v": fmt.Sprint(i)}
			return cur, nil
		})
		write(err)
	}
	if _, err := local.client.Put(c, "/registry/podsx/outside", "not under the prefix"); err != nil {
		t.Fatal(err)
	}
	_, err = local.Delete(c, kb, nil)
	write(err)
	_, err = local.Delete(c, ka, nil)
	write(err)
	_, err = local.Create(c, ka, pod("ns", "a", nil))
	write(err)

	for _, w := range [][2]watch.Interface{fromRev, fromNow} {
		for i := range writes {
			sameEvent(t, i, next(t, w[0]), next(t, w[1]))
		}
	}
	for i := range 6 { // create, 3 updates, delete, create of ns/a
		sameEvent(t, i, next(t, oneKey[0]), next(t, oneKey[1]))
	}

	// A progress request reaches both; the bookmark carries the current
	// revision (the write outside the prefix included).
	cur, _ := local.CurrentRevision(c)
	for i, s := range []*Store{local, viaClient} {
		if err := s.RequestWatchProgress(c); err != nil {
			t.Fatal(err)
		}
		ev := next(t, fromRev[i])
		if ev.Type != watch.Bookmark || rvOf(t, ev.Object) != cur {
			t.Fatalf("store %d: got %s %+v, want a bookmark at %d", i, ev.Type, ev.Object, cur)
		}
	}

	// A watch from a compacted revision ends with the same 410.
	compact(t, local.client, cur)
	gone := open("compacted", prefix, storage.WatchOptions{Recursive: true, ResourceVersion: fmt.Sprint(start), ForCache: true})
	ea, eb := next(t, gone[0]), next(t, gone[1])
	sameEvent(t, 0, ea, eb)
	if st, ok := ea.Object.(*metav1.Status); ea.Type != watch.Error || !ok || st.Code != 410 || !strings.Contains(st.Message, "too old resource version") {
		t.Fatalf("watch from a compacted revision: got %s %+v", ea.Type, ea.Object)
	}
	for i, w := range gone {
		if _, open := <-w.ResultChan(); open {
			t.Fatalf("watch %d still open after 410", i)
		}
	}

	// A stopped watch leaves the set RequestWatchProgress walks.
	for _, w := range [][2]watch.Interface{fromRev, fromNow, oneKey} {
		w[0].Stop()
		for range w[0].ResultChan() {
		}
	}
	local.locals.mu.Lock()
	left := len(local.locals.m)
	local.locals.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d local watches registered after every watch stopped", left)
	}
}

// A local watch that allows bookmarks gets periodic progress
// notifications at the member's interval while no events arrive, as
// v3rpc sends them; one that does not allow them gets none.
func TestLocalWatchPeriodicProgress(t *testing.T) {
	old := v3rpc.GetProgressReportInterval()
	v3rpc.SetProgressReportInterval(150 * time.Millisecond)
	t.Cleanup(func() { v3rpc.SetProgressReportInterval(old * 10 / 11) }) // undo the jitter roughly
	local, _ := localAndClient(t)
	c := ctx(t)
	if _, err := local.Create(c, key("ns", "a"), pod("ns", "a", nil)); err != nil {
		t.Fatal(err)
	}
	w, err := local.Watch(c, prefix, storage.WatchOptions{Recursive: true, ResourceVersion: "1", ForCache: true, AllowBookmarks: true})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	quiet, err := local.Watch(c, prefix, storage.WatchOptions{Recursive: true, ResourceVersion: "1", ForCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer quiet.Stop()
	if ev := next(t, w); ev.Type != watch.Added {
		t.Fatalf("got %s, want the create", ev.Type)
	}
	if ev := next(t, quiet); ev.Type != watch.Added {
		t.Fatalf("got %s, want the create", ev.Type)
	}
	if _, err := local.client.Put(c, "/registry/other/x", "y"); err != nil {
		t.Fatal(err)
	}
	cur, _ := local.CurrentRevision(c)
	ev := next(t, w)
	if ev.Type != watch.Bookmark || rvOf(t, ev.Object) != cur {
		t.Fatalf("got %s %+v, want a periodic bookmark at %d", ev.Type, ev.Object, cur)
	}
	select {
	case ev := <-quiet.ResultChan():
		t.Fatalf("a watch without bookmarks got %s %+v", ev.Type, ev.Object)
	case <-time.After(400 * time.Millisecond):
	}
}

// A consumer that takes nothing while hundreds of changes happen (more
// than the member's and the result channel's buffers hold) then gets
// them all, in order, the same as through clientv3.
func TestLocalWatchSlowConsumer(t *testing.T) {
	local, viaClient := localAndClient(t)
	c := ctx(t)
	start, err := local.CurrentRevision(c)
	if err != nil {
		t.Fatal(err)
	}
	var ws [2]watch.Interface
	for i, s := range []*Store{local, viaClient} {
		if ws[i], err = s.Watch(c, prefix, storage.WatchOptions{Recursive: true, ResourceVersion: fmt.Sprint(start), ForCache: true}); err != nil {
			t.Fatal(err)
		}
		defer ws[i].Stop()
	}
	const n = 400
	for i := range n {
		name := fmt.Sprintf("p%d", i)
		if _, err := local.Create(c, key("ns", name), pod("ns", name, nil)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		a, b := next(t, ws[0]), next(t, ws[1])
		sameEvent(t, i, a, b)
		if st := a.Object.(*storage.Stored); st.ResourceVersion != start+int64(i)+1 {
			t.Fatalf("event %d at revision %d, want %d", i, st.ResourceVersion, start+int64(i)+1)
		}
	}
}

// stoppable is a LocalWatchable whose member "stops" when told.
type stoppable struct {
	LocalWatchable
	stop chan struct{}
}

func (s stoppable) StopNotify() <-chan struct{} { return s.stop }

// A local watch whose member stops ends with an error event and closes,
// as a clientv3 watch whose client goes away does.
func TestLocalWatchEndsWhenTheMemberStops(t *testing.T) {
	local, _ := localAndClient(t)
	st := stoppable{LocalWatchable: local.local, stop: make(chan struct{})}
	local.local = st
	w, err := local.Watch(ctx(t), prefix, storage.WatchOptions{Recursive: true, ResourceVersion: "1", ForCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	close(st.stop)
	ev := next(t, w)
	if s, ok := ev.Object.(*metav1.Status); ev.Type != watch.Error || !ok || !strings.Contains(s.Message, "member stopped") {
		t.Fatalf("got %s %+v, want an error event", ev.Type, ev.Object)
	}
	if _, open := <-w.ResultChan(); open {
		t.Fatal("watch still open after the member stopped")
	}
}
