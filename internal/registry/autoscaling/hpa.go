package autoscaling

import (
	"fmt"
	"strings"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	"k8s.io/apimachinery/pkg/api/validation/path"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"skiff.dev/skiff/internal/registry"
	"skiff.dev/skiff/internal/registry/printing"
)

// Upstream's limits on scaling behavior.
const (
	maxPeriodSeconds              = 1800
	maxStabilizationWindowSeconds = 3600
	defaultCPUUtilization         = 80
)

// Resources returns horizontalpodautoscalers in autoscaling/v2 and v1.
func Resources() []*registry.Resource {
	v2 := base(autoscalingv2.SchemeGroupVersion)
	v2.New = func() runtime.Object { return &autoscalingv2.HorizontalPodAutoscaler{} }
	v2.NewList = func() runtime.Object { return &autoscalingv2.HorizontalPodAutoscalerList{} }
	v2.Default = func(obj runtime.Object) {
		if h, ok := obj.(*autoscalingv2.HorizontalPodAutoscaler); ok {
			DefaultV2(h)
		}
	}
	v2.Validate = func(obj runtime.Object) field.ErrorList {
		return validateSpec(&obj.(*autoscalingv2.HorizontalPodAutoscaler).Spec)
	}
	v2.TableRow = func(obj runtime.Object) []interface{} { return row(obj.(*autoscalingv2.HorizontalPodAutoscaler)) }
	v2.PrepareForCreate = func(obj runtime.Object) {
		if h, ok := obj.(*autoscalingv2.HorizontalPodAutoscaler); ok {
			h.Status = autoscalingv2.HorizontalPodAutoscalerStatus{}
		}
	}
	v2.PrepareForUpdate = func(obj, old runtime.Object) {
		n, ok1 := obj.(*autoscalingv2.HorizontalPodAutoscaler)
		o, ok2 := old.(*autoscalingv2.HorizontalPodAutoscaler)
		if ok1 && ok2 {
			n.Status = o.Status
		}
	}
	v2.PrepareForStatusUpdate = func(obj, old runtime.Object) {
		n, ok1 := obj.(*autoscalingv2.HorizontalPodAutoscaler)
		o, ok2 := old.(*autoscalingv2.HorizontalPodAutoscaler)
		if ok1 && ok2 {
			n.Spec = o.Spec
		}
	}

	v1 := base(autoscalingv1.SchemeGroupVersion)
	v1.New = func() runtime.Object { return &autoscalingv1.HorizontalPodAutoscaler{} }
	v1.NewList = func() runtime.Object { return &autoscalingv1.HorizontalPodAutoscalerList{} }
	v1.StorageResource = autoscalingv2.SchemeGroupVersion.WithResource("horizontalpodautoscalers")
	v1.ToStorage = func(obj runtime.Object) (runtime.Object, error) {
		h, ok := obj.(*autoscalingv1.HorizontalPodAutoscaler)
		if !ok {
			return nil, fmt.Errorf("converting to autoscaling/v2: unexpected type %T", obj)
		}
		return V1ToV2(h)
	}
	v1.FromStorage = func(obj runtime.Object) (runtime.Object, error) {
		h, ok := obj.(*autoscalingv2.HorizontalPodAutoscaler)
		if !ok {
			return nil, fmt.Errorf("converting from autoscaling/v2: unexpected type %T", obj)
		}
		return V2ToV1(h)
	}
	v1.Default = func(obj runtime.Object) {
		if h, ok := obj.(*autoscalingv1.HorizontalPodAutoscaler); ok && h.Spec.MinReplicas == nil {
			one := int32(1)
			h.Spec.MinReplicas = &one
		}
	}
	// v1 objects are validated as their v2 form, as upstream validates the
	// internal version both convert to.
	v1.Validate = func(obj runtime.Object) field.ErrorList {
		h, err := V1ToV2(obj.(*autoscalingv1.HorizontalPodAutoscaler))
		if err != nil {
			return field.ErrorList{field.Invalid(field.NewPath("metadata", "annotations"), "", err.Error())}
		}
		return validateSpec(&h.Spec)
	}
	v1.TableRow = func(obj runtime.Object) []interface{} {
		h, err := V1ToV2(obj.(*autoscalingv1.HorizontalPodAutoscaler))
		if err != nil {
			h = &autoscalingv2.HorizontalPodAutoscaler{}
		}
		return row(h)
	}
	return []*registry.Resource{v2, v1}
}

func base(gv schema.GroupVersion) *registry.Resource {
	return &registry.Resource{
		GroupVersion: gv,
		Resource:     "horizontalpodautoscalers", Singular: "horizontalpodautoscaler", Kind: "HorizontalPodAutoscaler",
		ListKind: "HorizontalPodAutoscalerList", Namespaced: true, ShortNames: []string{"hpa"}, Categories: []string{"all"},
		Subresources: []string{"status"},
		TableColumns: []metav1.TableColumnDefinition{
			printing.NameColumn(),
			printing.Column("Reference", "string", "The target resource to scale."),
			printing.Column("Targets", "string", "The metrics and their current/target values."),
			printing.Column("MinPods", "string", "The lower limit for the number of replicas."),
			printing.Column("MaxPods", "string", "The upper limit for the number of replicas."),
			printing.Column("Replicas", "string", "Current number of replicas of pods managed by this autoscaler."),
			printing.AgeColumn(),
		},
	}
}

// DefaultV2 applies upstream's autoscaling/v2 defaults: minReplicas 1, a
// cpu 80% utilization metric when none is given, and the scale-up and
// scale-down rules filled in when behavior is set.
func DefaultV2(h *autoscalingv2.HorizontalPodAutoscaler) {
	if h.Spec.MinReplicas == nil {
		one := int32(1)
		h.Spec.MinReplicas = &one
	}
	if len(h.Spec.Metrics) == 0 {
		h.Spec.Metrics = []autoscalingv2.MetricSpec{cpuMetric(defaultCPUUtilization)}
	}
	if b := h.Spec.Behavior; b != nil {
		maxPolicy := autoscalingv2.MaxChangePolicySelect
		b.ScaleUp = fillRules(b.ScaleUp, 0, maxPolicy, []autoscalingv2.HPAScalingPolicy{
			{Type: autoscalingv2.PodsScalingPolicy, Value: 4, PeriodSeconds: 15},
			{Type: autoscalingv2.PercentScalingPolicy, Value: 100, PeriodSeconds: 15}})
		b.ScaleDown = fillRules(b.ScaleDown, 300, maxPolicy, []autoscalingv2.HPAScalingPolicy{
			{Type: autoscalingv2.PercentScalingPolicy, Value: 100, PeriodSeconds: 15}})
	}
}

func fillRules(r *autoscalingv2.HPAScalingRules, window int32, sel autoscalingv2.ScalingPolicySelect, policies []autoscalingv2.HPAScalingPolicy) *autoscalingv2.HPAScalingRules {
	if r == nil {
		r = &autoscalingv2.HPAScalingRules{}
	}
	if r.StabilizationWindowSeconds == nil {
		r.StabilizationWindowSeconds = &window
	}
	if r.SelectPolicy == nil {
		r.SelectPolicy = &sel
	}
	if r.Policies == nil {
		r.Policies = policies
	}
	return r
}

func validateSpec(s *autoscalingv2.HorizontalPodAutoscalerSpec) field.ErrorList {
	p := field.NewPath("spec")
	var errs field.ErrorList
	rp := p.Child("scaleTargetRef")
	if s.ScaleTargetRef.Kind == "" {
		errs = append(errs, field.Required(rp.Child("kind"), ""))
	} else {
		for _, msg := range path.IsValidPathSegmentName(s.ScaleTargetRef.Kind) {
			errs = append(errs, field.Invalid(rp.Child("kind"), s.ScaleTargetRef.Kind, msg))
		}
	}
	if s.ScaleTargetRef.Name == "" {
		errs = append(errs, field.Required(rp.Child("name"), ""))
	} else {
		for _, msg := range path.IsValidPathSegmentName(s.ScaleTargetRef.Name) {
			errs = append(errs, field.Invalid(rp.Child("name"), s.ScaleTargetRef.Name, msg))
		}
	}
	if s.MinReplicas != nil && *s.MinReplicas < 1 {
		errs = append(errs, field.Invalid(p.Child("minReplicas"), *s.MinReplicas, "must be greater than or equal to 1"))
	}
	if s.MaxReplicas < 1 {
		errs = append(errs, field.Invalid(p.Child("maxReplicas"), s.MaxReplicas, "must be greater than 0"))
	}
	if s.MinReplicas != nil && s.MaxReplicas < *s.MinReplicas {
		errs = append(errs, field.Invalid(p.Child("maxReplicas"), s.MaxReplicas, "must be greater than or equal to `minReplicas`"))
	}
	for i, m := range s.Metrics {
		errs = append(errs, validateMetric(m, p.Child("metrics").Index(i))...)
	}
	if b := s.Behavior; b != nil {
		bp := p.Child("behavior")
		errs = append(errs, validateRules(b.ScaleUp, bp.Child("scaleUp"))...)
		errs = append(errs, validateRules(b.ScaleDown, bp.Child("scaleDown"))...)
	}
	return errs
}

func validateMetric(m autoscalingv2.MetricSpec, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	var target *autoscalingv2.MetricTarget
	set := map[autoscalingv2.MetricSourceType]bool{
		autoscalingv2.ObjectMetricSourceType:            m.Object != nil,
		autoscalingv2.PodsMetricSourceType:              m.Pods != nil,
		autoscalingv2.ResourceMetricSourceType:          m.Resource != nil,
		autoscalingv2.ContainerResourceMetricSourceType: m.ContainerResource != nil,
		autoscalingv2.ExternalMetricSourceType:          m.External != nil,
	}
	populated, ok := set[m.Type]
	switch {
	case m.Type == "":
		return append(errs, field.Required(p.Child("type"), "must specify a metric source type"))
	case !ok:
		return append(errs, field.NotSupported(p.Child("type"), m.Type, []string{
			string(autoscalingv2.ContainerResourceMetricSourceType), string(autoscalingv2.ExternalMetricSourceType),
			string(autoscalingv2.ObjectMetricSourceType), string(autoscalingv2.PodsMetricSourceType), string(autoscalingv2.ResourceMetricSourceType)}))
	case !populated:
		return append(errs, field.Required(p.Child(lowerFirst(string(m.Type))), "must populate information for the given metric source"))
	}
	for _, t := range []autoscalingv2.MetricSourceType{autoscalingv2.ObjectMetricSourceType, autoscalingv2.PodsMetricSourceType,
		autoscalingv2.ResourceMetricSourceType, autoscalingv2.ContainerResourceMetricSourceType, autoscalingv2.ExternalMetricSourceType} {
		if set[t] && t != m.Type {
			errs = append(errs, field.Forbidden(p.Child(lowerFirst(string(t))), "must populate the given metric source only"))
		}
	}
	sp := p.Child(lowerFirst(string(m.Type)))
	switch m.Type {
	case autoscalingv2.ResourceMetricSourceType:
		if m.Resource.Name == "" {
			errs = append(errs, field.Required(sp.Child("name"), "must specify a resource name"))
		}
		target = &m.Resource.Target
	case autoscalingv2.ContainerResourceMetricSourceType:
		if m.ContainerResource.Name == "" {
			errs = append(errs, field.Required(sp.Child("name"), "must specify a resource name"))
		}
		if m.ContainerResource.Container == "" {
			errs = append(errs, field.Required(sp.Child("container"), "must specify a container"))
		}
		target = &m.ContainerResource.Target
	case autoscalingv2.PodsMetricSourceType:
		target = &m.Pods.Target
	case autoscalingv2.ObjectMetricSourceType:
		target = &m.Object.Target
	case autoscalingv2.ExternalMetricSourceType:
		target = &m.External.Target
	}
	tp := sp.Child("target")
	switch target.Type {
	case autoscalingv2.UtilizationMetricType:
		if target.AverageUtilization == nil {
			errs = append(errs, field.Required(tp.Child("averageUtilization"), "must set averageUtilization when type is Utilization"))
		} else if *target.AverageUtilization < 1 {
			errs = append(errs, field.Invalid(tp.Child("averageUtilization"), *target.AverageUtilization, "must be greater than 0"))
		}
	case autoscalingv2.ValueMetricType:
		if target.Value == nil {
			errs = append(errs, field.Required(tp.Child("value"), "must set value when type is Value"))
		} else if target.Value.Sign() != 1 {
			errs = append(errs, field.Invalid(tp.Child("value"), target.Value.String(), "must be positive"))
		}
	case autoscalingv2.AverageValueMetricType:
		if target.AverageValue == nil {
			errs = append(errs, field.Required(tp.Child("averageValue"), "must set averageValue when type is AverageValue"))
		} else if target.AverageValue.Sign() != 1 {
			errs = append(errs, field.Invalid(tp.Child("averageValue"), target.AverageValue.String(), "must be positive"))
		}
	case "":
		errs = append(errs, field.Required(tp.Child("type"), "must specify a metric target type"))
	default:
		errs = append(errs, field.NotSupported(tp.Child("type"), target.Type, []string{string(autoscalingv2.UtilizationMetricType),
			string(autoscalingv2.ValueMetricType), string(autoscalingv2.AverageValueMetricType)}))
	}
	return errs
}

func validateRules(r *autoscalingv2.HPAScalingRules, p *field.Path) field.ErrorList {
	if r == nil {
		return nil
	}
	var errs field.ErrorList
	if w := r.StabilizationWindowSeconds; w != nil && (*w < 0 || *w > maxStabilizationWindowSeconds) {
		errs = append(errs, field.Invalid(p.Child("stabilizationWindowSeconds"), *w,
			fmt.Sprintf("must be greater than or equal to zero and less than or equal to %d", maxStabilizationWindowSeconds)))
	}
	if s := r.SelectPolicy; s != nil {
		switch *s {
		case autoscalingv2.MaxChangePolicySelect, autoscalingv2.MinChangePolicySelect, autoscalingv2.DisabledPolicySelect:
		default:
			errs = append(errs, field.NotSupported(p.Child("selectPolicy"), *s, []string{string(autoscalingv2.MaxChangePolicySelect),
				string(autoscalingv2.MinChangePolicySelect), string(autoscalingv2.DisabledPolicySelect)}))
		}
	}
	for i, pol := range r.Policies {
		pp := p.Child("policies").Index(i)
		if pol.Type != autoscalingv2.PodsScalingPolicy && pol.Type != autoscalingv2.PercentScalingPolicy {
			errs = append(errs, field.NotSupported(pp.Child("type"), pol.Type, []string{string(autoscalingv2.PodsScalingPolicy), string(autoscalingv2.PercentScalingPolicy)}))
		}
		if pol.Value <= 0 {
			errs = append(errs, field.Invalid(pp.Child("value"), pol.Value, "must be greater than zero"))
		}
		if pol.PeriodSeconds <= 0 || pol.PeriodSeconds > maxPeriodSeconds {
			errs = append(errs, field.Invalid(pp.Child("periodSeconds"), pol.PeriodSeconds,
				fmt.Sprintf("must be greater than zero and less than or equal to %d", maxPeriodSeconds)))
		}
	}
	if r.Policies != nil && len(r.Policies) == 0 {
		errs = append(errs, field.Required(p.Child("policies"), "must specify at least one Policy"))
	}
	return errs
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}

func row(h *autoscalingv2.HorizontalPodAutoscaler) []interface{} {
	minPods := "<unset>"
	if h.Spec.MinReplicas != nil {
		minPods = fmt.Sprint(*h.Spec.MinReplicas)
	}
	ref := h.Spec.ScaleTargetRef.Kind + "/" + h.Spec.ScaleTargetRef.Name
	return []interface{}{h.Name, ref, formatMetrics(h.Spec.Metrics, h.Status.CurrentMetrics), minPods,
		int64(h.Spec.MaxReplicas), int64(h.Status.CurrentReplicas), printing.Age(h.CreationTimestamp)}
}

// formatMetrics renders "current/target" per metric like kubectl, at most
// two and a "+ N more..." suffix.
func formatMetrics(specs []autoscalingv2.MetricSpec, statuses []autoscalingv2.MetricStatus) string {
	if len(specs) == 0 {
		return "<none>"
	}
	var list []string
	for i, s := range specs {
		var st *autoscalingv2.MetricStatus
		if i < len(statuses) {
			st = &statuses[i]
		}
		list = append(list, formatMetric(s, st))
	}
	const max = 2
	if len(list) > max {
		return strings.Join(list[:max], ", ") + fmt.Sprintf(" + %d more...", len(list)-max)
	}
	return strings.Join(list, ", ")
}

func formatMetric(s autoscalingv2.MetricSpec, st *autoscalingv2.MetricStatus) string {
	cur := "<unknown>"
	valueOrAvg := func(t autoscalingv2.MetricTarget, c *autoscalingv2.MetricValueStatus) string {
		if t.AverageValue != nil {
			if c != nil && c.AverageValue != nil {
				cur = c.AverageValue.String()
			}
			return fmt.Sprintf("%s/%s (avg)", cur, t.AverageValue.String())
		}
		if c != nil && c.Value != nil {
			cur = c.Value.String()
		}
		target := "<unset>"
		if t.Value != nil {
			target = t.Value.String()
		}
		return cur + "/" + target
	}
	resource := func(name string, t autoscalingv2.MetricTarget, c *autoscalingv2.MetricValueStatus) string {
		if t.AverageValue != nil {
			if c != nil && c.AverageValue != nil {
				cur = c.AverageValue.String()
			}
			return fmt.Sprintf("%s: %s/%s", name, cur, t.AverageValue.String())
		}
		if c != nil && c.AverageUtilization != nil {
			cur = fmt.Sprintf("%d%%", *c.AverageUtilization)
		}
		target := "<auto>"
		if t.AverageUtilization != nil {
			target = fmt.Sprintf("%d%%", *t.AverageUtilization)
		}
		return fmt.Sprintf("%s: %s/%s", name, cur, target)
	}
	switch {
	case s.Type == autoscalingv2.ExternalMetricSourceType && s.External != nil:
		var c *autoscalingv2.MetricValueStatus
		if st != nil && st.External != nil {
			c = &st.External.Current
		}
		return valueOrAvg(s.External.Target, c)
	case s.Type == autoscalingv2.ObjectMetricSourceType && s.Object != nil:
		var c *autoscalingv2.MetricValueStatus
		if st != nil && st.Object != nil {
			c = &st.Object.Current
		}
		return valueOrAvg(s.Object.Target, c)
	case s.Type == autoscalingv2.PodsMetricSourceType && s.Pods != nil:
		if st != nil && st.Pods != nil && st.Pods.Current.AverageValue != nil {
			cur = st.Pods.Current.AverageValue.String()
		}
		target := "<unset>"
		if s.Pods.Target.AverageValue != nil {
			target = s.Pods.Target.AverageValue.String()
		}
		return cur + "/" + target
	case s.Type == autoscalingv2.ResourceMetricSourceType && s.Resource != nil:
		var c *autoscalingv2.MetricValueStatus
		if st != nil && st.Resource != nil {
			c = &st.Resource.Current
		}
		return resource(string(s.Resource.Name), s.Resource.Target, c)
	case s.Type == autoscalingv2.ContainerResourceMetricSourceType && s.ContainerResource != nil:
		var c *autoscalingv2.MetricValueStatus
		if st != nil && st.ContainerResource != nil {
			c = &st.ContainerResource.Current
		}
		return resource(string(s.ContainerResource.Name), s.ContainerResource.Target, c)
	}
	return "<unknown type>"
}
