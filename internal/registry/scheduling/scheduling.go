// Package scheduling holds the registry descriptor for scheduling.k8s.io/v1
// priorityclasses (cluster-scoped).
//
// Contract: Resources returns the descriptor with upstream's defaulting
// (preemptionPolicy PreemptLowerPriority) and validation: user classes may
// not exceed HighestUserDefinablePriority, the "system-" prefix is reserved
// for the two built-in classes, and value and preemptionPolicy are immutable.
package scheduling

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"skiff.dev/skiff/internal/registry"
	"skiff.dev/skiff/internal/registry/printing"
)

const (
	// HighestUserDefinablePriority is the largest value a user class may have.
	HighestUserDefinablePriority = int32(1000000000)
	// SystemCriticalPriority is the base of the built-in system classes.
	SystemCriticalPriority = 2 * HighestUserDefinablePriority
)

// systemClasses are the built-in classes the server bootstraps.
var systemClasses = map[string]int32{
	"system-node-critical":    SystemCriticalPriority + 1000,
	"system-cluster-critical": SystemCriticalPriority,
}

// Resources returns the scheduling.k8s.io/v1 resources.
func Resources() []*registry.Resource {
	return []*registry.Resource{{
		GroupVersion: schedulingv1.SchemeGroupVersion,
		Resource:     "priorityclasses", Singular: "priorityclass", Kind: "PriorityClass", ListKind: "PriorityClassList",
		ShortNames: []string{"pc"},
		New:        func() runtime.Object { return &schedulingv1.PriorityClass{} },
		NewList:    func() runtime.Object { return &schedulingv1.PriorityClassList{} },
		Default: func(obj runtime.Object) {
			if pc, ok := obj.(*schedulingv1.PriorityClass); ok && pc.PreemptionPolicy == nil {
				p := corev1.PreemptLowerPriority
				pc.PreemptionPolicy = &p
			}
		},
		Validate: func(obj runtime.Object) field.ErrorList { return validate(obj.(*schedulingv1.PriorityClass)) },
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			n, o := obj.(*schedulingv1.PriorityClass), old.(*schedulingv1.PriorityClass)
			var errs field.ErrorList
			if n.Value != o.Value {
				errs = append(errs, field.Forbidden(field.NewPath("value"), "may not be changed in an update."))
			}
			return append(errs, apimachineryvalidation.ValidateImmutableField(n.PreemptionPolicy, o.PreemptionPolicy, field.NewPath("preemptionPolicy"))...)
		},
		TableColumns: []metav1.TableColumnDefinition{
			printing.NameColumn(),
			printing.Column("Value", "integer", "The value of this priority class."),
			printing.Column("Global-Default", "boolean", "globalDefault specifies whether this PriorityClass should be considered as the default priority."),
			printing.AgeColumn(),
			printing.Column("PreemptionPolicy", "string", "PreemptionPolicy is the Policy for preempting pods with lower priority."),
		},
		TableRow: func(obj runtime.Object) []interface{} {
			pc := obj.(*schedulingv1.PriorityClass)
			policy := ""
			if pc.PreemptionPolicy != nil {
				policy = string(*pc.PreemptionPolicy)
			}
			return []interface{}{pc.Name, int64(pc.Value), pc.GlobalDefault, printing.Age(pc.CreationTimestamp), policy}
		},
	}}
}

func validate(pc *schedulingv1.PriorityClass) field.ErrorList {
	var errs field.ErrorList
	if strings.HasPrefix(pc.Name, "system-") {
		if v, ok := systemClasses[pc.Name]; !ok {
			errs = append(errs, field.Forbidden(field.NewPath("metadata", "name"), "priority class names with 'system-' prefix are reserved for system use only"))
		} else if pc.Value != v {
			errs = append(errs, field.Forbidden(field.NewPath("value"), fmt.Sprintf("value of %s must be %d", pc.Name, v)))
		}
	} else if pc.Value > HighestUserDefinablePriority {
		errs = append(errs, field.Forbidden(field.NewPath("value"), fmt.Sprintf("maximum allowed value of a user defined priority is %v", HighestUserDefinablePriority)))
	}
	if pc.PreemptionPolicy != nil {
		switch *pc.PreemptionPolicy {
		case corev1.PreemptLowerPriority, corev1.PreemptNever:
		default:
			errs = append(errs, field.NotSupported(field.NewPath("preemptionPolicy"), *pc.PreemptionPolicy,
				[]string{string(corev1.PreemptLowerPriority), string(corev1.PreemptNever)}))
		}
	}
	return errs
}
