// Package autoscaling holds integration tests of the HorizontalPodAutoscaler
// controller on skiff's real API server, with the scheduler and hollow
// nodes. The metrics.k8s.io API is not served yet, so each test builds its
// own controller against the server with a fake MetricsClient; the scale
// subresource, the REST mapper (from discovery), informers, status and
// events are all real. The controller manager's own HPA controller runs
// too: without a metrics API it only reports FailedGetResourceMetric and
// never rescales, so assertions stick to sizes, desiredReplicas,
// lastScaleTime, the ScalingLimited condition and events.
package autoscaling

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/record"

	"skiff.dev/skiff/internal/controller/podautoscaler"
	"skiff.dev/skiff/internal/hollow"
	"skiff.dev/skiff/test/integration/framework"
)

// podMetrics reports, for every pod of the namespace the selector matches,
// usage of its whole CPU request times percent/100, sampled now.
type podMetrics struct {
	client kubernetes.Interface
	mu     sync.Mutex
	// percent of the request each pod uses.
	percent int64
}

func (m *podMetrics) set(percent int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.percent = percent
}

func (m *podMetrics) GetResourceMetric(ctx context.Context, res v1.ResourceName, ns string, sel labels.Selector, _ string) (podautoscaler.PodMetricsInfo, time.Time, error) {
	m.mu.Lock()
	percent := m.percent
	m.mu.Unlock()
	pods, err := m.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, time.Time{}, err
	}
	now := time.Now()
	out := podautoscaler.PodMetricsInfo{}
	for _, p := range pods.Items {
		var req int64
		for _, c := range p.Spec.Containers {
			q := c.Resources.Requests[res]
			req += q.MilliValue()
		}
		// A zero window: the sample covers the pod since it became ready.
		out[p.Name] = podautoscaler.PodMetric{Value: req * percent / 100, Timestamp: now}
	}
	return out, now, nil
}

func TestDeploymentScalesUpOnHighCPU(t *testing.T) {
	// The test runs its own HPA controller on fake pod metrics; the
	// server's (which reads metrics.k8s.io, empty for hollow pods) would
	// keep overwriting its status.
	c := framework.Start(t, framework.Options{ControllerManager: true, Scheduler: true, Controllers: []string{"*", "-horizontalpodautoscaling"}})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	nodes := hollow.New(c.Client, hollow.Options{Count: 2})
	go func() { _ = nodes.Run(ctx) }()

	const ns = "default"
	two := int32(2)
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: &two,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: v1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec: v1.PodSpec{Containers: []v1.Container{{Name: "c", Image: "nginx", Resources: v1.ResourceRequirements{
					Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("100m")}}}}},
			},
		},
	}
	if _, err := c.Client.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "2 ready replicas", func() (bool, error) {
		got, err := c.Client.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
		return err == nil && got.Status.ReadyReplicas == 2, err
	})

	fifty := int32(50)
	one := int32(1)
	hpa := &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "web"},
			MinReplicas:    &one, MaxReplicas: 4,
			Metrics: []autoscalingv2.MetricSpec{{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{
				Name: v1.ResourceCPU, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: &fifty}}}},
		},
	}
	if _, err := c.Client.AutoscalingV2().HorizontalPodAutoscalers(ns).Create(ctx, hpa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	metrics := &podMetrics{client: c.Client, percent: 100}
	factory := informers.NewSharedInformerFactory(c.Client, 0)
	disc := c.Client.Discovery()
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disc))
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.Client.CoreV1().Events("")})
	t.Cleanup(broadcaster.Shutdown)
	ctrl, err := podautoscaler.New(podautoscaler.Config{
		SyncPeriod: time.Second,
		Scales:     podautoscaler.NewScaleClient(c.Client, disc, mapper),
		Mapper:     mapper,
		Metrics:    metrics,
	}, c.Client, factory.Autoscaling().V2().HorizontalPodAutoscalers(), factory.Core().V1().Pods(),
		broadcaster.NewRecorder(scheme.Scheme, v1.EventSource{Component: "horizontal-pod-autoscaler"}), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	factory.Start(ctx.Done())
	done := make(chan error, 1)
	go func() { done <- ctrl.Run(ctx, 2) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && ctx.Err() == nil {
			t.Errorf("run: %v", err)
		}
	})

	// 100% against a 50% target: 2 replicas become 4 (the ratio says 4;
	// maxReplicas also caps the next round at 4).
	waitFor(t, 30*time.Second, "deployment scaled to 4 with 4 ready pods", func() (bool, error) {
		got, err := c.Client.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
		return err == nil && *got.Spec.Replicas == 4 && got.Status.ReadyReplicas == 4, err
	})
	waitFor(t, 30*time.Second, "hpa status", func() (bool, error) {
		got, err := c.Client.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		st := got.Status
		return st.CurrentReplicas == 4 && st.DesiredReplicas == 4 && st.LastScaleTime != nil &&
			len(st.CurrentMetrics) == 1 && st.CurrentMetrics[0].Resource != nil &&
			st.CurrentMetrics[0].Resource.Current.AverageUtilization != nil && *st.CurrentMetrics[0].Resource.Current.AverageUtilization == 100 &&
			hasCondition(got, autoscalingv2.ScalingLimited, "TooManyReplicas"), nil
	})
	waitFor(t, 10*time.Second, "SuccessfulRescale event", func() (bool, error) {
		evs, err := c.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.kind=HorizontalPodAutoscaler,involvedObject.name=web"})
		if err != nil {
			return false, err
		}
		for _, e := range evs.Items {
			if e.Reason == "SuccessfulRescale" && e.Message == "New size: 4; reason: cpu resource utilization (percentage of request) above target" {
				return true, nil
			}
		}
		return false, nil
	})

	// Usage at the target: the HPA holds its size (no flapping).
	metrics.set(50)
	time.Sleep(2500 * time.Millisecond)
	got, err := c.Client.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil || *got.Spec.Replicas != 4 {
		t.Fatalf("deployment replicas at target usage: %v, %v", got.Spec.Replicas, err)
	}
}

func hasCondition(h *autoscalingv2.HorizontalPodAutoscaler, t autoscalingv2.HorizontalPodAutoscalerConditionType, reason string) bool {
	for _, c := range h.Status.Conditions {
		if c.Type == t && c.Reason == reason {
			return true
		}
	}
	return false
}

// waitFor polls cond every 100 ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var lastErr error
	for time.Now().Before(deadline) {
		ok, err := cond()
		if ok {
			return
		}
		lastErr = err
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s (last error: %v)", what, lastErr)
}
