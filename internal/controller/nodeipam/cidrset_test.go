package nodeipam

import (
	"errors"
	"net/netip"
	"testing"
)

func TestCIDRSetAllocatesInOrderUntilExhausted(t *testing.T) {
	s, err := NewCIDRSet(netip.MustParsePrefix("10.42.0.0/22"), 24)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.42.0.0/24", "10.42.1.0/24", "10.42.2.0/24", "10.42.3.0/24"}
	for _, w := range want {
		p, err := s.AllocateNext()
		if err != nil {
			t.Fatalf("allocating %s: %v", w, err)
		}
		if p.String() != w {
			t.Fatalf("got %s, want %s", p, w)
		}
	}
	if _, err := s.AllocateNext(); !errors.Is(err, ErrCIDRRangeExhausted) {
		t.Fatalf("expected exhaustion, got %v", err)
	}
	if s.Used() != 4 || s.popcount() != 4 {
		t.Fatalf("used=%d popcount=%d", s.Used(), s.popcount())
	}
	if err := s.Release(netip.MustParsePrefix("10.42.2.0/24")); err != nil {
		t.Fatal(err)
	}
	p, err := s.AllocateNext()
	if err != nil || p.String() != "10.42.2.0/24" {
		t.Fatalf("after release got %v, %v", p, err)
	}
}

func TestCIDRSetOccupySkipsUsed(t *testing.T) {
	s, err := NewCIDRSet(netip.MustParsePrefix("10.42.0.0/16"), 24)
	if err != nil {
		t.Fatal(err)
	}
	if s.Size() != 256 {
		t.Fatalf("size %d", s.Size())
	}
	for _, p := range []string{"10.42.0.0/24", "10.42.1.0/24"} {
		if err := s.Occupy(netip.MustParsePrefix(p)); err != nil {
			t.Fatal(err)
		}
	}
	// Occupying twice must not double count.
	if err := s.Occupy(netip.MustParsePrefix("10.42.1.0/24")); err != nil {
		t.Fatal(err)
	}
	if s.Used() != 2 {
		t.Fatalf("used %d", s.Used())
	}
	p, _ := s.AllocateNext()
	if p.String() != "10.42.2.0/24" {
		t.Fatalf("got %s", p)
	}
	// A /23 covers two subnets.
	if err := s.Occupy(netip.MustParsePrefix("10.42.4.0/23")); err != nil {
		t.Fatal(err)
	}
	if !s.IsAllocated(netip.MustParsePrefix("10.42.5.0/24")) || s.Used() != 5 {
		t.Fatalf("used %d", s.Used())
	}
	if err := s.Occupy(netip.MustParsePrefix("10.43.0.0/24")); err == nil {
		t.Fatal("expected error for prefix outside cluster cidr")
	}
	if err := s.Occupy(netip.MustParsePrefix("fd00::/64")); err == nil {
		t.Fatal("expected error for other family")
	}
}

func TestCIDRSetIPv6AndValidation(t *testing.T) {
	s, err := NewCIDRSet(netip.MustParsePrefix("fd00:10::/56"), 64)
	if err != nil {
		t.Fatal(err)
	}
	s.AllocateNext()
	p, _ := s.AllocateNext()
	if p.String() != "fd00:10:0:1::/64" {
		t.Fatalf("got %s", p)
	}
	if _, err := NewCIDRSet(netip.MustParsePrefix("10.0.0.0/16"), 8); err == nil {
		t.Fatal("expected error for mask smaller than cluster")
	}
	if _, err := NewCIDRSet(netip.MustParsePrefix("10.0.0.0/4"), 32); err == nil {
		t.Fatal("expected error for too many subnets")
	}
}
