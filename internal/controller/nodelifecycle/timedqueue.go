package nodelifecycle

import (
	"container/heap"
	"sync"
	"time"
)

// timedQueue holds keys until a deadline. It has no goroutines and no clock
// of its own: the caller asks what is due at a given time, so tests drive it
// with a fake clock. Safe for concurrent use.
type timedQueue struct {
	mu       sync.Mutex
	h        entryHeap
	deadline map[string]time.Time // the live deadline per key; heap entries not matching it are stale
}

type entry struct {
	key string
	at  time.Time
}

type entryHeap []entry

func (h entryHeap) Len() int           { return len(h) }
func (h entryHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h entryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *entryHeap) Push(x any)        { *h = append(*h, x.(entry)) }
func (h *entryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

func newTimedQueue() *timedQueue { return &timedQueue{deadline: map[string]time.Time{}} }

// Schedule sets key's deadline, replacing any earlier one.
func (q *timedQueue) Schedule(key string, at time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if cur, ok := q.deadline[key]; ok && cur.Equal(at) {
		return
	}
	q.deadline[key] = at
	heap.Push(&q.h, entry{key: key, at: at})
}

// Cancel forgets key.
func (q *timedQueue) Cancel(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.deadline, key)
}

// Scheduled returns key's deadline, if any.
func (q *timedQueue) Scheduled(key string) (time.Time, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	t, ok := q.deadline[key]
	return t, ok
}

// PopDue removes and returns the keys whose deadline is not after now.
func (q *timedQueue) PopDue(now time.Time) []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []string
	for q.h.Len() > 0 && !q.h[0].at.After(now) {
		e := heap.Pop(&q.h).(entry)
		if cur, ok := q.deadline[e.key]; ok && cur.Equal(e.at) {
			delete(q.deadline, e.key)
			out = append(out, e.key)
		}
	}
	return out
}

// Next is the earliest live deadline.
func (q *timedQueue) Next() (time.Time, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.h.Len() > 0 {
		e := q.h[0]
		if cur, ok := q.deadline[e.key]; ok && cur.Equal(e.at) {
			return e.at, true
		}
		heap.Pop(&q.h) // stale
	}
	return time.Time{}, false
}

// Len is the number of scheduled keys.
func (q *timedQueue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.deadline)
}
