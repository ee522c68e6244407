package controller

import (
	"slices"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// LastWrites remembers, for each object a controller wrote, the object the
// API server returned, until the controller's informer has caught up with
// that write. A controller that writes an object's status and syncs it
// again before the informer delivers the write (a fast scale-up: the next
// pod event arrives within milliseconds) would otherwise base its next
// write on the cached copy it already replaced, and the API server would
// answer 409 Conflict: half of all status writes in a 10,000-pod scale-up
// did. With LastWrites the sync reads Newest instead of the cached copy:
// the object as the controller's own last write left it, for exactly as
// long as the cache still shows a version that write replaced.
//
// Resource versions are compared for equality only (they are opaque to
// clients): each write records the version it replaced, and a cached copy
// at one of those versions is known to be older than the written object.
// A cached copy at any other version is our write itself or something
// newer (another client's write delivered after ours), and is used as is.
//
// The objects stored and returned are shared: callers never modify them
// (DeepCopy first, as with an informer's objects).
type LastWrites[T metav1.Object] struct {
	mu sync.Mutex
	m  map[string]lastWrite[T]
}

type lastWrite[T metav1.Object] struct {
	obj T
	// replaced holds the resource versions our writes replaced since
	// the cache last caught up, oldest first: consecutive writes each
	// based on the previous one's answer form one chain.
	replaced []string
}

// maxReplaced bounds a chain of writes the cache has not caught up with;
// past it the oldest versions are forgotten, and a cache that old only
// costs a conflict (the write fails and the sync is retried).
const maxReplaced = 16

// Newest returns the object to work from for key: obj (the informer's
// copy) unless it is a version this controller's writes replaced, and then
// the object its last write returned.
func (w *LastWrites[T]) Newest(key string, obj T) T {
	w.mu.Lock()
	defer w.mu.Unlock()
	e, ok := w.m[key]
	if !ok {
		return obj
	}
	if e.obj.GetUID() == obj.GetUID() {
		rv := obj.GetResourceVersion()
		if slices.Contains(e.replaced, rv) {
			return e.obj
		}
		if rv == e.obj.GetResourceVersion() {
			// Caught up: the entry stays for IsEcho (the handlers may
			// see the event after a sync has read the cache).
			e.replaced = nil
			w.m[key] = e
			return obj
		}
	}
	// Past our write (or the object was replaced by a namesake): the
	// cache is the newest we know.
	delete(w.m, key)
	return obj
}

// Wrote records that a write of key based on resource version base (the
// version the sent object carried) succeeded and returned obj. obj must
// not be modified afterwards.
func (w *LastWrites[T]) Wrote(key, base string, obj T) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if base == "" || obj.GetResourceVersion() == "" {
		// Without versions (an unconditional write, a fake client)
		// nothing tells a stale copy from a newer one.
		delete(w.m, key)
		return
	}
	if w.m == nil {
		w.m = map[string]lastWrite[T]{}
	}
	e, ok := w.m[key]
	if ok && e.obj.GetUID() == obj.GetUID() && e.obj.GetResourceVersion() == base {
		// Another write on top of our previous one: the cache may still
		// show any version of the chain.
		e.replaced = append(e.replaced, base)
		if len(e.replaced) > maxReplaced {
			e.replaced = slices.Delete(e.replaced, 0, len(e.replaced)-maxReplaced)
		}
	} else {
		e.replaced = []string{base}
	}
	e.obj = obj
	w.m[key] = e
}

// IsEcho reports whether obj (an object an informer delivered) is exactly
// the object this controller's last write of key returned: the event
// carries nothing the write's sync did not already know.
func (w *LastWrites[T]) IsEcho(key string, obj metav1.Object) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	e, ok := w.m[key]
	return ok && e.obj.GetUID() == obj.GetUID() && e.obj.GetResourceVersion() == obj.GetResourceVersion()
}

// Forget drops what is remembered of key (the object was deleted).
func (w *LastWrites[T]) Forget(key string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.m, key)
}

// Len returns how many objects are remembered (tests).
func (w *LastWrites[T]) Len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.m)
}
