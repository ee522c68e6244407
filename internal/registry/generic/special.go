package generic

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// The few per-type deletion rules upstream keeps in the generic path.

// podGracePeriod reports the grace period of a pod that needs a graceful
// delete: assigned to a node and not terminal. Other pods, and every other
// type, are deleted at once.
func podGracePeriod(obj runtime.Object) (int64, bool) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return 0, false
	}
	if pod.Spec.NodeName == "" || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return 0, false
	}
	if pod.DeletionGracePeriodSeconds != nil {
		return *pod.DeletionGracePeriodSeconds, true
	}
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		return *pod.Spec.TerminationGracePeriodSeconds, true
	}
	return corev1.DefaultTerminationGracePeriodSeconds, true
}

// namespaceHasSpecFinalizers: a namespace stays until its spec.finalizers
// (the namespace controller's "kubernetes") are removed through
// namespaces/finalize.
func namespaceHasSpecFinalizers(obj runtime.Object) bool {
	ns, ok := obj.(*corev1.Namespace)
	return ok && len(ns.Spec.Finalizers) > 0
}

// markNamespaceTerminating sets phase Terminating on a namespace being
// deleted.
func markNamespaceTerminating(obj runtime.Object) {
	if ns, ok := obj.(*corev1.Namespace); ok {
		ns.Status.Phase = corev1.NamespaceTerminating
	}
}
