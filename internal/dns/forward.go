package dns

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"
	"k8s.io/utils/clock"
)

// Upper bounds on how long an upstream answer is cached, whatever its TTLs
// say (the same defaults as CoreDNS's cache plugin).
const (
	maxPositiveTTL = time.Hour
	maxNegativeTTL = 30 * time.Minute
)

// forwarder sends questions outside the cluster to the upstream resolvers
// and caches their answers.
type forwarder struct {
	upstreams []string // host:port
	udp, tcp  *mdns.Client
	cache     *answerCache
	next      atomic.Uint32 // rotates the first upstream tried
	metrics   *metrics
}

func newForwarder(upstreams []string, timeout time.Duration, cacheSize int, clk clock.PassiveClock, m *metrics) *forwarder {
	return &forwarder{
		upstreams: upstreams,
		udp:       &mdns.Client{Net: "udp", Timeout: timeout, UDPSize: 1232},
		tcp:       &mdns.Client{Net: "tcp", Timeout: timeout},
		cache:     newAnswerCache(cacheSize, clk),
		metrics:   m,
	}
}

// exchange answers q from the cache or an upstream. The returned message
// is the caller's to modify.
func (f *forwarder) exchange(ctx context.Context, q mdns.Question) (*mdns.Msg, error) {
	q.Name = strings.ToLower(q.Name)
	if m := f.cache.get(q); m != nil {
		f.metrics.cacheHit()
		return m, nil
	}
	f.metrics.cacheMiss()
	if len(f.upstreams) == 0 {
		return nil, errors.New("no upstream resolvers configured")
	}
	req := new(mdns.Msg)
	req.Id = mdns.Id()
	req.RecursionDesired = true
	req.Question = []mdns.Question{q}
	req.SetEdns0(1232, false)

	var errs []error
	start := int(f.next.Add(1))
	for i := range f.upstreams {
		up := f.upstreams[(start+i)%len(f.upstreams)]
		resp, _, err := f.udp.ExchangeContext(ctx, req, up)
		if err == nil && resp.Truncated {
			resp, _, err = f.tcp.ExchangeContext(ctx, req, up)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("asking %s: %w", up, err))
			continue
		}
		if resp.Rcode == mdns.RcodeServerFailure || resp.Rcode == mdns.RcodeRefused {
			errs = append(errs, fmt.Errorf("asking %s: %s", up, mdns.RcodeToString[resp.Rcode]))
			continue
		}
		stripOPT(resp)
		f.cache.put(q, resp)
		return resp.Copy(), nil
	}
	f.metrics.forwardError()
	return nil, fmt.Errorf("forwarding %s %s: %w", q.Name, mdns.TypeToString[q.Qtype], errors.Join(errs...))
}

func stripOPT(m *mdns.Msg) {
	extra := m.Extra[:0]
	for _, rr := range m.Extra {
		if rr.Header().Rrtype != mdns.TypeOPT {
			extra = append(extra, rr)
		}
	}
	m.Extra = extra
}

// answerCache is a bounded LRU of upstream answers keyed by question. An
// entry lives for the smallest TTL in it (for a negative answer, the SOA
// minimum); a hit returns a copy whose TTLs are reduced by its age.
type answerCache struct {
	mu    sync.Mutex
	size  int
	clk   clock.PassiveClock
	ll    *list.List // front is most recent
	items map[mdns.Question]*list.Element
}

type cacheEntry struct {
	q       mdns.Question
	msg     *mdns.Msg
	stored  time.Time
	expires time.Time
}

func newAnswerCache(size int, clk clock.PassiveClock) *answerCache {
	return &answerCache{size: size, clk: clk, ll: list.New(), items: map[mdns.Question]*list.Element{}}
}

func (c *answerCache) get(q mdns.Question) *mdns.Msg {
	now := c.clk.Now()
	c.mu.Lock()
	el := c.items[q]
	if el == nil {
		c.mu.Unlock()
		return nil
	}
	e := el.Value.(*cacheEntry)
	if !now.Before(e.expires) {
		c.ll.Remove(el)
		delete(c.items, q)
		c.mu.Unlock()
		return nil
	}
	c.ll.MoveToFront(el)
	c.mu.Unlock()

	m := e.msg.Copy()
	age := uint32(now.Sub(e.stored) / time.Second)
	for _, sec := range [][]mdns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			h := rr.Header()
			if h.Ttl > age {
				h.Ttl -= age
			} else {
				h.Ttl = 0
			}
		}
	}
	return m
}

func (c *answerCache) put(q mdns.Question, m *mdns.Msg) {
	ttl, ok := cacheTTL(m)
	if !ok || ttl <= 0 || c.size <= 0 {
		return
	}
	now := c.clk.Now()
	e := &cacheEntry{q: q, msg: m.Copy(), stored: now, expires: now.Add(ttl)}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el := c.items[q]; el != nil {
		el.Value = e
		c.ll.MoveToFront(el)
		return
	}
	c.items[q] = c.ll.PushFront(e)
	for c.ll.Len() > c.size {
		old := c.ll.Back()
		c.ll.Remove(old)
		delete(c.items, old.Value.(*cacheEntry).q)
	}
}

func (c *answerCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}

// cacheTTL is how long m may be cached: the minimum TTL of its records, or
// for NXDOMAIN/NODATA the SOA's (min of its TTL and minimum field, RFC 2308).
// Answers that are neither success nor NXDOMAIN are not cached.
func cacheTTL(m *mdns.Msg) (time.Duration, bool) {
	if m.Rcode != mdns.RcodeSuccess && m.Rcode != mdns.RcodeNameError {
		return 0, false
	}
	negative := m.Rcode == mdns.RcodeNameError || len(m.Answer) == 0
	if negative {
		for _, rr := range m.Ns {
			if soa, ok := rr.(*mdns.SOA); ok {
				t := min(soa.Hdr.Ttl, soa.Minttl)
				return min(time.Duration(t)*time.Second, maxNegativeTTL), true
			}
		}
		return 0, false // no SOA: RFC 2308 says do not cache
	}
	least := uint32(1<<32 - 1)
	for _, sec := range [][]mdns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			if rr.Header().Rrtype == mdns.TypeOPT {
				continue
			}
			least = min(least, rr.Header().Ttl)
		}
	}
	return min(time.Duration(least)*time.Second, maxPositiveTTL), true
}
