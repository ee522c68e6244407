package etcd3

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"

	"skiff.dev/skiff/internal/storage"
)

// InitialEventsAnnotation marks the bookmark that ends the initial events
// of a watch with SendInitialEvents.
const InitialEventsAnnotation = "k8s.io/initial-events-end"

// watchResultBuffer is the result channel's capacity: enough to decouple
// etcd's stream from the consumer for short bursts.
const watchResultBuffer = 100

// watchContext gives every watch (and progress request) the same gRPC
// metadata, so they share one etcd watch stream and RequestProgress reaches
// all of them.
func watchContext(ctx context.Context) context.Context {
	return clientv3.WithRequireLeader(ctx)
}

type watcher struct {
	s      *Store
	prefix string
	opts   storage.WatchOptions
	rv     int64
	ctx    context.Context
	cancel context.CancelFunc
	result chan watch.Event
}

// Watch implements storage.Interface.
func (s *Store) Watch(ctx context.Context, prefix string, opts storage.WatchOptions) (watch.Interface, error) {
	rv, err := storage.ParseResourceVersion(opts.ResourceVersion)
	if err != nil {
		return nil, storage.NewError(storage.ErrCodeInvalidObj, prefix, 0, err.Error())
	}
	if opts.ForCache && opts.Predicate != nil {
		return nil, storage.NewError(storage.ErrCodeInvalidObj, prefix, 0, "a watch for a cache takes no predicate")
	}
	wctx, cancel := context.WithCancel(watchContext(ctx))
	w := &watcher{s: s, prefix: prefix, opts: opts, rv: rv, ctx: wctx, cancel: cancel,
		result: make(chan watch.Event, watchResultBuffer)}
	go w.run()
	return w, nil
}

func (w *watcher) Stop()                          { w.cancel() }
func (w *watcher) ResultChan() <-chan watch.Event { return w.result }

func (w *watcher) send(ev watch.Event) bool {
	select {
	case w.result <- ev:
		return true
	case <-w.ctx.Done():
		return false
	}
}

func (w *watcher) sendError(err error) {
	var status *apierrors.StatusError
	switch {
	case storage.IsGone(err):
		status = apierrors.NewResourceExpired(err.Error())
	default:
		status = apierrors.NewInternalError(err)
	}
	st := status.Status()
	w.send(watch.Event{Type: watch.Error, Object: &st})
}

func (w *watcher) matches(obj runtime.Object) bool {
	return w.opts.Predicate == nil || w.opts.Predicate(obj)
}

func (w *watcher) bookmark(rv int64, initialEnd bool) bool {
	ev, err := w.bookmarkEvent(rv, initialEnd)
	if err != nil {
		w.sendError(err)
		return false
	}
	return w.send(ev)
}

func (w *watcher) bookmarkEvent(rv int64, initialEnd bool) (watch.Event, error) {
	obj := w.s.newFunc()
	if err := storage.SetResourceVersion(obj, rv); err != nil {
		return watch.Event{}, err
	}
	if initialEnd {
		if m, err := meta.Accessor(obj); err == nil {
			m.SetAnnotations(map[string]string{InitialEventsAnnotation: "true"})
		}
	}
	return watch.Event{Type: watch.Bookmark, Object: obj}, nil
}

func (w *watcher) run() {
	defer close(w.result)
	defer w.cancel()
	initial := w.rv == 0
	if w.opts.SendInitialEvents != nil {
		initial = *w.opts.SendInitialEvents
	}
	startRev := int64(0)
	if w.rv > 0 {
		startRev = w.rv + 1
	}
	if initial {
		rev, ok := w.sendInitial()
		if !ok {
			return
		}
		startRev = rev + 1
	}
	var ops []clientv3.OpOption
	if !w.opts.ForCache {
		// Previous values cost etcd a read per event: only predicate
		// transitions and DELETED events need them, and a cache has its
		// own copy of the previous state.
		ops = append(ops, clientv3.WithPrevKV())
	}
	if startRev > 0 {
		ops = append(ops, clientv3.WithRev(startRev))
	}
	if w.opts.Recursive {
		ops = append(ops, clientv3.WithPrefix())
	}
	if w.opts.AllowBookmarks {
		ops = append(ops, clientv3.WithProgressNotify())
	}
	if w.opts.ForCache && w.s.local != nil {
		w.runLocal(startRev)
		return
	}
	for resp := range w.s.client.Watch(w.ctx, w.prefix, ops...) {
		if resp.CompactRevision != 0 {
			w.sendCompacted(startRev, resp.CompactRevision)
			return
		}
		if err := resp.Err(); err != nil {
			w.sendError(fmt.Errorf("watching %s: %w", w.prefix, err))
			return
		}
		if resp.IsProgressNotify() {
			if w.opts.AllowBookmarks && !w.bookmark(resp.Header.Revision, false) {
				return
			}
			continue
		}
		if !w.sendEvents(resp.Events) {
			return
		}
	}
}

func (w *watcher) sendCompacted(startRev, compactRev int64) {
	w.sendError(storage.NewError(storage.ErrCodeResourceExpired, w.prefix, startRev-1,
		fmt.Sprintf("too old resource version: %d (%d)", startRev-1, compactRev)))
}

// sendEvents converts and sends events; false when the watch ends.
func (w *watcher) sendEvents(events []*clientv3.Event) bool {
	for _, ev := range events {
		if !w.sendEvent(ev) {
			return false
		}
	}
	return true
}

// sendEvent converts and sends one event; false when the watch ends.
func (w *watcher) sendEvent(ev *clientv3.Event) bool {
	out, ok, err := w.convert(ev)
	if err != nil {
		w.sendError(err)
		return false
	}
	return !ok || w.send(out)
}

// sendInitial sends the current state as ADDED events and returns the
// revision it was read at.
func (w *watcher) sendInitial() (int64, bool) {
	var ops []clientv3.OpOption
	if w.opts.Recursive {
		ops = append(ops, clientv3.WithPrefix())
	}
	resp, err := w.s.client.Get(w.ctx, w.prefix, ops...)
	if err != nil {
		if w.ctx.Err() == nil {
			w.sendError(wrapEtcdError(w.prefix, 0, "listing initial state", err))
		}
		return 0, false
	}
	if w.rv > resp.Header.Revision {
		w.sendError(tooLargeRV(w.prefix, w.rv, resp.Header.Revision))
		return 0, false
	}
	for _, kv := range resp.Kvs {
		key := string(kv.Key)
		obj, err := w.s.decode(key, kv.Value, kv.ModRevision)
		if err != nil {
			w.sendError(err)
			return 0, false
		}
		if !w.matches(obj) {
			continue
		}
		if w.opts.ForCache {
			obj = &storage.Stored{Key: key, ResourceVersion: kv.ModRevision, Object: obj, Data: kv.Value}
		}
		if !w.send(watch.Event{Type: watch.Added, Object: obj}) {
			return 0, false
		}
	}
	if w.opts.SendInitialEvents != nil && *w.opts.SendInitialEvents {
		if !w.bookmark(resp.Header.Revision, true) {
			return 0, false
		}
	}
	return resp.Header.Revision, true
}

// convert turns an etcd event into the watch event this watcher's client
// sees: predicate transitions become ADDED/DELETED, and an object that left
// the selection is reported with its previous content at the new revision.
func (w *watcher) convert(ev *clientv3.Event) (watch.Event, bool, error) {
	key := string(ev.Kv.Key)
	rev := ev.Kv.ModRevision
	if w.opts.ForCache {
		return w.convertForCache(key, rev, ev)
	}
	if ev.Type == clientv3.EventTypeDelete {
		if ev.PrevKv == nil {
			return watch.Event{}, false, nil
		}
		prev, err := w.s.decode(key, ev.PrevKv.Value, rev)
		if err != nil {
			return watch.Event{}, false, err
		}
		return watch.Event{Type: watch.Deleted, Object: prev}, w.matches(prev), nil
	}
	cur, err := w.s.decode(key, ev.Kv.Value, rev)
	if err != nil {
		return watch.Event{}, false, err
	}
	curOK := w.matches(cur)
	if ev.IsCreate() || ev.PrevKv == nil {
		return watch.Event{Type: watch.Added, Object: cur}, curOK, nil
	}
	if w.opts.Predicate == nil {
		return watch.Event{Type: watch.Modified, Object: cur}, true, nil
	}
	prev, err := w.s.decode(key, ev.PrevKv.Value, rev)
	if err != nil {
		return watch.Event{}, false, err
	}
	prevOK := w.matches(prev)
	switch {
	case curOK && prevOK:
		return watch.Event{Type: watch.Modified, Object: cur}, true, nil
	case curOK:
		return watch.Event{Type: watch.Added, Object: cur}, true, nil
	case prevOK:
		return watch.Event{Type: watch.Deleted, Object: prev}, true, nil
	}
	return watch.Event{}, false, nil
}

// convertForCache reports an etcd event as a *storage.Stored: a put with
// its decoded object and stored bytes, a delete with its key alone.
func (w *watcher) convertForCache(key string, rev int64, ev *clientv3.Event) (watch.Event, bool, error) {
	st := &storage.Stored{Key: key, ResourceVersion: rev}
	if ev.Type == clientv3.EventTypeDelete {
		return watch.Event{Type: watch.Deleted, Object: st}, true, nil
	}
	obj, err := w.s.decode(key, ev.Kv.Value, rev)
	if err != nil {
		return watch.Event{}, false, err
	}
	st.Object, st.Data = obj, ev.Kv.Value
	typ := watch.Modified
	if ev.IsCreate() {
		typ = watch.Added
	}
	return watch.Event{Type: typ, Object: st}, true, nil
}
