// Package etcd3 implements storage.Interface on etcd v3.
//
// Contract (beyond storage.Interface):
//   - Objects are stored encoded with Config.Codec and without
//     resourceVersion; the resourceVersion of a returned object is the
//     key's mod revision (for a deleted object: the revision it was at
//     before the delete; in watch DELETED events: the delete revision).
//   - Returned objects are freshly decoded and owned by the caller, with
//     apiVersion/kind set.
//   - Create and GuaranteedUpdate mutate the object passed in: its
//     resourceVersion is cleared before encoding and set to the new revision
//     afterwards, and that same object is returned (no re-decode).
//   - List pages are consistent snapshots: the continue token carries the
//     revision of the first page; when that revision is compacted the next
//     page fails with ErrCodeResourceExpired.
//   - Watch with AllowBookmarks asks etcd for progress notifications and
//     turns them into BOOKMARK events; RequestWatchProgress asks for one now.
//   - With a Config.KV that implements LocalWatchable (a member in this
//     process), ForCache watches read the member's watch streams
//     directly instead of through clientv3 (same events, compaction and
//     progress behaviour: TestLocalWatchMatchesClientv3).
//   - A watch whose start revision is compacted ends with an ERROR event
//     carrying a 410 metav1.Status (reason Expired) and the channel closes.
//   - A watch with ForCache (the watch cache's) asks etcd for no previous
//     values (each costs etcd a read per event) and reports changes as
//     *storage.Stored: puts with the decoded object and the bytes etcd
//     holds, deletes by key and revision alone.
//   - GuaranteedUpdateFrom takes the cache's object and, when it has
//     them, its stored bytes, so an update from a current cache needs
//     neither a read nor an encode of the old state.
//   - Under storage.WithSharedCurrent, GuaranteedUpdateFrom hands
//     tryUpdate the guess's own object (when the guess has its stored
//     bytes) instead of a deep copy; every later attempt gets a private
//     decode, and a returned current is copied before it is encoded.
//   - Every write is one compare-and-swap transaction on the key's mod
//     revision (casRequest). With Config.KV (a member in this process) the
//     store hands etcd that request ready-built; otherwise clientv3 builds
//     the same request from its Op and Cmp values.
package etcd3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"unsafe"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/apimachinery/pkg/runtime"

	"skiff.dev/skiff/internal/storage"
)

// Config is what a Store needs.
type Config struct {
	Client *clientv3.Client
	// Codec encodes objects for etcd and decodes them into NewFunc().
	Codec runtime.Codec
	// NewFunc returns an empty object of the resource.
	NewFunc func() runtime.Object
	// KV, when set, is the KV API of the etcd member Client talks to,
	// running in this process (etcd.Server.InProcessKV): the API Client's
	// KV calls underneath. Writes hand it their transaction request
	// ready-built, skipping clientv3's per-call request building (it
	// clones every compare twice by reflection and copies every value);
	// reads and watches still go through Client, but for the watch
	// cache's watches when KV implements LocalWatchable.
	KV pb.KVClient
}

// Store is the etcd-backed storage.Interface.
type Store struct {
	client  *clientv3.Client
	kv      pb.KVClient // nil: transactions through client
	codec   runtime.Codec
	newFunc func() runtime.Object
	written func(obj runtime.Object, data []byte) // SetWriteObserver
	local   LocalWatchable                        // nil: every watch through client
	locals  localWatches                          // watches on local's streams
}

var (
	_ storage.Interface              = (*Store)(nil)
	_ storage.WatchProgressRequester = (*Store)(nil)
)

// New returns a Store.
func New(cfg Config) *Store {
	s := &Store{client: cfg.Client, kv: cfg.KV, codec: cfg.Codec, newFunc: cfg.NewFunc}
	if lw, ok := cfg.KV.(LocalWatchable); ok {
		s.local = lw
	}
	return s
}

// maxPageFetch bounds how many keys one range request fetches while
// filling a filtered page.
const maxPageFetch = 10000

// revisionKey is read with count-only to learn the current revision.
const revisionKey = "/registry/\x00skiff-revision"

func (s *Store) decode(key string, data []byte, rv int64) (runtime.Object, error) {
	into := s.newFunc()
	obj, gvk, err := s.codec.Decode(data, nil, into)
	if err != nil {
		return nil, storage.NewError(storage.ErrCodeInvalidObj, key, rv, fmt.Sprintf("decoding stored object: %v", err))
	}
	if gvk != nil && obj.GetObjectKind().GroupVersionKind().Empty() {
		obj.GetObjectKind().SetGroupVersionKind(*gvk)
	}
	if err := storage.SetResourceVersion(obj, rv); err != nil {
		return nil, storage.NewError(storage.ErrCodeInvalidObj, key, rv, err.Error())
	}
	return obj, nil
}

// encode clears obj's resourceVersion and encodes it. The bytes returned
// are the caller's.
func (s *Store) encode(key string, obj runtime.Object) ([]byte, error) {
	if err := storage.SetResourceVersion(obj, 0); err != nil {
		return nil, storage.NewError(storage.ErrCodeInvalidObj, key, 0, err.Error())
	}
	var w captureWriter
	var err error
	if ea, ok := s.codec.(runtime.EncoderWithAllocator); ok {
		// The protobuf serializer sizes the object once, fills one
		// exactly sized slice and writes it once: keep that slice
		// instead of copying it into a growing buffer.
		err = ea.EncodeWithAllocator(obj, &w, &runtime.SimpleAllocator{})
	} else {
		err = s.codec.Encode(obj, &w)
	}
	if err != nil {
		return nil, storage.NewError(storage.ErrCodeInvalidObj, key, 0, fmt.Sprintf("encoding object: %v", err))
	}
	if len(w.b) > storage.MaxObjectSize {
		return nil, storage.NewError(storage.ErrCodeTooLarge, key, 0,
			fmt.Sprintf("object is %d bytes, more than the limit of %d", len(w.b), storage.MaxObjectSize))
	}
	return w.b, nil
}

// captureWriter keeps the first slice written to it without copying (the
// encoder hands over a slice of its own allocation and never touches it
// again) and appends later writes to a copy.
type captureWriter struct {
	b     []byte
	owned bool // b is a copy this writer made (later writes may append)
}

func (w *captureWriter) Write(p []byte) (int, error) {
	switch {
	case w.b == nil:
		w.b = p
	case !w.owned:
		w.b = append(append(make([]byte, 0, len(w.b)+len(p)), w.b...), p...)
		w.owned = true
	default:
		w.b = append(w.b, p...)
	}
	return len(p), nil
}

// putOp is clientv3.OpPut without a string copy of data: OpPut copies its
// value into a []byte of its own, so a string viewing data is never kept.
func putOp(key string, data []byte) clientv3.Op {
	if len(data) == 0 {
		return clientv3.OpPut(key, "")
	}
	return clientv3.OpPut(key, unsafe.String(&data[0], len(data)))
}

// casKind is what a compare-and-swap does when the key is at the revision.
type casKind int

const (
	casPut    casKind = iota // put data
	casDelete                // delete the key
)

// casRequest is the one transaction the store writes with: if key's mod
// revision is rev (0: the key is absent), put data or delete the key;
// otherwise, with elseGet, read the key. It is the request clientv3 builds
// from Compare(ModRevision(key), "=", rev), OpPut(key, data) or
// OpDelete(key), and OpGet(key) (TestCASRequestIsClientv3s holds it to
// that), with data shared instead of copied.
func casRequest(key string, rev int64, kind casKind, data []byte, elseGet bool) *pb.TxnRequest {
	k := []byte(key)
	then := &pb.RequestOp{}
	switch kind {
	case casPut:
		if data == nil {
			data = []byte{} // OpPut's value is never nil
		}
		then.Request = &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: k, Value: data}}
	case casDelete:
		then.Request = &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: k}}
	}
	req := &pb.TxnRequest{
		Compare: []*pb.Compare{{
			Result:      pb.Compare_EQUAL,
			Target:      pb.Compare_MOD,
			Key:         k,
			TargetUnion: &pb.Compare_ModRevision{ModRevision: rev},
		}},
		Success: []*pb.RequestOp{then},
	}
	if elseGet {
		req.Failure = []*pb.RequestOp{{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: k}}}}
	}
	return req
}

// cas runs casRequest(key, rev, kind, data, elseGet): on Config.KV when
// set (answering errors as clientv3 would: clientv3.ContextError), else
// through the client.
func (s *Store) cas(ctx context.Context, key string, rev int64, kind casKind, data []byte, elseGet bool) (*clientv3.TxnResponse, error) {
	if s.kv != nil {
		resp, err := s.kv.Txn(ctx, casRequest(key, rev, kind, data, elseGet))
		if err != nil {
			return nil, clientv3.ContextError(ctx, err)
		}
		return (*clientv3.TxnResponse)(resp), nil
	}
	then := clientv3.OpDelete(key)
	if kind == casPut {
		then = putOp(key, data)
	}
	t := s.client.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).Then(then)
	if elseGet {
		t = t.Else(clientv3.OpGet(key))
	}
	return t.Commit()
}

// Create implements storage.Interface.
func (s *Store) Create(ctx context.Context, key string, obj runtime.Object) (runtime.Object, error) {
	data, err := s.encode(key, obj)
	if err != nil {
		return nil, err
	}
	resp, err := s.cas(ctx, key, 0, casPut, data, false)
	if err != nil {
		return nil, wrapEtcdError(key, 0, "creating", err)
	}
	if !resp.Succeeded {
		return nil, storage.NewError(storage.ErrCodeKeyExists, key, 0, "key already exists")
	}
	rev := resp.Header.Revision
	if err := storage.SetResourceVersion(obj, rev); err != nil {
		return nil, err
	}
	s.noteWritten(obj, data)
	return obj, nil
}

// Get implements storage.Interface.
func (s *Store) Get(ctx context.Context, key string, opts storage.GetOptions) (runtime.Object, error) {
	minRV, err := storage.ParseResourceVersion(opts.ResourceVersion)
	if err != nil {
		return nil, storage.NewError(storage.ErrCodeInvalidObj, key, 0, err.Error())
	}
	var ops []clientv3.OpOption
	if opts.ResourceVersion == "0" {
		ops = append(ops, clientv3.WithSerializable())
	}
	resp, err := s.client.Get(ctx, key, ops...)
	if err != nil {
		return nil, wrapEtcdError(key, 0, "getting", err)
	}
	if minRV > resp.Header.Revision {
		return nil, tooLargeRV(key, minRV, resp.Header.Revision)
	}
	if len(resp.Kvs) == 0 {
		return nil, storage.NewError(storage.ErrCodeKeyNotFound, key, resp.Header.Revision, "not found")
	}
	kv := resp.Kvs[0]
	return s.decode(key, kv.Value, kv.ModRevision)
}

func tooLargeRV(key string, want, have int64) error {
	return storage.NewError(storage.ErrCodeTooLargeResourceVersion, key, want,
		fmt.Sprintf("too large resource version: %d, current: %d", want, have))
}

// GuaranteedUpdate implements storage.Interface.
func (s *Store) GuaranteedUpdate(ctx context.Context, key string, ignoreNotFound bool, tryUpdate storage.UpdateFunc) (runtime.Object, error) {
	return s.GuaranteedUpdateFrom(ctx, key, ignoreNotFound, tryUpdate, nil)
}

var _ storage.GuessingUpdater = (*Store)(nil)

// GuaranteedUpdateFrom implements storage.GuessingUpdater. A guess (the
// watch cache's copy) replaces the first read and its decode with a deep
// copy (and an encode for the unchanged-bytes check when the guess comes
// without its stored bytes): the API server's updates start from the
// object its clients saw, which the cache holds. Under
// storage.WithSharedCurrent a guess with its stored bytes is handed to
// tryUpdate as it is, without the copy.
func (s *Store) GuaranteedUpdateFrom(ctx context.Context, key string, ignoreNotFound bool, tryUpdate storage.UpdateFunc, guess *storage.Stored) (runtime.Object, error) {
	// The first read is serializable (no raft round trip) or the guess:
	// the compare-and-swap below catches a stale read, and every decision
	// that does not end in a write (an error from tryUpdate, "no change",
	// not found) is re-taken on a linearizable read before it is
	// returned. A linearizable read per write was the bottleneck of
	// concurrent writers (hundreds of scheduler bindings parked in it).
	var (
		fresh   bool
		cur     runtime.Object // private unless curShared; nil when absent
		curData []byte
		curRev  int64
		// curShared: cur is the guess's own object (WithSharedCurrent),
		// which the store must never modify.
		curShared bool
	)
	// use makes the read kvs the state tryUpdate is given next.
	use := func(kvs []*mvccpb.KeyValue) error {
		cur, curData, curRev, curShared = nil, nil, 0, false
		if len(kvs) == 0 {
			return nil
		}
		var err error
		curData, curRev = kvs[0].Value, kvs[0].ModRevision
		cur, err = s.decode(key, curData, curRev)
		return err
	}
	refresh := func() error {
		r, err := s.client.Get(ctx, key)
		if err != nil {
			return wrapEtcdError(key, 0, "getting", err)
		}
		fresh = true
		return use(r.Kvs)
	}
	var guessed bool
	if guessed, curShared = s.useGuess(key, guess, storage.SharedCurrent(ctx), &cur, &curData, &curRev); !guessed {
		getResp, err := s.client.Get(ctx, key, clientv3.WithSerializable())
		if err != nil {
			return nil, wrapEtcdError(key, 0, "getting", err)
		}
		if err := use(getResp.Kvs); err != nil {
			return nil, err
		}
	}
	for {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("updating %s: %w", key, err)
		}
		if cur == nil && !ignoreNotFound {
			if !fresh {
				if err := refresh(); err != nil {
					return nil, err
				}
				continue
			}
			return nil, storage.NewError(storage.ErrCodeKeyNotFound, key, 0, "not found")
		}
		updated, err := tryUpdate(cur)
		if err == nil && curShared && updated == cur {
			// Encoding clears the resourceVersion: never on the
			// guess's own object.
			updated = updated.DeepCopyObject()
		}
		if err != nil {
			if !fresh {
				if err := refresh(); err != nil {
					return nil, err
				}
				continue
			}
			if errors.Is(err, storage.ErrNoChange) && cur != nil {
				return s.decode(key, curData, curRev)
			}
			return nil, err
		}
		data, err := s.encode(key, updated)
		if err != nil {
			return nil, err
		}
		if cur != nil && bytes.Equal(data, curData) {
			if !fresh {
				if err := refresh(); err != nil {
					return nil, err
				}
				continue
			}
			if err := storage.SetResourceVersion(updated, curRev); err != nil {
				return nil, err
			}
			s.noteWritten(updated, curData)
			return updated, nil
		}
		resp, err := s.cas(ctx, key, curRev, casPut, data, true)
		if err != nil {
			return nil, wrapEtcdError(key, curRev, "updating", err)
		}
		if resp.Succeeded {
			if err := storage.SetResourceVersion(updated, resp.Header.Revision); err != nil {
				return nil, err
			}
			s.noteWritten(updated, data)
			return updated, nil
		}
		// The failed transaction read the current value linearizably.
		fresh = true
		if err := use(resp.Responses[0].GetResponseRange().Kvs); err != nil {
			return nil, err
		}
	}
}

// useGuess sets the first state to try from guess: a private copy (or,
// when the caller shares current and the guess has its stored bytes, the
// guess's object itself: shared reports that), what etcd holds at that
// revision (for the unchanged-bytes check: the guess's stored bytes, or
// else its encoding) and its revision. ok is false when there is no
// usable guess.
func (s *Store) useGuess(key string, guess *storage.Stored, share bool, cur *runtime.Object, curData *[]byte, curRev *int64) (ok, shared bool) {
	if guess == nil || guess.Object == nil {
		return false, false
	}
	rev := guess.ResourceVersion
	if rev == 0 {
		var err error
		if rev, err = storage.ObjectResourceVersion(guess.Object); err != nil {
			return false, false
		}
	}
	if rev <= 0 {
		return false, false
	}
	if share && guess.Data != nil {
		*cur, *curData, *curRev = guess.Object, guess.Data, rev
		return true, true
	}
	obj := guess.Object.DeepCopyObject()
	data := guess.Data
	if data == nil {
		var err error
		if data, err = s.encode(key, obj); err != nil { // clears obj's resourceVersion
			return false, false
		}
		if err := storage.SetResourceVersion(obj, rev); err != nil {
			return false, false
		}
	}
	*cur, *curData, *curRev = obj, data, rev
	return true, false
}

// Delete implements storage.Interface.
func (s *Store) Delete(ctx context.Context, key string, check func(runtime.Object) error) (runtime.Object, error) {
	getResp, err := s.client.Get(ctx, key)
	if err != nil {
		return nil, wrapEtcdError(key, 0, "getting", err)
	}
	kvs := getResp.Kvs
	for {
		if len(kvs) == 0 {
			return nil, storage.NewError(storage.ErrCodeKeyNotFound, key, 0, "not found")
		}
		kv := kvs[0]
		cur, err := s.decode(key, kv.Value, kv.ModRevision)
		if err != nil {
			return nil, err
		}
		if check != nil {
			if err := check(cur); err != nil {
				return nil, err
			}
			// check may have mutated its copy: return a fresh one.
			if cur, err = s.decode(key, kv.Value, kv.ModRevision); err != nil {
				return nil, err
			}
		}
		resp, err := s.cas(ctx, key, kv.ModRevision, casDelete, nil, true)
		if err != nil {
			return nil, wrapEtcdError(key, kv.ModRevision, "deleting", err)
		}
		if resp.Succeeded {
			return cur, nil
		}
		kvs = resp.Responses[0].GetResponseRange().Kvs
	}
}

// CurrentRevision implements storage.Interface with a linearizable
// count-only read of one key: its header carries the current revision.
func (s *Store) CurrentRevision(ctx context.Context) (int64, error) {
	resp, err := s.client.Get(ctx, revisionKey, clientv3.WithCountOnly())
	if err != nil {
		return 0, wrapEtcdError(revisionKey, 0, "reading current revision", err)
	}
	return resp.Header.Revision, nil
}

// Count implements storage.Interface.
func (s *Store) Count(ctx context.Context, prefix string) (int64, error) {
	resp, err := s.client.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0, wrapEtcdError(prefix, 0, "counting", err)
	}
	return resp.Count, nil
}

// RequestWatchProgress implements storage.WatchProgressRequester: every
// synced watch opened with AllowBookmarks receives a bookmark soon.
func (s *Store) RequestWatchProgress(ctx context.Context) error {
	s.locals.requestProgress()
	if err := s.client.RequestProgress(watchContext(ctx)); err != nil {
		return fmt.Errorf("requesting watch progress: %w", err)
	}
	return nil
}

func wrapEtcdError(key string, rv int64, doing string, err error) error {
	switch {
	case errors.Is(err, rpctypes.ErrCompacted):
		return storage.NewError(storage.ErrCodeResourceExpired, key, rv,
			fmt.Sprintf("too old resource version: %d", rv))
	case errors.Is(err, rpctypes.ErrFutureRev):
		return storage.NewError(storage.ErrCodeTooLargeResourceVersion, key, rv,
			fmt.Sprintf("too large resource version: %d", rv))
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s %s: %w", doing, key, err)
	}
	return storage.NewError(storage.ErrCodeUnreachable, key, rv, fmt.Sprintf("%s: %v", doing, err))
}
