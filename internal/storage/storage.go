// Package storage defines the interface between the API server's registry and
// the key-value store that holds every object. The registry never talks to
// etcd directly: it sees only Interface, which etcd3 implements against etcd
// and cacher implements in memory on top of another Interface.
//
// Contract:
//   - An Interface instance serves one resource: it knows how to create empty
//     objects of that resource (NewFunc) and how to encode/decode them.
//   - Keys are full paths, e.g. "/registry/pods/default/nginx"; a list or
//     watch prefix ends with "/" (e.g. "/registry/pods/default/" or
//     "/registry/pods/").
//   - metadata.resourceVersion of every object returned is the etcd
//     mod revision of that key, as a decimal string; objects passed in are
//     stored with resourceVersion cleared (the revision is the version).
//   - Objects returned are owned by the caller unless documented otherwise
//     (the cacher returns shared objects from List/Get: callers must
//     DeepCopy before mutating).
package storage

import (
	"context"
	"errors"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
)

// Interface is what the registry needs from storage, for one resource.
type Interface interface {
	// Create stores obj under key if the key does not exist. It returns the
	// stored object with resourceVersion set. ErrKeyExists if present.
	Create(ctx context.Context, key string, obj runtime.Object) (runtime.Object, error)

	// Get returns the object at key. opts.ResourceVersion follows the
	// Kubernetes semantics for get ("" = latest, "0" = any, N = at least N).
	// ErrNotFound if absent.
	Get(ctx context.Context, key string, opts GetOptions) (runtime.Object, error)

	// List returns the objects under prefix in key order.
	List(ctx context.Context, prefix string, opts ListOptions) (*ListResult, error)

	// GuaranteedUpdate reads key, calls tryUpdate with a private copy of the
	// current object, and writes the result with a compare-and-swap on the
	// mod revision, retrying tryUpdate on conflict. If tryUpdate returns
	// ErrNoChange-wrapped error or an object semantically equal to the
	// current one, nothing is written and the current object is returned.
	// Any other error from tryUpdate aborts and is returned unchanged.
	// If ignoreNotFound is true and the key is absent, tryUpdate is called
	// with nil current and the result is created.
	GuaranteedUpdate(ctx context.Context, key string, ignoreNotFound bool, tryUpdate UpdateFunc) (runtime.Object, error)

	// Delete removes key. check is called with the current object (a
	// private copy) before deleting and may veto by returning an error,
	// which is returned unchanged; the delete is a compare-and-swap on the
	// revision check saw, retried if the object changed meanwhile. Returns
	// the last state of the object (resourceVersion = revision it was at).
	Delete(ctx context.Context, key string, check func(current runtime.Object) error) (runtime.Object, error)

	// Watch streams changes under prefix (or exactly key when
	// opts.Recursive is false) newer than opts.ResourceVersion. "" or "0"
	// means: first synthetic ADDED events for the current state, then
	// changes. ErrGone (wrapped in *Error with code ErrCodeResourceExpired)
	// when the requested revision is compacted or too old for the cache.
	Watch(ctx context.Context, prefix string, opts WatchOptions) (watch.Interface, error)

	// CurrentRevision returns the store's current revision (for consistent
	// reads: a cache serves "" reads once it has caught up with this).
	CurrentRevision(ctx context.Context) (int64, error)

	// Count returns the number of objects under prefix (for metrics/quota).
	Count(ctx context.Context, prefix string) (int64, error)
}

// GuessingUpdater is implemented by stores whose GuaranteedUpdate can
// start from a copy of the object a cache already holds instead of reading
// it. guess is shared (never modified): its ResourceVersion (or, when 0,
// its Object's resourceVersion) is the revision the Object is at, and its
// Data, when not nil, is what the store holds at that revision (saving an
// encode for the unchanged-bytes check); nil means no guess. A stale guess costs a retry, never a lost write: the
// write is a compare-and-swap on the guess's revision, and every decision
// that does not end in a write is re-taken on a fresh read, as for
// GuaranteedUpdate.
type GuessingUpdater interface {
	GuaranteedUpdateFrom(ctx context.Context, key string, ignoreNotFound bool, tryUpdate UpdateFunc, guess *Stored) (runtime.Object, error)
}

// Stored is one key's state as its store holds it. A watch opened with
// WatchOptions.ForCache reports every change as a *Stored: ADDED and
// MODIFIED carry the decoded Object (resourceVersion set) and Data, the
// stored bytes it was decoded from; DELETED carries only Key and
// ResourceVersion (the delete revision): the store does not fetch the
// previous state, the cache already holds it. Data is shared and must not
// be modified.
type Stored struct {
	Key             string
	ResourceVersion int64
	Object          runtime.Object
	Data            []byte
}

var _ runtime.Object = (*Stored)(nil)

// GetObjectKind implements runtime.Object: a Stored has no kind of its own.
func (s *Stored) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

// DeepCopyObject implements runtime.Object.
func (s *Stored) DeepCopyObject() runtime.Object {
	out := &Stored{Key: s.Key, ResourceVersion: s.ResourceVersion}
	if s.Object != nil {
		out.Object = s.Object.DeepCopyObject()
	}
	if s.Data != nil {
		out.Data = append([]byte(nil), s.Data...)
	}
	return out
}

// UpdateFunc computes the new object from the current one. current is a
// private copy (nil when creating through ignoreNotFound), unless the
// update runs under WithSharedCurrent.
type UpdateFunc func(current runtime.Object) (runtime.Object, error)

type sharedCurrentKey struct{}

// WithSharedCurrent marks the GuaranteedUpdate calls made with the
// returned context as ones whose UpdateFunc never modifies current (not
// even its maps and slices: it builds what it returns from shallow copies
// and replaces what it changes). A store may then hand the UpdateFunc
// an object it shares with others (the watch cache's, from a guess)
// instead of a deep copy. Returning current itself is allowed (the store
// copies it before touching it).
func WithSharedCurrent(ctx context.Context) context.Context {
	return context.WithValue(ctx, sharedCurrentKey{}, true)
}

// SharedCurrent reports whether ctx came from WithSharedCurrent.
func SharedCurrent(ctx context.Context) bool {
	v, _ := ctx.Value(sharedCurrentKey{}).(bool)
	return v
}

// ErrNoChange may be returned (possibly wrapped) from an UpdateFunc to say
// "leave the object as it is"; GuaranteedUpdate then returns the current
// object and a nil error.
var ErrNoChange = errors.New("no change")

// Predicate selects objects for List and Watch. A nil Predicate matches all.
// For watches, an object that stops matching is delivered as DELETED, one
// that starts matching as ADDED (the Kubernetes watch semantics).
type Predicate func(obj runtime.Object) bool

// GetOptions carry the Kubernetes get semantics.
type GetOptions struct {
	ResourceVersion string
}

// ListOptions carry the Kubernetes list semantics.
type ListOptions struct {
	ResourceVersion      string
	ResourceVersionMatch metav1.ResourceVersionMatch
	// Limit > 0 asks for at most Limit items and a Continue token.
	Limit int64
	// Continue is a token from an earlier ListResult.
	Continue  string
	Predicate Predicate
	// Recursive lists everything under prefix; false means prefix is one key.
	Recursive bool
}

// ListResult is one page of a list.
type ListResult struct {
	Items           []runtime.Object
	ResourceVersion int64
	// Continue is set when more items remain.
	Continue string
	// RemainingItemCount is set when known (no predicate filtering).
	RemainingItemCount *int64
}

// WatchOptions carry the Kubernetes watch semantics.
type WatchOptions struct {
	ResourceVersion string
	Predicate       Predicate
	Recursive       bool
	// AllowBookmarks asks for periodic BOOKMARK events carrying only a
	// resourceVersion in an object of the watched kind.
	AllowBookmarks bool
	// SendInitialEvents (with ResourceVersionMatch NotOlderThan) asks for
	// the initial state then a bookmark annotated
	// "k8s.io/initial-events-end": "true".
	SendInitialEvents *bool
	// ForCache asks for what a watch cache needs and no more: the
	// ADDED/MODIFIED/DELETED events' objects are *Stored (see there), so a
	// delete costs the store no read of the previous state. Only without
	// a Predicate (a predicate needs the previous state). A store that
	// does not know ForCache sends plain objects; a cache must accept both.
	ForCache bool
}

// Error codes for *Error.
const (
	ErrCodeKeyNotFound int = iota + 1
	ErrCodeKeyExists
	ErrCodeResourceVersionConflicts
	ErrCodeInvalidObj
	ErrCodeUnreachable
	ErrCodeResourceExpired // 410 Gone: compacted or too old
	ErrCodeTooLargeResourceVersion
	ErrCodeInvalidContinue
	ErrCodeTooLarge // object exceeds the size limit
)

// Error is a storage failure the registry turns into an API status.
type Error struct {
	Code int
	Key  string
	// ResourceVersion is the revision involved, when known.
	ResourceVersion int64
	Msg             string
}

func (e *Error) Error() string {
	if e.Msg != "" {
		return fmt.Sprintf("storage: %s: %s", e.Key, e.Msg)
	}
	return fmt.Sprintf("storage: %s: code %d", e.Key, e.Code)
}

// NewError builds a *Error.
func NewError(code int, key string, rv int64, msg string) *Error {
	return &Error{Code: code, Key: key, ResourceVersion: rv, Msg: msg}
}

// HasCode reports whether err is (or wraps) a *Error with code.
func HasCode(err error, code int) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}

// IsNotFound, IsExists, IsConflict and IsGone are shorthands for HasCode.
func IsNotFound(err error) bool { return HasCode(err, ErrCodeKeyNotFound) }
func IsExists(err error) bool   { return HasCode(err, ErrCodeKeyExists) }
func IsConflict(err error) bool { return HasCode(err, ErrCodeResourceVersionConflicts) }
func IsGone(err error) bool     { return HasCode(err, ErrCodeResourceExpired) }

// MaxObjectSize is the largest encoded object stored (etcd's request limit
// is 1.5 MiB; upstream uses the same bound).
const MaxObjectSize = 1536 * 1024
