package dns

import (
	"fmt"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// The label values are fixed sets so every counter can be resolved once in
// New: the fast path then pays one atomic add per query, not a label-map
// lookup.
var (
	metricTypes  = []uint16{mdns.TypeA, mdns.TypeAAAA, mdns.TypeSRV, mdns.TypePTR, mdns.TypeCNAME, mdns.TypeSOA, mdns.TypeNS, mdns.TypeTXT, mdns.TypeMX, mdns.TypeANY}
	metricRcodes = []int{mdns.RcodeSuccess, mdns.RcodeNameError, mdns.RcodeServerFailure, mdns.RcodeRefused, mdns.RcodeFormatError, mdns.RcodeNotImplemented}
)

type metrics struct {
	queries       [][]prometheus.Counter // [type slot][rcode slot]; last slots are "other"
	cacheHits     prometheus.Counter
	cacheMisses   prometheus.Counter
	forwardErrors prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	qv := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "skiff_dns_queries_total",
		Help: "DNS queries answered, by query type and response code.",
	}, []string{"type", "rcode"})
	cache := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "skiff_dns_forward_cache_total",
		Help: "Lookups of the upstream answer cache, by result.",
	}, []string{"result"})
	ferr := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "skiff_dns_forward_errors_total",
		Help: "Forwarded questions no upstream resolver answered.",
	})
	m := &metrics{cacheHits: cache.WithLabelValues("hit"), cacheMisses: cache.WithLabelValues("miss"), forwardErrors: ferr}
	types := append(typeNames(), "other")
	rcodes := append(rcodeNames(), "other")
	for _, t := range types {
		row := make([]prometheus.Counter, len(rcodes))
		for j, rc := range rcodes {
			row[j] = qv.WithLabelValues(t, rc)
		}
		m.queries = append(m.queries, row)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{qv, cache, ferr} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("registering dns metrics: %w", err)
			}
		}
	}
	return m, nil
}

func typeNames() []string {
	out := make([]string, len(metricTypes))
	for i, t := range metricTypes {
		out[i] = mdns.TypeToString[t]
	}
	return out
}

func rcodeNames() []string {
	out := make([]string, len(metricRcodes))
	for i, rc := range metricRcodes {
		out[i] = mdns.RcodeToString[rc]
	}
	return out
}

func (m *metrics) query(qtype uint16, rcode int) {
	ti := len(metricTypes)
	for i, t := range metricTypes {
		if t == qtype {
			ti = i
			break
		}
	}
	ri := len(metricRcodes)
	for i, rc := range metricRcodes {
		if rc == rcode {
			ri = i
			break
		}
	}
	m.queries[ti][ri].Inc()
}

func (m *metrics) cacheHit()     { m.cacheHits.Inc() }
func (m *metrics) cacheMiss()    { m.cacheMisses.Inc() }
func (m *metrics) forwardError() { m.forwardErrors.Inc() }
