package core

import (
	corev1 "k8s.io/api/core/v1"
)

// DefaultPodTemplateSpec applies upstream's defaults to a pod template.
func DefaultPodTemplateSpec(t *corev1.PodTemplateSpec) {
	if t == nil {
		return
	}
	DefaultPodSpec(&t.Spec)
}

// DefaultPodSpec applies upstream's core/v1 defaults to a pod spec in place.
func DefaultPodSpec(s *corev1.PodSpec) {
}
