package authn

import (
	"sync"
	"time"
)

// ttlCache maps credential digests to users until a per-entry deadline. It is
// bounded: when full, expired entries are swept, and if that frees too little
// the cache starts over, which costs re-verification but never correctness.
type ttlCache struct {
	mu      sync.RWMutex
	entries map[[32]byte]cacheEntry
	max     int
}

type cacheEntry struct {
	user    *User
	expires time.Time
}

func newTTLCache(max int) *ttlCache {
	if max <= 0 {
		max = 10000
	}
	return &ttlCache{entries: make(map[[32]byte]cacheEntry), max: max}
}

func (c *ttlCache) get(key [32]byte, now time.Time) (*User, bool) {
	c.mu.RLock()
	e, ok := c.entries[key]
	c.mu.RUnlock()
	if !ok || !now.Before(e.expires) {
		return nil, false
	}
	return e.user, true
}

func (c *ttlCache) put(key [32]byte, u *User, expires, now time.Time) {
	if !now.Before(expires) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		for k, e := range c.entries {
			if !now.Before(e.expires) {
				delete(c.entries, k)
			}
		}
		if len(c.entries) >= c.max*3/4 {
			clear(c.entries)
		}
	}
	c.entries[key] = cacheEntry{user: u, expires: expires}
}

func (c *ttlCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}
