// Package storagereg holds the registry descriptor for storage.k8s.io/v1
// storageclasses (cluster-scoped). The package is not called "storage" to
// keep it apart from internal/storage, the persistence layer.
//
// Contract: Resources returns the descriptor with upstream's defaulting
// (reclaimPolicy Delete, volumeBindingMode Immediate), validation (qualified
// provisioner name, supported policies, immutable parameters, provisioner,
// reclaimPolicy and volumeBindingMode) and table, which marks the default
// class with " (default)" as kubectl users expect.
package storagereg

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"skiff.dev/skiff/internal/registry"
	"skiff.dev/skiff/internal/registry/printing"
)

// Annotations marking the default StorageClass.
const (
	IsDefaultAnnotation     = "storageclass.kubernetes.io/is-default-class"
	BetaIsDefaultAnnotation = "storageclass.beta.kubernetes.io/is-default-class"
)

const (
	maxParameters     = 512
	maxParametersSize = 256 * 1024
)

// IsDefault reports whether sc is annotated as the cluster's default class.
func IsDefault(sc *storagev1.StorageClass) bool {
	return sc.Annotations[IsDefaultAnnotation] == "true" || sc.Annotations[BetaIsDefaultAnnotation] == "true"
}

// Resources returns the storage.k8s.io/v1 resources.
func Resources() []*registry.Resource {
	return []*registry.Resource{{
		GroupVersion: storagev1.SchemeGroupVersion,
		Resource:     "storageclasses", Singular: "storageclass", Kind: "StorageClass", ListKind: "StorageClassList",
		ShortNames: []string{"sc"},
		New:        func() runtime.Object { return &storagev1.StorageClass{} },
		NewList:    func() runtime.Object { return &storagev1.StorageClassList{} },
		Default: func(obj runtime.Object) {
			sc, ok := obj.(*storagev1.StorageClass)
			if !ok {
				return
			}
			if sc.ReclaimPolicy == nil {
				p := corev1.PersistentVolumeReclaimDelete
				sc.ReclaimPolicy = &p
			}
			if sc.VolumeBindingMode == nil {
				m := storagev1.VolumeBindingImmediate
				sc.VolumeBindingMode = &m
			}
		},
		Validate: func(obj runtime.Object) field.ErrorList { return validate(obj.(*storagev1.StorageClass)) },
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			n, o := obj.(*storagev1.StorageClass), old.(*storagev1.StorageClass)
			var errs field.ErrorList
			if !apiequality.Semantic.DeepEqual(n.Parameters, o.Parameters) {
				errs = append(errs, field.Forbidden(field.NewPath("parameters"), "updates to parameters are forbidden."))
			}
			if n.Provisioner != o.Provisioner {
				errs = append(errs, field.Forbidden(field.NewPath("provisioner"), "updates to provisioner are forbidden."))
			}
			if !apiequality.Semantic.DeepEqual(n.ReclaimPolicy, o.ReclaimPolicy) {
				errs = append(errs, field.Forbidden(field.NewPath("reclaimPolicy"), "updates to reclaimPolicy are forbidden."))
			}
			return append(errs, apimachineryvalidation.ValidateImmutableField(n.VolumeBindingMode, o.VolumeBindingMode, field.NewPath("volumeBindingMode"))...)
		},
		TableColumns: []metav1.TableColumnDefinition{
			printing.NameColumn(),
			printing.Column("Provisioner", "string", "Provisioner indicates the type of the provisioner."),
			printing.Column("ReclaimPolicy", "string", "Dynamically provisioned PersistentVolumes of this storage class are created with this reclaimPolicy."),
			printing.Column("VolumeBindingMode", "string", "VolumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound."),
			printing.Column("AllowVolumeExpansion", "string", "AllowVolumeExpansion shows whether the storage class allow volume expand."),
			printing.AgeColumn(),
		},
		TableRow: func(obj runtime.Object) []interface{} {
			sc := obj.(*storagev1.StorageClass)
			name := sc.Name
			if IsDefault(sc) {
				name += " (default)"
			}
			reclaim, binding := string(corev1.PersistentVolumeReclaimDelete), string(storagev1.VolumeBindingImmediate)
			if sc.ReclaimPolicy != nil {
				reclaim = string(*sc.ReclaimPolicy)
			}
			if sc.VolumeBindingMode != nil {
				binding = string(*sc.VolumeBindingMode)
			}
			expand := false
			if sc.AllowVolumeExpansion != nil {
				expand = *sc.AllowVolumeExpansion
			}
			return []interface{}{name, sc.Provisioner, reclaim, binding, expand, printing.Age(sc.CreationTimestamp)}
		},
	}}
}

func validate(sc *storagev1.StorageClass) field.ErrorList {
	var errs field.ErrorList
	pp := field.NewPath("provisioner")
	if sc.Provisioner == "" {
		errs = append(errs, field.Required(pp, ""))
	} else {
		for _, msg := range validation.IsQualifiedName(strings.ToLower(sc.Provisioner)) {
			errs = append(errs, field.Invalid(pp, sc.Provisioner, msg))
		}
	}
	size := 0
	for k, v := range sc.Parameters {
		if k == "" {
			errs = append(errs, field.Invalid(field.NewPath("parameters"), k, "field can not be empty."))
		}
		size += len(k) + len(v)
	}
	if len(sc.Parameters) > maxParameters {
		errs = append(errs, field.TooMany(field.NewPath("parameters"), len(sc.Parameters), maxParameters))
	}
	if size > maxParametersSize {
		errs = append(errs, field.TooLong(field.NewPath("parameters"), "", maxParametersSize))
	}
	if sc.ReclaimPolicy != nil {
		switch *sc.ReclaimPolicy {
		case corev1.PersistentVolumeReclaimDelete, corev1.PersistentVolumeReclaimRetain:
		default:
			errs = append(errs, field.NotSupported(field.NewPath("reclaimPolicy"), *sc.ReclaimPolicy,
				[]string{string(corev1.PersistentVolumeReclaimDelete), string(corev1.PersistentVolumeReclaimRetain)}))
		}
	}
	bp := field.NewPath("volumeBindingMode")
	switch {
	case sc.VolumeBindingMode == nil:
		errs = append(errs, field.Required(bp, ""))
	case *sc.VolumeBindingMode != storagev1.VolumeBindingImmediate && *sc.VolumeBindingMode != storagev1.VolumeBindingWaitForFirstConsumer:
		errs = append(errs, field.NotSupported(bp, *sc.VolumeBindingMode,
			[]string{string(storagev1.VolumeBindingImmediate), string(storagev1.VolumeBindingWaitForFirstConsumer)}))
	}
	return errs
}
