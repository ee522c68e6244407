package servicealloc

import "math/bits"

// Bitmap is a set of small integers [0, size) with allocation helpers. It is
// pure and not safe for concurrent use: Allocator serialises access.
type Bitmap struct {
	size  int
	used  int
	words []uint64
}

// NewBitmap returns an empty bitmap of size entries.
func NewBitmap(size int) *Bitmap {
	if size < 0 {
		size = 0
	}
	return &Bitmap{size: size, words: make([]uint64, (size+63)/64)}
}

// Size is the number of entries.
func (b *Bitmap) Size() int { return b.size }

// Used is the number of allocated entries.
func (b *Bitmap) Used() int { return b.used }

// Free is the number of free entries.
func (b *Bitmap) Free() int { return b.size - b.used }

// Has reports whether i is allocated; out-of-range entries never are.
func (b *Bitmap) Has(i int) bool {
	if i < 0 || i >= b.size {
		return false
	}
	return b.words[i/64]&(1<<(uint(i)%64)) != 0
}

// Allocate marks i allocated. It reports false when i is out of range or
// already allocated.
func (b *Bitmap) Allocate(i int) bool {
	if i < 0 || i >= b.size || b.Has(i) {
		return false
	}
	b.words[i/64] |= 1 << (uint(i) % 64)
	b.used++
	return true
}

// Release frees i; releasing a free or out-of-range entry does nothing.
func (b *Bitmap) Release(i int) {
	if !b.Has(i) {
		return
	}
	b.words[i/64] &^= 1 << (uint(i) % 64)
	b.used--
}

// AllocateNextIn allocates the first free entry in [lo, hi) at or after
// lo+offset, wrapping around to lo. Callers pass a random offset so that
// concurrent API servers and restarts do not all hand out the same low
// numbers (as upstream's allocators do). It reports false when the
// interval is full.
func (b *Bitmap) AllocateNextIn(lo, hi, offset int) (int, bool) {
	lo, hi = max(lo, 0), min(hi, b.size)
	n := hi - lo
	if n <= 0 {
		return 0, false
	}
	offset %= n
	if offset < 0 {
		offset += n
	}
	start := lo + offset
	if i, ok := b.firstFree(start, hi); ok {
		return i, b.Allocate(i)
	}
	if i, ok := b.firstFree(lo, start); ok {
		return i, b.Allocate(i)
	}
	return 0, false
}

// AllocateNext allocates a free entry anywhere, starting at offset.
func (b *Bitmap) AllocateNext(offset int) (int, bool) { return b.AllocateNextIn(0, b.size, offset) }

// firstFree finds the first free entry in [from, to), a word at a time.
func (b *Bitmap) firstFree(from, to int) (int, bool) {
	for i := from; i < to; {
		w := b.words[i/64] | (1<<(uint(i)%64) - 1) // treat bits below i as taken
		if w == ^uint64(0) {
			i = (i/64 + 1) * 64
			continue
		}
		j := (i/64)*64 + bits.TrailingZeros64(^w)
		if j >= to {
			return 0, false
		}
		return j, true
	}
	return 0, false
}
