// Package coordination holds the registry descriptor for
// coordination.k8s.io/v1 leases, used for leader election and node
// heartbeats.
//
// Contract: Resources returns the descriptor; leases have no defaults and
// no status, and validation follows upstream's ValidateLeaseSpec.
package coordination

import (
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"skiff.dev/skiff/internal/registry"
	"skiff.dev/skiff/internal/registry/printing"
)

// Resources returns the coordination.k8s.io/v1 resources.
func Resources() []*registry.Resource {
	return []*registry.Resource{{
		GroupVersion: coordinationv1.SchemeGroupVersion,
		Resource:     "leases", Singular: "lease", Kind: "Lease", ListKind: "LeaseList",
		Namespaced: true,
		New:        func() runtime.Object { return &coordinationv1.Lease{} },
		NewList:    func() runtime.Object { return &coordinationv1.LeaseList{} },
		Validate:   func(obj runtime.Object) field.ErrorList { return validateSpec(&obj.(*coordinationv1.Lease).Spec) },
		TableColumns: []metav1.TableColumnDefinition{
			printing.NameColumn(),
			printing.Column("Holder", "string", "HolderIdentity contains the identity of the holder of a current lease."),
			printing.AgeColumn(),
		},
		TableRow: func(obj runtime.Object) []interface{} {
			l := obj.(*coordinationv1.Lease)
			holder := ""
			if l.Spec.HolderIdentity != nil {
				holder = *l.Spec.HolderIdentity
			}
			return []interface{}{l.Name, holder, printing.Age(l.CreationTimestamp)}
		},
	}}
}

func validateSpec(s *coordinationv1.LeaseSpec) field.ErrorList {
	p := field.NewPath("spec")
	var errs field.ErrorList
	if s.LeaseDurationSeconds != nil && *s.LeaseDurationSeconds <= 0 {
		errs = append(errs, field.Invalid(p.Child("leaseDurationSeconds"), *s.LeaseDurationSeconds, "must be greater than 0"))
	}
	if s.LeaseTransitions != nil && *s.LeaseTransitions < 0 {
		errs = append(errs, field.Invalid(p.Child("leaseTransitions"), *s.LeaseTransitions, "must be greater than or equal to 0"))
	}
	if s.Strategy != nil && *s.Strategy != coordinationv1.OldestEmulationVersion {
		errs = append(errs, field.NotSupported(p.Child("strategy"), *s.Strategy, []string{string(coordinationv1.OldestEmulationVersion)}))
	}
	if s.PreferredHolder != nil && *s.PreferredHolder != "" && (s.Strategy == nil || *s.Strategy == "") {
		errs = append(errs, field.Forbidden(p.Child("preferredHolder"), "may only be specified if `strategy` is defined"))
	}
	return errs
}
