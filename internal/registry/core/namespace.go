package core

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"skiff.dev/skiff/internal/registry"
)

// namespaceNameLabel is the immutable label every namespace carries with
// its own name, so label selectors can select namespaces by name.
const namespaceNameLabel = "kubernetes.io/metadata.name"

func namespaceResource() *registry.Resource {
	return &registry.Resource{
		GroupVersion: corev1.SchemeGroupVersion,
		Resource:     "namespaces", Singular: "namespace", Kind: "Namespace", ListKind: "NamespaceList",
		ShortNames: []string{"ns"},
		New:        func() runtime.Object { return &corev1.Namespace{} },
		NewList:    func() runtime.Object { return &corev1.NamespaceList{} },
		Default:    func(obj runtime.Object) { defaultNamespace(obj.(*corev1.Namespace)) },
		PrepareForCreate: func(obj runtime.Object) {
			ns := obj.(*corev1.Namespace)
			ns.Status = corev1.NamespaceStatus{Phase: corev1.NamespaceActive}
			if !hasFinalizer(ns.Spec.Finalizers, corev1.FinalizerKubernetes) {
				ns.Spec.Finalizers = append(ns.Spec.Finalizers, corev1.FinalizerKubernetes)
			}
		},
		PrepareForUpdate: func(obj, old runtime.Object) {
			ns, oldNS := obj.(*corev1.Namespace), old.(*corev1.Namespace)
			// Spec finalizers change only through the finalize subresource.
			ns.Spec.Finalizers = oldNS.Spec.Finalizers
			ns.Status = oldNS.Status
		},
		PrepareForStatusUpdate: func(obj, old runtime.Object) {
			obj.(*corev1.Namespace).Spec = old.(*corev1.Namespace).Spec
		},
		Validate: func(obj runtime.Object) field.ErrorList { return validateNamespace(obj.(*corev1.Namespace)) },
		ValidateStatusUpdate: func(obj, old runtime.Object) field.ErrorList {
			ns := obj.(*corev1.Namespace)
			if ns.DeletionTimestamp.IsZero() && ns.Status.Phase != corev1.NamespaceActive {
				return field.ErrorList{field.Invalid(field.NewPath("status", "Phase"), ns.Status.Phase, "may only be 'Active' if `deletionTimestamp` is empty")}
			}
			if !ns.DeletionTimestamp.IsZero() && ns.Status.Phase != corev1.NamespaceTerminating {
				return field.ErrorList{field.Invalid(field.NewPath("status", "Phase"), ns.Status.Phase, "may only be 'Terminating' if `deletionTimestamp` is not empty")}
			}
			return nil
		},
		Subresources: []string{"status", "finalize"},
		TableColumns: []metav1.TableColumnDefinition{
			nameColumn,
			{Name: "Status", Type: "string", Description: "The status of the namespace"},
			ageColumn,
		},
		TableRow: func(obj runtime.Object) []interface{} {
			ns := obj.(*corev1.Namespace)
			return []interface{}{ns.Name, string(ns.Status.Phase), age(ns.CreationTimestamp)}
		},
		SelectableFields: func(obj runtime.Object) fields.Set {
			return fields.Set{"status.phase": string(obj.(*corev1.Namespace).Status.Phase)}
		},
	}
}

func defaultNamespace(ns *corev1.Namespace) {
	if ns.Status.Phase == "" {
		ns.Status.Phase = corev1.NamespaceActive
	}
	if ns.Name != "" {
		if ns.Labels == nil {
			ns.Labels = map[string]string{}
		}
		ns.Labels[namespaceNameLabel] = ns.Name
	}
}

func hasFinalizer(fs []corev1.FinalizerName, f corev1.FinalizerName) bool {
	for _, x := range fs {
		if x == f {
			return true
		}
	}
	return false
}

func validateNamespace(ns *corev1.Namespace) field.ErrorList {
	var errs field.ErrorList
	if ns.Name != "" {
		errs = append(errs, invalidMsgs(field.NewPath("metadata", "name"), ns.Name, validation.IsDNS1123Label(ns.Name))...)
	}
	for i, f := range ns.Spec.Finalizers {
		p := field.NewPath("spec", "finalizers").Index(i)
		errs = append(errs, invalidMsgs(p, f, validation.IsQualifiedName(string(f)))...)
	}
	if v, ok := ns.Labels[namespaceNameLabel]; ok && v != ns.Name {
		errs = append(errs, field.Invalid(field.NewPath("metadata", "labels").Key(namespaceNameLabel), v, "must match the namespace name"))
	}
	return errs
}
