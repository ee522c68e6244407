package endpoints

import (
	"fmt"
	"maps"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
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

// ServicesOfPod calls fn with the namespace/name key of each service in
// the pod's namespace whose selector matches the pod's labels. svcs is the
// service informer's store: the namespace index bounds the scan, and it
// runs for every event of every pod, most in namespaces where no service
// selects anything, so it allocates nothing when no service is there.
func ServicesOfPod(svcs cache.Indexer, pod *corev1.Pod, fn func(key string)) {
	objs, err := svcs.ByIndex(cache.NamespaceIndex, pod.Namespace)
	if err != nil {
		// A store without the namespace index: all of it, as the
		// listers do then.
		objs = svcs.List()
	}
	for _, o := range objs {
		s, ok := o.(*corev1.Service)
		if !ok || s.Namespace != pod.Namespace || s.Spec.Selector == nil {
			continue // services without a selector manage their own endpoints
		}
		if selects(s.Spec.Selector, pod.Labels) {
			fn(s.Namespace + "/" + s.Name)
		}
	}
}

// selects is labels.SelectorFromValidatedSet(selector).Matches(podLabels)
// without building the selector: every selector label is on the pod with
// the same value (an empty selector selects every pod).
func selects(selector, podLabels map[string]string) bool {
	for k, v := range selector {
		if w, ok := podLabels[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// PodFromObj unwraps informer delete tombstones.
func PodFromObj(obj any) (*corev1.Pod, bool) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	p, ok := obj.(*corev1.Pod)
	return p, ok
}

// PodHandlers are the pod event handlers of both endpoint controllers
// (svcs is the service informer's store):
// every service selecting the pod, before and after a label change, is
// enqueued; resyncs (same resourceVersion) are ignored.
func PodHandlers(svcs cache.Indexer, enqueue func(key string)) cache.ResourceEventHandlerFuncs {
	forPod := func(pod *corev1.Pod) { ServicesOfPod(svcs, pod, enqueue) }
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
