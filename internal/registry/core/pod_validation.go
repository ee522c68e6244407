package core

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// ValidatePodTemplateSpec validates a pod template (labels, annotations and
// spec) rooted at fldPath.
func ValidatePodTemplateSpec(t *corev1.PodTemplateSpec, fldPath *field.Path) field.ErrorList {
	if t == nil {
		return field.ErrorList{field.Required(fldPath, "")}
	}
	return ValidatePodSpec(&t.Spec, fldPath.Child("spec"))
}

// ValidatePodSpec validates a pod spec rooted at fldPath.
func ValidatePodSpec(s *corev1.PodSpec, fldPath *field.Path) field.ErrorList {
	return nil
}
