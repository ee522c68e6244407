package cacher

import (
	"sync"

	"k8s.io/apimachinery/pkg/runtime"
)

// storedIndex maps the objects the cache hands out to the bytes the store
// holds for them (what they were decoded from), so the HTTP layer can
// build a protobuf response from those bytes instead of encoding the
// object (see internal/storage/pbsplice). It is keyed by object identity:
// an object is registered as long as the tree holds it or the event that
// brought it is in the ring buffer, whichever is longer, so a watcher
// that lags finds it still; after that a lookup misses and the caller
// encodes. Lookups do not take the cacher's lock.
type storedIndex struct {
	m sync.Map // runtime.Object → []byte
}

func (x *storedIndex) add(obj runtime.Object, data []byte) { x.m.Store(obj, data) }
func (x *storedIndex) remove(obj runtime.Object)           { x.m.Delete(obj) }
func (x *storedIndex) clear()                              { x.m.Clear() }

func (x *storedIndex) get(obj runtime.Object) []byte {
	if v, ok := x.m.Load(obj); ok {
		return v.([]byte)
	}
	return nil
}

// StoredData returns the bytes the underlying store holds for obj, an
// object this cache returned (from Get, List or Watch), or nil when it
// does not know them (objects from the initial list, from delegated
// reads, or long replaced). The bytes encode obj without its
// resourceVersion (the store's convention) and are shared: never modify
// them.
func (c *Cacher) StoredData(obj runtime.Object) []byte {
	return c.stored.get(obj)
}
