package nodeipam

import (
	"errors"
	"fmt"
	"math/big"
	"math/bits"
	"net/netip"
)

// ErrCIDRRangeExhausted is returned by AllocateNext when every subnet of the
// cluster CIDR is in use.
var ErrCIDRRangeExhausted = errors.New("cidr range exhausted")

// maxSubnetBits bounds the bitmap: a /8 cut into /32s would need 2^24 bits
// (2 MiB), which is the largest cluster we are willing to represent.
const maxSubnetBits = 24

// CIDRSet is a bitmap allocator of equally sized subnets of one cluster CIDR.
// It does no I/O and is not safe for concurrent use; the controller guards it.
type CIDRSet struct {
	cluster  netip.Prefix
	maskSize int
	shift    int // host bits of one subnet
	size     int // number of subnets
	used     []uint64
	count    int
	next     int // where the next search starts, so released subnets are not reused at once
}

// NewCIDRSet returns an allocator handing out /maskSize subnets of cluster.
func NewCIDRSet(cluster netip.Prefix, maskSize int) (*CIDRSet, error) {
	if !cluster.IsValid() {
		return nil, fmt.Errorf("invalid cluster cidr %v", cluster)
	}
	cluster = cluster.Masked()
	addrBits := cluster.Addr().BitLen()
	if maskSize < cluster.Bits() || maskSize > addrBits {
		return nil, fmt.Errorf("node mask size %d must be between %d and %d for cluster cidr %s", maskSize, cluster.Bits(), addrBits, cluster)
	}
	subnetBits := maskSize - cluster.Bits()
	if subnetBits > maxSubnetBits {
		return nil, fmt.Errorf("node mask size %d is too large for cluster cidr %s: at most %d subnets bits", maskSize, cluster, maxSubnetBits)
	}
	size := 1 << subnetBits
	return &CIDRSet{
		cluster:  cluster,
		maskSize: maskSize,
		shift:    addrBits - maskSize,
		size:     size,
		used:     make([]uint64, (size+63)/64),
	}, nil
}

// Size is the number of subnets the set can hand out.
func (s *CIDRSet) Size() int { return s.size }

// Used is the number of subnets currently allocated.
func (s *CIDRSet) Used() int { return s.count }

// AllocateNext marks the next free subnet as used and returns it.
func (s *CIDRSet) AllocateNext() (netip.Prefix, error) {
	if s.count == s.size {
		return netip.Prefix{}, ErrCIDRRangeExhausted
	}
	for i := range s.size {
		idx := (s.next + i) % s.size
		if !s.isSet(idx) {
			s.set(idx)
			s.next = (idx + 1) % s.size
			return s.prefixAt(idx), nil
		}
	}
	return netip.Prefix{}, ErrCIDRRangeExhausted
}

// Occupy marks p as used. p must be one subnet of the set, or a larger prefix
// inside the cluster CIDR, in which case every subnet it covers is marked.
func (s *CIDRSet) Occupy(p netip.Prefix) error {
	first, last, err := s.indexRange(p)
	if err != nil {
		return fmt.Errorf("occupying %s: %w", p, err)
	}
	for i := first; i <= last; i++ {
		s.set(i)
	}
	return nil
}

// Release marks every subnet covered by p as free again.
func (s *CIDRSet) Release(p netip.Prefix) error {
	first, last, err := s.indexRange(p)
	if err != nil {
		return fmt.Errorf("releasing %s: %w", p, err)
	}
	for i := first; i <= last; i++ {
		s.clear(i)
	}
	return nil
}

// IsAllocated reports whether the subnet p is marked as used.
func (s *CIDRSet) IsAllocated(p netip.Prefix) bool {
	first, last, err := s.indexRange(p)
	if err != nil {
		return false
	}
	for i := first; i <= last; i++ {
		if !s.isSet(i) {
			return false
		}
	}
	return true
}

func (s *CIDRSet) indexRange(p netip.Prefix) (int, int, error) {
	if !p.IsValid() || p.Addr().BitLen() != s.cluster.Addr().BitLen() {
		return 0, 0, fmt.Errorf("prefix is not in the address family of %s", s.cluster)
	}
	p = p.Masked()
	if p.Bits() < s.cluster.Bits() || !s.cluster.Contains(p.Addr()) {
		return 0, 0, fmt.Errorf("prefix is outside the cluster cidr %s", s.cluster)
	}
	if p.Bits() > s.maskSize {
		// A smaller prefix than one subnet still occupies the subnet holding it.
		p = netip.PrefixFrom(p.Addr(), s.maskSize).Masked()
	}
	first := s.indexOf(p.Addr())
	count := 1 << (s.maskSize - p.Bits())
	return first, first + count - 1, nil
}

func (s *CIDRSet) indexOf(a netip.Addr) int {
	off := new(big.Int).Sub(addrInt(a), addrInt(s.cluster.Addr()))
	return int(off.Rsh(off, uint(s.shift)).Int64())
}

func (s *CIDRSet) prefixAt(idx int) netip.Prefix {
	v := new(big.Int).Lsh(big.NewInt(int64(idx)), uint(s.shift))
	v.Add(v, addrInt(s.cluster.Addr()))
	return netip.PrefixFrom(intAddr(v, s.cluster.Addr().Is4()), s.maskSize)
}

func (s *CIDRSet) isSet(i int) bool { return s.used[i/64]&(1<<(uint(i)%64)) != 0 }

func (s *CIDRSet) set(i int) {
	if !s.isSet(i) {
		s.used[i/64] |= 1 << (uint(i) % 64)
		s.count++
	}
}

func (s *CIDRSet) clear(i int) {
	if s.isSet(i) {
		s.used[i/64] &^= 1 << (uint(i) % 64)
		s.count--
	}
}

func addrInt(a netip.Addr) *big.Int {
	b := a.AsSlice()
	return new(big.Int).SetBytes(b)
}

func intAddr(v *big.Int, is4 bool) netip.Addr {
	n := 16
	if is4 {
		n = 4
	}
	buf := make([]byte, n)
	v.FillBytes(buf)
	a, _ := netip.AddrFromSlice(buf)
	return a
}

// popcount is used by tests to cross-check count against the bitmap.
func (s *CIDRSet) popcount() int {
	n := 0
	for _, w := range s.used {
		n += bits.OnesCount64(w)
	}
	return n
}
