package registry

import (
	"sync"
	"sync/atomic"

	"k8s.io/apimachinery/pkg/util/validation"
)

// ValidMemo remembers strings a per-string validator accepted, so the
// same few label keys and values, namespaces or toleration keys that come
// back on every write are checked with a map lookup instead of upstream's
// regular expressions. It stops learning at maxValidMemo entries (unique
// strings, such as names, should not go through a memo at all). Only
// acceptance is remembered: a string the check rejects is checked again
// next time, and callers run upstream's validator for its errors.
type ValidMemo struct {
	check func(string) bool
	m     sync.Map // string -> struct{}
	n     atomic.Int64
}

const maxValidMemo = 8192

// NewValidMemo returns a memo of the strings check accepts.
func NewValidMemo(check func(string) bool) *ValidMemo { return &ValidMemo{check: check} }

// Valid reports whether check accepts s, from the memo when it can.
func (v *ValidMemo) Valid(s string) bool {
	if _, ok := v.m.Load(s); ok {
		return true
	}
	if !v.check(s) {
		return false
	}
	if v.n.Load() < maxValidMemo {
		if _, loaded := v.m.LoadOrStore(s, struct{}{}); !loaded {
			v.n.Add(1)
		}
	}
	return true
}

// Label keys (qualified names) and label values upstream's per-string
// checks accepted, shared by every package that validates labels or
// label-like keys.
var (
	LabelKeys   = NewValidMemo(func(s string) bool { return len(validation.IsQualifiedName(s)) == 0 })
	LabelValues = NewValidMemo(func(s string) bool { return len(validation.IsValidLabelValue(s)) == 0 })
)
