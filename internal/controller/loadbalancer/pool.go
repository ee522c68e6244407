package loadbalancer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// ErrPoolExhausted is returned when every address of the pool is taken.
var ErrPoolExhausted = errors.New("load balancer address pool exhausted")

// addrRange is an inclusive range of IPv4 addresses.
type addrRange struct{ first, last netip.Addr }

func (r addrRange) contains(a netip.Addr) bool {
	return r.first.Compare(a) <= 0 && a.Compare(r.last) <= 0
}

func (r addrRange) size() int { return int(u32(r.last)-u32(r.first)) + 1 }

func u32(a netip.Addr) uint32 { b := a.As4(); return binary.BigEndian.Uint32(b[:]) }

// Pool hands out IPv4 addresses from a set of ranges, each to one owner (a
// service's namespace/name). It does no I/O and is not safe for concurrent
// use: the controller guards it.
type Pool struct {
	ranges []addrRange
	owner  map[netip.Addr]string
	byKey  map[string]netip.Addr
	size   int
	next   int // index where the next search starts, so a released address is not reused at once
}

// maxPoolSize bounds the ranges a pool accepts: the next-free search is
// linear in the pool size.
const maxPoolSize = 1 << 20

// ParsePool parses a comma-separated list of IPv4 CIDRs ("192.0.2.0/28",
// network and broadcast addresses left out for prefixes up to /30) and
// ranges ("192.0.2.10-192.0.2.20").
func ParsePool(s string) (*Pool, error) {
	p := &Pool{owner: map[netip.Addr]string{}, byKey: map[string]netip.Addr{}}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		var r addrRange
		if first, last, ok := strings.Cut(part, "-"); ok {
			f, err1 := netip.ParseAddr(strings.TrimSpace(first))
			l, err2 := netip.ParseAddr(strings.TrimSpace(last))
			if err := errors.Join(err1, err2); err != nil {
				return nil, fmt.Errorf("parsing load balancer address range %q: %w", part, err)
			}
			r = addrRange{f, l}
		} else {
			pfx, err := netip.ParsePrefix(part)
			if err != nil {
				return nil, fmt.Errorf("parsing load balancer address pool %q: want CIDR or first-last: %w", part, err)
			}
			pfx = pfx.Masked()
			r = addrRange{pfx.Addr(), lastAddr(pfx)}
			if pfx.Addr().Is4() && pfx.Bits() <= 30 {
				r = addrRange{r.first.Next(), r.last.Prev()}
			}
		}
		if !r.first.Is4() || !r.last.Is4() {
			return nil, fmt.Errorf("load balancer address pool %q: only IPv4 is supported", part)
		}
		if r.last.Less(r.first) {
			return nil, fmt.Errorf("load balancer address range %q: last address is before the first", part)
		}
		for _, o := range p.ranges {
			if o.contains(r.first) || o.contains(r.last) || r.contains(o.first) {
				return nil, fmt.Errorf("load balancer address pool %q overlaps %s-%s", part, o.first, o.last)
			}
		}
		p.ranges = append(p.ranges, r)
		p.size += r.size()
		if p.size > maxPoolSize {
			return nil, fmt.Errorf("load balancer address pool %q: more than %d addresses", s, maxPoolSize)
		}
	}
	if len(p.ranges) == 0 {
		return nil, fmt.Errorf("load balancer address pool %q has no addresses", s)
	}
	return p, nil
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	host := len(b)*8 - p.Bits()
	for i := len(b) - 1; i >= 0 && host > 0; i-- {
		n := min(host, 8)
		b[i] |= byte(1<<n - 1)
		host -= n
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// Size is the number of addresses in the pool.
func (p *Pool) Size() int { return p.size }

// Used is the number of addresses handed out.
func (p *Pool) Used() int { return len(p.owner) }

// Contains reports whether a is one of the pool's addresses.
func (p *Pool) Contains(a netip.Addr) bool {
	for _, r := range p.ranges {
		if r.contains(a) {
			return true
		}
	}
	return false
}

// Owner returns who holds a, or "".
func (p *Pool) Owner(a netip.Addr) string { return p.owner[a] }

// Get returns key's address, if it holds one.
func (p *Pool) Get(key string) (netip.Addr, bool) {
	a, ok := p.byKey[key]
	return a, ok
}

// Allocate gives key an address: want if valid (it must be in the pool and
// free or already key's), else the address key already holds, else the
// next free one. An owner holds one address; taking a new one releases
// the old.
func (p *Pool) Allocate(key string, want netip.Addr) (netip.Addr, error) {
	if want.IsValid() {
		if !p.Contains(want) {
			return netip.Addr{}, fmt.Errorf("address %s is not in the load balancer address pool", want)
		}
		if o := p.owner[want]; o != "" && o != key {
			return netip.Addr{}, fmt.Errorf("address %s is already used by service %s", want, o)
		}
		p.take(key, want)
		return want, nil
	}
	if a, ok := p.byKey[key]; ok {
		return a, nil
	}
	for i := range p.size {
		idx := (p.next + i) % p.size
		a := p.at(idx)
		if p.owner[a] == "" {
			p.take(key, a)
			p.next = (idx + 1) % p.size
			return a, nil
		}
	}
	return netip.Addr{}, ErrPoolExhausted
}

func (p *Pool) take(key string, a netip.Addr) {
	p.Release(key)
	p.owner[a] = key
	p.byKey[key] = a
}

// Release frees key's address, if any, and reports whether it held one.
func (p *Pool) Release(key string) bool {
	a, ok := p.byKey[key]
	if ok {
		delete(p.byKey, key)
		delete(p.owner, a)
	}
	return ok
}

// at returns the idx-th address of the pool.
func (p *Pool) at(idx int) netip.Addr {
	for _, r := range p.ranges {
		if n := r.size(); idx >= n {
			idx -= n
			continue
		}
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], u32(r.first)+uint32(idx))
		return netip.AddrFrom4(b)
	}
	return netip.Addr{}
}
