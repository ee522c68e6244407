package podautoscaler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	scalefake "k8s.io/client-go/scale/fake"
	core "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"
	metricsfake "k8s.io/metrics/pkg/client/clientset/versioned/fake"
	testingclock "k8s.io/utils/clock/testing"
)

// fakeMetrics serves fixed usage per pod name, or an error.
type fakeMetrics struct {
	usage map[string]int64
	err   error
	at    time.Time
}

func (f *fakeMetrics) GetResourceMetric(_ context.Context, _ v1.ResourceName, _ string, _ labels.Selector, _ string) (PodMetricsInfo, time.Time, error) {
	if f.err != nil {
		return nil, time.Time{}, f.err
	}
	out := PodMetricsInfo{}
	for name, v := range f.usage {
		out[name] = PodMetric{Value: v, Timestamp: f.at, Window: 30 * time.Second}
	}
	return out, f.at, nil
}

type fixture struct {
	t        *testing.T
	kube     *fake.Clientset
	scales   *scalefake.FakeScaleClient
	replicas int32 // the target's current scale
	metrics  *fakeMetrics
	clock    *testingclock.FakeClock
	recorder *record.FakeRecorder
	factory  informers.SharedInformerFactory
	c        *Controller
}

func newHPA() *autoscalingv2.HorizontalPodAutoscaler {
	return &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns", Generation: 1},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "web"},
			MinReplicas:    i32(1), MaxReplicas: 10,
			Metrics: []autoscalingv2.MetricSpec{{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{
				Name: v1.ResourceCPU, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: i32(50)}}}},
		},
	}
}

// newFixture has a Deployment ns/web at replicas with that many ready pods
// requesting 1 CPU each, each using usage millicores.
func newFixture(t *testing.T, hpa *autoscalingv2.HorizontalPodAutoscaler, replicas int32, usage int64) *fixture {
	f := &fixture{t: t, replicas: replicas, clock: testingclock.NewFakeClock(t0), recorder: record.NewFakeRecorder(100),
		metrics: &fakeMetrics{usage: map[string]int64{}, at: t0}, scales: &scalefake.FakeScaleClient{}}
	f.kube = fake.NewClientset(hpa)
	f.factory = informers.NewSharedInformerFactory(f.kube, 0)
	if err := f.factory.Autoscaling().V2().HorizontalPodAutoscalers().Informer().GetIndexer().Add(hpa); err != nil {
		t.Fatal(err)
	}
	states := repeat(int(replicas), podState{usage: usage})
	pods, _ := build(states, "1")
	for i, p := range pods {
		p.Labels = map[string]string{"app": "web"}
		if err := f.factory.Core().V1().Pods().Informer().GetIndexer().Add(p); err != nil {
			t.Fatal(err)
		}
		f.metrics.usage[fmt.Sprintf("p%d", i)] = usage
	}
	f.scales.AddReactor("get", "deployments", func(a core.Action) (bool, runtime.Object, error) {
		return true, &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns"},
			Spec: autoscalingv1.ScaleSpec{Replicas: f.replicas}, Status: autoscalingv1.ScaleStatus{Replicas: f.replicas, Selector: "app=web"}}, nil
	})
	f.scales.AddReactor("update", "deployments", func(a core.Action) (bool, runtime.Object, error) {
		s := a.(core.UpdateAction).GetObject().(*autoscalingv1.Scale)
		f.replicas = s.Spec.Replicas
		return true, s, nil
	})
	mapper := meta.NewDefaultRESTMapper([]schema.GroupVersion{appsv1.SchemeGroupVersion})
	mapper.Add(appsv1.SchemeGroupVersion.WithKind("Deployment"), meta.RESTScopeNamespace)
	c, err := New(Config{Clock: f.clock, Scales: f.scales, Mapper: mapper, Metrics: f.metrics}, f.kube,
		f.factory.Autoscaling().V2().HorizontalPodAutoscalers(), f.factory.Core().V1().Pods(), f.recorder, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.queue.ShutDown)
	f.c = c
	return f
}

// sync runs one reconcile and feeds the written status back into the
// lister, as the informer would.
func (f *fixture) sync() (*autoscalingv2.HorizontalPodAutoscaler, error) {
	f.t.Helper()
	f.kube.ClearActions()
	f.scales.ClearActions()
	err := f.c.Sync(context.Background(), "ns/web")
	hpa, gerr := f.kube.AutoscalingV2().HorizontalPodAutoscalers("ns").Get(context.Background(), "web", metav1.GetOptions{})
	if gerr != nil {
		f.t.Fatal(gerr)
	}
	if aerr := f.factory.Autoscaling().V2().HorizontalPodAutoscalers().Informer().GetIndexer().Update(hpa); aerr != nil {
		f.t.Fatal(aerr)
	}
	return hpa, err
}

// scaleUpdates returns the replica counts written to the scale subresource.
func (f *fixture) scaleUpdates() []int32 {
	var out []int32
	for _, a := range f.scales.Actions() {
		if a.GetVerb() == "update" && a.GetSubresource() == "scale" {
			out = append(out, a.(core.UpdateAction).GetObject().(*autoscalingv1.Scale).Spec.Replicas)
		}
	}
	return out
}

func (f *fixture) events() []string {
	var out []string
	for {
		select {
		case e := <-f.recorder.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

func wantCondition(t *testing.T, hpa *autoscalingv2.HorizontalPodAutoscaler, ct autoscalingv2.HorizontalPodAutoscalerConditionType, status v1.ConditionStatus, reason, message string) {
	t.Helper()
	for _, c := range hpa.Status.Conditions {
		if c.Type != ct {
			continue
		}
		if c.Status != status || c.Reason != reason || (message != "" && c.Message != message) {
			t.Errorf("condition %s = %s/%s %q; want %s/%s %q", ct, c.Status, c.Reason, c.Message, status, reason, message)
		}
		return
	}
	t.Errorf("condition %s missing in %+v", ct, hpa.Status.Conditions)
}

func TestSyncScalesUpOnHighCPU(t *testing.T) {
	f := newFixture(t, newHPA(), 3, 1000) // 100% of request, target 50%
	hpa, err := f.sync()
	if err != nil {
		t.Fatal(err)
	}
	if got := f.scaleUpdates(); len(got) != 1 || got[0] != 6 {
		t.Fatalf("scale updates %v, want [6]", got)
	}
	var verbs []string
	for _, a := range f.scales.Actions() {
		verbs = append(verbs, a.GetVerb()+" "+a.GetResource().Resource+"/"+a.GetSubresource())
	}
	if strings.Join(verbs, ",") != "get deployments/scale,update deployments/scale" {
		t.Fatalf("scale actions %v", verbs)
	}
	st := hpa.Status
	if st.CurrentReplicas != 3 || st.DesiredReplicas != 6 {
		t.Fatalf("replicas current %d desired %d", st.CurrentReplicas, st.DesiredReplicas)
	}
	if st.LastScaleTime == nil || !st.LastScaleTime.Time.Equal(t0) {
		t.Fatalf("lastScaleTime %v, want %v", st.LastScaleTime, t0)
	}
	if st.ObservedGeneration == nil || *st.ObservedGeneration != 1 {
		t.Fatalf("observedGeneration %v", st.ObservedGeneration)
	}
	if len(st.CurrentMetrics) != 1 || st.CurrentMetrics[0].Resource == nil ||
		*st.CurrentMetrics[0].Resource.Current.AverageUtilization != 100 || st.CurrentMetrics[0].Resource.Current.AverageValue.Cmp(resource.MustParse("1")) != 0 {
		t.Fatalf("currentMetrics %+v", st.CurrentMetrics)
	}
	wantCondition(t, hpa, autoscalingv2.AbleToScale, v1.ConditionTrue, "SucceededRescale", "the HPA controller was able to update the target scale to 6")
	wantCondition(t, hpa, autoscalingv2.ScalingActive, v1.ConditionTrue, "ValidMetricFound",
		"the HPA was able to successfully calculate a replica count from cpu resource utilization (percentage of request)")
	wantCondition(t, hpa, autoscalingv2.ScalingLimited, v1.ConditionFalse, "DesiredWithinRange", "the desired count is within the acceptable range")
	events := f.events()
	want := "Normal SuccessfulRescale New size: 6; reason: cpu resource utilization (percentage of request) above target"
	if len(events) != 1 || events[0] != want {
		t.Fatalf("events %q, want [%q]", events, want)
	}
	// The resync is scheduled.
	if f.c.queue.Len() != 0 {
		t.Fatalf("key should wait for the sync period, queue has %d", f.c.queue.Len())
	}
}

func TestSyncLimitedByMaxReplicas(t *testing.T) {
	hpa := newHPA()
	hpa.Spec.MaxReplicas = 4
	f := newFixture(t, hpa, 3, 1000)
	got, err := f.sync()
	if err != nil {
		t.Fatal(err)
	}
	if u := f.scaleUpdates(); len(u) != 1 || u[0] != 4 {
		t.Fatalf("scale updates %v, want [4]", u)
	}
	wantCondition(t, got, autoscalingv2.ScalingLimited, v1.ConditionTrue, "TooManyReplicas", "the desired replica count is more than the maximum replica count")
}

func TestSyncWithinToleranceDoesNothing(t *testing.T) {
	f := newFixture(t, newHPA(), 3, 540)
	hpa, err := f.sync()
	if err != nil {
		t.Fatal(err)
	}
	if u := f.scaleUpdates(); len(u) != 0 {
		t.Fatalf("scale updates %v", u)
	}
	if hpa.Status.DesiredReplicas != 3 || hpa.Status.LastScaleTime != nil {
		t.Fatalf("status %+v", hpa.Status)
	}
	wantCondition(t, hpa, autoscalingv2.AbleToScale, v1.ConditionTrue, "ReadyForNewScale", "recommended size matches current size")
}

func TestSyncStabilisesScaleDown(t *testing.T) {
	f := newFixture(t, newHPA(), 4, 500) // at target
	if _, err := f.sync(); err != nil {
		t.Fatal(err)
	}
	for name := range f.metrics.usage {
		f.metrics.usage[name] = 100 // 10%: upstream's formula wants 1 replica
	}
	f.clock.Step(time.Minute)
	hpa, err := f.sync()
	if err != nil {
		t.Fatal(err)
	}
	if u := f.scaleUpdates(); len(u) != 0 {
		t.Fatalf("scaled down within the window: %v", u)
	}
	wantCondition(t, hpa, autoscalingv2.AbleToScale, v1.ConditionTrue, "ScaleDownStabilized", "")
	if hpa.Status.DesiredReplicas != 4 {
		t.Fatalf("desired %d during the window", hpa.Status.DesiredReplicas)
	}
	f.clock.Step(4*time.Minute + time.Second)
	hpa, err = f.sync()
	if err != nil {
		t.Fatal(err)
	}
	if u := f.scaleUpdates(); len(u) != 1 || u[0] != 1 {
		t.Fatalf("scale updates after the window %v, want [1]", u)
	}
	if ev := f.events(); len(ev) != 1 || ev[0] != "Normal SuccessfulRescale New size: 1; reason: All metrics below target" {
		t.Fatalf("events %q", ev)
	}
	if !hpa.Status.LastScaleTime.Time.Equal(f.clock.Now()) {
		t.Fatalf("lastScaleTime %v", hpa.Status.LastScaleTime)
	}
}

func TestSyncMetricsUnavailable(t *testing.T) {
	f := newFixture(t, newHPA(), 3, 1000)
	f.metrics.err = errors.New("the server could not find the requested resource")
	hpa, err := f.sync()
	if err == nil || !strings.Contains(err.Error(), "invalid metrics (1 invalid out of 1)") {
		t.Fatalf("err = %v", err)
	}
	if u := f.scaleUpdates(); len(u) != 0 {
		t.Fatalf("scale updates %v", u)
	}
	wantCondition(t, hpa, autoscalingv2.AbleToScale, v1.ConditionTrue, "SucceededGetScale", "the HPA controller was able to get the target's current scale")
	wantCondition(t, hpa, autoscalingv2.ScalingActive, v1.ConditionFalse, "FailedGetResourceMetric",
		"the HPA was unable to compute the replica count: failed to get cpu resource metric value: failed to get cpu utilization: unable to get metrics for resource cpu: the server could not find the requested resource")
	if hpa.Status.CurrentReplicas != 3 {
		t.Fatalf("currentReplicas %d", hpa.Status.CurrentReplicas)
	}
	ev := f.events()
	if len(ev) != 2 || !strings.HasPrefix(ev[0], "Warning FailedGetResourceMetric ") || !strings.HasPrefix(ev[1], "Warning FailedComputeMetricsReplicas ") {
		t.Fatalf("events %q", ev)
	}
}

func TestSyncScaledToZeroDisablesScaling(t *testing.T) {
	f := newFixture(t, newHPA(), 0, 1000)
	hpa, err := f.sync()
	if err != nil {
		t.Fatal(err)
	}
	if u := f.scaleUpdates(); len(u) != 0 {
		t.Fatalf("scale updates %v", u)
	}
	wantCondition(t, hpa, autoscalingv2.ScalingActive, v1.ConditionFalse, "ScalingDisabled", "scaling is disabled since the replica count of the target is zero")
}

func TestSyncBelowMinReplicas(t *testing.T) {
	hpa := newHPA()
	hpa.Spec.MinReplicas = i32(5)
	f := newFixture(t, hpa, 2, 500)
	if _, err := f.sync(); err != nil {
		t.Fatal(err)
	}
	if u := f.scaleUpdates(); len(u) != 1 || u[0] != 5 {
		t.Fatalf("scale updates %v, want [5]", u)
	}
	if ev := f.events(); len(ev) != 1 || ev[0] != "Normal SuccessfulRescale New size: 5; reason: Current number of replicas below Spec.MinReplicas" {
		t.Fatalf("events %q", ev)
	}
}

func TestSyncUnknownTargetKind(t *testing.T) {
	hpa := newHPA()
	hpa.Spec.ScaleTargetRef.Kind = "Nope"
	f := newFixture(t, hpa, 3, 1000)
	got, err := f.sync()
	if err == nil {
		t.Fatal("no error for an unknown kind")
	}
	wantCondition(t, got, autoscalingv2.AbleToScale, v1.ConditionFalse, "FailedGetScale", "")
	if ev := f.events(); len(ev) != 1 || !strings.HasPrefix(ev[0], "Warning FailedGetScale ") {
		t.Fatalf("events %q", ev)
	}
}

func TestSyncDeletedHPAForgetsHistory(t *testing.T) {
	f := newFixture(t, newHPA(), 3, 1000)
	if _, err := f.sync(); err != nil {
		t.Fatal(err)
	}
	if err := f.factory.Autoscaling().V2().HorizontalPodAutoscalers().Informer().GetIndexer().Delete(newHPA()); err != nil {
		t.Fatal(err)
	}
	if err := f.c.Sync(context.Background(), "ns/web"); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.c.history.recommendations["ns/web"]; ok {
		t.Fatal("history kept for a deleted hpa")
	}
}

func TestResourceMetricsClient(t *testing.T) {
	pm := func(name string, labels map[string]string, usage ...string) *metricsv1beta1.PodMetrics {
		m := &metricsv1beta1.PodMetrics{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", Labels: labels},
			Timestamp: metav1.NewTime(t0), Window: metav1.Duration{Duration: 30 * time.Second}}
		for i, u := range usage {
			m.Containers = append(m.Containers, metricsv1beta1.ContainerMetrics{Name: fmt.Sprintf("c%d", i), Usage: v1.ResourceList{v1.ResourceCPU: resource.MustParse(u)}})
		}
		return m
	}
	web := map[string]string{"app": "web"}
	noCPU := pm("nocpu", web)
	noCPU.Containers = []metricsv1beta1.ContainerMetrics{{Name: "c0", Usage: v1.ResourceList{v1.ResourceMemory: resource.MustParse("1Mi")}}}
	all := []*metricsv1beta1.PodMetrics{pm("a", web, "250m", "500m"), pm("b", web, "1"), pm("other", map[string]string{"app": "db"}, "2"), noCPU}
	client := &metricsfake.Clientset{}
	// The typed client lists "pods" of metrics.k8s.io, which the fake's
	// object tracker cannot guess from the kind; serve them directly.
	client.AddReactor("list", "pods", func(a core.Action) (bool, runtime.Object, error) {
		l := a.(core.ListAction)
		sel := l.GetListRestrictions().Labels
		out := &metricsv1beta1.PodMetricsList{}
		for _, m := range all {
			if m.Namespace == l.GetNamespace() && sel.Matches(labels.Set(m.Labels)) {
				out.Items = append(out.Items, *m)
			}
		}
		return true, out, nil
	})
	mc := NewResourceMetricsClient(client.MetricsV1beta1())
	got, ts, err := mc.GetResourceMetric(context.Background(), v1.ResourceCPU, "ns", labels.SelectorFromSet(web), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["a"].Value != 750 || got["b"].Value != 1000 || got["a"].Window != 30*time.Second || !ts.Equal(t0) {
		t.Fatalf("metrics %+v at %v", got, ts)
	}
	one, _, err := mc.GetResourceMetric(context.Background(), v1.ResourceCPU, "ns", labels.SelectorFromSet(web), "c1")
	if err != nil || one["a"].Value != 500 {
		t.Fatalf("container metrics %+v, %v", one, err)
	}
	if _, _, err := mc.GetResourceMetric(context.Background(), v1.ResourceCPU, "empty", labels.Everything(), ""); err == nil {
		t.Fatal("no error without metrics")
	}
}
