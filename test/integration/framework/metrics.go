package framework

import (
	"bytes"
	"context"
	"fmt"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/client-go/kubernetes"
)

// RequestCount is one series of the API server's apiserver_request_total.
type RequestCount struct {
	Verb, Resource, Subresource, Code string
	Count                             float64
}

// RequestCounts reads apiserver_request_total from the API server's
// /metrics.
func RequestCounts(ctx context.Context, client kubernetes.Interface) ([]RequestCount, error) {
	raw, err := client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading /metrics: %w", err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("parsing /metrics: %w", err)
	}
	f := families["apiserver_request_total"]
	if f == nil {
		return nil, nil
	}
	out := make([]RequestCount, 0, len(f.GetMetric()))
	for _, m := range f.GetMetric() {
		rc := RequestCount{Count: m.GetCounter().GetValue()}
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "verb":
				rc.Verb = l.GetValue()
			case "resource":
				rc.Resource = l.GetValue()
			case "subresource":
				rc.Subresource = l.GetValue()
			case "code":
				rc.Code = l.GetValue()
			}
		}
		out = append(out, rc)
	}
	return out, nil
}
