package etcd3

import "k8s.io/apimachinery/pkg/runtime"

// SetWriteObserver makes the store tell f, after every write that
// returns an object (Create, and GuaranteedUpdate whether it wrote or
// found the bytes unchanged), that object and the bytes etcd holds for it
// (the object encoded without its resourceVersion; shared, never to be
// modified). The watch cache uses it to answer protobuf clients from
// those bytes (internal/storage/pbsplice). Call it before the store is
// used; f must be cheap and must not modify the object.
func (s *Store) SetWriteObserver(f func(obj runtime.Object, data []byte)) { s.written = f }

func (s *Store) noteWritten(obj runtime.Object, data []byte) {
	if s.written != nil {
		s.written(obj, data)
	}
}
