package apiserver

import (
	"bytes"
	"sync/atomic"

	"k8s.io/apimachinery/pkg/runtime"

	"skiff.dev/skiff/internal/registry/generic"
	"skiff.dev/skiff/internal/storage/pbsplice"
)

// storedDataSource is a storage that knows the bytes it holds for the
// objects it hands out (the watch cache: cacher.Cacher.StoredData).
type storedDataSource interface {
	StoredData(obj runtime.Object) []byte
}

// spliceCounts counts protobuf objects answered from stored bytes and
// those encoded because the splice did not apply (for tests and
// profiling).
var spliceCounts struct {
	spliced, encoded atomic.Int64
	// disabled turns the splice off (tests compare both paths).
	disabled atomic.Bool
	// verify makes every splice also encode and compare, counting
	// mismatches (tests run workloads with it).
	verify     atomic.Bool
	mismatches atomic.Int64
}

// splicedProtobuf returns the protobuf encoding of obj, an object st
// returned, built from the bytes its storage holds for it (see
// internal/storage/pbsplice), when that is provably what the protobuf
// encoder would write: obj is exactly the object decoded from (or encoded
// into) those bytes, apart from its resourceVersion. ok is false
// otherwise; the caller encodes obj. Only for plain objects in the
// storage version (enc, the protobuf encoder, is used only to verify in
// tests): Tables, PartialObjectMetadata and objects converted by
// FromStorage are new objects, which the storage never indexes.
func splicedProtobuf(st *generic.Store, enc runtime.Encoder, obj runtime.Object) (b []byte, ok bool) {
	if st == nil || spliceCounts.disabled.Load() {
		return nil, false
	}
	src, isSrc := st.Storage.(storedDataSource)
	if !isSrc {
		return nil, false
	}
	if data := src.StoredData(obj); data != nil {
		b, ok = pbsplice.Splice(data, obj)
	}
	if !ok {
		spliceCounts.encoded.Add(1)
		return nil, false
	}
	spliceCounts.spliced.Add(1)
	if spliceCounts.verify.Load() {
		var want bytes.Buffer
		if err := enc.Encode(obj, &want); err != nil || !bytes.Equal(want.Bytes(), b) {
			spliceCounts.mismatches.Add(1)
			return nil, false
		}
	}
	return b, true
}
