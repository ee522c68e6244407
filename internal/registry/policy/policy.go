// Package policy holds the registry descriptor for policy/v1
// poddisruptionbudgets.
//
// Contract: Resources returns the descriptor with pure hooks mirroring
// upstream's pkg/apis/policy/validation and the PDB strategy: status reset
// on create and preserved on main-resource updates; minAvailable and
// maxUnavailable are exclusive, integers >= 0 or percentages <= 100%.
package policy

import (
	"strconv"
	"strings"

	policyv1 "k8s.io/api/policy/v1"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"skiff.dev/skiff/internal/registry"
	"skiff.dev/skiff/internal/registry/printing"
)

// Resources returns the policy/v1 resources.
func Resources() []*registry.Resource {
	return []*registry.Resource{{
		GroupVersion: policyv1.SchemeGroupVersion,
		Resource:     "poddisruptionbudgets", Singular: "poddisruptionbudget", Kind: "PodDisruptionBudget", ListKind: "PodDisruptionBudgetList",
		Namespaced: true, ShortNames: []string{"pdb"},
		New:     func() runtime.Object { return &policyv1.PodDisruptionBudget{} },
		NewList: func() runtime.Object { return &policyv1.PodDisruptionBudgetList{} },
		PrepareForCreate: func(obj runtime.Object) {
			if p, ok := obj.(*policyv1.PodDisruptionBudget); ok {
				p.Status = policyv1.PodDisruptionBudgetStatus{}
			}
		},
		PrepareForUpdate: func(obj, old runtime.Object) {
			n, ok1 := obj.(*policyv1.PodDisruptionBudget)
			o, ok2 := old.(*policyv1.PodDisruptionBudget)
			if ok1 && ok2 {
				n.Status = o.Status
			}
		},
		PrepareForStatusUpdate: func(obj, old runtime.Object) {
			n, ok1 := obj.(*policyv1.PodDisruptionBudget)
			o, ok2 := old.(*policyv1.PodDisruptionBudget)
			if ok1 && ok2 {
				n.Spec = o.Spec
			}
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			return validateSpec(&obj.(*policyv1.PodDisruptionBudget).Spec)
		},
		ValidateStatusUpdate: func(obj, _ runtime.Object) field.ErrorList {
			s := &obj.(*policyv1.PodDisruptionBudget).Status
			p := field.NewPath("status")
			var errs field.ErrorList
			for _, f := range []struct {
				n string
				v int32
			}{{"disruptionsAllowed", s.DisruptionsAllowed}, {"currentHealthy", s.CurrentHealthy},
				{"desiredHealthy", s.DesiredHealthy}, {"expectedPods", s.ExpectedPods}} {
				errs = append(errs, apimachineryvalidation.ValidateNonnegativeField(int64(f.v), p.Child(f.n))...)
			}
			return append(errs, metav1validation.ValidateConditions(s.Conditions, p.Child("conditions"))...)
		},
		Subresources: []string{"status"},
		TableColumns: []metav1.TableColumnDefinition{
			printing.NameColumn(),
			printing.Column("Min Available", "string", "The minimum number of pods that must be available simultaneously, or a percentage."),
			printing.Column("Max Unavailable", "string", "The maximum number of pods that may be unavailable, or a percentage."),
			printing.Column("Allowed Disruptions", "integer", "Number of pod disruptions that are currently allowed."),
			printing.AgeColumn(),
		},
		TableRow: func(obj runtime.Object) []interface{} {
			p := obj.(*policyv1.PodDisruptionBudget)
			minA, maxU := "N/A", "N/A"
			if p.Spec.MinAvailable != nil {
				minA = p.Spec.MinAvailable.String()
			}
			if p.Spec.MaxUnavailable != nil {
				maxU = p.Spec.MaxUnavailable.String()
			}
			return []interface{}{p.Name, minA, maxU, int64(p.Status.DisruptionsAllowed), printing.Age(p.CreationTimestamp)}
		},
	}}
}

func validateSpec(s *policyv1.PodDisruptionBudgetSpec) field.ErrorList {
	p := field.NewPath("spec")
	var errs field.ErrorList
	if s.MinAvailable != nil && s.MaxUnavailable != nil {
		errs = append(errs, field.Invalid(p, s, "minAvailable and maxUnavailable cannot be both set"))
	}
	errs = append(errs, intOrPercent(s.MinAvailable, p.Child("minAvailable"))...)
	errs = append(errs, intOrPercent(s.MaxUnavailable, p.Child("maxUnavailable"))...)
	errs = append(errs, metav1validation.ValidateLabelSelector(s.Selector, metav1validation.LabelSelectorValidationOptions{}, p.Child("selector"))...)
	if s.UnhealthyPodEvictionPolicy != nil {
		switch *s.UnhealthyPodEvictionPolicy {
		case policyv1.IfHealthyBudget, policyv1.AlwaysAllow:
		default:
			errs = append(errs, field.NotSupported(p.Child("unhealthyPodEvictionPolicy"), *s.UnhealthyPodEvictionPolicy,
				[]string{string(policyv1.IfHealthyBudget), string(policyv1.AlwaysAllow)}))
		}
	}
	return errs
}

// intOrPercent accepts integers >= 0 and percentages up to 100%.
func intOrPercent(v *intstr.IntOrString, p *field.Path) field.ErrorList {
	if v == nil {
		return nil
	}
	if v.Type == intstr.Int {
		return apimachineryvalidation.ValidateNonnegativeField(int64(v.IntVal), p)
	}
	var errs field.ErrorList
	for _, msg := range validation.IsValidPercent(v.StrVal) {
		errs = append(errs, field.Invalid(p, v.StrVal, msg))
	}
	if n, err := strconv.Atoi(strings.TrimSuffix(v.StrVal, "%")); err == nil && n > 100 {
		errs = append(errs, field.Invalid(p, v.StrVal, "must not be greater than 100%"))
	}
	return errs
}
