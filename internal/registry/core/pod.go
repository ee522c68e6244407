package core

import (
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"skiff.dev/skiff/internal/registry"
)

func podResource() *registry.Resource {
	return &registry.Resource{
		GroupVersion: corev1.SchemeGroupVersion,
		Resource:     "pods", Singular: "pod", Kind: "Pod", ListKind: "PodList",
		Namespaced: true, ShortNames: []string{"po"}, Categories: []string{"all"},
		New:     func() runtime.Object { return &corev1.Pod{} },
		NewList: func() runtime.Object { return &corev1.PodList{} },
		Default: func(obj runtime.Object) { defaultPod(obj.(*corev1.Pod)) },
		PrepareForCreate: func(obj runtime.Object) {
			preparePodForCreate(obj.(*corev1.Pod))
		},
		PrepareForUpdate: func(obj, old runtime.Object) {
			obj.(*corev1.Pod).Status = old.(*corev1.Pod).Status
		},
		PrepareForStatusUpdate: func(obj, old runtime.Object) {
			pod, oldPod := obj.(*corev1.Pod), old.(*corev1.Pod)
			pod.Spec = oldPod.Spec
			pod.DeletionTimestamp = oldPod.DeletionTimestamp
			pod.OwnerReferences = oldPod.OwnerReferences
		},
		Validate: func(obj runtime.Object) field.ErrorList { return validatePod(obj.(*corev1.Pod)) },
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			return validatePodUpdate(obj.(*corev1.Pod), old.(*corev1.Pod))
		},
		ValidateStatusUpdate: func(obj, old runtime.Object) field.ErrorList {
			return validatePodStatusUpdate(obj.(*corev1.Pod), old.(*corev1.Pod))
		},
		// A kubelet's status write is the most frequent write of all; the
		// pod is shared with the watch cache rather than deep-copied
		// (TestPodStatusUpdateSharesCurrent checks the cache's pod is left
		// as it was).
		StatusUpdateSharesCurrent: true,

		Subresources:     []string{"status", "binding", "eviction", "log", "exec", "attach", "portforward", "proxy", "ephemeralcontainers"},
		TableColumns:     podColumns,
		TableRow:         func(obj runtime.Object) []interface{} { return podRow(obj.(*corev1.Pod)) },
		SelectableFields: func(obj runtime.Object) fields.Set { return podFields(obj.(*corev1.Pod)) },
	}
}

// preparePodForCreate resets status to what the server owns on create:
// phase Pending, the computed QoS class and, for gated pods, the
// SchedulingGated condition.
func preparePodForCreate(pod *corev1.Pod) {
	pod.Status = corev1.PodStatus{Phase: corev1.PodPending, QOSClass: PodQOSClass(pod)}
	if len(pod.Spec.SchedulingGates) > 0 {
		pod.Status.Conditions = []corev1.PodCondition{{
			Type:    corev1.PodScheduled,
			Status:  corev1.ConditionFalse,
			Reason:  corev1.PodReasonSchedulingGated,
			Message: "Scheduling is blocked due to non-empty scheduling gates",
		}}
	}
}

func podFields(pod *corev1.Pod) fields.Set {
	podIP := ""
	if len(pod.Status.PodIPs) > 0 {
		podIP = pod.Status.PodIPs[0].IP
	}
	return fields.Set{
		"spec.nodeName":            pod.Spec.NodeName,
		"spec.restartPolicy":       string(pod.Spec.RestartPolicy),
		"spec.schedulerName":       pod.Spec.SchedulerName,
		"spec.serviceAccountName":  pod.Spec.ServiceAccountName,
		"spec.hostNetwork":         strconv.FormatBool(pod.Spec.HostNetwork),
		"status.phase":             string(pod.Status.Phase),
		"status.podIP":             podIP,
		"status.nominatedNodeName": pod.Status.NominatedNodeName,
	}
}

// qosResources are the resources that decide a pod's QoS class.
var qosResources = []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory}

// PodQOSClass computes the QoS class as upstream does: BestEffort when no
// container (or the pod-level resources) requests or limits cpu/memory;
// Guaranteed when cpu and memory limits are set everywhere and requests
// equal limits; Burstable otherwise.
func PodQOSClass(pod *corev1.Pod) corev1.PodQOSClass {
	requests, limits := corev1.ResourceList{}, corev1.ResourceList{}
	guaranteed := true
	add := func(r corev1.ResourceRequirements) {
		for _, name := range qosResources {
			if q, ok := r.Requests[name]; ok && q.Sign() > 0 {
				addQuantity(requests, name, q)
			}
		}
		limitsFound := 0
		for _, name := range qosResources {
			if q, ok := r.Limits[name]; ok && q.Sign() > 0 {
				limitsFound++
				addQuantity(limits, name, q)
			}
		}
		if limitsFound != len(qosResources) {
			guaranteed = false
		}
	}
	if pod.Spec.Resources != nil {
		add(*pod.Spec.Resources)
	} else {
		for _, c := range pod.Spec.InitContainers {
			add(c.Resources)
		}
		for _, c := range pod.Spec.Containers {
			add(c.Resources)
		}
	}
	if len(requests) == 0 && len(limits) == 0 {
		return corev1.PodQOSBestEffort
	}
	if guaranteed {
		for name, req := range requests {
			if lim, ok := limits[name]; !ok || lim.Cmp(req) != 0 {
				guaranteed = false
				break
			}
		}
	}
	if guaranteed && len(requests) == len(limits) {
		return corev1.PodQOSGuaranteed
	}
	return corev1.PodQOSBurstable
}

func addQuantity(l corev1.ResourceList, name corev1.ResourceName, q resource.Quantity) {
	if cur, ok := l[name]; ok {
		cur.Add(q)
		l[name] = cur
		return
	}
	l[name] = q.DeepCopy()
}
