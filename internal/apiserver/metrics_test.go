package apiserver

import (
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// observe counts every request on its own label set (the cached series
// are the vectors' own) and times all but watches.
func TestMetricsObserve(t *testing.T) {
	m := newMetrics()
	for range 3 {
		m.observe("create", "", "v1", "pods", "", 201, 2*time.Millisecond)
	}
	m.observe("create", "", "v1", "pods", "", 409, time.Millisecond)
	m.observe("update", "", "v1", "pods", "status", 200, time.Millisecond)
	m.observe("watch", "apps", "v1", "deployments", "", 200, time.Minute)
	families, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]float64{}
	observed := map[string]uint64{}
	key := func(mt *dto.Metric) string {
		s := ""
		for _, l := range mt.GetLabel() {
			s += l.GetName() + "=" + l.GetValue() + ","
		}
		return s
	}
	for _, f := range families {
		for _, mt := range f.GetMetric() {
			switch f.GetName() {
			case "apiserver_request_total":
				counts[key(mt)] = mt.GetCounter().GetValue()
			case "apiserver_request_duration_seconds":
				observed[key(mt)] = mt.GetHistogram().GetSampleCount()
			}
		}
	}
	wantCounts := map[string]float64{
		"code=201,group=,resource=pods,subresource=,verb=CREATE,version=v1,":           3,
		"code=409,group=,resource=pods,subresource=,verb=CREATE,version=v1,":           1,
		"code=200,group=,resource=pods,subresource=status,verb=UPDATE,version=v1,":     1,
		"code=200,group=apps,resource=deployments,subresource=,verb=WATCH,version=v1,": 1,
	}
	wantObserved := map[string]uint64{
		"group=,resource=pods,subresource=,verb=CREATE,version=v1,":       4,
		"group=,resource=pods,subresource=status,verb=UPDATE,version=v1,": 1,
	}
	if len(counts) != len(wantCounts) || len(observed) != len(wantObserved) {
		t.Errorf("series: %v %v", counts, observed)
	}
	for k, v := range wantCounts {
		if counts[k] != v {
			t.Errorf("apiserver_request_total{%s} = %v, want %v", k, counts[k], v)
		}
	}
	for k, v := range wantObserved {
		if observed[k] != v {
			t.Errorf("apiserver_request_duration_seconds{%s} count = %v, want %v", k, observed[k], v)
		}
	}
}
