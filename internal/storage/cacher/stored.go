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
// encodes. Objects a write through the cache returns (the store reports
// them with SetWriteObserver) are registered too, for the next
// recentWrites writes: long enough for the write's response. Lookups do
// not take the cacher's lock.
type storedIndex struct {
	m sync.Map // runtime.Object → []byte

	wmu    sync.Mutex
	writes []runtime.Object // ring of the objects addWritten registered
	next   int
}

// recentWrites is how many written objects stay registered.
const recentWrites = 4096

// writeObservable is a store that reports what its writes stored
// (etcd3.Store.SetWriteObserver).
type writeObservable interface {
	SetWriteObserver(func(obj runtime.Object, data []byte))
}

// addWritten registers obj, which a write returned, with the bytes it
// stored, dropping the oldest written object beyond recentWrites.
func (x *storedIndex) addWritten(obj runtime.Object, data []byte) {
	x.wmu.Lock()
	defer x.wmu.Unlock()
	if x.writes == nil {
		x.writes = make([]runtime.Object, recentWrites)
	}
	if old := x.writes[x.next]; old != nil {
		x.m.Delete(old)
	}
	x.writes[x.next] = obj
	x.next = (x.next + 1) % len(x.writes)
	x.m.Store(obj, data)
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
// object this cache returned (from Get, List, Watch or a write), or nil when it
// does not know them (objects from the initial list, from delegated
// reads, or long replaced or written). The bytes encode obj without its
// resourceVersion (the store's convention) and are shared: never modify
// them.
func (c *Cacher) StoredData(obj runtime.Object) []byte {
	return c.stored.get(obj)
}
