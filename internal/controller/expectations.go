package controller

import (
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// ExpectationsTimeout is how long unfulfilled expectations block a
// controller before it acts again anyway (a watch event can be lost).
const ExpectationsTimeout = 5 * time.Minute

// Expectations remembers, per controller key, the pod creations and deletions
// a controller has issued but not yet seen through its informer. A controller
// only recomputes replicas for a key whose expectations are satisfied, so a
// slow informer never makes it create (or delete) the same pods twice.
//
// Deletions are tracked by pod key rather than by count: a pod observed as
// deleted twice (graceful deletion, then removal) is only counted once.
type Expectations struct {
	mu    sync.Mutex
	clock clock.PassiveClock
	ttl   time.Duration
	m     map[string]*expectation
}

type expectation struct {
	adds    int
	deletes map[string]struct{}
	set     time.Time
}

// NewExpectations returns empty expectations timed by clk.
func NewExpectations(clk clock.PassiveClock) *Expectations {
	return &Expectations{clock: clk, ttl: ExpectationsTimeout, m: map[string]*expectation{}}
}

// Satisfied reports whether the controller for key may act: nothing is
// pending, nothing was ever recorded, or the record has expired.
func (e *Expectations) Satisfied(key string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	x, ok := e.m[key]
	if !ok {
		return true
	}
	if x.adds <= 0 && len(x.deletes) == 0 {
		return true
	}
	return e.clock.Since(x.set) > e.ttl
}

// ExpectCreations records that n creations were issued for key, replacing
// any earlier record.
func (e *Expectations) ExpectCreations(key string, n int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.m[key] = &expectation{adds: n, deletes: map[string]struct{}{}, set: e.clock.Now()}
}

// ExpectDeletions records that the pods named by podKeys are being deleted
// for key, replacing any earlier record.
func (e *Expectations) ExpectDeletions(key string, podKeys []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	d := make(map[string]struct{}, len(podKeys))
	for _, k := range podKeys {
		d[k] = struct{}{}
	}
	e.m[key] = &expectation{deletes: d, set: e.clock.Now()}
}

// CreationObserved lowers the pending creations of key by one: either the
// informer saw a new pod, or a create was never issued or failed.
func (e *Expectations) CreationObserved(key string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if x, ok := e.m[key]; ok && x.adds > 0 {
		x.adds--
	}
}

// DeletionObserved marks podKey's deletion for key as seen (or abandoned).
func (e *Expectations) DeletionObserved(key, podKey string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if x, ok := e.m[key]; ok {
		delete(x.deletes, podKey)
	}
}

// Pending returns the outstanding creations and deletions of key.
func (e *Expectations) Pending(key string) (adds, deletes int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if x, ok := e.m[key]; ok {
		return x.adds, len(x.deletes)
	}
	return 0, 0
}

// Delete forgets key, e.g. when its controller object is gone.
func (e *Expectations) Delete(key string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.m, key)
}
