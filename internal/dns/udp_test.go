package dns

import (
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	v1 "k8s.io/api/core/v1"
)

// burstCase is one query of a burst and what its answer must be.
type burstCase struct {
	name  string
	qtype uint16
	edns  bool
	rcode int
	tc    bool // truncated (then the answer count is not checked)
	ans   int  // answer records
}

// burstCases mixes fast-path answers with ones the general path gives
// (mixed case, NXDOMAIN, truncation), so one recvmmsg batch holds both.
func burstCases() []burstCase {
	return []burstCase{
		{"web.default.svc.cluster.local.", mdns.TypeA, false, mdns.RcodeSuccess, false, 1},
		{"web.default.svc.cluster.local.", mdns.TypeA, true, mdns.RcodeSuccess, false, 1},
		{"WEB.default.svc.cluster.local.", mdns.TypeA, false, mdns.RcodeSuccess, false, 1},
		{"nosuch.default.svc.cluster.local.", mdns.TypeA, false, mdns.RcodeNameError, false, 0},
		{"big.default.svc.cluster.local.", mdns.TypeA, false, mdns.RcodeSuccess, true, 0},
		{"big.default.svc.cluster.local.", mdns.TypeA, true, mdns.RcodeSuccess, false, 60},
		{"_pg._tcp.db.default.svc.cluster.local.", mdns.TypeSRV, true, mdns.RcodeSuccess, false, 3},
	}
}

// sendBurst writes n queries from one socket without waiting, then reads
// all n answers and checks each against the case its ID names.
func sendBurst(t *testing.T, addr string, n int) error {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	cases := burstCases()
	for id := range n {
		bc := cases[id%len(cases)]
		m := new(mdns.Msg)
		m.SetQuestion(bc.name, bc.qtype)
		m.Id = uint16(id)
		if bc.edns {
			m.SetEdns0(1232, false)
		}
		w, err := m.Pack()
		if err != nil {
			return err
		}
		if _, err := c.Write(w); err != nil {
			return err
		}
	}
	seen := make([]bool, n)
	buf := make([]byte, 65535)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for range n {
		k, err := c.Read(buf)
		if err != nil {
			return fmt.Errorf("after %d answers: %w", countTrue(seen), err)
		}
		var r mdns.Msg
		if err := r.Unpack(buf[:k]); err != nil {
			return fmt.Errorf("unpacking answer: %w", err)
		}
		id := int(r.Id)
		if id >= n || seen[id] {
			return fmt.Errorf("unexpected or repeated answer id %d", id)
		}
		seen[id] = true
		bc := cases[id%len(cases)]
		if len(r.Question) != 1 || r.Question[0].Name != bc.name {
			return fmt.Errorf("id %d: question %v, want %s", id, r.Question, bc.name)
		}
		if r.Rcode != bc.rcode || r.Truncated != bc.tc || (!bc.tc && len(r.Answer) != bc.ans) {
			return fmt.Errorf("id %d (%s edns=%v): rcode %d tc %v %d answers; want rcode %d tc %v %d answers",
				id, bc.name, bc.edns, r.Rcode, r.Truncated, len(r.Answer), bc.rcode, bc.tc, bc.ans)
		}
		if (r.IsEdns0() != nil) != bc.edns {
			return fmt.Errorf("id %d: edns in answer = %v, want %v", id, r.IsEdns0() != nil, bc.edns)
		}
	}
	return nil
}

func countTrue(b []bool) (n int) {
	for _, v := range b {
		if v {
			n++
		}
	}
	return n
}

// TestUDPBatchesAcrossReusePortSockets loads a server with four
// SO_REUSEPORT sockets from many client sockets, each sending a burst
// (so reads come in batches mixing fast and general answers), and checks
// every answer arrives once, on the right ID, with the right content.
// Bursts are kept small: a larger one overflows the loaded test machine's
// socket buffers and the kernel drops datagrams (RcvbufErrors), which is
// UDP, not a server bug.
func TestUDPBatchesAcrossReusePortSockets(t *testing.T) {
	var eps []ep
	for i := range 60 {
		eps = append(eps, ep{ip: "10.42.9." + strconv.Itoa(i+1), ready: true})
	}
	objs := append(clusterObjects(), service("default", "big", v1.ClusterIPNone), slice("default", "big", "big-1", eps))
	s := startServerWith(t, func(c *Config) { c.UDPWorkers = 4 }, nil, objs...)
	if got := s.udpSockets(); got != 4 {
		t.Fatalf("server has %d udp sockets, want 4", got)
	}
	// A socket without SO_REUSEPORT cannot join the group.
	if c, err := net.ListenPacket("udp", s.udp); err == nil {
		c.Close()
		t.Errorf("a plain socket could bind %s next to the server's", s.udp)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			if err := sendBurst(t, s.udp, 2*len(burstCases())); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
