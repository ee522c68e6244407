// Package localwatch lists and watches the API server's resources for
// informers in the same process straight from its stores
// (internal/registry/generic.Store over the watch cache), without the HTTP
// round trip: no protobuf encoding of every watch event by the server, no
// decoding by client-go, no in-memory pipe between them.
//
// Contract: a Source's ListerWatchers give an informer what an HTTP client
// of the same resource would decode, event for event:
//   - List and Watch take metav1.ListOptions with the HTTP path's rules
//     (label and field selectors, resourceVersion, resourceVersionMatch,
//     limit/continue, allowWatchBookmarks, sendInitialEvents, which
//     requires resourceVersionMatch=NotOlderThan, timeoutSeconds) and
//     answer the same objects and errors (apierrors StatusErrors: 410 Gone
//     for a compacted or too old resourceVersion, so a reflector relists);
//   - every object is a deep copy the caller owns (the watch cache shares
//     its objects between watchers and list callers; an informer's must
//     never alias them), with an empty TypeMeta, as client-go's typed
//     decoding leaves it; managedFields are kept, as the server sends them;
//   - a watch ends (its result channel closes) when its context ends, on
//     Stop, at timeoutSeconds (30-60 minutes without), when the watch cache
//     drops it (the client re-watches, as after a closed stream), and when
//     the Source is closed (the server stopping).
//
// The requests never reach the API server's handler chain: they are not
// authenticated or authorised (the in-process components act as the
// cluster admin, who may list and watch everything), do not count against
// the in-flight limit and do not appear in apiserver_request_total or
// apiserver_request_duration_seconds (verbs LIST and WATCH of the
// in-process controller manager and scheduler; their writes still do).
package localwatch

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strconv"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"

	"skiff.dev/skiff/internal/registry/generic"
)

// Source serves List and Watch from a set of stores.
type Source struct {
	byType map[reflect.Type]*generic.Store
	byGVR  map[schema.GroupVersionResource]*generic.Store

	closeOnce sync.Once
	done      chan struct{}
}

// New builds a Source on stores. A Go type served by more than one
// resource (none today) is not served locally: ListerWatcher cannot tell
// which one is meant.
func New(stores []*generic.Store) *Source {
	s := &Source{
		byType: map[reflect.Type]*generic.Store{},
		byGVR:  map[schema.GroupVersionResource]*generic.Store{},
		done:   make(chan struct{}),
	}
	dup := map[reflect.Type]bool{}
	for _, st := range stores {
		if st == nil || st.R.New == nil {
			continue
		}
		s.byGVR[st.R.GroupVersion.WithResource(st.R.Resource)] = st
		t := reflect.TypeOf(st.R.New())
		if _, ok := s.byType[t]; ok {
			dup[t] = true
		}
		s.byType[t] = st
	}
	for t := range dup {
		delete(s.byType, t)
	}
	return s
}

// Close ends every watch of the Source and fails later List and Watch
// calls, as a stopping server ends its streams and refuses requests.
func (s *Source) Close() { s.closeOnce.Do(func() { close(s.done) }) }

// errClosed is what List and Watch return after Close.
func errClosed() error {
	return apierrors.NewServiceUnavailable("the API server is stopping")
}

// ListerWatcher returns the ListerWatcher of obj's type (a pointer to a
// k8s.io/api struct such as *corev1.Pod) in namespace ns ("" for all), or
// false when no store serves that type.
func (s *Source) ListerWatcher(obj runtime.Object, ns string) (cache.ListerWatcher, bool) {
	st, ok := s.byType[reflect.TypeOf(obj)]
	if !ok {
		return nil, false
	}
	return &listerWatcher{src: s, st: st, ns: ns}, true
}

// ForResource is ListerWatcher by group, version and resource.
func (s *Source) ForResource(gvr schema.GroupVersionResource, ns string) (cache.ListerWatcher, bool) {
	st, ok := s.byGVR[gvr]
	if !ok {
		return nil, false
	}
	return &listerWatcher{src: s, st: st, ns: ns}, true
}

// listerWatcher is one resource in one namespace (or all). It implements
// cache.ListerWatcher and cache.ListerWatcherWithContext.
type listerWatcher struct {
	src *Source
	st  *generic.Store
	ns  string
}

var (
	_ cache.ListerWatcher            = (*listerWatcher)(nil)
	_ cache.ListerWatcherWithContext = (*listerWatcher)(nil)
)

func (l *listerWatcher) List(opts metav1.ListOptions) (runtime.Object, error) {
	return l.ListWithContext(context.Background(), opts)
}

func (l *listerWatcher) Watch(opts metav1.ListOptions) (watch.Interface, error) {
	return l.WatchWithContext(context.Background(), opts)
}

// ListWithContext implements cache.ListerWithContext.
func (l *listerWatcher) ListWithContext(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
	select {
	case <-l.src.done:
		return nil, errClosed()
	default:
	}
	lo, err := storeOptions(opts, false)
	if err != nil {
		return nil, err
	}
	list, err := l.st.List(ctx, l.ns, lo)
	if err != nil {
		return nil, err
	}
	// The store's list holds shallow copies of the cache's objects
	// (labels, managedFields and the rest shared): copy it whole.
	out := list.DeepCopyObject()
	clearKind(out)
	if err := meta.EachListItem(out, func(o runtime.Object) error {
		clearKind(o)
		return nil
	}); err != nil {
		return nil, apierrors.NewInternalError(fmt.Errorf("listing %s: %w", l.st.R.GroupResource(), err))
	}
	return out, nil
}

// WatchWithContext implements cache.WatcherWithContext.
func (l *listerWatcher) WatchWithContext(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	select {
	case <-l.src.done:
		return nil, errClosed()
	default:
	}
	lo, err := storeOptions(opts, true)
	if err != nil {
		return nil, err
	}
	timeout := time.Duration(30+rand.IntN(30)) * time.Minute
	if opts.TimeoutSeconds != nil {
		if *opts.TimeoutSeconds < 0 {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("invalid timeoutSeconds %d", *opts.TimeoutSeconds))
		}
		timeout = time.Duration(*opts.TimeoutSeconds) * time.Second
	}
	wctx, cancel := context.WithCancel(ctx)
	in, err := l.st.Watch(wctx, l.ns, lo, opts.AllowWatchBookmarks, opts.SendInitialEvents)
	if err != nil {
		cancel()
		return nil, err
	}
	w := &watcher{in: in, cancel: cancel, out: make(chan watch.Event), stop: make(chan struct{})}
	go w.run(wctx, l.src.done, timeout)
	return w, nil
}

// storeOptions turns a client's options into the store's, with the rules
// (and error messages) of the HTTP path's query parsing.
func storeOptions(opts metav1.ListOptions, isWatch bool) (generic.ListOptions, error) {
	var out generic.ListOptions
	var err error
	if opts.LabelSelector != "" {
		if out.Labels, err = labels.Parse(opts.LabelSelector); err != nil {
			return out, apierrors.NewBadRequest(fmt.Sprintf("unable to parse requirement: %v", err))
		}
	}
	if opts.FieldSelector != "" {
		if out.Fields, err = fields.ParseSelector(opts.FieldSelector); err != nil {
			return out, apierrors.NewBadRequest(fmt.Sprintf("invalid field selector: %v", err))
		}
	}
	out.ResourceVersion = opts.ResourceVersion
	out.ResourceVersionMatch = opts.ResourceVersionMatch
	switch out.ResourceVersionMatch {
	case "", metav1.ResourceVersionMatchExact, metav1.ResourceVersionMatchNotOlderThan:
	default:
		return out, apierrors.NewBadRequest(fmt.Sprintf("resourceVersionMatch: Unsupported value: %q: supported values: \"Exact\", \"NotOlderThan\", \"\"", out.ResourceVersionMatch))
	}
	switch {
	case isWatch && out.ResourceVersionMatch != "" && opts.SendInitialEvents == nil:
		return out, apierrors.NewBadRequest("resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided")
	case isWatch && out.ResourceVersionMatch == metav1.ResourceVersionMatchExact:
		return out, apierrors.NewBadRequest(fmt.Sprintf("resourceVersionMatch: Unsupported value: %q: supported values: \"NotOlderThan\"", out.ResourceVersionMatch))
	case isWatch && opts.SendInitialEvents != nil && *opts.SendInitialEvents && out.ResourceVersionMatch != metav1.ResourceVersionMatchNotOlderThan:
		return out, apierrors.NewBadRequest("sendInitialEvents: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan")
	case !isWatch && out.ResourceVersionMatch != "" && out.ResourceVersion == "":
		return out, apierrors.NewBadRequest("resourceVersionMatch is forbidden unless resourceVersion is provided")
	}
	if out.ResourceVersionMatch == metav1.ResourceVersionMatchExact && out.ResourceVersion == "0" {
		return out, apierrors.NewBadRequest("resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"")
	}
	if out.ResourceVersion != "" {
		if _, err := strconv.ParseUint(out.ResourceVersion, 10, 64); err != nil {
			return out, apierrors.NewBadRequest(fmt.Sprintf("invalid resource version %q", out.ResourceVersion))
		}
	}
	if opts.Limit < 0 {
		return out, apierrors.NewBadRequest(fmt.Sprintf("invalid limit %q", fmt.Sprint(opts.Limit)))
	}
	if !isWatch {
		out.Limit = opts.Limit
		out.Continue = opts.Continue
	}
	if out.Continue != "" && out.ResourceVersion != "" && out.ResourceVersion != "0" {
		return out, apierrors.NewBadRequest("specifying resource version is not allowed when using continue")
	}
	return out, nil
}

// watcher forwards a store watch's events as copies the client owns.
type watcher struct {
	in       watch.Interface
	cancel   context.CancelFunc
	out      chan watch.Event
	stopOnce sync.Once
	stop     chan struct{}
}

func (w *watcher) ResultChan() <-chan watch.Event { return w.out }

// Stop implements watch.Interface: the result channel closes soon after.
func (w *watcher) Stop() {
	w.stopOnce.Do(func() {
		close(w.stop)
		w.cancel()
	})
}

func (w *watcher) run(ctx context.Context, closed <-chan struct{}, timeout time.Duration) {
	defer close(w.out)
	defer w.in.Stop()
	defer w.cancel()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	ch := w.in.ResultChan()
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				return
			}
			ev = copyEvent(ev)
			select {
			case w.out <- ev:
			case <-w.stop:
				return
			case <-ctx.Done():
				return
			case <-closed:
				return
			}
		case <-w.stop:
			return
		case <-ctx.Done():
			return
		case <-closed:
			return
		case <-timer.C:
			return
		}
	}
}

// copyEvent returns ev with an object of its own and no TypeMeta, as a
// client decoding the event from the wire would hold it.
func copyEvent(ev watch.Event) watch.Event {
	if ev.Object == nil {
		return ev
	}
	ev.Object = ev.Object.DeepCopyObject()
	clearKind(ev.Object)
	return ev
}

func clearKind(obj runtime.Object) {
	obj.GetObjectKind().SetGroupVersionKind(schema.GroupVersionKind{})
}
