package resourcequota

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// legacyCounts are the object-count names core resources had before
// count/<resource>.
var legacyCounts = map[string]corev1.ResourceName{
	"pods":                   corev1.ResourcePods,
	"services":               corev1.ResourceServices,
	"configmaps":             corev1.ResourceConfigMaps,
	"secrets":                corev1.ResourceSecrets,
	"replicationcontrollers": corev1.ResourceReplicationControllers,
	"resourcequotas":         corev1.ResourceQuotas,
	"persistentvolumeclaims": corev1.ResourcePersistentVolumeClaims,
}

// CountName is the object-count resource name of gr: count/pods,
// count/deployments.apps.
func CountName(gr schema.GroupResource) corev1.ResourceName {
	if gr.Group == "" {
		return corev1.ResourceName("count/" + gr.Resource)
	}
	return corev1.ResourceName("count/" + gr.Resource + "." + gr.Group)
}

// Usage returns what obj, an object of gr, counts against a quota. Pods
// in a terminal phase count nothing, as upstream.
func Usage(gr schema.GroupResource, obj runtime.Object) corev1.ResourceList {
	if pod, ok := obj.(*corev1.Pod); ok && !PodCounts(pod) {
		return corev1.ResourceList{}
	}
	out := corev1.ResourceList{CountName(gr): *resource.NewQuantity(1, resource.DecimalSI)}
	if gr.Group == "" {
		if n, ok := legacyCounts[gr.Resource]; ok {
			out[n] = *resource.NewQuantity(1, resource.DecimalSI)
		}
	}
	switch o := obj.(type) {
	case *corev1.Pod:
		for k, v := range PodComputeUsage(o) {
			out[k] = v
		}
	case *corev1.Service:
		ports := int64(len(o.Spec.Ports))
		switch o.Spec.Type {
		case corev1.ServiceTypeNodePort:
			out[corev1.ResourceServicesNodePorts] = *resource.NewQuantity(ports, resource.DecimalSI)
		case corev1.ServiceTypeLoadBalancer:
			out[corev1.ResourceServicesLoadBalancers] = *resource.NewQuantity(1, resource.DecimalSI)
			if o.Spec.AllocateLoadBalancerNodePorts == nil || *o.Spec.AllocateLoadBalancerNodePorts {
				out[corev1.ResourceServicesNodePorts] = *resource.NewQuantity(ports, resource.DecimalSI)
			}
		}
	case *corev1.PersistentVolumeClaim:
		storage := o.Spec.Resources.Requests[corev1.ResourceStorage]
		out[corev1.ResourceRequestsStorage] = storage.DeepCopy()
		if sc := o.Spec.StorageClassName; sc != nil && *sc != "" {
			prefix := *sc + ".storageclass.storage.k8s.io/"
			out[corev1.ResourceName(prefix+"requests.storage")] = storage.DeepCopy()
			out[corev1.ResourceName(prefix+"persistentvolumeclaims")] = *resource.NewQuantity(1, resource.DecimalSI)
		}
	}
	return out
}

// PodCounts reports whether a pod is charged: not Succeeded or Failed.
func PodCounts(pod *corev1.Pod) bool {
	return pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed
}

// PodComputeUsage returns a pod's requests.*, limits.* and the bare cpu,
// memory names (which mean requests); init containers count as the largest
// of them when that exceeds the sum of the regular containers.
func PodComputeUsage(pod *corev1.Pod) corev1.ResourceList {
	req, lim := corev1.ResourceList{}, corev1.ResourceList{}
	for _, c := range pod.Spec.Containers {
		addTo(req, c.Resources.Requests)
		addTo(lim, c.Resources.Limits)
	}
	for _, c := range pod.Spec.InitContainers {
		maxTo(req, c.Resources.Requests)
		maxTo(lim, c.Resources.Limits)
	}
	if pod.Spec.Overhead != nil {
		addTo(req, pod.Spec.Overhead)
		addTo(lim, pod.Spec.Overhead)
	}
	return computeNames(req, lim)
}

func computeNames(req, lim corev1.ResourceList) corev1.ResourceList {
	out := corev1.ResourceList{}
	for k, v := range req {
		switch k {
		case corev1.ResourceCPU, corev1.ResourceMemory:
			out[k] = v.DeepCopy()
		}
		out[corev1.ResourceName("requests."+string(k))] = v.DeepCopy()
	}
	for k, v := range lim {
		out[corev1.ResourceName("limits."+string(k))] = v.DeepCopy()
	}
	return out
}

func addTo(into, from corev1.ResourceList) {
	for k, v := range from {
		q, ok := into[k]
		if !ok || q.IsZero() {
			// Take v's format, so memory adds up as 1Gi, not 1073741824.
			into[k] = v.DeepCopy()
			continue
		}
		q = q.DeepCopy()
		q.Add(v)
		into[k] = q
	}
}

func maxTo(into, from corev1.ResourceList) {
	for k, v := range from {
		if q, ok := into[k]; !ok || v.Cmp(q) > 0 {
			into[k] = v.DeepCopy()
		}
	}
}

// computeConstrained are the quota names that oblige every container to
// state the matching request or limit.
var computeConstrained = []corev1.ResourceName{
	corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceRequestsCPU, corev1.ResourceRequestsMemory,
	corev1.ResourceLimitsCPU, corev1.ResourceLimitsMemory,
}

// MissingCompute returns the names hard constrains that some container of
// pod does not specify (upstream: "must specify requests.cpu").
func MissingCompute(hard corev1.ResourceList, pod *corev1.Pod) []string {
	missing := map[string]bool{}
	for _, c := range append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...) {
		have := computeNames(c.Resources.Requests, c.Resources.Limits)
		for _, n := range computeConstrained {
			if _, constrained := hard[n]; !constrained {
				continue
			}
			if _, ok := have[n]; !ok {
				missing[string(n)] = true
			}
		}
	}
	out := make([]string, 0, len(missing))
	for n := range missing {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Matches reports whether quota q tracks obj: quotas with scopes only track
// pods in those scopes (Terminating, NotTerminating, BestEffort,
// NotBestEffort); scope selectors with other scopes match nothing here.
func Matches(q *corev1.ResourceQuota, obj runtime.Object) bool {
	scopes := append([]corev1.ResourceQuotaScope{}, q.Spec.Scopes...)
	if sel := q.Spec.ScopeSelector; sel != nil {
		for _, e := range sel.MatchExpressions {
			switch e.Operator {
			case corev1.ScopeSelectorOpExists:
				scopes = append(scopes, e.ScopeName)
			case corev1.ScopeSelectorOpDoesNotExist:
				scopes = append(scopes, opposite(e.ScopeName))
			default:
				return false
			}
		}
	}
	if len(scopes) == 0 {
		return true
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return false
	}
	for _, s := range scopes {
		if !podInScope(pod, s) {
			return false
		}
	}
	return true
}

func opposite(s corev1.ResourceQuotaScope) corev1.ResourceQuotaScope {
	switch s {
	case corev1.ResourceQuotaScopeTerminating:
		return corev1.ResourceQuotaScopeNotTerminating
	case corev1.ResourceQuotaScopeNotTerminating:
		return corev1.ResourceQuotaScopeTerminating
	case corev1.ResourceQuotaScopeBestEffort:
		return corev1.ResourceQuotaScopeNotBestEffort
	case corev1.ResourceQuotaScopeNotBestEffort:
		return corev1.ResourceQuotaScopeBestEffort
	}
	return "unsupported"
}

func podInScope(pod *corev1.Pod, s corev1.ResourceQuotaScope) bool {
	switch s {
	case corev1.ResourceQuotaScopeTerminating:
		return pod.Spec.ActiveDeadlineSeconds != nil
	case corev1.ResourceQuotaScopeNotTerminating:
		return pod.Spec.ActiveDeadlineSeconds == nil
	case corev1.ResourceQuotaScopeBestEffort:
		return isBestEffort(pod)
	case corev1.ResourceQuotaScopeNotBestEffort:
		return !isBestEffort(pod)
	}
	return false
}

func isBestEffort(pod *corev1.Pod) bool {
	for _, c := range append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...) {
		if len(c.Resources.Requests) > 0 || len(c.Resources.Limits) > 0 {
			return false
		}
	}
	return true
}

// Add returns a + b.
func Add(a, b corev1.ResourceList) corev1.ResourceList {
	out := a.DeepCopy()
	if out == nil {
		out = corev1.ResourceList{}
	}
	addTo(out, b)
	return out
}

// Mask returns the entries of l whose names are in names.
func Mask(l corev1.ResourceList, names corev1.ResourceList) corev1.ResourceList {
	out := corev1.ResourceList{}
	for k, v := range l {
		if _, ok := names[k]; ok {
			out[k] = v.DeepCopy()
		}
	}
	return out
}

// PrettyPrint renders a list as upstream's quota messages do: sorted
// name=value pairs joined by commas.
func PrettyPrint(l corev1.ResourceList) string {
	parts := make([]string, 0, len(l))
	for k, v := range l {
		parts = append(parts, fmt.Sprintf("%s=%s", k, v.String()))
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}
