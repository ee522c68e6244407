package podautoscaler

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"
	metricsclient "k8s.io/metrics/pkg/client/clientset/versioned"
	metricsscheme "k8s.io/metrics/pkg/client/clientset/versioned/scheme"
	resourceclient "k8s.io/metrics/pkg/client/clientset/versioned/typed/metrics/v1beta1"
)

// PodMetric is one pod's usage of a resource, in milli-units (millicores
// for cpu, millibytes for memory, as upstream).
type PodMetric struct {
	Timestamp time.Time
	Window    time.Duration
	Value     int64
}

// PodMetricsInfo maps pod names to their usage.
type PodMetricsInfo map[string]PodMetric

// MetricsClient is the source of resource metrics. The real one reads
// metrics.k8s.io; tests and embedders can supply their own.
type MetricsClient interface {
	// GetResourceMetric returns the usage of resource by the pods in
	// namespace matching selector (only container's usage when container
	// is set), and the time of the oldest sample.
	GetResourceMetric(ctx context.Context, resource v1.ResourceName, namespace string, selector labels.Selector, container string) (PodMetricsInfo, time.Time, error)
}

// ResourceMetricsClient reads PodMetrics from the metrics.k8s.io API.
type ResourceMetricsClient struct {
	client resourceclient.PodMetricsesGetter
}

var _ MetricsClient = (*ResourceMetricsClient)(nil)

// NewResourceMetricsClient returns a MetricsClient over the metrics
// clientset's PodMetrics getter.
func NewResourceMetricsClient(client resourceclient.PodMetricsesGetter) *ResourceMetricsClient {
	return &ResourceMetricsClient{client: client}
}

// NewResourceMetricsClientForKube builds a metrics.k8s.io clientset that
// shares kube's connection (server address, credentials, rate limiter), for
// callers that hold a clientset but no rest.Config.
func NewResourceMetricsClientForKube(kube kubernetes.Interface) (*ResourceMetricsClient, error) {
	rc, ok := kube.CoreV1().RESTClient().(*rest.RESTClient)
	if !ok || rc == nil {
		return nil, errors.New("building metrics client: kubernetes client has no REST client")
	}
	// The core client's requests go to <server>/api/v1; the metrics
	// client needs <server>/apis/metrics.k8s.io/v1beta1.
	u := rc.Get().URL()
	base := &url.URL{Scheme: u.Scheme, Host: u.Host, Path: strings.TrimSuffix(strings.TrimSuffix(u.Path, "/"), "/api/v1")}
	gv := metricsv1beta1.SchemeGroupVersion
	codecs := metricsscheme.Codecs.WithoutConversion()
	mrc, err := rest.NewRESTClient(base, "/apis/"+gv.Group+"/"+gv.Version, rest.ClientContentConfig{
		ContentType:  runtime.ContentTypeJSON,
		GroupVersion: gv,
		Negotiator:   runtime.NewClientNegotiator(codecs, gv),
	}, rc.GetRateLimiter(), rc.Client)
	if err != nil {
		return nil, fmt.Errorf("building metrics client: %w", err)
	}
	return NewResourceMetricsClient(metricsclient.New(mrc).MetricsV1beta1()), nil
}

// GetResourceMetric implements MetricsClient. Pods whose sample lacks the
// resource for some container are left out, as upstream.
func (c *ResourceMetricsClient) GetResourceMetric(ctx context.Context, resource v1.ResourceName, namespace string, selector labels.Selector, container string) (PodMetricsInfo, time.Time, error) {
	list, err := c.client.PodMetricses(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector.String()})
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("unable to fetch metrics from resource metrics API: %w", err)
	}
	if len(list.Items) == 0 {
		return nil, time.Time{}, errors.New("no metrics returned from resource metrics API")
	}
	res := PodMetricsInfo{}
	var oldest time.Time
	for _, m := range list.Items {
		sum, ok := podUsage(m.Containers, resource, container)
		if !ok {
			continue
		}
		res[m.Name] = PodMetric{Timestamp: m.Timestamp.Time, Window: m.Window.Duration, Value: sum}
		if oldest.IsZero() || m.Timestamp.Time.Before(oldest) {
			oldest = m.Timestamp.Time
		}
	}
	return res, oldest, nil
}

// podUsage sums the usage of resource over containers (or the one named
// container); it reports false when a container's sample lacks it.
func podUsage(containers []metricsv1beta1.ContainerMetrics, resource v1.ResourceName, container string) (int64, bool) {
	var sum int64
	found := false
	for _, c := range containers {
		if container != "" && c.Name != container {
			continue
		}
		q, ok := c.Usage[resource]
		if !ok {
			return 0, false
		}
		sum += q.MilliValue()
		found = true
	}
	return sum, found
}

// MetricsForKube returns the metrics.k8s.io client sharing kube's
// connection; when kube has no REST connection (a fake clientset) it
// returns a client that fails every call with the reason, so the
// controller still runs and reports FailedGetResourceMetric.
func MetricsForKube(kube kubernetes.Interface) MetricsClient {
	m, err := NewResourceMetricsClientForKube(kube)
	if err != nil {
		return unavailableMetrics{err}
	}
	return m
}

type unavailableMetrics struct{ err error }

func (u unavailableMetrics) GetResourceMetric(context.Context, v1.ResourceName, string, labels.Selector, string) (PodMetricsInfo, time.Time, error) {
	return nil, time.Time{}, u.err
}
