package apiserver

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the API server's Prometheus series, named as upstream's so
// existing dashboards work: apiserver_request_total and
// apiserver_request_duration_seconds by verb, group, version, resource,
// subresource (and code for the counter).
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	inflight prometheus.Gauge
	// series caches the counter and histogram of each label set
	// (seriesKey -> *series): looking them up in the vectors hashed
	// six label strings and built the code's string on every request.
	series sync.Map
}

type seriesKey struct {
	verb, group, version, resource, subresource string
	code                                        int
}

type series struct {
	requests prometheus.Counter
	latency  prometheus.Observer // nil for watches
}

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "apiserver_request_total",
		Help: "Counter of apiserver requests broken out for each verb, API resource and HTTP response code.",
	}, []string{"verb", "group", "version", "resource", "subresource", "code"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "apiserver_request_duration_seconds",
		Help:    "Response latency distribution in seconds for each verb, group, version, resource and subresource.",
		Buckets: []float64{0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 45, 60},
	}, []string{"verb", "group", "version", "resource", "subresource"})
	m.reg.MustRegister(m.requests, m.latency,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry lets other components in the process add their series.
func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

func (m *metrics) observe(verb, group, version, resource, subresource string, code int, d time.Duration) {
	key := seriesKey{verb, group, version, resource, subresource, code}
	v, ok := m.series.Load(key)
	if !ok {
		v, _ = m.series.LoadOrStore(key, m.newSeries(key))
	}
	se := v.(*series)
	se.requests.Inc()
	if se.latency != nil {
		se.latency.Observe(d.Seconds())
	}
}

// newSeries looks up the series of one label set in the vectors.
func (m *metrics) newSeries(k seriesKey) *series {
	verb := strings.ToUpper(k.verb)
	se := &series{requests: m.requests.WithLabelValues(verb, k.group, k.version, k.resource, k.subresource, strconv.Itoa(k.code))}
	if verb != "WATCH" {
		se.latency = m.latency.WithLabelValues(verb, k.group, k.version, k.resource, k.subresource)
	}
	return se
}

// MetricsRegistry exposes the registry so in-process components register
// their collectors on the same /metrics.
func (s *Server) MetricsRegistry() *prometheus.Registry { return s.metrics.reg }
