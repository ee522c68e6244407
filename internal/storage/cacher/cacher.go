// Package cacher serves reads and watches of one resource from memory, on
// top of another storage.Interface (the etcd3 store).
//
// One Cacher holds, for one resource prefix (e.g. "/registry/pods/"):
//   - one underlying watch, opened after a consistent list;
//   - the current objects in a key-ordered B-tree (lists are O(1) snapshots
//     thanks to copy-on-write clones, then iterated without the lock),
//     indexed by key in a map for point reads, each with the bytes the
//     store holds for it when the watch reported them (ForCache);
//   - a ring buffer of the most recent events (EventBufferSize), from which
//     a watch starting at an older resourceVersion is replayed;
//   - every client watch, fed by non-blocking sends into a bounded channel.
//     A watcher whose channel is full is terminated (its result channel is
//     closed) rather than allowed to grow memory or slow the others; its
//     client re-watches from the last resourceVersion it saw.
//
// Contract (beyond storage.Interface):
//   - Objects returned by Get, List and Watch are shared with the cache and
//     with other callers: they must not be mutated (DeepCopy first). Every
//     watcher that receives an event receives the same object pointer, so
//     the HTTP layer can encode it once per content type.
//   - Get/List with resourceVersion "0" are served from the cache at once;
//     "" (consistent) asks the underlying store for its current revision and
//     serves from the cache once the cache has seen it, falling back to the
//     underlying store if that takes longer than ReadWaitTimeout; "N" waits
//     (at most ReadWaitTimeout) until the cache has seen N, then fails with
//     ErrCodeTooLargeResourceVersion.
//   - List delegates to the underlying store when it needs a snapshot the
//     cache does not keep: ResourceVersionMatch=Exact, a Continue token, or
//     a Limit with any resourceVersion but "0". With resourceVersion "0" the
//     Limit is ignored and the whole list is returned (upstream's behaviour).
//     Before the first list has completed every read is delegated.
//   - Watch from "" or "0" sends the current state as ADDED events, then
//     changes; from N replays buffered events newer than N, or fails with
//     ErrCodeResourceExpired when N is older than the buffer.
//   - When the underlying watch breaks, the cacher re-watches from its last
//     revision; if that revision is gone it re-lists, and terminates every
//     client watch, since their continuity is lost.
//   - Writes go straight to the underlying store; an update starts from
//     the cached object and its stored bytes when the store can use them
//     (storage.GuessingUpdater).
//   - The underlying watch is opened with ForCache: a delete arrives as a
//     key, and its DELETED event carries a copy of the cached state at the
//     delete revision (what etcd's previous value would have decoded to).
//     A delete of a key the cache does not hold is an inconsistency and
//     makes the cacher re-list.
//   - StoredData maps an object the cache handed out (while its tree or
//     event ring refers to it), or one of the last writes returned (the
//     store reports them if it implements SetWriteObserver), to the bytes
//     the store holds for it, by identity; nil otherwise. The HTTP layer
//     builds protobuf answers from them (internal/storage/pbsplice).
package cacher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/google/btree"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/clock"

	"skiff.dev/skiff/internal/storage"
)

// Defaults for zero Config fields.
const (
	DefaultEventBufferSize   = 10000
	DefaultWatcherBufferSize = 1024
	DefaultBookmarkInterval  = 5 * time.Second
	DefaultReadWaitTimeout   = 3 * time.Second
)

// Config configures a Cacher.
type Config struct {
	// Storage is the store being cached. Required. If it implements
	// storage.WatchProgressRequester, consistent reads use it to learn
	// quickly that the cache is up to date.
	Storage storage.Interface
	// Prefix of the resource, ending in "/". Required.
	Prefix string
	// NewFunc returns an empty object of the resource (for bookmarks).
	NewFunc func() runtime.Object
	// KeyFunc returns an object's storage key: the key the store holds
	// it under (a ForCache watch reports changes by that key, the list
	// the cache starts from is keyed by KeyFunc). Default: Prefix +
	// namespace + "/" + name, or Prefix + name for cluster-scoped objects.
	KeyFunc func(obj runtime.Object) (string, error)
	// EventBufferSize is the number of recent events kept for replay.
	EventBufferSize int
	// WatcherBufferSize bounds each client watch's pending events.
	WatcherBufferSize int
	// BookmarkInterval is how often watchers that allow bookmarks get one.
	BookmarkInterval time.Duration
	// ReadWaitTimeout bounds waits for the cache to reach a revision.
	ReadWaitTimeout time.Duration
	Clock           clock.WithTicker
	Logger          *slog.Logger
}

type entry struct {
	key string
	obj runtime.Object
	rv  int64 // obj's resourceVersion
	// data is what the store holds for obj (nil when unknown: objects
	// from the initial list), handed to updates starting from obj.
	data []byte
}

// item is an entry as the B-tree holds it: its key beside the pointer, so
// a search compares keys without loading every entry it passes (a cache
// miss each; they were most of a write's cost in the cacher).
type item struct {
	key string
	e   *entry
}

func lessItem(a, b item) bool { return a.key < b.key }

func newTree() *btree.BTreeG[item] { return btree.NewG(32, lessItem) }

// event is one change, shared by every watcher it is sent to.
type event struct {
	typ  watch.EventType
	key  string
	obj  runtime.Object // new state; for DELETED the last state at the delete revision
	prev runtime.Object // state before, nil if none
	rv   int64
	// indexed says obj is in the cacher's stored index.
	indexed bool

	leftOnce sync.Once
	left     runtime.Object // prev at rv: what watchers whose selection obj left see
}

// leftObject returns the previous state carrying this event's revision,
// built once and shared by every watcher that needs it.
func (e *event) leftObject() runtime.Object {
	e.leftOnce.Do(func() {
		o := e.prev.DeepCopyObject()
		if err := storage.SetResourceVersion(o, e.rv); err == nil {
			e.left = o
		} else {
			e.left = e.prev
		}
	})
	return e.left
}

// Cacher is a storage.Interface serving reads and watches from memory.
type Cacher struct {
	cfg    Config
	store  storage.Interface
	clock  clock.WithTicker
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	readyOnce sync.Once
	readyCh   chan struct{}

	mu   sync.Mutex
	tree *btree.BTreeG[item]
	// byKey indexes tree's entries for point reads: every event and every
	// update looks its key up, and a string-keyed B-tree search costs
	// about twenty key comparisons, each a pointer chase.
	byKey map[string]*entry
	rv    int64
	// rvCh is closed when rv advances, made by the first waiter after
	// that (nil while nobody waits: most events find no waiter, and
	// closing and making a channel for each showed in profiles).
	rvCh          chan struct{}
	ring          []*event
	ringStart     int
	ringLen       int
	bufferStartRV int64 // every event with rv > bufferStartRV is in ring
	watchers      map[int]*cacheWatcher
	nextID        int
	stopped       bool

	progressMu   sync.Mutex
	lastProgress time.Time

	// stored maps handed-out objects to their stored bytes (StoredData).
	stored storedIndex
}

var _ storage.Interface = (*Cacher)(nil)

// New starts a Cacher: it lists and watches the underlying store in the
// background; reads are delegated until the first list completes.
func New(cfg Config) (*Cacher, error) {
	if cfg.Storage == nil || cfg.NewFunc == nil {
		return nil, errors.New("creating cacher: storage and new func are required")
	}
	if !strings.HasSuffix(cfg.Prefix, "/") {
		return nil, fmt.Errorf("creating cacher: prefix %q must end in /", cfg.Prefix)
	}
	if cfg.EventBufferSize <= 0 {
		cfg.EventBufferSize = DefaultEventBufferSize
	}
	if cfg.WatcherBufferSize <= 0 {
		cfg.WatcherBufferSize = DefaultWatcherBufferSize
	}
	if cfg.BookmarkInterval <= 0 {
		cfg.BookmarkInterval = DefaultBookmarkInterval
	}
	if cfg.ReadWaitTimeout <= 0 {
		cfg.ReadWaitTimeout = DefaultReadWaitTimeout
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.KeyFunc == nil {
		prefix := cfg.Prefix
		cfg.KeyFunc = func(obj runtime.Object) (string, error) {
			m, err := meta.Accessor(obj)
			if err != nil {
				return "", fmt.Errorf("computing key: %w", err)
			}
			if ns := m.GetNamespace(); ns != "" {
				return prefix + ns + "/" + m.GetName(), nil
			}
			return prefix + m.GetName(), nil
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Cacher{
		cfg: cfg, store: cfg.Storage, clock: cfg.Clock,
		log:      cfg.Logger.With("prefix", cfg.Prefix),
		ctx:      ctx,
		cancel:   cancel,
		done:     make(chan struct{}),
		readyCh:  make(chan struct{}),
		tree:     newTree(),
		byKey:    map[string]*entry{},
		ring:     make([]*event, cfg.EventBufferSize),
		watchers: map[int]*cacheWatcher{},
	}
	if wo, ok := cfg.Storage.(writeObservable); ok {
		wo.SetWriteObserver(c.stored.addWritten)
	}
	go c.run()
	go c.bookmarkLoop()
	return c, nil
}

// Stop ends the underlying watch and terminates every client watch.
func (c *Cacher) Stop() {
	c.cancel()
	<-c.done
	c.mu.Lock()
	c.stopped = true
	c.terminateAllLocked()
	c.mu.Unlock()
}

// Ready is closed once the cache holds a complete list.
func (c *Cacher) Ready() <-chan struct{} { return c.readyCh }

func (c *Cacher) isReady() bool {
	select {
	case <-c.readyCh:
		return true
	default:
		return false
	}
}

func (c *Cacher) run() {
	defer close(c.done)
	backoff := 100 * time.Millisecond
	for c.ctx.Err() == nil {
		err := c.listAndWatch()
		if c.ctx.Err() != nil {
			return
		}
		c.log.Warn("watch cache relisting", "err", err)
		select {
		case <-c.clock.After(backoff):
		case <-c.ctx.Done():
			return
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// listAndWatch fills the cache from a consistent list, then follows the
// underlying watch, re-watching from the last revision while possible.
func (c *Cacher) listAndWatch() error {
	list, err := c.store.List(c.ctx, c.cfg.Prefix, storage.ListOptions{Recursive: true})
	if err != nil {
		return fmt.Errorf("listing %s: %w", c.cfg.Prefix, err)
	}
	tree := newTree()
	byKey := make(map[string]*entry, len(list.Items))
	for _, obj := range list.Items {
		key, err := c.cfg.KeyFunc(obj)
		if err != nil {
			return err
		}
		rv, err := storage.ObjectResourceVersion(obj)
		if err != nil {
			return fmt.Errorf("reading the resourceVersion of %s: %w", key, err)
		}
		e := &entry{key: key, obj: obj, rv: rv}
		tree.ReplaceOrInsert(item{key, e})
		byKey[key] = e
	}
	c.mu.Lock()
	c.tree, c.byKey = tree, byKey
	c.ringStart, c.ringLen = 0, 0
	clear(c.ring)
	c.stored.clear()
	c.bufferStartRV = list.ResourceVersion
	// Watchers may have missed events between the old state and this list.
	c.terminateAllLocked()
	c.setRVLocked(list.ResourceVersion)
	c.mu.Unlock()
	c.readyOnce.Do(func() { close(c.readyCh) })

	for {
		c.mu.Lock()
		from := c.rv
		c.mu.Unlock()
		err := c.watchFrom(from)
		if c.ctx.Err() != nil || storage.IsGone(err) {
			return err
		}
		c.log.Info("watch cache re-watching", "started_at", from, "err", err)
		select {
		case <-c.clock.After(100 * time.Millisecond):
		case <-c.ctx.Done():
			return c.ctx.Err()
		}
	}
}

func (c *Cacher) watchFrom(rv int64) error {
	w, err := c.store.Watch(c.ctx, c.cfg.Prefix, storage.WatchOptions{
		ResourceVersion: fmt.Sprint(rv), Recursive: true, AllowBookmarks: true, ForCache: true,
	})
	if err != nil {
		return fmt.Errorf("watching %s: %w", c.cfg.Prefix, err)
	}
	defer w.Stop()
	// Stop must not wait for the underlying watch to close its channel:
	// etcd's in-process client closes it only after sending the cancel
	// to the server over a channel stream, which deadlocks while the
	// server side is blocked sending to the client (skiff server's
	// shutdown hung on it). Closing the client afterwards ends it.
	results := w.ResultChan()
	for {
		var ev watch.Event
		var ok bool
		select {
		case ev, ok = <-results:
		case <-c.ctx.Done():
			return c.ctx.Err()
		}
		if !ok {
			break
		}
		switch ev.Type {
		case watch.Error:
			if st, ok := ev.Object.(*metav1.Status); ok {
				if st.Code == 410 {
					return storage.NewError(storage.ErrCodeResourceExpired, c.cfg.Prefix, rv, st.Message)
				}
				return fmt.Errorf("watching %s: %s", c.cfg.Prefix, st.Message)
			}
			return fmt.Errorf("watching %s: error event %v", c.cfg.Prefix, ev.Object)
		case watch.Bookmark:
			evRV, err := storage.ObjectResourceVersion(ev.Object)
			if err != nil {
				return fmt.Errorf("reading bookmark: %w", err)
			}
			c.mu.Lock()
			if evRV > c.rv {
				c.setRVLocked(evRV)
			}
			c.mu.Unlock()
		case watch.Added, watch.Modified, watch.Deleted:
			if err := c.process(ev); err != nil {
				return err
			}
		}
	}
	return fmt.Errorf("watching %s: watch closed", c.cfg.Prefix)
}

func (c *Cacher) setRVLocked(rv int64) {
	c.rv = rv
	if c.rvCh != nil {
		close(c.rvCh)
		c.rvCh = nil
	}
}

// process applies one underlying event to the store, the ring buffer and
// every interested watcher. The event's object is a *storage.Stored (the
// store knows WatchOptions.ForCache) or the plain object.
func (c *Cacher) process(ev watch.Event) error {
	var (
		key  string
		rv   int64
		obj  runtime.Object
		data []byte
		err  error
	)
	if st, ok := ev.Object.(*storage.Stored); ok {
		key, rv, obj, data = st.Key, st.ResourceVersion, st.Object, st.Data
	} else {
		obj = ev.Object
		if rv, err = storage.ObjectResourceVersion(obj); err != nil {
			return fmt.Errorf("reading event revision: %w", err)
		}
		if key, err = c.cfg.KeyFunc(obj); err != nil {
			return err
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e := &event{key: key, rv: rv}
	old := c.byKey[key]
	if old != nil {
		e.prev = old.obj
		c.unindexReplacedLocked(old)
	}
	if ev.Type == watch.Deleted {
		if obj == nil {
			// A delete reported by key: its last state is the cached
			// one, at the delete revision.
			if old == nil {
				return fmt.Errorf("watching %s: delete of %s at revision %d, which the cache does not hold", c.cfg.Prefix, key, rv)
			}
			obj = old.obj.DeepCopyObject()
			if err := storage.SetResourceVersion(obj, rv); err != nil {
				return fmt.Errorf("setting delete revision: %w", err)
			}
			// A copy of the stored state: the same bytes, another
			// resourceVersion.
			if old.data != nil {
				c.stored.add(obj, old.data)
				e.indexed = true
			}
		}
		e.typ, e.obj = watch.Deleted, obj
		if old != nil {
			c.tree.Delete(item{key: key})
			delete(c.byKey, key)
		}
	} else {
		if obj == nil {
			return fmt.Errorf("watching %s: %s event for %s without an object", c.cfg.Prefix, ev.Type, key)
		}
		e.typ, e.obj = watch.Added, obj
		if old != nil {
			e.typ = watch.Modified
		}
		ne := &entry{key: key, obj: obj, rv: rv, data: data}
		c.tree.ReplaceOrInsert(item{key, ne})
		c.byKey[key] = ne
		if data != nil {
			c.stored.add(obj, data)
			e.indexed = true
		}
	}
	n := len(c.ring)
	if c.ringLen == n {
		evicted := c.ring[c.ringStart]
		c.bufferStartRV = evicted.rv
		if evicted.indexed {
			if cur := c.byKey[evicted.key]; cur == nil || cur.obj != evicted.obj {
				c.stored.remove(evicted.obj)
			}
		}
		c.ring[c.ringStart] = e
		c.ringStart = (c.ringStart + 1) % n
	} else {
		c.ring[(c.ringStart+c.ringLen)%n] = e
		c.ringLen++
	}
	if rv > c.rv {
		c.setRVLocked(rv)
	}
	for _, w := range c.watchers {
		if w.interested(key) {
			c.pushLocked(w, e)
		}
	}
	return nil
}

// unindexReplacedLocked drops old, an entry leaving the tree, from the
// stored index unless the event that brought it is still in the ring
// (every event newer than bufferStartRV is; its eviction drops it).
func (c *Cacher) unindexReplacedLocked(old *entry) {
	if old.data != nil && old.rv <= c.bufferStartRV {
		c.stored.remove(old.obj)
	}
}

// pushLocked queues e for w, terminating w if it cannot keep up.
func (c *Cacher) pushLocked(w *cacheWatcher, e *event) {
	select {
	case w.in <- e:
	default:
		c.log.Info("terminating watcher that cannot keep up", "watcher", w.id, "buffer", cap(w.in))
		c.removeLocked(w)
	}
}

func (c *Cacher) removeLocked(w *cacheWatcher) {
	delete(c.watchers, w.id)
	w.terminate()
}

func (c *Cacher) terminateAllLocked() {
	for _, w := range c.watchers {
		c.removeLocked(w)
	}
}

// bookmarkLoop periodically sends every bookmark-enabled watcher a
// bookmark at the cache's revision, through its event channel so it
// follows every event up to that revision.
func (c *Cacher) bookmarkLoop() {
	t := c.clock.NewTicker(c.cfg.BookmarkInterval)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C():
			c.sendBookmarks()
		}
	}
}

func (c *Cacher) sendBookmarks() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rv == 0 {
		return
	}
	var e *event
	for _, w := range c.watchers {
		if !w.allowBookmarks {
			continue
		}
		if e == nil {
			obj := c.cfg.NewFunc()
			if err := storage.SetResourceVersion(obj, c.rv); err != nil {
				return
			}
			e = &event{typ: watch.Bookmark, obj: obj, rv: c.rv}
		}
		select {
		case w.in <- e:
		default: // a bookmark is never worth terminating a watcher for
		}
	}
}

// waitForRV waits until the cache has seen rv.
func (c *Cacher) waitForRV(ctx context.Context, rv int64) error {
	var deadline <-chan time.Time
	for {
		c.mu.Lock()
		cur := c.rv
		if c.rvCh == nil && cur < rv {
			c.rvCh = make(chan struct{})
		}
		ch := c.rvCh
		c.mu.Unlock()
		if cur >= rv {
			return nil
		}
		if deadline == nil {
			t := c.clock.NewTimer(c.cfg.ReadWaitTimeout)
			defer t.Stop()
			deadline = t.C()
		}
		c.requestProgress(ctx)
		retry := c.clock.NewTimer(50 * time.Millisecond)
		select {
		case <-ch:
		case <-retry.C():
		case <-deadline:
			retry.Stop()
			return storage.NewError(storage.ErrCodeTooLargeResourceVersion, c.cfg.Prefix, rv,
				fmt.Sprintf("too large resource version: %d, current: %d", rv, cur))
		case <-ctx.Done():
			retry.Stop()
			return fmt.Errorf("waiting for resource version %d: %w", rv, ctx.Err())
		}
		retry.Stop()
	}
}

// requestProgress asks the underlying store for a bookmark, at most once
// every few milliseconds however many readers are waiting.
func (c *Cacher) requestProgress(ctx context.Context) {
	pr, ok := c.store.(storage.WatchProgressRequester)
	if !ok {
		return
	}
	c.progressMu.Lock()
	now := c.clock.Now()
	if now.Sub(c.lastProgress) < 20*time.Millisecond {
		c.progressMu.Unlock()
		return
	}
	c.lastProgress = now
	c.progressMu.Unlock()
	if err := pr.RequestWatchProgress(ctx); err != nil {
		c.log.Debug("requesting watch progress", "err", err)
	}
}

// readyFor prepares a cache read at resourceVersion s. delegate reports
// that the read should go to the underlying store instead.
func (c *Cacher) readyFor(ctx context.Context, s string) (delegate bool, err error) {
	if !c.isReady() {
		return true, nil
	}
	switch s {
	case "0":
		return false, nil
	case "":
		rev, err := c.store.CurrentRevision(ctx)
		if err != nil {
			return false, err
		}
		if err := c.waitForRV(ctx, rev); err != nil {
			if storage.HasCode(err, storage.ErrCodeTooLargeResourceVersion) {
				return true, nil
			}
			return false, err
		}
		return false, nil
	}
	rv, err := storage.ParseResourceVersion(s)
	if err != nil {
		return false, storage.NewError(storage.ErrCodeInvalidObj, c.cfg.Prefix, 0, err.Error())
	}
	return false, c.waitForRV(ctx, rv)
}

// Get implements storage.Interface. The object returned is shared.
func (c *Cacher) Get(ctx context.Context, key string, opts storage.GetOptions) (runtime.Object, error) {
	delegate, err := c.readyFor(ctx, opts.ResourceVersion)
	if err != nil {
		return nil, err
	}
	if delegate {
		return c.store.Get(ctx, key, opts)
	}
	c.mu.Lock()
	e, ok := c.byKey[key]
	rv := c.rv
	c.mu.Unlock()
	if !ok {
		return nil, storage.NewError(storage.ErrCodeKeyNotFound, key, rv, "not found")
	}
	return e.obj, nil
}

// List implements storage.Interface. The items returned are shared.
func (c *Cacher) List(ctx context.Context, prefix string, opts storage.ListOptions) (*storage.ListResult, error) {
	if opts.Continue != "" || opts.ResourceVersionMatch == metav1.ResourceVersionMatchExact ||
		(opts.Limit > 0 && opts.ResourceVersion != "0") {
		return c.store.List(ctx, prefix, opts)
	}
	delegate, err := c.readyFor(ctx, opts.ResourceVersion)
	if err != nil {
		return nil, err
	}
	if delegate {
		return c.store.List(ctx, prefix, opts)
	}
	c.mu.Lock()
	snap := c.tree.Clone()
	rv := c.rv
	c.mu.Unlock()
	out := &storage.ListResult{ResourceVersion: rv}
	visit := func(e *entry) bool {
		if opts.Predicate == nil || opts.Predicate(e.obj) {
			out.Items = append(out.Items, e.obj)
		}
		return true
	}
	if !opts.Recursive {
		if it, ok := snap.Get(item{key: prefix}); ok {
			visit(it.e)
		}
		return out, nil
	}
	ascendPrefix(snap, prefix, visit)
	return out, nil
}

func ascendPrefix(t *btree.BTreeG[item], prefix string, visit func(*entry) bool) {
	start := item{key: prefix}
	v := func(it item) bool { return visit(it.e) }
	if end := prefixEnd(prefix); end != "" {
		t.AscendRange(start, item{key: end}, v)
	} else {
		t.AscendGreaterOrEqual(start, v)
	}
}

// prefixEnd is the smallest key greater than every key starting with
// prefix ("" if none).
func prefixEnd(prefix string) string {
	b := []byte(prefix)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1])
		}
	}
	return ""
}

// Count implements storage.Interface, from the cache once it is ready.
func (c *Cacher) Count(ctx context.Context, prefix string) (int64, error) {
	if !c.isReady() {
		return c.store.Count(ctx, prefix)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var n int64
	ascendPrefix(c.tree, prefix, func(*entry) bool { n++; return true })
	return n, nil
}

// CurrentRevision implements storage.Interface (the underlying store's).
func (c *Cacher) CurrentRevision(ctx context.Context) (int64, error) {
	return c.store.CurrentRevision(ctx)
}

// Create implements storage.Interface by delegation.
func (c *Cacher) Create(ctx context.Context, key string, obj runtime.Object) (runtime.Object, error) {
	return c.store.Create(ctx, key, obj)
}

// GuaranteedUpdate implements storage.Interface by delegation, handing a
// storage.GuessingUpdater the cached object to start from: clients update
// what they read from this cache (the scheduler binds, a kubelet writes
// the status of, the pod its informer received), so the cached object is
// almost always current, and the store saves reading and decoding it. An
// object the cache has not seen yet is read as usual.
func (c *Cacher) GuaranteedUpdate(ctx context.Context, key string, ignoreNotFound bool, tryUpdate storage.UpdateFunc) (runtime.Object, error) {
	gu, ok := c.store.(storage.GuessingUpdater)
	if !ok || !c.isReady() {
		return c.store.GuaranteedUpdate(ctx, key, ignoreNotFound, tryUpdate)
	}
	var guess *storage.Stored
	c.mu.Lock()
	if e, found := c.byKey[key]; found {
		guess = &storage.Stored{Key: key, ResourceVersion: e.rv, Object: e.obj, Data: e.data}
	}
	c.mu.Unlock()
	return gu.GuaranteedUpdateFrom(ctx, key, ignoreNotFound, tryUpdate, guess)
}

// Delete implements storage.Interface by delegation.
func (c *Cacher) Delete(ctx context.Context, key string, check func(runtime.Object) error) (runtime.Object, error) {
	return c.store.Delete(ctx, key, check)
}
