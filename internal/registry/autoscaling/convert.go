package autoscaling

import (
	"encoding/json"
	"fmt"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Annotations carrying v2-only data on autoscaling/v1 objects.
const (
	BehaviorAnnotation       = "autoscaling.alpha.kubernetes.io/behavior"
	ConditionsAnnotation     = "autoscaling.alpha.kubernetes.io/conditions"
	MetricsAnnotation        = "autoscaling.skiff.dev/metrics"
	CurrentMetricsAnnotation = "autoscaling.skiff.dev/current-metrics"
)

func isCPUUtilization(m autoscalingv2.MetricSpec) bool {
	return m.Type == autoscalingv2.ResourceMetricSourceType && m.Resource != nil && m.Resource.Name == corev1.ResourceCPU &&
		m.Resource.Target.Type == autoscalingv2.UtilizationMetricType && m.Resource.Target.AverageUtilization != nil
}

// V1ToV2 converts an autoscaling/v1 HPA to autoscaling/v2.
func V1ToV2(in *autoscalingv1.HorizontalPodAutoscaler) (*autoscalingv2.HorizontalPodAutoscaler, error) {
	out := &autoscalingv2.HorizontalPodAutoscaler{
		TypeMeta:   metav1.TypeMeta{APIVersion: autoscalingv2.SchemeGroupVersion.String(), Kind: "HorizontalPodAutoscaler"},
		ObjectMeta: *in.ObjectMeta.DeepCopy(),
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference(in.Spec.ScaleTargetRef),
			MinReplicas:    copyInt32(in.Spec.MinReplicas),
			MaxReplicas:    in.Spec.MaxReplicas,
		},
		Status: autoscalingv2.HorizontalPodAutoscalerStatus{
			ObservedGeneration: in.Status.ObservedGeneration,
			LastScaleTime:      in.Status.LastScaleTime.DeepCopy(),
			CurrentReplicas:    in.Status.CurrentReplicas,
			DesiredReplicas:    in.Status.DesiredReplicas,
		},
	}
	ann := out.Annotations
	take := func(key string, into interface{}) error {
		v, ok := ann[key]
		if !ok {
			return nil
		}
		delete(ann, key)
		if err := json.Unmarshal([]byte(v), into); err != nil {
			return fmt.Errorf("decoding annotation %s: %w", key, err)
		}
		return nil
	}
	if in.Spec.TargetCPUUtilizationPercentage != nil {
		out.Spec.Metrics = append(out.Spec.Metrics, cpuMetric(*in.Spec.TargetCPUUtilizationPercentage))
	}
	var others []autoscalingv2.MetricSpec
	if err := take(MetricsAnnotation, &others); err != nil {
		return nil, err
	}
	out.Spec.Metrics = append(out.Spec.Metrics, others...)
	if in.Status.CurrentCPUUtilizationPercentage != nil {
		u := *in.Status.CurrentCPUUtilizationPercentage
		out.Status.CurrentMetrics = append(out.Status.CurrentMetrics, autoscalingv2.MetricStatus{
			Type:     autoscalingv2.ResourceMetricSourceType,
			Resource: &autoscalingv2.ResourceMetricStatus{Name: corev1.ResourceCPU, Current: autoscalingv2.MetricValueStatus{AverageUtilization: &u}},
		})
	}
	var current []autoscalingv2.MetricStatus
	if err := take(CurrentMetricsAnnotation, &current); err != nil {
		return nil, err
	}
	out.Status.CurrentMetrics = append(out.Status.CurrentMetrics, current...)
	if _, ok := ann[BehaviorAnnotation]; ok {
		out.Spec.Behavior = &autoscalingv2.HorizontalPodAutoscalerBehavior{}
		if err := take(BehaviorAnnotation, out.Spec.Behavior); err != nil {
			return nil, err
		}
	}
	if err := take(ConditionsAnnotation, &out.Status.Conditions); err != nil {
		return nil, err
	}
	if len(ann) == 0 {
		out.Annotations = nil
	}
	return out, nil
}

// V2ToV1 converts an autoscaling/v2 HPA to autoscaling/v1.
func V2ToV1(in *autoscalingv2.HorizontalPodAutoscaler) (*autoscalingv1.HorizontalPodAutoscaler, error) {
	out := &autoscalingv1.HorizontalPodAutoscaler{
		TypeMeta:   metav1.TypeMeta{APIVersion: autoscalingv1.SchemeGroupVersion.String(), Kind: "HorizontalPodAutoscaler"},
		ObjectMeta: *in.ObjectMeta.DeepCopy(),
		Spec: autoscalingv1.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv1.CrossVersionObjectReference(in.Spec.ScaleTargetRef),
			MinReplicas:    copyInt32(in.Spec.MinReplicas),
			MaxReplicas:    in.Spec.MaxReplicas,
		},
		Status: autoscalingv1.HorizontalPodAutoscalerStatus{
			ObservedGeneration: in.Status.ObservedGeneration,
			LastScaleTime:      in.Status.LastScaleTime.DeepCopy(),
			CurrentReplicas:    in.Status.CurrentReplicas,
			DesiredReplicas:    in.Status.DesiredReplicas,
		},
	}
	put := func(key string, v interface{}) error {
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("encoding annotation %s: %w", key, err)
		}
		if out.Annotations == nil {
			out.Annotations = map[string]string{}
		}
		out.Annotations[key] = string(b)
		return nil
	}
	var others []autoscalingv2.MetricSpec
	for _, m := range in.Spec.Metrics {
		if out.Spec.TargetCPUUtilizationPercentage == nil && isCPUUtilization(m) {
			out.Spec.TargetCPUUtilizationPercentage = copyInt32(m.Resource.Target.AverageUtilization)
			continue
		}
		others = append(others, m)
	}
	var current []autoscalingv2.MetricStatus
	for _, m := range in.Status.CurrentMetrics {
		if out.Status.CurrentCPUUtilizationPercentage == nil && m.Type == autoscalingv2.ResourceMetricSourceType && m.Resource != nil &&
			m.Resource.Name == corev1.ResourceCPU && m.Resource.Current.AverageUtilization != nil && m.Resource.Current.AverageValue == nil {
			out.Status.CurrentCPUUtilizationPercentage = copyInt32(m.Resource.Current.AverageUtilization)
			continue
		}
		current = append(current, m)
	}
	if len(others) > 0 {
		if err := put(MetricsAnnotation, others); err != nil {
			return nil, err
		}
	}
	if len(current) > 0 {
		if err := put(CurrentMetricsAnnotation, current); err != nil {
			return nil, err
		}
	}
	if in.Spec.Behavior != nil {
		if err := put(BehaviorAnnotation, in.Spec.Behavior); err != nil {
			return nil, err
		}
	}
	if len(in.Status.Conditions) > 0 {
		if err := put(ConditionsAnnotation, in.Status.Conditions); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func cpuMetric(pct int32) autoscalingv2.MetricSpec {
	return autoscalingv2.MetricSpec{
		Type: autoscalingv2.ResourceMetricSourceType,
		Resource: &autoscalingv2.ResourceMetricSource{Name: corev1.ResourceCPU,
			Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: &pct}},
	}
}

func copyInt32(p *int32) *int32 {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}
