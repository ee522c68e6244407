package servicealloc

import (
	"sort"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// state is where an allocation stands relative to what is stored.
type state uint8

const (
	// committed: a stored service holds it (seen by a repair pass).
	committed state = iota
	// pendingAlloc: handed out by Admit; the write may or may not happen.
	pendingAlloc
	// pendingRelease: an update dropped it; freed once the store agrees.
	pendingRelease
)

// owner identifies the service an allocation belongs to. Reuse across
// GuaranteedUpdate retries is keyed by key; release on delete also
// requires uid, so a late delete cannot free what a re-created service of
// the same name was given.
type owner struct {
	key string // namespace/name
	uid types.UID
}

type slot struct {
	owner owner
	state state
	since time.Time // when the state was last set by Admit
}

// pool is one range's bookkeeping: the bitmap plus who holds what. gen
// records, per offset, the generation of its last change by a request, so
// a repair pass leaves alone anything that changed after it began listing.
type pool struct {
	bm    *Bitmap
	slots map[int]*slot
	byKey map[string]map[int]struct{}
	gen   map[int]uint64
}

func newPool(size int) *pool {
	return &pool{bm: NewBitmap(size), slots: map[int]*slot{}, byKey: map[string]map[int]struct{}{}, gen: map[int]uint64{}}
}

func (p *pool) setOwner(off int, o owner) {
	if s := p.slots[off]; s != nil && s.owner.key != o.key {
		p.unindex(off, s.owner.key)
	}
	m := p.byKey[o.key]
	if m == nil {
		m = map[int]struct{}{}
		p.byKey[o.key] = m
	}
	m[off] = struct{}{}
}

func (p *pool) unindex(off int, key string) {
	if m := p.byKey[key]; m != nil {
		delete(m, off)
		if len(m) == 0 {
			delete(p.byKey, key)
		}
	}
}

// set records off as allocated to o in state st.
func (p *pool) set(off int, o owner, st state, now time.Time) {
	p.bm.Allocate(off)
	p.setOwner(off, o)
	p.slots[off] = &slot{owner: o, state: st, since: now}
}

func (p *pool) free(off int) {
	if s := p.slots[off]; s != nil {
		p.unindex(off, s.owner.key)
		delete(p.slots, off)
	}
	p.bm.Release(off)
}

// owned lists the offsets held by key, sorted.
func (p *pool) owned(key string) []int {
	out := make([]int, 0, len(p.byKey[key]))
	for off := range p.byKey[key] {
		out = append(out, off)
	}
	sort.Ints(out)
	return out
}

// ownerOf returns who holds off, if anyone.
func (p *pool) ownerOf(off int) (owner, bool) {
	s := p.slots[off]
	if s == nil {
		return owner{}, false
	}
	return s.owner, true
}
