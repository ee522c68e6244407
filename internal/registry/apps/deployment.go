package apps

import (
	appsv1 "k8s.io/api/apps/v1"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"skiff.dev/skiff/internal/registry"
	"skiff.dev/skiff/internal/registry/core"
	"skiff.dev/skiff/internal/registry/printing"
)

func deployments() *registry.Resource {
	return &registry.Resource{
		GroupVersion: appsv1.SchemeGroupVersion,
		Resource:     "deployments", Singular: "deployment", Kind: "Deployment", ListKind: "DeploymentList",
		Namespaced: true, ShortNames: []string{"deploy"}, Categories: []string{"all"},
		New:     func() runtime.Object { return &appsv1.Deployment{} },
		NewList: func() runtime.Object { return &appsv1.DeploymentList{} },
		Default: defaultDeployment,
		PrepareForCreate: func(obj runtime.Object) {
			if d, ok := obj.(*appsv1.Deployment); ok {
				d.Status = appsv1.DeploymentStatus{}
			}
		},
		PrepareForUpdate: func(obj, old runtime.Object) {
			d, ok1 := obj.(*appsv1.Deployment)
			o, ok2 := old.(*appsv1.Deployment)
			if ok1 && ok2 {
				d.Status = o.Status
			}
		},
		// As upstream's deployment status strategy: the spec and labels are
		// kept, other metadata (the controller's revision annotation) may
		// change through the status subresource.
		PrepareForStatusUpdate: func(obj, old runtime.Object) {
			d, ok1 := obj.(*appsv1.Deployment)
			o, ok2 := old.(*appsv1.Deployment)
			if ok1 && ok2 {
				d.Spec = o.Spec
				d.Labels = o.Labels
			}
		},
		Validate:       func(obj runtime.Object) field.ErrorList { return validateDeployment(obj.(*appsv1.Deployment)) },
		ValidateUpdate: validateDeploymentUpdate,
		ValidateStatusUpdate: func(obj, _ runtime.Object) field.ErrorList {
			return validateDeploymentStatus(&obj.(*appsv1.Deployment).Status)
		},
		Subresources: []string{"status", "scale"},
		Scale: &registry.ScaleInfo{
			Get: func(obj runtime.Object) (int32, int32, string) {
				d := obj.(*appsv1.Deployment)
				return replicas(d.Spec.Replicas), d.Status.Replicas, selectorString(d.Spec.Selector)
			},
			SetReplicas: func(obj runtime.Object, n int32) { obj.(*appsv1.Deployment).Spec.Replicas = &n },
		},
		TableColumns: append(append([]metav1.TableColumnDefinition{
			printing.NameColumn(),
			printing.Column("Ready", "string", "Number of the pod with ready state"),
			printing.Column("Up-to-date", "string", "Total number of non-terminated pods targeted by this deployment that have the desired template spec."),
			printing.Column("Available", "string", "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."),
			printing.AgeColumn(),
		}, printing.ContainerColumns()...), printing.Wide("Selector", "string", "Label selector for pods.")),
		TableRow: func(obj runtime.Object) []interface{} {
			d := obj.(*appsv1.Deployment)
			names, images := printing.ContainerCells(d.Spec.Template.Spec.Containers)
			return []interface{}{d.Name, ready(d.Status.ReadyReplicas, d.Spec.Replicas), int64(d.Status.UpdatedReplicas),
				int64(d.Status.AvailableReplicas), printing.Age(d.CreationTimestamp), names, images, metav1.FormatLabelSelector(d.Spec.Selector)}
		},
	}
}

func replicas(r *int32) int32 {
	if r == nil {
		return 1
	}
	return *r
}

func defaultDeployment(obj runtime.Object) {
	d, ok := obj.(*appsv1.Deployment)
	if !ok {
		return
	}
	if d.Spec.Replicas == nil {
		d.Spec.Replicas = int32Ptr(1)
	}
	s := &d.Spec.Strategy
	if s.Type == "" {
		s.Type = appsv1.RollingUpdateDeploymentStrategyType
	}
	if s.Type == appsv1.RollingUpdateDeploymentStrategyType {
		if s.RollingUpdate == nil {
			s.RollingUpdate = &appsv1.RollingUpdateDeployment{}
		}
		if s.RollingUpdate.MaxUnavailable == nil {
			v := intstr.FromString("25%")
			s.RollingUpdate.MaxUnavailable = &v
		}
		if s.RollingUpdate.MaxSurge == nil {
			v := intstr.FromString("25%")
			s.RollingUpdate.MaxSurge = &v
		}
	}
	if d.Spec.RevisionHistoryLimit == nil {
		d.Spec.RevisionHistoryLimit = int32Ptr(10)
	}
	if d.Spec.ProgressDeadlineSeconds == nil {
		d.Spec.ProgressDeadlineSeconds = int32Ptr(600)
	}
	core.DefaultPodTemplateSpec(&d.Spec.Template)
}

func validateDeployment(d *appsv1.Deployment) field.ErrorList {
	spec := &d.Spec
	p := field.NewPath("spec")
	var errs field.ErrorList
	if spec.Replicas != nil {
		errs = append(errs, nonNegative(int64(*spec.Replicas), p.Child("replicas"))...)
	}
	errs = append(errs, validateSelector(spec.Selector, spec.Template.Labels, "deployment", p)...)
	errs = append(errs, validateWorkloadTemplate(&spec.Template, "ReplicaSet", p.Child("template"))...)
	errs = append(errs, validateDeploymentStrategy(&spec.Strategy, p.Child("strategy"))...)
	errs = append(errs, nonNegative(int64(spec.MinReadySeconds), p.Child("minReadySeconds"))...)
	if spec.RevisionHistoryLimit != nil {
		errs = append(errs, nonNegative(int64(*spec.RevisionHistoryLimit), p.Child("revisionHistoryLimit"))...)
	}
	if spec.ProgressDeadlineSeconds != nil {
		errs = append(errs, nonNegative(int64(*spec.ProgressDeadlineSeconds), p.Child("progressDeadlineSeconds"))...)
		if *spec.ProgressDeadlineSeconds <= spec.MinReadySeconds {
			errs = append(errs, field.Invalid(p.Child("progressDeadlineSeconds"), *spec.ProgressDeadlineSeconds, "must be greater than minReadySeconds"))
		}
	}
	return errs
}

func validateDeploymentStrategy(s *appsv1.DeploymentStrategy, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch s.Type {
	case appsv1.RecreateDeploymentStrategyType:
		if s.RollingUpdate != nil {
			errs = append(errs, field.Forbidden(p.Child("rollingUpdate"), "may not be specified when strategy `type` is 'Recreate'"))
		}
	case appsv1.RollingUpdateDeploymentStrategyType:
		if s.RollingUpdate == nil {
			errs = append(errs, field.Required(p.Child("rollingUpdate"), "this should be defaulted and never be nil"))
			break
		}
		ru, rp := s.RollingUpdate, p.Child("rollingUpdate")
		errs = append(errs, validatePositiveIntOrPercent(ru.MaxUnavailable, rp.Child("maxUnavailable"))...)
		errs = append(errs, validatePositiveIntOrPercent(ru.MaxSurge, rp.Child("maxSurge"))...)
		if isZero(ru.MaxUnavailable) && isZero(ru.MaxSurge) {
			errs = append(errs, field.Invalid(rp.Child("maxUnavailable"), ru.MaxUnavailable.String(), "may not be 0 when `maxSurge` is 0"))
		}
		errs = append(errs, notMoreThan100Percent(ru.MaxUnavailable, rp.Child("maxUnavailable"))...)
	default:
		errs = append(errs, field.NotSupported(p.Child("type"), s.Type, []string{string(appsv1.RecreateDeploymentStrategyType), string(appsv1.RollingUpdateDeploymentStrategyType)}))
	}
	return errs
}

func validateDeploymentUpdate(obj, old runtime.Object) field.ErrorList {
	d, o := obj.(*appsv1.Deployment), old.(*appsv1.Deployment)
	return apimachineryvalidation.ValidateImmutableField(d.Spec.Selector, o.Spec.Selector, field.NewPath("spec", "selector"))
}

func validateDeploymentStatus(s *appsv1.DeploymentStatus) field.ErrorList {
	p := field.NewPath("status")
	var errs field.ErrorList
	errs = append(errs, nonNegative(s.ObservedGeneration, p.Child("observedGeneration"))...)
	errs = append(errs, nonNegativeAll(p, "replicas", s.Replicas, "updatedReplicas", s.UpdatedReplicas,
		"readyReplicas", s.ReadyReplicas, "availableReplicas", s.AvailableReplicas, "unavailableReplicas", s.UnavailableReplicas)...)
	if s.CollisionCount != nil {
		errs = append(errs, nonNegative(int64(*s.CollisionCount), p.Child("collisionCount"))...)
	}
	msg := "cannot be greater than status.replicas"
	if s.UpdatedReplicas > s.Replicas {
		errs = append(errs, field.Invalid(p.Child("updatedReplicas"), s.UpdatedReplicas, msg))
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
