package controllermanager

import (
	"sync"
	"sync/atomic"

	"k8s.io/client-go/informers"
	"k8s.io/client-go/informers/core"
	corev1informers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// A shared informer hands every event to each handler registration
// through a listener of its own: a buffer, two goroutines and a channel
// hand-off per event and registration. About fifteen controllers watch
// pods, and each pod is written three times as it starts, so a 10,000-pod
// scale-up made ~450,000 such hand-offs. The controller manager instead
// registers the pod handlers its controllers add while they are built as
// one fan-out handler, which calls them one after the other on one
// listener. Each handler sees the same events in the same order as
// before (initial list included); what changes is that a slow handler
// delays the others, and every pod handler of the controllers is a
// non-blocking queue operation.

// handlerMux is a shared informer whose handlers added before seal are
// called by one registration on the informer it wraps; later ones are
// the informer's own.
type handlerMux struct {
	cache.SharedIndexInformer

	mu       sync.Mutex
	sealed   bool
	handlers []*muxedHandler
	reg      cache.ResourceEventHandlerRegistration
	// synced closes when reg has synced.
	synced chan struct{}
}

func newHandlerMux(inf cache.SharedIndexInformer) *handlerMux {
	return &handlerMux{SharedIndexInformer: inf, synced: make(chan struct{})}
}

// muxedHandler is one handler of a handlerMux and its registration.
type muxedHandler struct {
	h       cache.ResourceEventHandler
	mux     *handlerMux
	removed atomic.Bool
}

var _ cache.ResourceEventHandlerRegistration = (*muxedHandler)(nil)

// HasSynced is the fan-out registration's: every handler has been given
// the informer's initial list once that one has.
func (r *muxedHandler) HasSynced() bool {
	r.mux.mu.Lock()
	reg := r.mux.reg
	r.mux.mu.Unlock()
	return reg != nil && reg.HasSynced()
}

// HasSyncedChecker is HasSynced as a cache.DoneChecker.
func (r *muxedHandler) HasSyncedChecker() cache.DoneChecker { return muxSynced{r.mux} }

type muxSynced struct{ m *handlerMux }

func (c muxSynced) Name() string          { return "controller manager pod handlers" }
func (c muxSynced) Done() <-chan struct{} { return c.m.synced }

// AddEventHandler implements cache.SharedInformer.
func (m *handlerMux) AddEventHandler(h cache.ResourceEventHandler) (cache.ResourceEventHandlerRegistration, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sealed {
		return m.SharedIndexInformer.AddEventHandler(h)
	}
	r := &muxedHandler{h: h, mux: m}
	m.handlers = append(m.handlers, r)
	return r, nil
}

// RemoveEventHandler implements cache.SharedInformer: a muxed handler is
// no longer called.
func (m *handlerMux) RemoveEventHandler(reg cache.ResourceEventHandlerRegistration) error {
	if r, ok := reg.(*muxedHandler); ok && r.mux == m {
		r.removed.Store(true)
		return nil
	}
	return m.SharedIndexInformer.RemoveEventHandler(reg)
}

// seal registers the handlers added so far as one handler of the
// informer; handlers added later are registered on their own.
func (m *handlerMux) seal() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sealed {
		return nil
	}
	m.sealed = true
	if len(m.handlers) == 0 {
		return nil
	}
	reg, err := m.SharedIndexInformer.AddEventHandler(fanOut(m.handlers))
	if err != nil {
		return err
	}
	m.reg = reg
	go func() {
		<-reg.HasSyncedChecker().Done()
		close(m.synced)
	}()
	return nil
}

// fanOut calls each handler in turn.
type fanOut []*muxedHandler

func (f fanOut) OnAdd(obj any, isInInitialList bool) {
	for _, r := range f {
		if !r.removed.Load() {
			r.h.OnAdd(obj, isInInitialList)
		}
	}
}

func (f fanOut) OnUpdate(oldObj, newObj any) {
	for _, r := range f {
		if !r.removed.Load() {
			r.h.OnUpdate(oldObj, newObj)
		}
	}
}

func (f fanOut) OnDelete(obj any) {
	for _, r := range f {
		if !r.removed.Load() {
			r.h.OnDelete(obj)
		}
	}
}

// muxFactory is an informer factory whose pod informer is a handlerMux
// over the wrapped factory's (made on first use, so a manager without a
// pod watcher starts no pod watch).
type muxFactory struct {
	informers.SharedInformerFactory
	pods *lazyMux
}

type lazyMux struct {
	once sync.Once
	inf  func() cache.SharedIndexInformer
	mux  *handlerMux
}

func (l *lazyMux) get() *handlerMux {
	l.once.Do(func() { l.mux = newHandlerMux(l.inf()) })
	return l.mux
}

// seal seals the mux if it was made.
func (l *lazyMux) seal() error {
	var mux *handlerMux
	l.once.Do(func() {}) // none made from now on: later ones pass through
	mux = l.mux
	if mux == nil {
		return nil
	}
	return mux.seal()
}

func newMuxFactory(f informers.SharedInformerFactory) muxFactory {
	return muxFactory{SharedInformerFactory: f, pods: &lazyMux{inf: func() cache.SharedIndexInformer {
		return f.Core().V1().Pods().Informer()
	}}}
}

func (f muxFactory) Core() core.Interface {
	return muxCore{Interface: f.SharedInformerFactory.Core(), pods: f.pods}
}

type muxCore struct {
	core.Interface
	pods *lazyMux
}

func (c muxCore) V1() corev1informers.Interface {
	return muxCoreV1{Interface: c.Interface.V1(), pods: c.pods}
}

type muxCoreV1 struct {
	corev1informers.Interface
	pods *lazyMux
}

func (c muxCoreV1) Pods() corev1informers.TypedPodInformer {
	return muxPods{TypedPodInformer: c.Interface.Pods(), pods: c.pods}
}

// muxPods is the pod informer with the mux as its Informer (TypedInformer
// stays the factory's: a handler added through it has a listener of its
// own).
type muxPods struct {
	corev1informers.TypedPodInformer
	pods *lazyMux
}

// Informer returns the mux, or the factory's informer once the mux was
// sealed without having been made.
func (p muxPods) Informer() cache.SharedIndexInformer {
	if m := p.pods.get(); m != nil {
		return m
	}
	return p.TypedPodInformer.Informer()
}
