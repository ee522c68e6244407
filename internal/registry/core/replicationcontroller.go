package core

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"skiff.dev/skiff/internal/registry"
)

func replicationControllerResource() *registry.Resource {
	return &registry.Resource{
		GroupVersion: corev1.SchemeGroupVersion,
		Resource:     "replicationcontrollers", Singular: "replicationcontroller", Kind: "ReplicationController",
		ListKind: "ReplicationControllerList", Namespaced: true, ShortNames: []string{"rc"}, Categories: []string{"all"},
		New:     func() runtime.Object { return &corev1.ReplicationController{} },
		NewList: func() runtime.Object { return &corev1.ReplicationControllerList{} },
		Default: func(obj runtime.Object) { defaultReplicationController(obj.(*corev1.ReplicationController)) },
		PrepareForCreate: func(obj runtime.Object) {
			obj.(*corev1.ReplicationController).Status = corev1.ReplicationControllerStatus{}
		},
		PrepareForUpdate: func(obj, old runtime.Object) {
			obj.(*corev1.ReplicationController).Status = old.(*corev1.ReplicationController).Status
		},
		PrepareForStatusUpdate: func(obj, old runtime.Object) {
			obj.(*corev1.ReplicationController).Spec = old.(*corev1.ReplicationController).Spec
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			return validateRCSpec(&obj.(*corev1.ReplicationController).Spec, field.NewPath("spec"))
		},
		ValidateStatusUpdate: func(obj, old runtime.Object) field.ErrorList {
			return validateRCStatus(&obj.(*corev1.ReplicationController).Status, field.NewPath("status"))
		},
		Subresources: []string{"status", "scale"},
		Scale: &registry.ScaleInfo{
			Get: func(obj runtime.Object) (int32, int32, string) {
				rc := obj.(*corev1.ReplicationController)
				spec := int32(1)
				if rc.Spec.Replicas != nil {
					spec = *rc.Spec.Replicas
				}
				return spec, rc.Status.Replicas, labels.SelectorFromSet(rc.Spec.Selector).String()
			},
			SetReplicas: func(obj runtime.Object, n int32) { obj.(*corev1.ReplicationController).Spec.Replicas = &n },
		},
		TableColumns: []metav1.TableColumnDefinition{
			nameColumn,
			{Name: "Desired", Type: "integer", Description: corev1.ReplicationControllerSpec{}.SwaggerDoc()["replicas"]},
			{Name: "Current", Type: "integer", Description: corev1.ReplicationControllerStatus{}.SwaggerDoc()["replicas"]},
			{Name: "Ready", Type: "integer", Description: corev1.ReplicationControllerStatus{}.SwaggerDoc()["readyReplicas"]},
			ageColumn,
			{Name: "Containers", Type: "string", Priority: 1, Description: "Names of each container in the template."},
			{Name: "Images", Type: "string", Priority: 1, Description: "Images referenced by each container in the template."},
			{Name: "Selector", Type: "string", Priority: 1, Description: corev1.ReplicationControllerSpec{}.SwaggerDoc()["selector"]},
		},
		TableRow: func(obj runtime.Object) []interface{} {
			rc := obj.(*corev1.ReplicationController)
			desired := int64(0)
			if rc.Spec.Replicas != nil {
				desired = int64(*rc.Spec.Replicas)
			}
			names, images := "", ""
			if rc.Spec.Template != nil {
				names, images = containerNamesAndImages(rc.Spec.Template.Spec.Containers)
			}
			return []interface{}{rc.Name, desired, int64(rc.Status.Replicas), int64(rc.Status.ReadyReplicas), age(rc.CreationTimestamp),
				names, images, labels.FormatLabels(rc.Spec.Selector)}
		},
		SelectableFields: func(obj runtime.Object) fields.Set {
			return fields.Set{"status.replicas": fmt.Sprint(obj.(*corev1.ReplicationController).Status.Replicas)}
		},
	}
}

func containerNamesAndImages(cs []corev1.Container) (string, string) {
	names, images := make([]string, len(cs)), make([]string, len(cs))
	for i, c := range cs {
		names[i], images[i] = c.Name, c.Image
	}
	return strings.Join(names, ","), strings.Join(images, ",")
}

// defaultReplicationController: selector and labels from the template's
// labels, one replica, then the pod template defaults.
func defaultReplicationController(rc *corev1.ReplicationController) {
	if t := rc.Spec.Template; t != nil {
		if len(rc.Spec.Selector) == 0 {
			rc.Spec.Selector = copyStringMap(t.Labels)
		}
		if len(rc.Labels) == 0 {
			rc.Labels = copyStringMap(t.Labels)
		}
		DefaultPodTemplateSpec(t)
	}
	if rc.Spec.Replicas == nil {
		n := int32(1)
		rc.Spec.Replicas = &n
	}
}

func copyStringMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func validateRCSpec(s *corev1.ReplicationControllerSpec, specPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, nonNegative(int64(s.MinReadySeconds), specPath.Child("minReadySeconds"))...)
	if s.Replicas != nil {
		errs = append(errs, nonNegative(int64(*s.Replicas), specPath.Child("replicas"))...)
	}
	if len(s.Selector) == 0 {
		errs = append(errs, field.Required(specPath.Child("selector"), ""))
	} else {
		errs = append(errs, metav1validation.ValidateLabels(s.Selector, specPath.Child("selector"))...)
	}
	tp := specPath.Child("template")
	if s.Template == nil {
		return append(errs, field.Required(tp, ""))
	}
	if len(s.Selector) > 0 && !labels.SelectorFromSet(s.Selector).Matches(labels.Set(s.Template.Labels)) {
		errs = append(errs, field.Invalid(tp.Child("metadata", "labels"), s.Template.Labels, "`selector` does not match template `labels`"))
	}
	errs = append(errs, ValidatePodTemplateSpec(s.Template, tp)...)
	if s.Template.Spec.RestartPolicy != corev1.RestartPolicyAlways && s.Template.Spec.RestartPolicy != "" {
		errs = append(errs, field.NotSupported(tp.Child("spec", "restartPolicy"), s.Template.Spec.RestartPolicy, []string{string(corev1.RestartPolicyAlways)}))
	}
	if s.Template.Spec.ActiveDeadlineSeconds != nil {
		errs = append(errs, field.Invalid(tp.Child("spec", "activeDeadlineSeconds"), s.Template.Spec.ActiveDeadlineSeconds, "activeDeadlineSeconds in ReplicationController is not Supported"))
	}
	return errs
}

func validateRCStatus(st *corev1.ReplicationControllerStatus, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, nonNegative(int64(st.Replicas), p.Child("replicas"))...)
	errs = append(errs, nonNegative(int64(st.FullyLabeledReplicas), p.Child("fullyLabeledReplicas"))...)
	errs = append(errs, nonNegative(int64(st.ReadyReplicas), p.Child("readyReplicas"))...)
	errs = append(errs, nonNegative(int64(st.AvailableReplicas), p.Child("availableReplicas"))...)
	errs = append(errs, nonNegative(st.ObservedGeneration, p.Child("observedGeneration"))...)
	if st.FullyLabeledReplicas > st.Replicas {
		errs = append(errs, field.Invalid(p.Child("fullyLabeledReplicas"), st.FullyLabeledReplicas, "cannot be greater than status.replicas"))
	}
	if st.ReadyReplicas > st.Replicas {
		errs = append(errs, field.Invalid(p.Child("readyReplicas"), st.ReadyReplicas, "cannot be greater than status.replicas"))
	}
	if st.AvailableReplicas > st.Replicas {
		errs = append(errs, field.Invalid(p.Child("availableReplicas"), st.AvailableReplicas, "cannot be greater than status.replicas"))
	}
	if st.AvailableReplicas > st.ReadyReplicas {
		errs = append(errs, field.Invalid(p.Child("availableReplicas"), st.AvailableReplicas, "cannot be greater than readyReplicas"))
	}
	return errs
}

func podTemplateResource() *registry.Resource {
	return &registry.Resource{
		GroupVersion: corev1.SchemeGroupVersion,
		Resource:     "podtemplates", Singular: "podtemplate", Kind: "PodTemplate", ListKind: "PodTemplateList",
		Namespaced: true,
		New:        func() runtime.Object { return &corev1.PodTemplate{} },
		NewList:    func() runtime.Object { return &corev1.PodTemplateList{} },
		Default:    func(obj runtime.Object) { DefaultPodTemplateSpec(&obj.(*corev1.PodTemplate).Template) },
		Validate: func(obj runtime.Object) field.ErrorList {
			return ValidatePodTemplateSpec(&obj.(*corev1.PodTemplate).Template, field.NewPath("template"))
		},
		TableColumns: []metav1.TableColumnDefinition{
			nameColumn,
			{Name: "Containers", Type: "string", Description: "Names of each container in the template."},
			{Name: "Images", Type: "string", Description: "Images referenced by each container in the template."},
			{Name: "Pod Labels", Type: "string", Description: "The labels for the pod template."},
		},
		TableRow: func(obj runtime.Object) []interface{} {
			pt := obj.(*corev1.PodTemplate)
			names, images := containerNamesAndImages(pt.Template.Spec.Containers)
			return []interface{}{pt.Name, names, images, labels.FormatLabels(pt.Template.Labels)}
		},
	}
}
