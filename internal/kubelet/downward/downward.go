// Package downward renders the downward API: the pod fields and container
// resources that env (fieldRef, resourceFieldRef) and downwardAPI volumes
// expose to a pod. It is pure; the kubelet passes what only it knows (pod
// IPs, host IP, node allocatable).
package downward

import (
	"fmt"
	"sort"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Error is a bad reference in the pod spec (unknown field path, unknown
// container or resource); callers report it as a configuration error.
type Error struct{ Msg string }

func (e *Error) Error() string { return e.Msg }

// Runtime is what the kubelet knows about a running pod beyond its spec.
type Runtime struct {
	PodIPs []string
	HostIP string
	// Allocatable is the node's allocatable, reported for a limit the
	// container does not set, as upstream does.
	Allocatable v1.ResourceList
}

// PodField renders a fieldRef path. Whole label and annotation maps
// (metadata.labels, metadata.annotations) are only valid in volumes and
// render one key="value" line per entry, sorted by key.
func PodField(pod *v1.Pod, path string, rt Runtime) (string, error) {
	if k, ok := subscript(path, "metadata.labels"); ok {
		return pod.Labels[k], nil
	}
	if k, ok := subscript(path, "metadata.annotations"); ok {
		return pod.Annotations[k], nil
	}
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "metadata.labels":
		return FormatMap(pod.Labels), nil
	case "metadata.annotations":
		return FormatMap(pod.Annotations), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.hostIP", "status.hostIPs":
		return rt.HostIP, nil
	case "status.podIP":
		if len(rt.PodIPs) > 0 {
			return rt.PodIPs[0], nil
		}
		return "", nil
	case "status.podIPs":
		return strings.Join(rt.PodIPs, ","), nil
	}
	return "", &Error{Msg: fmt.Sprintf("unsupported fieldRef path %q", path)}
}

// FormatMap renders a label or annotation map as upstream's downward API
// files do: key="value" lines (Go-quoted values) sorted by key.
func FormatMap(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	lines := make([]string, len(keys))
	for i, k := range keys {
		lines[i] = fmt.Sprintf("%s=%q", k, m[k])
	}
	return strings.Join(lines, "\n")
}

func subscript(path, prefix string) (string, bool) {
	if !strings.HasPrefix(path, prefix+"['") || !strings.HasSuffix(path, "']") {
		return "", false
	}
	return path[len(prefix)+2 : len(path)-2], true
}

// FindContainer returns the container (app or init) named name.
func FindContainer(pod *v1.Pod, name string) (*v1.Container, bool) {
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == name {
			return &pod.Spec.Containers[i], true
		}
	}
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Name == name {
			return &pod.Spec.InitContainers[i], true
		}
	}
	return nil, false
}

// ResourceField renders a container's limit or request in the divisor's
// units, rounding up as upstream does. An unset limit reports the node's
// allocatable (when known); an unset request reports 0.
func ResourceField(c *v1.Container, r *v1.ResourceFieldSelector, rt Runtime) (string, error) {
	name, isLimit, ok := resourceName(r.Resource)
	if !ok {
		return "", &Error{Msg: fmt.Sprintf("unsupported resourceFieldRef %q", r.Resource)}
	}
	var q resource.Quantity
	var set bool
	if isLimit {
		q, set = c.Resources.Limits[name]
		if !set {
			q = rt.Allocatable[name]
		}
	} else {
		q = c.Resources.Requests[name]
	}
	div := r.Divisor
	if div.IsZero() {
		div = resource.MustParse("1")
	}
	if name == v1.ResourceCPU {
		return fmt.Sprint((q.MilliValue() + div.MilliValue() - 1) / div.MilliValue()), nil
	}
	return fmt.Sprint((q.Value() + div.Value() - 1) / div.Value()), nil
}

func resourceName(s string) (v1.ResourceName, bool, bool) {
	kind, name, ok := strings.Cut(s, ".")
	if !ok || (kind != "limits" && kind != "requests") {
		return "", false, false
	}
	switch v1.ResourceName(name) {
	case v1.ResourceCPU, v1.ResourceMemory, v1.ResourceEphemeralStorage:
		return v1.ResourceName(name), kind == "limits", true
	}
	return "", false, false
}
