package apps

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"skiff.dev/skiff/internal/registry"
	"skiff.dev/skiff/internal/registry/core"
	"skiff.dev/skiff/internal/registry/printing"
)

const statefulSetUpdateForbidden = "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"

func statefulSets() *registry.Resource {
	return &registry.Resource{
		GroupVersion: appsv1.SchemeGroupVersion,
		Resource:     "statefulsets", Singular: "statefulset", Kind: "StatefulSet", ListKind: "StatefulSetList",
		Namespaced: true, ShortNames: []string{"sts"}, Categories: []string{"all"},
		New:     func() runtime.Object { return &appsv1.StatefulSet{} },
		NewList: func() runtime.Object { return &appsv1.StatefulSetList{} },
		Default: defaultStatefulSet,
		PrepareForCreate: func(obj runtime.Object) {
			if s, ok := obj.(*appsv1.StatefulSet); ok {
				s.Status = appsv1.StatefulSetStatus{}
			}
		},
		PrepareForUpdate: func(obj, old runtime.Object) {
			n, ok1 := obj.(*appsv1.StatefulSet)
			o, ok2 := old.(*appsv1.StatefulSet)
			if ok1 && ok2 {
				n.Status = o.Status
			}
		},
		PrepareForStatusUpdate: func(obj, old runtime.Object) {
			n, ok1 := obj.(*appsv1.StatefulSet)
			o, ok2 := old.(*appsv1.StatefulSet)
			if ok1 && ok2 {
				n.Spec = o.Spec
			}
		},
		Validate:       func(obj runtime.Object) field.ErrorList { return validateStatefulSet(obj.(*appsv1.StatefulSet)) },
		ValidateUpdate: validateStatefulSetUpdate,
		ValidateStatusUpdate: func(obj, _ runtime.Object) field.ErrorList {
			s := &obj.(*appsv1.StatefulSet).Status
			p := field.NewPath("status")
			errs := nonNegativeAll(p, "replicas", s.Replicas, "readyReplicas", s.ReadyReplicas, "currentReplicas", s.CurrentReplicas,
				"updatedReplicas", s.UpdatedReplicas, "availableReplicas", s.AvailableReplicas)
			errs = append(errs, nonNegative(s.ObservedGeneration, p.Child("observedGeneration"))...)
			if s.ReadyReplicas > s.Replicas {
				errs = append(errs, field.Invalid(p.Child("readyReplicas"), s.ReadyReplicas, "cannot be greater than status.replicas"))
			}
			return errs
		},
		Subresources: []string{"status", "scale"},
		Scale: &registry.ScaleInfo{
			Get: func(obj runtime.Object) (int32, int32, string) {
				s := obj.(*appsv1.StatefulSet)
				return replicas(s.Spec.Replicas), s.Status.Replicas, selectorString(s.Spec.Selector)
			},
			SetReplicas: func(obj runtime.Object, n int32) { obj.(*appsv1.StatefulSet).Spec.Replicas = &n },
		},
		TableColumns: append([]metav1.TableColumnDefinition{
			printing.NameColumn(),
			printing.Column("Ready", "string", "Number of the pod with ready state"),
			printing.AgeColumn(),
		}, printing.ContainerColumns()...),
		TableRow: func(obj runtime.Object) []interface{} {
			s := obj.(*appsv1.StatefulSet)
			names, images := printing.ContainerCells(s.Spec.Template.Spec.Containers)
			return []interface{}{s.Name, ready(s.Status.ReadyReplicas, s.Spec.Replicas), printing.Age(s.CreationTimestamp), names, images}
		},
	}
}

func defaultStatefulSet(obj runtime.Object) {
	s, ok := obj.(*appsv1.StatefulSet)
	if !ok {
		return
	}
	if s.Spec.PodManagementPolicy == "" {
		s.Spec.PodManagementPolicy = appsv1.OrderedReadyPodManagement
	}
	us := &s.Spec.UpdateStrategy
	if us.Type == "" {
		us.Type = appsv1.RollingUpdateStatefulSetStrategyType
	}
	if us.Type == appsv1.RollingUpdateStatefulSetStrategyType {
		if us.RollingUpdate == nil {
			us.RollingUpdate = &appsv1.RollingUpdateStatefulSetStrategy{}
		}
		if us.RollingUpdate.Partition == nil {
			us.RollingUpdate.Partition = int32Ptr(0)
		}
	}
	if s.Spec.PersistentVolumeClaimRetentionPolicy == nil {
		s.Spec.PersistentVolumeClaimRetentionPolicy = &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{}
	}
	rp := s.Spec.PersistentVolumeClaimRetentionPolicy
	if rp.WhenDeleted == "" {
		rp.WhenDeleted = appsv1.RetainPersistentVolumeClaimRetentionPolicyType
	}
	if rp.WhenScaled == "" {
		rp.WhenScaled = appsv1.RetainPersistentVolumeClaimRetentionPolicyType
	}
	if s.Spec.Replicas == nil {
		s.Spec.Replicas = int32Ptr(1)
	}
	if s.Spec.RevisionHistoryLimit == nil {
		s.Spec.RevisionHistoryLimit = int32Ptr(10)
	}
	for i := range s.Spec.VolumeClaimTemplates {
		pvc := &s.Spec.VolumeClaimTemplates[i]
		if pvc.Spec.VolumeMode == nil {
			fs := corev1.PersistentVolumeFilesystem
			pvc.Spec.VolumeMode = &fs
		}
		if pvc.Status.Phase == "" {
			pvc.Status.Phase = corev1.ClaimPending
		}
	}
	core.DefaultPodTemplateSpec(&s.Spec.Template)
}

func validateStatefulSet(s *appsv1.StatefulSet) field.ErrorList {
	spec := &s.Spec
	p := field.NewPath("spec")
	var errs field.ErrorList
	switch spec.PodManagementPolicy {
	case "":
		errs = append(errs, field.Required(p.Child("podManagementPolicy"), ""))
	case appsv1.OrderedReadyPodManagement, appsv1.ParallelPodManagement:
	default:
		errs = append(errs, field.Invalid(p.Child("podManagementPolicy"), spec.PodManagementPolicy,
			fmt.Sprintf("must be '%s' or '%s'", appsv1.OrderedReadyPodManagement, appsv1.ParallelPodManagement)))
	}
	up := p.Child("updateStrategy")
	switch spec.UpdateStrategy.Type {
	case "":
		errs = append(errs, field.Required(up, ""))
	case appsv1.OnDeleteStatefulSetStrategyType:
		if spec.UpdateStrategy.RollingUpdate != nil {
			errs = append(errs, field.Invalid(up.Child("rollingUpdate"), spec.UpdateStrategy.RollingUpdate,
				fmt.Sprintf("only allowed for updateStrategy '%s'", appsv1.RollingUpdateStatefulSetStrategyType)))
		}
	case appsv1.RollingUpdateStatefulSetStrategyType:
		if ru := spec.UpdateStrategy.RollingUpdate; ru != nil {
			rp := up.Child("rollingUpdate")
			if ru.Partition != nil {
				errs = append(errs, nonNegative(int64(*ru.Partition), rp.Child("partition"))...)
			}
			if ru.MaxUnavailable != nil {
				errs = append(errs, validatePositiveIntOrPercent(ru.MaxUnavailable, rp.Child("maxUnavailable"))...)
				if n, _ := intOrPercentValue(ru.MaxUnavailable); n == 0 {
					errs = append(errs, field.Invalid(rp.Child("maxUnavailable"), ru.MaxUnavailable.String(), "cannot be 0"))
				}
				errs = append(errs, notMoreThan100Percent(ru.MaxUnavailable, rp.Child("maxUnavailable"))...)
			}
		}
	default:
		errs = append(errs, field.Invalid(up, spec.UpdateStrategy,
			fmt.Sprintf("must be '%s' or '%s'", appsv1.RollingUpdateStatefulSetStrategyType, appsv1.OnDeleteStatefulSetStrategyType)))
	}
	if rp := spec.PersistentVolumeClaimRetentionPolicy; rp != nil {
		pp := p.Child("persistentVolumeClaimRetentionPolicy")
		supported := []string{string(appsv1.RetainPersistentVolumeClaimRetentionPolicyType), string(appsv1.DeletePersistentVolumeClaimRetentionPolicyType)}
		for name, v := range []appsv1.PersistentVolumeClaimRetentionPolicyType{rp.WhenDeleted, rp.WhenScaled} {
			fp := pp.Child([]string{"whenDeleted", "whenScaled"}[name])
			switch v {
			case "":
				errs = append(errs, field.Required(fp, ""))
			case appsv1.RetainPersistentVolumeClaimRetentionPolicyType, appsv1.DeletePersistentVolumeClaimRetentionPolicyType:
			default:
				errs = append(errs, field.NotSupported(fp, v, supported))
			}
		}
	}
	if spec.Replicas != nil {
		errs = append(errs, nonNegative(int64(*spec.Replicas), p.Child("replicas"))...)
	}
	if spec.Ordinals != nil {
		errs = append(errs, nonNegative(int64(spec.Ordinals.Start), p.Child("ordinals", "start"))...)
	}
	errs = append(errs, nonNegative(int64(spec.MinReadySeconds), p.Child("minReadySeconds"))...)
	if spec.RevisionHistoryLimit != nil {
		errs = append(errs, nonNegative(int64(*spec.RevisionHistoryLimit), p.Child("revisionHistoryLimit"))...)
	}
	if spec.ServiceName != "" {
		for _, msg := range apimachineryvalidation.NameIsDNS1035Label(spec.ServiceName, false) {
			errs = append(errs, field.Invalid(p.Child("serviceName"), spec.ServiceName, msg))
		}
	}
	errs = append(errs, validateSelector(spec.Selector, spec.Template.Labels, "statefulset", p)...)
	// Containers mount the claims of volumeClaimTemplates by name; the
	// controller adds those volumes to each pod, so the template is
	// checked as the pods will be.
	tmpl := &spec.Template
	if len(spec.VolumeClaimTemplates) > 0 {
		tmpl = tmpl.DeepCopy()
		for _, c := range spec.VolumeClaimTemplates {
			tmpl.Spec.Volumes = append(tmpl.Spec.Volumes, corev1.Volume{Name: c.Name, VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: c.Name}}})
		}
	}
	errs = append(errs, validateWorkloadTemplate(tmpl, "StatefulSet", p.Child("template"))...)
	return errs
}

func validateStatefulSetUpdate(obj, old runtime.Object) field.ErrorList {
	n, o := obj.(*appsv1.StatefulSet), old.(*appsv1.StatefulSet)
	// Only the fields upstream lists may change: overlay them on the old
	// spec and require the result to equal the new spec.
	allowed := *o.Spec.DeepCopy()
	allowed.Replicas = n.Spec.Replicas
	allowed.Ordinals = n.Spec.Ordinals
	allowed.Template = n.Spec.Template
	allowed.UpdateStrategy = n.Spec.UpdateStrategy
	allowed.PersistentVolumeClaimRetentionPolicy = n.Spec.PersistentVolumeClaimRetentionPolicy
	allowed.MinReadySeconds = n.Spec.MinReadySeconds
	if !apiequality.Semantic.DeepEqual(allowed, n.Spec) {
		return field.ErrorList{field.Forbidden(field.NewPath("spec"), statefulSetUpdateForbidden)}
	}
	return nil
}
