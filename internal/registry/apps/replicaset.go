package apps

import (
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"skiff.dev/skiff/internal/registry"
	"skiff.dev/skiff/internal/registry/core"
	"skiff.dev/skiff/internal/registry/printing"
)

func replicaSets() *registry.Resource {
	return &registry.Resource{
		GroupVersion: appsv1.SchemeGroupVersion,
		Resource:     "replicasets", Singular: "replicaset", Kind: "ReplicaSet", ListKind: "ReplicaSetList",
		Namespaced: true, ShortNames: []string{"rs"}, Categories: []string{"all"},
		New:     func() runtime.Object { return &appsv1.ReplicaSet{} },
		NewList: func() runtime.Object { return &appsv1.ReplicaSetList{} },
		Default: func(obj runtime.Object) {
			if rs, ok := obj.(*appsv1.ReplicaSet); ok {
				if rs.Spec.Replicas == nil {
					rs.Spec.Replicas = int32Ptr(1)
				}
				core.DefaultPodTemplateSpec(&rs.Spec.Template)
			}
		},
		PrepareForCreate: func(obj runtime.Object) {
			if rs, ok := obj.(*appsv1.ReplicaSet); ok {
				rs.Status = appsv1.ReplicaSetStatus{}
			}
		},
		PrepareForUpdate: func(obj, old runtime.Object) {
			n, ok1 := obj.(*appsv1.ReplicaSet)
			o, ok2 := old.(*appsv1.ReplicaSet)
			if ok1 && ok2 {
				n.Status = o.Status
			}
		},
		PrepareForStatusUpdate: func(obj, old runtime.Object) {
			n, ok1 := obj.(*appsv1.ReplicaSet)
			o, ok2 := old.(*appsv1.ReplicaSet)
			if ok1 && ok2 {
				n.Spec = o.Spec
			}
		},
		Validate: func(obj runtime.Object) field.ErrorList { return validateReplicaSet(obj.(*appsv1.ReplicaSet)) },
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			return apimachineryvalidation.ValidateImmutableField(obj.(*appsv1.ReplicaSet).Spec.Selector, old.(*appsv1.ReplicaSet).Spec.Selector, field.NewPath("spec", "selector"))
		},
		ValidateStatusUpdate: func(obj, _ runtime.Object) field.ErrorList {
			return validateReplicaSetStatus(&obj.(*appsv1.ReplicaSet).Status)
		},
		Subresources: []string{"status", "scale"},
		Scale: &registry.ScaleInfo{
			Get: func(obj runtime.Object) (int32, int32, string) {
				rs := obj.(*appsv1.ReplicaSet)
				return replicas(rs.Spec.Replicas), rs.Status.Replicas, selectorString(rs.Spec.Selector)
			},
			SetReplicas: func(obj runtime.Object, n int32) { obj.(*appsv1.ReplicaSet).Spec.Replicas = &n },
		},
		TableColumns: append(append([]metav1.TableColumnDefinition{
			printing.NameColumn(),
			printing.Column("Desired", "integer", "Replicas is the number of desired pods."),
			printing.Column("Current", "integer", "Replicas is the most recently observed number of replicas."),
			printing.Column("Ready", "integer", "The number of ready replicas for this replica set."),
			printing.AgeColumn(),
		}, printing.ContainerColumns()...), printing.Wide("Selector", "string", "Label selector for pods.")),
		TableRow: func(obj runtime.Object) []interface{} {
			rs := obj.(*appsv1.ReplicaSet)
			names, images := printing.ContainerCells(rs.Spec.Template.Spec.Containers)
			return []interface{}{rs.Name, int64(replicas(rs.Spec.Replicas)), int64(rs.Status.Replicas), int64(rs.Status.ReadyReplicas),
				printing.Age(rs.CreationTimestamp), names, images, metav1.FormatLabelSelector(rs.Spec.Selector)}
		},
		SelectableFields: func(obj runtime.Object) fields.Set {
			return fields.Set{"status.replicas": strconv.Itoa(int(obj.(*appsv1.ReplicaSet).Status.Replicas))}
		},
	}
}

func validateReplicaSet(rs *appsv1.ReplicaSet) field.ErrorList {
	p := field.NewPath("spec")
	var errs field.ErrorList
	if rs.Spec.Replicas != nil {
		errs = append(errs, nonNegative(int64(*rs.Spec.Replicas), p.Child("replicas"))...)
	}
	errs = append(errs, nonNegative(int64(rs.Spec.MinReadySeconds), p.Child("minReadySeconds"))...)
	errs = append(errs, validateSelector(rs.Spec.Selector, rs.Spec.Template.Labels, "deployment", p)...)
	errs = append(errs, validateWorkloadTemplate(&rs.Spec.Template, "ReplicaSet", p.Child("template"))...)
	return errs
}

func validateReplicaSetStatus(s *appsv1.ReplicaSetStatus) field.ErrorList {
	p := field.NewPath("status")
	errs := nonNegativeAll(p, "replicas", s.Replicas, "fullyLabeledReplicas", s.FullyLabeledReplicas,
		"readyReplicas", s.ReadyReplicas, "availableReplicas", s.AvailableReplicas)
	errs = append(errs, nonNegative(s.ObservedGeneration, p.Child("observedGeneration"))...)
	msg := "cannot be greater than status.replicas"
	if s.FullyLabeledReplicas > s.Replicas {
		errs = append(errs, field.Invalid(p.Child("fullyLabeledReplicas"), s.FullyLabeledReplicas, msg))
	}
	if s.ReadyReplicas > s.Replicas {
		errs = append(errs, field.Invalid(p.Child("readyReplicas"), s.ReadyReplicas, msg))
	}
	if s.AvailableReplicas > s.Replicas {
		errs = append(errs, field.Invalid(p.Child("availableReplicas"), s.AvailableReplicas, msg))
	}
	if s.AvailableReplicas > s.ReadyReplicas {
		errs = append(errs, field.Invalid(p.Child("availableReplicas"), s.AvailableReplicas, "cannot be greater than readyReplicas"))
	}
	return errs
}
