package endpoints

import (
	"fmt"
	"maps"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// The helpers in this file are shared with the endpointslice controller, which
// must agree with this one on which pods back a service and on which port.

// IsPodReady reports whether the pod's Ready condition is True.
func IsPodReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// PodTriggerTime is when the pod's Ready condition last changed, the change
// that most often moves a pod in or out of a service; zero if unknown.
func PodTriggerTime(pod *corev1.Pod) time.Time {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.LastTransitionTime.Time
		}
	}
	return time.Time{}
}

// ShouldPodBeInEndpoints reports whether pod can back a service at all:
// it must have an IP, must not have finished, and must not be terminating
// unless the caller keeps terminating pods (publishNotReadyAddresses, or
// EndpointSlices, which carry a terminating condition instead).
func ShouldPodBeInEndpoints(pod *corev1.Pod, includeTerminating bool) bool {
	if pod.Status.PodIP == "" && len(pod.Status.PodIPs) == 0 {
		return false
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return false
	}
	if !includeTerminating && pod.DeletionTimestamp != nil {
		return false
	}
	return true
}

// PodIP is the pod's primary IP.
func PodIP(pod *corev1.Pod) string {
	if pod.Status.PodIP != "" {
		return pod.Status.PodIP
	}
	if len(pod.Status.PodIPs) > 0 {
		return pod.Status.PodIPs[0].IP
	}
	return ""
}

// FindPort resolves a service port's targetPort against one pod: a number is
// used as is, a name is looked up among the pod's container ports with the
// same protocol, so different pods may serve one service on different ports.
func FindPort(pod *corev1.Pod, sp *corev1.ServicePort) (int32, error) {
	tp := sp.TargetPort
	switch {
	case tp.Type == intstr.String && tp.StrVal != "":
		for _, c := range pod.Spec.Containers {
			for _, p := range c.Ports {
				if p.Name == tp.StrVal && protocolOf(p.Protocol) == protocolOf(sp.Protocol) {
					return p.ContainerPort, nil
				}
			}
		}
		return 0, fmt.Errorf("no container port named %q in pod %s/%s", tp.StrVal, pod.Namespace, pod.Name)
	case tp.Type == intstr.Int && tp.IntVal != 0:
		return tp.IntVal, nil
	default:
		// Unset targetPort defaults to the service port.
		return sp.Port, nil
	}
}

func protocolOf(p corev1.Protocol) corev1.Protocol {
	if p == "" {
		return corev1.ProtocolTCP
	}
	return p
}

// ServiceKeysForPod returns the namespace/name keys of the services in the
// pod's namespace whose selector matches the pod's labels. The namespace index
// of the service lister bounds the scan to the pod's namespace.
func ServiceKeysForPod(lister corelisters.ServiceLister, pod *corev1.Pod) ([]string, error) {
	svcs, err := lister.Services(pod.Namespace).List(labels.Everything())
	if err != nil {
		return nil, fmt.Errorf("listing services in %s: %w", pod.Namespace, err)
	}
	var keys []string
	set := labels.Set(pod.Labels)
	for _, s := range svcs {
		if s.Spec.Selector == nil {
			continue // services without a selector manage their own endpoints
		}
		if labels.SelectorFromValidatedSet(s.Spec.Selector).Matches(set) {
			keys = append(keys, s.Namespace+"/"+s.Name)
		}
	}
	return keys, nil
}

// PodFromObj unwraps informer delete tombstones.
func PodFromObj(obj any) (*corev1.Pod, bool) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	p, ok := obj.(*corev1.Pod)
	return p, ok
}

// PodHandlers are the pod event handlers of both endpoint controllers:
// every service selecting the pod, before and after a label change, is
// enqueued; resyncs (same resourceVersion) are ignored.
func PodHandlers(lister corelisters.ServiceLister, enqueue func(key string)) cache.ResourceEventHandlerFuncs {
	forPod := func(pod *corev1.Pod) {
		keys, err := ServiceKeysForPod(lister, pod)
		if err != nil {
			utilruntime.HandleError(err)
			return
		}
		for _, k := range keys {
			enqueue(k)
		}
	}
	onPod := func(obj any) {
		if pod, ok := PodFromObj(obj); ok {
			forPod(pod)
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    onPod,
		DeleteFunc: onPod,
		UpdateFunc: func(oldObj, newObj any) {
			oldPod, newPod := oldObj.(*corev1.Pod), newObj.(*corev1.Pod)
			if oldPod.ResourceVersion == newPod.ResourceVersion {
				return // periodic resync: nothing changed
			}
			forPod(newPod)
			if !maps.Equal(oldPod.Labels, newPod.Labels) {
				forPod(oldPod) // services that no longer select it
			}
		},
	}
}
