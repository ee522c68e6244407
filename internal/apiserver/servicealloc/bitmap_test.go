package servicealloc

import "testing"

func TestBitmap(t *testing.T) {
	type step struct {
		op     string // alloc, release, next, nextIn
		i      int    // entry, or offset for next
		lo, hi int
		want   int
		ok     bool
	}
	tests := []struct {
		name  string
		size  int
		steps []step
		used  int
	}{
		{"allocate specific", 10, []step{{op: "alloc", i: 3, ok: true}, {op: "alloc", i: 3, ok: false}}, 1},
		{"out of range", 10, []step{{op: "alloc", i: 10}, {op: "alloc", i: -1}}, 0},
		{"release frees", 10, []step{{op: "alloc", i: 3, ok: true}, {op: "release", i: 3}, {op: "alloc", i: 3, ok: true}}, 1},
		{"release free is a no-op", 10, []step{{op: "release", i: 4}, {op: "release", i: 40}}, 0},
		{"next starts at offset", 10, []step{{op: "next", i: 7, want: 7, ok: true}, {op: "next", i: 7, want: 8, ok: true}}, 2},
		{"next wraps", 10, []step{{op: "alloc", i: 9, ok: true}, {op: "next", i: 9, want: 0, ok: true}}, 2},
		{"next skips full words", 200, func() []step {
			var s []step
			for i := 0; i < 150; i++ {
				s = append(s, step{op: "alloc", i: i, ok: true})
			}
			return append(s, step{op: "next", i: 0, want: 150, ok: true})
		}(), 151},
		{"exhaustion", 3, []step{
			{op: "next", i: 1, want: 1, ok: true}, {op: "next", i: 1, want: 2, ok: true},
			{op: "next", i: 1, want: 0, ok: true}, {op: "next", i: 1, ok: false},
		}, 3},
		{"next within band", 10, []step{
			{op: "nextIn", lo: 5, hi: 10, i: 4, want: 9, ok: true},
			{op: "nextIn", lo: 5, hi: 10, i: 4, want: 5, ok: true},
			{op: "alloc", i: 6, ok: true}, {op: "alloc", i: 7, ok: true}, {op: "alloc", i: 8, ok: true},
			{op: "nextIn", lo: 5, hi: 10, i: 0, ok: false},
			{op: "nextIn", lo: 0, hi: 5, i: 2, want: 2, ok: true},
		}, 6},
		{"empty bitmap", 0, []step{{op: "next", ok: false}}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewBitmap(tt.size)
			for n, s := range tt.steps {
				switch s.op {
				case "alloc":
					if got := b.Allocate(s.i); got != s.ok {
						t.Fatalf("step %d: Allocate(%d) = %v, want %v", n, s.i, got, s.ok)
					}
				case "release":
					b.Release(s.i)
				case "next", "nextIn":
					var got int
					var ok bool
					if s.op == "next" {
						got, ok = b.AllocateNext(s.i)
					} else {
						got, ok = b.AllocateNextIn(s.lo, s.hi, s.i)
					}
					if ok != s.ok || (ok && got != s.want) {
						t.Fatalf("step %d: next = %d, %v; want %d, %v", n, got, ok, s.want, s.ok)
					}
					if ok && !b.Has(got) {
						t.Fatalf("step %d: %d not marked allocated", n, got)
					}
				}
			}
			if b.Used() != tt.used || b.Free() != tt.size-tt.used {
				t.Errorf("used %d free %d, want used %d", b.Used(), b.Free(), tt.used)
			}
		})
	}
}

func TestIPRange(t *testing.T) {
	tests := []struct {
		cidr  string
		size  int
		first string
		last  string
		out   []string
	}{
		{"10.43.0.0/16", 65534, "10.43.0.1", "10.43.255.254", []string{"10.43.0.0", "10.43.255.255", "10.44.0.1", "fd00::1"}},
		{"192.168.1.0/30", 2, "192.168.1.1", "192.168.1.2", []string{"192.168.1.3"}},
		{"fd00:43::/112", 65535, "fd00:43::1", "fd00:43::ffff", []string{"fd00:43::", "10.43.0.1"}},
		{"fd00:43::/64", 1 << maxIPv6RangeBits, "fd00:43::1", "fd00:43::10:0", nil},
		{"10.0.0.0/8", 1<<24 - 2, "10.0.0.1", "10.255.255.254", nil},
		{"0.0.0.0/4", 1 << maxIPv4RangeBits, "0.0.0.1", "1.0.0.0", nil},
	}
	for _, tt := range tests {
		r, err := ParseIPRange(tt.cidr)
		if err != nil {
			t.Fatalf("%s: %v", tt.cidr, err)
		}
		if r.Size() != tt.size {
			t.Errorf("%s: size %d, want %d", tt.cidr, r.Size(), tt.size)
		}
		if got := r.Addr(0).String(); got != tt.first {
			t.Errorf("%s: first %s, want %s", tt.cidr, got, tt.first)
		}
		if got := r.Addr(r.Size() - 1).String(); got != tt.last {
			t.Errorf("%s: last %s, want %s", tt.cidr, got, tt.last)
		}
		for _, i := range []int{0, 1, r.Size() / 2, r.Size() - 1} {
			if off, ok := r.Offset(r.Addr(i)); !ok || off != i {
				t.Errorf("%s: Offset(Addr(%d)) = %d, %v", tt.cidr, i, off, ok)
			}
		}
		for _, s := range tt.out {
			if _, ok := r.Offset(mustAddr(t, s)); ok {
				t.Errorf("%s: %s should be out of range", tt.cidr, s)
			}
		}
	}
	for _, bad := range []string{"", "10.43.0.0", "10.43.0.0/32", "nonsense/8"} {
		if _, err := ParseIPRange(bad); err == nil {
			t.Errorf("ParseIPRange(%q) succeeded", bad)
		}
	}
}

func TestPortRange(t *testing.T) {
	r, err := ParsePortRange("30000-32767")
	if err != nil {
		t.Fatal(err)
	}
	if r.Size != 2768 || !r.Contains(30000) || !r.Contains(32767) || r.Contains(29999) || r.Contains(32768) || r.String() != "30000-32767" {
		t.Errorf("unexpected range %+v", r)
	}
	for _, bad := range []string{"", "a-b", "3-1", "0-10", "1-70000"} {
		if _, err := ParsePortRange(bad); err == nil {
			t.Errorf("ParsePortRange(%q) succeeded", bad)
		}
	}
}
