package cacher

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"skiff.dev/skiff/internal/storage"
)

// breakableStore lets a test end the cacher's underlying watch with an
// error event, as etcd does on compaction or a lost leader.
type breakableStore struct {
	storage.Interface
	mu      sync.Mutex
	breaks  []chan *metav1.Status
	watches int
}

func (b *breakableStore) RequestWatchProgress(ctx context.Context) error {
	return b.Interface.(storage.WatchProgressRequester).RequestWatchProgress(ctx)
}

type proxyWatch struct {
	inner watch.Interface
	out   chan watch.Event
}

func (p *proxyWatch) Stop()                          { p.inner.Stop() }
func (p *proxyWatch) ResultChan() <-chan watch.Event { return p.out }

func (b *breakableStore) Watch(ctx context.Context, prefix string, opts storage.WatchOptions) (watch.Interface, error) {
	inner, err := b.Interface.Watch(ctx, prefix, opts)
	if err != nil {
		return nil, err
	}
	brk := make(chan *metav1.Status, 1)
	b.mu.Lock()
	b.breaks = append(b.breaks, brk)
	b.watches++
	b.mu.Unlock()
	p := &proxyWatch{inner: inner, out: make(chan watch.Event)}
	go func() {
		defer close(p.out)
		defer inner.Stop()
		for {
			select {
			case ev, ok := <-inner.ResultChan():
				if !ok {
					return
				}
				select {
				case p.out <- ev:
				case <-ctx.Done():
					return
				}
			case st := <-brk:
				select {
				case p.out <- watch.Event{Type: watch.Error, Object: st}:
				case <-ctx.Done():
				}
				return
			}
		}
	}()
	return p, nil
}

func (b *breakableStore) breakWatches(code int32) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, brk := range b.breaks {
		brk <- &metav1.Status{Status: metav1.StatusFailure, Code: code, Message: "injected"}
	}
	b.breaks = nil
}

func (b *breakableStore) watchCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.watches
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestUnderlyingWatchFailure(t *testing.T) {
	base := newEnv(t, Config{}) // for its etcd and store
	bs := &breakableStore{Interface: base.store}
	c := tctx(t)
	cch, err := New(Config{Storage: bs, Prefix: prefix, NewFunc: base.c.cfg.NewFunc})
	if err != nil {
		t.Fatal(err)
	}
	defer cch.Stop()
	<-cch.Ready()
	rv1 := create(t, cch, "ns", "a", nil)
	w, err := cch.Watch(c, prefix, storage.WatchOptions{Recursive: true, ResourceVersion: fmt.Sprint(rv1)})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	// A transient failure: the cacher re-watches from its revision and the
	// client watch goes on without a gap.
	n := bs.watchCount()
	bs.breakWatches(500)
	waitFor(t, "re-watch", func() bool { return bs.watchCount() > n })
	rv2 := create(t, cch, "ns", "b", nil)
	expectEvent(t, w, watch.Added, "b", rv2)

	// Continuity lost (410): the cacher re-lists and terminates client
	// watches so their clients re-list too.
	n = bs.watchCount()
	bs.breakWatches(410)
	select {
	case _, ok := <-w.ResultChan():
		if ok {
			t.Fatal("client watch got an event instead of being terminated")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("client watch not terminated after the cacher re-listed")
	}
	waitFor(t, "re-list and re-watch", func() bool { return bs.watchCount() > n })
	if _, err := cch.Watch(c, prefix, storage.WatchOptions{Recursive: true, ResourceVersion: fmt.Sprint(rv1)}); !storage.IsGone(err) {
		t.Fatalf("watch from before the re-list: got %v, want gone", err)
	}
	rv3 := create(t, cch, "ns", "c", nil)
	list, err := cch.List(c, prefix, storage.ListOptions{Recursive: true})
	if err != nil || len(list.Items) != 3 || list.ResourceVersion < rv3 {
		t.Fatalf("list after re-list: %v, %d items at %d", err, len(list.Items), list.ResourceVersion)
	}
}
