package framework

import (
	"context"
	"sync/atomic"
	"testing"
)

// TestUntilVisitsEachIndexOnce covers the inline path (one worker) and
// the parallel one, sizes around the chunk size included.
func TestUntilVisitsEachIndexOnce(t *testing.T) {
	for _, workers := range []int{0, 1, 2, 4, 16} {
		for _, n := range []int{0, 1, 7, 8, 9, 31, 32, 33, 67, 1000} {
			seen := make([]atomic.Int32, n)
			Parallelizer{Workers: workers}.Until(t.Context(), n, func(i int) { seen[i].Add(1) })
			for i := range seen {
				if c := seen[i].Load(); c != 1 {
					t.Fatalf("workers %d, n %d: index %d visited %d times", workers, n, i, c)
				}
			}
		}
	}
}

// TestUntilStopsOnCancel: cancelling the context stops handing out
// chunks (at most the chunks already taken finish).
func TestUntilStopsOnCancel(t *testing.T) {
	for _, workers := range []int{1, 2, 4} {
		ctx, cancel := context.WithCancel(t.Context())
		var calls atomic.Int32
		const n = 10000
		Parallelizer{Workers: workers}.Until(ctx, n, func(i int) {
			if calls.Add(1) == 20 {
				cancel()
			}
		})
		cancel()
		if c := calls.Load(); c >= n || int(c) > 20+workers*8 {
			t.Fatalf("workers %d: %d calls after cancelling at 20", workers, c)
		}
	}
}
