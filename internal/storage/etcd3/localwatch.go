package etcd3

import (
	"fmt"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/storage/mvcc"
	"k8s.io/apimachinery/pkg/watch"
)

// LocalWatchable is implemented by a Config.KV whose member runs in this
// process (internal/etcd's InProcessKV). The watch cache's watches
// (WatchOptions.ForCache) then read the member's mvcc watch streams
// directly instead of through clientv3's watch client, v3rpc's watch
// server and the channel adapter between them: no goroutine hops or
// response wrapping per event, same events. What v3rpc adds on top of a
// watch stream is done here the same way: progress notifications every
// ProgressNotifyInterval for a watch that allows bookmarks and had no
// events since the last one, and RequestWatchProgress asks every synced
// watch for one.
type LocalWatchable interface {
	// NewWatchStream returns a new watch stream on the member's store.
	NewWatchStream() mvcc.WatchStream
	// ProgressNotifyInterval is the member's interval of periodic
	// progress notifications (v3rpc's progress report interval).
	ProgressNotifyInterval() time.Duration
	// StopNotify is closed when the member has stopped: a watch on its
	// streams then ends with an error, as a clientv3 watch would.
	StopNotify() <-chan struct{}
}

// localWatches is the set of a store's watches on its member's watch
// streams, for RequestWatchProgress.
type localWatches struct {
	mu sync.Mutex
	m  map[*localWatch]struct{}
}

type localWatch struct {
	ws mvcc.WatchStream
	id mvcc.WatchID
}

func (l *localWatches) add(lw *localWatch) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = make(map[*localWatch]struct{})
	}
	l.m[lw] = struct{}{}
}

func (l *localWatches) remove(lw *localWatch) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.m, lw)
}

// requestProgress asks every watch for a progress notification (sent
// only by watches that are synced, as through v3rpc).
func (l *localWatches) requestProgress() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for lw := range l.m {
		lw.ws.RequestProgress(lw.id)
	}
}

// runLocal is run's loop on a watch stream of the member: the events
// clientv3's watch from startRev (0: from now) would deliver, from the
// member's store directly.
func (w *watcher) runLocal(startRev int64) {
	ws := w.s.local.NewWatchStream()
	defer ws.Close()
	key := []byte(w.prefix)
	var end []byte
	if w.opts.Recursive {
		end = []byte(clientv3.GetPrefixRangeEnd(w.prefix))
	}
	id, err := ws.Watch(w.ctx, clientv3.AutoWatchID, key, end, startRev)
	if err != nil {
		w.sendError(fmt.Errorf("watching %s: %w", w.prefix, err))
		return
	}
	defer ws.Cancel(id) //nolint:errcheck // the stream closes next
	lw := &localWatch{ws: ws, id: id}
	w.s.locals.add(lw)
	defer w.s.locals.remove(lw)

	var tick <-chan time.Time
	if w.opts.AllowBookmarks {
		if d := w.s.local.ProgressNotifyInterval(); d > 0 {
			t := time.NewTicker(d)
			defer t.Stop()
			tick = t.C
		}
	}
	quiet := true // no events since the last tick
	ch := ws.Chan()
	stopped := w.s.local.StopNotify()
	// queue holds converted events the consumer has not taken yet. The
	// member's channel is drained meanwhile, as clientv3's watch client
	// (which buffers without bound) drains v3rpc's: a watcher whose
	// channel is full becomes a victim, and its events are then read
	// back from the backend.
	var queue []watch.Event
	// finish sends what is queued, then the error (if any): the watch ends.
	finish := func(err error) {
		for _, ev := range queue {
			if !w.send(ev) {
				return
			}
		}
		if err != nil {
			w.sendError(err)
		}
	}
	for {
		var out chan<- watch.Event
		var head watch.Event
		if len(queue) > 0 {
			out, head = w.result, queue[0]
		}
		var resp mvcc.WatchResponse
		var ok bool
		select {
		case out <- head:
			queue[0] = watch.Event{}
			queue = queue[1:]
			continue
		case resp, ok = <-ch:
		case <-tick:
			if quiet {
				ws.RequestProgress(id)
			}
			quiet = true
			continue
		case <-w.ctx.Done():
			return
		case <-stopped:
			finish(fmt.Errorf("watching %s: etcd member stopped", w.prefix))
			return
		}
		if !ok {
			finish(nil)
			return
		}
		if resp.CompactRevision != 0 {
			finish(nil)
			w.sendCompacted(startRev, resp.CompactRevision)
			return
		}
		if len(resp.Events) == 0 {
			// A progress notification: the watch has seen every
			// change up to resp.Revision.
			if w.opts.AllowBookmarks {
				ev, err := w.bookmarkEvent(resp.Revision, false)
				if err != nil {
					finish(err)
					return
				}
				queue = append(queue, ev)
			}
			continue
		}
		quiet = false
		for _, ev := range resp.Events {
			// clientv3.Event is mvccpb.Event.
			out, ok, err := w.convert((*clientv3.Event)(ev))
			if err != nil {
				finish(err)
				return
			}
			if ok {
				queue = append(queue, out)
			}
		}
	}
}
