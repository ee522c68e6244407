package apps

import (
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"skiff.dev/skiff/internal/registry/core"
)

func int32Ptr(i int32) *int32 { return &i }

func nonNegative(v int64, p *field.Path) field.ErrorList {
	return apimachineryvalidation.ValidateNonnegativeField(v, p)
}

// validateSelector checks the rules every apps/v1 workload shares: a
// selector is required, must not be empty and must select the template.
func validateSelector(sel *metav1.LabelSelector, tmplLabels map[string]string, kind string, spec *field.Path) field.ErrorList {
	var errs field.ErrorList
	if sel == nil {
		return append(errs, field.Required(spec.Child("selector"), ""))
	}
	errs = append(errs, metav1validation.ValidateLabelSelector(sel, metav1validation.LabelSelectorValidationOptions{}, spec.Child("selector"))...)
	if len(sel.MatchLabels)+len(sel.MatchExpressions) == 0 {
		errs = append(errs, field.Invalid(spec.Child("selector"), sel, "empty selector is invalid for "+kind))
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err == nil && !s.Empty() && !s.Matches(labels.Set(tmplLabels)) {
		errs = append(errs, field.Invalid(spec.Child("template", "metadata", "labels"), tmplLabels, "`selector` does not match template `labels`"))
	}
	return errs
}

// validateWorkloadTemplate validates a long-running workload's pod template:
// the core rules plus restartPolicy Always and no activeDeadlineSeconds.
func validateWorkloadTemplate(t *corev1.PodTemplateSpec, kind string, p *field.Path) field.ErrorList {
	errs := core.ValidatePodTemplateSpec(t, p)
	if t.Spec.RestartPolicy != corev1.RestartPolicyAlways {
		errs = append(errs, field.NotSupported(p.Child("spec", "restartPolicy"), t.Spec.RestartPolicy, []string{string(corev1.RestartPolicyAlways)}))
	}
	if t.Spec.ActiveDeadlineSeconds != nil {
		errs = append(errs, field.Forbidden(p.Child("spec", "activeDeadlineSeconds"), "activeDeadlineSeconds in "+kind+" is not Supported"))
	}
	return errs
}

// validatePositiveIntOrPercent accepts a non-negative integer or "N%".
func validatePositiveIntOrPercent(v *intstr.IntOrString, p *field.Path) field.ErrorList {
	if v == nil {
		return nil
	}
	var errs field.ErrorList
	switch v.Type {
	case intstr.String:
		for _, msg := range validation.IsValidPercent(v.StrVal) {
			errs = append(errs, field.Invalid(p, v.StrVal, msg))
		}
	case intstr.Int:
		errs = append(errs, nonNegative(int64(v.IntVal), p)...)
	default:
		errs = append(errs, field.Invalid(p, v, "must be an integer or percentage (e.g '5%')"))
	}
	return errs
}

// intOrPercentValue returns the number (integer or percentage) and whether
// it is a percentage; malformed strings yield -1.
func intOrPercentValue(v *intstr.IntOrString) (int, bool) {
	if v == nil {
		return 0, false
	}
	if v.Type == intstr.String {
		n, err := strconv.Atoi(strings.TrimSuffix(v.StrVal, "%"))
		if err != nil || !strings.HasSuffix(v.StrVal, "%") {
			return -1, true
		}
		return n, true
	}
	return int(v.IntVal), false
}

func notMoreThan100Percent(v *intstr.IntOrString, p *field.Path) field.ErrorList {
	n, pct := intOrPercentValue(v)
	if pct && n > 100 {
		return field.ErrorList{field.Invalid(p, v.String(), "must not be greater than 100%")}
	}
	return nil
}

func isZero(v *intstr.IntOrString) bool {
	n, _ := intOrPercentValue(v)
	return n == 0
}

func selectorString(sel *metav1.LabelSelector) string {
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return ""
	}
	return s.String()
}

func ready(ready int32, desired *int32) string {
	d := int32(1)
	if desired != nil {
		d = *desired
	}
	return fmt.Sprintf("%d/%d", ready, d)
}

// nonNegativeAll checks name/value pairs (string, int32) in order.
func nonNegativeAll(p *field.Path, pairs ...interface{}) field.ErrorList {
	var errs field.ErrorList
	for i := 0; i+1 < len(pairs); i += 2 {
		errs = append(errs, nonNegative(int64(pairs[i+1].(int32)), p.Child(pairs[i].(string)))...)
	}
	return errs
}
