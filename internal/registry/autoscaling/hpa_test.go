package autoscaling

import (
	"testing"
	"time"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func i32(v int32) *int32 { return &v }

func v2HPA() *autoscalingv2.HorizontalPodAutoscaler {
	q := resource.MustParse("100")
	h := &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", Annotations: map[string]string{"keep": "me"}},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{Kind: "Deployment", Name: "web", APIVersion: "apps/v1"},
			MinReplicas:    i32(2), MaxReplicas: 10,
			Metrics: []autoscalingv2.MetricSpec{cpuMetric(60), {Type: autoscalingv2.PodsMetricSourceType, Pods: &autoscalingv2.PodsMetricSource{
				Metric: autoscalingv2.MetricIdentifier{Name: "qps"},
				Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: &q}}}},
			Behavior: &autoscalingv2.HorizontalPodAutoscalerBehavior{ScaleDown: &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: i32(60)}},
		},
		Status: autoscalingv2.HorizontalPodAutoscalerStatus{
			CurrentReplicas: 3, DesiredReplicas: 4,
			CurrentMetrics: []autoscalingv2.MetricStatus{{Type: autoscalingv2.ResourceMetricSourceType,
				Resource: &autoscalingv2.ResourceMetricStatus{Name: corev1.ResourceCPU, Current: autoscalingv2.MetricValueStatus{AverageUtilization: i32(42)}}}},
			Conditions: []autoscalingv2.HorizontalPodAutoscalerCondition{{Type: autoscalingv2.AbleToScale, Status: corev1.ConditionTrue, Reason: "ok"}},
		},
	}
	return h
}

func TestRoundTrip(t *testing.T) {
	res := Resources()
	v1 := res[1]
	if v1.GroupVersion != autoscalingv1.SchemeGroupVersion || v1.StorageGVR() != autoscalingv2.SchemeGroupVersion.WithResource("horizontalpodautoscalers") {
		t.Fatalf("v1 descriptor wrong: %v %v", v1.GroupVersion, v1.StorageGVR())
	}
	in := v2HPA()
	served, err := v1.FromStorage(in)
	if err != nil {
		t.Fatal(err)
	}
	h1 := served.(*autoscalingv1.HorizontalPodAutoscaler)
	if h1.Spec.TargetCPUUtilizationPercentage == nil || *h1.Spec.TargetCPUUtilizationPercentage != 60 ||
		h1.Status.CurrentCPUUtilizationPercentage == nil || *h1.Status.CurrentCPUUtilizationPercentage != 42 {
		t.Errorf("cpu not mapped: %+v", h1)
	}
	for _, k := range []string{MetricsAnnotation, BehaviorAnnotation, ConditionsAnnotation, "keep"} {
		if _, ok := h1.Annotations[k]; !ok {
			t.Errorf("annotation %s missing: %v", k, h1.Annotations)
		}
	}
	back, err := v1.ToStorage(h1)
	if err != nil {
		t.Fatal(err)
	}
	out := back.(*autoscalingv2.HorizontalPodAutoscaler)
	out.TypeMeta = in.TypeMeta
	if !apiequality.Semantic.DeepEqual(in, out) {
		t.Errorf("v2 -> v1 -> v2 not lossless:\n in %+v\nout %+v", in, out)
	}
	if in.Annotations[MetricsAnnotation] != "" {
		t.Errorf("conversion mutated its input")
	}

	// A plain v1 object round-trips too.
	plain := &autoscalingv1.HorizontalPodAutoscaler{ObjectMeta: metav1.ObjectMeta{Name: "a"},
		Spec: autoscalingv1.HorizontalPodAutoscalerSpec{MaxReplicas: 3, TargetCPUUtilizationPercentage: i32(50),
			ScaleTargetRef: autoscalingv1.CrossVersionObjectReference{Kind: "Deployment", Name: "a"}}}
	s, _ := V1ToV2(plain)
	p2, _ := V2ToV1(s)
	p2.TypeMeta = plain.TypeMeta
	if !apiequality.Semantic.DeepEqual(plain, p2) {
		t.Errorf("v1 -> v2 -> v1 not lossless: %+v", p2)
	}
	bad := plain.DeepCopy()
	bad.Annotations = map[string]string{BehaviorAnnotation: "{"}
	if _, err := V1ToV2(bad); err == nil {
		t.Errorf("malformed annotation accepted")
	}
	if errs := v1.Validate(bad); len(errs) == 0 {
		t.Errorf("v1 validate accepted malformed annotation")
	}
}

func TestDefaults(t *testing.T) {
	h := &autoscalingv2.HorizontalPodAutoscaler{Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
		Behavior: &autoscalingv2.HorizontalPodAutoscalerBehavior{ScaleUp: &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: i32(5)}}}}
	Resources()[0].Default(h)
	b := h.Spec.Behavior
	if *h.Spec.MinReplicas != 1 || len(h.Spec.Metrics) != 1 || *h.Spec.Metrics[0].Resource.Target.AverageUtilization != 80 ||
		*b.ScaleUp.StabilizationWindowSeconds != 5 || len(b.ScaleUp.Policies) != 2 || *b.ScaleUp.SelectPolicy != autoscalingv2.MaxChangePolicySelect ||
		*b.ScaleDown.StabilizationWindowSeconds != 300 || len(b.ScaleDown.Policies) != 1 || b.ScaleDown.Policies[0].Value != 100 {
		t.Errorf("bad defaults: %+v %+v %+v", h.Spec, b.ScaleUp, b.ScaleDown)
	}
	h2 := &autoscalingv2.HorizontalPodAutoscaler{}
	Resources()[0].Default(h2)
	if h2.Spec.Behavior != nil {
		t.Errorf("behavior defaulted when unset")
	}
}

func TestValidation(t *testing.T) {
	r := Resources()[0]
	cases := []struct {
		name   string
		mutate func(*autoscalingv2.HorizontalPodAutoscaler)
		want   string
	}{
		{"valid", func(*autoscalingv2.HorizontalPodAutoscaler) {}, ""},
		{"no kind", func(h *autoscalingv2.HorizontalPodAutoscaler) { h.Spec.ScaleTargetRef.Kind = "" }, "FieldValueRequired spec.scaleTargetRef.kind"},
		{"min 0", func(h *autoscalingv2.HorizontalPodAutoscaler) { h.Spec.MinReplicas = i32(0) }, "FieldValueInvalid spec.minReplicas"},
		{"max < min", func(h *autoscalingv2.HorizontalPodAutoscaler) { h.Spec.MaxReplicas = 1 }, "FieldValueInvalid spec.maxReplicas"},
		{"zero utilization", func(h *autoscalingv2.HorizontalPodAutoscaler) {
			h.Spec.Metrics[0].Resource.Target.AverageUtilization = i32(0)
		},
			"FieldValueInvalid spec.metrics[0].resource.target.averageUtilization"},
		{"missing source", func(h *autoscalingv2.HorizontalPodAutoscaler) { h.Spec.Metrics[1].Pods = nil }, "FieldValueRequired spec.metrics[1].pods"},
		{"bad period", func(h *autoscalingv2.HorizontalPodAutoscaler) {
			h.Spec.Behavior.ScaleDown.Policies = []autoscalingv2.HPAScalingPolicy{{Type: autoscalingv2.PodsScalingPolicy, Value: 1, PeriodSeconds: 1801}}
		}, "FieldValueInvalid spec.behavior.scaleDown.policies[0].periodSeconds"},
	}
	for _, c := range cases {
		h := v2HPA()
		c.mutate(h)
		errs := r.Validate(h)
		if c.want == "" && len(errs) != 0 || c.want != "" && (len(errs) != 1 || string(errs[0].Type)+" "+errs[0].Field != c.want) {
			t.Errorf("%s: errs %v, want %q", c.name, errs, c.want)
		}
	}
	v1 := &autoscalingv1.HorizontalPodAutoscaler{Spec: autoscalingv1.HorizontalPodAutoscalerSpec{MaxReplicas: 3, TargetCPUUtilizationPercentage: i32(0),
		ScaleTargetRef: autoscalingv1.CrossVersionObjectReference{Kind: "Deployment", Name: "a"}}}
	if errs := Resources()[1].Validate(v1); len(errs) != 1 || errs[0].Field != "spec.metrics[0].resource.target.averageUtilization" {
		t.Errorf("v1 validation: %v", errs)
	}
}

func TestTable(t *testing.T) {
	h := v2HPA()
	h.CreationTimestamp = metav1.NewTime(time.Now().Add(-5 * time.Hour))
	r := Resources()[0]
	row := r.TableRow(h)
	want := []interface{}{"web", "Deployment/web", "cpu: 42%/60%, <unknown>/100", "2", int64(10), int64(3), "5h"}
	if len(row) != len(r.TableColumns) {
		t.Fatalf("row %v", row)
	}
	for i := range want {
		if row[i] != want[i] {
			t.Errorf("cell %d (%s) = %#v, want %#v", i, r.TableColumns[i].Name, row[i], want[i])
		}
	}
	served, _ := V2ToV1(h)
	if got := Resources()[1].TableRow(served); got[2] != "cpu: 42%/60%, <unknown>/100" {
		t.Errorf("v1 row targets = %v", got[2])
	}
}
