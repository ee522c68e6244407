package cacher

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/google/btree"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"

	"skiff.dev/skiff/internal/storage"
)

// InitialEventsAnnotation marks the bookmark that ends the initial events
// of a watch with SendInitialEvents.
const InitialEventsAnnotation = "k8s.io/initial-events-end"

// cacheWatcher is one client watch. The cacher pushes events into in
// (never blocking); its goroutine filters them through the predicate and
// delivers them on result.
type cacheWatcher struct {
	c              *Cacher
	id             int
	prefix         string
	recursive      bool
	pred           storage.Predicate
	allowBookmarks bool
	ctx            context.Context

	in       chan *event
	result   chan watch.Event
	stopOnce sync.Once
	stopCh   chan struct{}

	// Sent before anything from in: the initial state (a private tree
	// snapshot), then the replayed events.
	initial    *btree.BTreeG[item]
	initialRV  int64
	initialEnd bool
	replay     []*event
}

// Watch implements storage.Interface.
func (c *Cacher) Watch(ctx context.Context, prefix string, opts storage.WatchOptions) (watch.Interface, error) {
	rv, err := storage.ParseResourceVersion(opts.ResourceVersion)
	if err != nil {
		return nil, storage.NewError(storage.ErrCodeInvalidObj, prefix, 0, err.Error())
	}
	select {
	case <-c.readyCh:
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for watch cache of %s: %w", c.cfg.Prefix, ctx.Err())
	case <-c.ctx.Done():
		return nil, errors.New("watch cache stopped")
	}
	initial := rv == 0
	if opts.SendInitialEvents != nil {
		initial = *opts.SendInitialEvents
	}
	if initial && opts.ResourceVersion == "" && opts.SendInitialEvents != nil {
		// A watch-list from "": the initial state must be current (a
		// consistent read), as a list from "" is.
		delegate, err := c.readyFor(ctx, "")
		if err != nil {
			return nil, err
		}
		if delegate {
			return c.store.Watch(ctx, prefix, opts)
		}
	}
	if rv > 0 {
		if err := c.waitForRV(ctx, rv); err != nil {
			return nil, err
		}
	}
	w := &cacheWatcher{
		c: c, prefix: prefix, recursive: opts.Recursive, pred: opts.Predicate,
		allowBookmarks: opts.AllowBookmarks, ctx: ctx,
		in:     make(chan *event, c.cfg.WatcherBufferSize),
		result: make(chan watch.Event, resultBufferSize),
		stopCh: make(chan struct{}),
	}
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return nil, errors.New("watch cache stopped")
	}
	switch {
	case initial:
		w.initial, w.initialRV = c.tree.Clone(), c.rv
		w.initialEnd = opts.SendInitialEvents != nil && *opts.SendInitialEvents
	case rv == 0:
		// From now on, without initial state.
	case rv < c.bufferStartRV:
		oldest := c.bufferStartRV
		c.mu.Unlock()
		return nil, storage.NewError(storage.ErrCodeResourceExpired, prefix, rv,
			fmt.Sprintf("too old resource version: %d (%d)", rv, oldest))
	default:
		n := len(c.ring)
		// Events are in revision order: find the first newer than rv.
		i := 0
		for i < c.ringLen && c.ring[(c.ringStart+i)%n].rv <= rv {
			i++
		}
		for ; i < c.ringLen; i++ {
			if e := c.ring[(c.ringStart+i)%n]; w.interested(e.key) {
				w.replay = append(w.replay, e)
			}
		}
	}
	c.nextID++
	w.id = c.nextID
	c.watchers[w.id] = w
	c.mu.Unlock()
	go w.run()
	return w, nil
}

// resultBufferSize is how many events a watcher's goroutine may deliver
// ahead of its consumer. A consumer that finds several waiting can
// handle them together (the HTTP layer writes and flushes them as one
// batch); with an unbuffered channel it never finds more than one, since
// the watcher's goroutine only runs again after the consumer blocks.
const resultBufferSize = 32

func (w *cacheWatcher) interested(key string) bool {
	if w.recursive {
		return strings.HasPrefix(key, w.prefix)
	}
	return key == w.prefix
}

func (w *cacheWatcher) ResultChan() <-chan watch.Event { return w.result }

// Stop implements watch.Interface.
func (w *cacheWatcher) Stop() {
	w.c.mu.Lock()
	w.c.removeLocked(w)
	w.c.mu.Unlock()
}

func (w *cacheWatcher) terminate() { w.stopOnce.Do(func() { close(w.stopCh) }) }

func (w *cacheWatcher) send(ev watch.Event) bool {
	select {
	case w.result <- ev:
		return true
	case <-w.stopCh:
		return false
	case <-w.ctx.Done():
		return false
	}
}

func (w *cacheWatcher) matches(obj runtime.Object) bool {
	return w.pred == nil || w.pred(obj)
}

func (w *cacheWatcher) run() {
	defer close(w.result)
	defer w.Stop()
	if w.initial != nil {
		ok := true
		visit := func(e *entry) bool {
			if w.matches(e.obj) {
				ok = w.send(watch.Event{Type: watch.Added, Object: e.obj})
			}
			return ok
		}
		if w.recursive {
			ascendPrefix(w.initial, w.prefix, visit)
		} else if it, found := w.initial.Get(item{key: w.prefix}); found {
			visit(it.e)
		}
		w.initial = nil
		if !ok {
			return
		}
		if w.initialEnd && !w.sendInitialEnd() {
			return
		}
	}
	for _, e := range w.replay {
		if !w.deliver(e) {
			return
		}
	}
	w.replay = nil
	for {
		select {
		case e := <-w.in:
			if !w.deliver(e) {
				return
			}
		case <-w.stopCh:
			return
		case <-w.ctx.Done():
			return
		}
	}
}

func (w *cacheWatcher) sendInitialEnd() bool {
	obj := w.c.cfg.NewFunc()
	if err := storage.SetResourceVersion(obj, w.initialRV); err != nil {
		return false
	}
	if m, err := meta.Accessor(obj); err == nil {
		m.SetAnnotations(map[string]string{InitialEventsAnnotation: "true"})
	}
	return w.send(watch.Event{Type: watch.Bookmark, Object: obj})
}

// deliver sends what e means for this watcher's selection, if anything.
func (w *cacheWatcher) deliver(e *event) bool {
	switch e.typ {
	case watch.Bookmark:
		if !w.allowBookmarks {
			return true
		}
		return w.send(watch.Event{Type: watch.Bookmark, Object: e.obj})
	case watch.Deleted:
		if w.matches(e.obj) {
			return w.send(watch.Event{Type: watch.Deleted, Object: e.obj})
		}
		return true
	}
	curOK := w.matches(e.obj)
	if e.prev == nil {
		if curOK {
			return w.send(watch.Event{Type: watch.Added, Object: e.obj})
		}
		return true
	}
	if w.pred == nil {
		return w.send(watch.Event{Type: watch.Modified, Object: e.obj})
	}
	prevOK := w.matches(e.prev)
	switch {
	case curOK && prevOK:
		return w.send(watch.Event{Type: watch.Modified, Object: e.obj})
	case curOK:
		return w.send(watch.Event{Type: watch.Added, Object: e.obj})
	case prevOK:
		return w.send(watch.Event{Type: watch.Deleted, Object: e.leftObject()})
	}
	return true
}
