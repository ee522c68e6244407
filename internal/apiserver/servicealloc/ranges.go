package servicealloc

import (
	"fmt"
	"math/big"
	"net/netip"
	"strconv"
	"strings"
)

// Larger service CIDRs use only their first 2^bits addresses, which keeps
// the bitmap at most 2 MiB (upstream's legacy bitmap allocator refuses
// IPv6 ranges larger than /108 outright).
const (
	maxIPv4RangeBits = 24
	maxIPv6RangeBits = 20
)

// IPRange maps the usable addresses of a CIDR to offsets [0, Size). For
// IPv4 the network and broadcast addresses are excluded, so offset 0 of
// 10.43.0.0/16 is 10.43.0.1.
type IPRange struct {
	prefix netip.Prefix
	first  netip.Addr // the address at offset 0
	size   int
}

// ParseIPRange parses a CIDR such as "10.43.0.0/16".
func ParseIPRange(cidr string) (IPRange, error) {
	p, err := netip.ParsePrefix(strings.TrimSpace(cidr))
	if err != nil {
		return IPRange{}, fmt.Errorf("parsing service cidr %q: %w", cidr, err)
	}
	p = p.Masked()
	hostBits := p.Addr().BitLen() - p.Bits()
	limit := maxIPv6RangeBits
	if p.Addr().Is4() {
		limit = maxIPv4RangeBits
	}
	var size int
	if hostBits > limit {
		size = 1 << limit
	} else {
		size = 1 << hostBits
		if p.Addr().Is4() {
			size -= 2 // network and broadcast
		} else {
			size-- // the subnet-router anycast address
		}
	}
	if size < 1 {
		return IPRange{}, fmt.Errorf("service cidr %s has no usable addresses", p)
	}
	return IPRange{prefix: p, first: p.Addr().Next(), size: size}, nil
}

// Size is the number of allocatable addresses.
func (r IPRange) Size() int { return r.size }

// String is the CIDR.
func (r IPRange) String() string { return r.prefix.String() }

// Offset returns ip's offset, or false when ip is not allocatable.
func (r IPRange) Offset(ip netip.Addr) (int, bool) {
	ip = ip.Unmap()
	if !r.prefix.Contains(ip) || ip.Less(r.first) {
		return 0, false
	}
	d := new(big.Int).Sub(new(big.Int).SetBytes(ip.AsSlice()), new(big.Int).SetBytes(r.first.AsSlice()))
	if !d.IsInt64() || d.Int64() >= int64(r.size) {
		return 0, false
	}
	return int(d.Int64()), true
}

// Addr returns the address at offset i (0 <= i < Size).
func (r IPRange) Addr(i int) netip.Addr {
	n := new(big.Int).Add(new(big.Int).SetBytes(r.first.AsSlice()), big.NewInt(int64(i)))
	buf := make([]byte, r.first.BitLen()/8)
	n.FillBytes(buf)
	a, _ := netip.AddrFromSlice(buf)
	return a
}

// staticBand is the number of low offsets that dynamic allocation leaves
// for last, so that explicitly requested addresses (like the kubernetes
// service's .1 or a DNS service's .10) rarely collide with automatic ones.
// The size follows upstream's KEP-3070: min(max(16, size/16), 256).
func (r IPRange) staticBand() int {
	b := min(max(16, r.size/16), 256)
	if b >= r.size {
		return 0
	}
	return b
}

// PortRange is an inclusive range of ports, e.g. 30000-32767.
type PortRange struct {
	Base, Size int
}

// ParsePortRange parses "min-max" (or a single port).
func ParsePortRange(s string) (PortRange, error) {
	lo, hi, found := strings.Cut(strings.TrimSpace(s), "-")
	if !found {
		hi = lo
	}
	a, err := strconv.Atoi(strings.TrimSpace(lo))
	if err != nil {
		return PortRange{}, fmt.Errorf("parsing node port range %q: %w", s, err)
	}
	b, err := strconv.Atoi(strings.TrimSpace(hi))
	if err != nil {
		return PortRange{}, fmt.Errorf("parsing node port range %q: %w", s, err)
	}
	if a < 1 || b > 65535 || a > b {
		return PortRange{}, fmt.Errorf("node port range %q must be within 1-65535 with min <= max", s)
	}
	return PortRange{Base: a, Size: b - a + 1}, nil
}

// Contains reports whether port is in the range.
func (r PortRange) Contains(port int) bool { return port >= r.Base && port < r.Base+r.Size }

// String is "min-max", as upstream prints it in errors.
func (r PortRange) String() string { return fmt.Sprintf("%d-%d", r.Base, r.Base+r.Size-1) }
