package dns

import (
	"context"
	"fmt"
	"testing"

	mdns "github.com/miekg/dns"
	v1 "k8s.io/api/core/v1"
)

// benchServer answers 100 ClusterIP services, as in the CoreDNS figure.
func benchServer(b *testing.B) (*Server, [][]byte) {
	var svcs []*v1.Service
	var wires [][]byte
	for i := range 100 {
		svcs = append(svcs, service("bench", fmt.Sprintf("svc-%d", i), fmt.Sprintf("10.43.1.%d", i+1), port("http", v1.ProtocolTCP, 80)))
		m := new(mdns.Msg)
		m.SetQuestion(fmt.Sprintf("svc-%d.bench.svc.cluster.local.", i), mdns.TypeA)
		w, _ := m.Pack()
		wires = append(wires, w)
	}
	m, _ := newMetrics(nil)
	s := &Server{metrics: m, zone: "cluster.local."}
	s.setIndex(BuildIndex(IndexInput{Services: svcs}, IndexOptions{TTL: 5}))
	return s, wires
}

// BenchmarkAnswerFast is the per-query CPU cost of a cluster A answer,
// without the sockets.
func BenchmarkAnswerFast(b *testing.B) {
	s, wires := benchServer(b)
	ix := s.index.Load()
	out := make([]byte, 0, 512)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, _, ok := s.answerFast(ix, wires[i%len(wires)], out[:0]); !ok {
			b.Fatal("fast path refused")
		}
	}
}

// BenchmarkAnswerGeneral is the same answer through dns.Msg: unpack,
// lookup, pack — roughly what a plugin-chain server pays per query.
func BenchmarkAnswerGeneral(b *testing.B) {
	s, wires := benchServer(b)
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		req := new(mdns.Msg)
		if err := req.Unpack(wires[i%len(wires)]); err != nil {
			b.Fatal(err)
		}
		if _, err := s.answer(ctx, req, true).Pack(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBuildIndex10k is a full rebuild at 10,000 services with
// headless endpoints, the cost paid per coalesced informer change.
func BenchmarkBuildIndex10k(b *testing.B) {
	in := IndexInput{}
	for i := range 10000 {
		in.Services = append(in.Services, service("bench", fmt.Sprintf("svc-%d", i), fmt.Sprintf("10.43.%d.%d", i/250, i%250+1), port("http", v1.ProtocolTCP, 80)))
	}
	for i := range 1000 {
		name := fmt.Sprintf("hl-%d", i)
		in.Services = append(in.Services, service("bench", name, v1.ClusterIPNone, port("http", v1.ProtocolTCP, 80)))
		var eps []ep
		for j := range 5 {
			eps = append(eps, ep{ip: fmt.Sprintf("10.42.%d.%d", i/50, (i%50)*5+j+1), hostname: fmt.Sprintf("%s-%d", name, j), ready: true})
		}
		in.Slices = append(in.Slices, slice("bench", name, name+"-x", eps, slicePort("http", v1.ProtocolTCP, 80)))
	}
	b.ReportAllocs()
	for b.Loop() {
		BuildIndex(in, IndexOptions{TTL: 5})
	}
}
