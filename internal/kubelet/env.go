package kubelet

import (
	"context"
	"fmt"
	"strings"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
)

// objectGetter fetches the ConfigMaps and Secrets env refers to; the kubelet
// passes a client, tests a map.
type objectGetter interface {
	ConfigMap(ctx context.Context, namespace, name string) (*v1.ConfigMap, error)
	Secret(ctx context.Context, namespace, name string) (*v1.Secret, error)
}

// envError is a container configuration problem (missing key, bad field
// path): reported as CreateContainerConfigError, retried on later syncs.
type envError struct{ msg string }

func (e *envError) Error() string { return e.msg }

// resolveEnv computes a container's environment as upstream does: envFrom
// first, then env in order, each value expanding $(VAR) references to
// variables defined before it.
func resolveEnv(ctx context.Context, pod *v1.Pod, c *v1.Container, podIPs []string, hostIP string, get objectGetter) ([]string, error) {
	vars := map[string]string{}
	var order []string
	set := func(k, v string) {
		if _, ok := vars[k]; !ok {
			order = append(order, k)
		}
		vars[k] = v
	}
	for _, from := range c.EnvFrom {
		switch {
		case from.ConfigMapRef != nil:
			cm, err := get.ConfigMap(ctx, pod.Namespace, from.ConfigMapRef.Name)
			if err != nil {
				if apierrors.IsNotFound(err) && from.ConfigMapRef.Optional != nil && *from.ConfigMapRef.Optional {
					continue
				}
				return nil, refError("configmap", from.ConfigMapRef.Name, err)
			}
			for k, v := range cm.Data {
				set(from.Prefix+k, v)
			}
		case from.SecretRef != nil:
			s, err := get.Secret(ctx, pod.Namespace, from.SecretRef.Name)
			if err != nil {
				if apierrors.IsNotFound(err) && from.SecretRef.Optional != nil && *from.SecretRef.Optional {
					continue
				}
				return nil, refError("secret", from.SecretRef.Name, err)
			}
			for k, v := range s.Data {
				set(from.Prefix+k, string(v))
			}
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			set(e.Name, expand(e.Value, vars))
			continue
		}
		v, skip, err := envValueFrom(ctx, pod, c, e.ValueFrom, podIPs, hostIP, get)
		if err != nil {
			return nil, err
		}
		if !skip {
			set(e.Name, v)
		}
	}
	out := make([]string, 0, len(order))
	for _, k := range order {
		out = append(out, k+"="+vars[k])
	}
	return out, nil
}

func refError(kind, name string, err error) error {
	if apierrors.IsNotFound(err) {
		return &envError{msg: fmt.Sprintf("%s %q not found", kind, name)}
	}
	return fmt.Errorf("getting %s %q: %w", kind, name, err)
}

func envValueFrom(ctx context.Context, pod *v1.Pod, c *v1.Container, src *v1.EnvVarSource, podIPs []string, hostIP string, get objectGetter) (string, bool, error) {
	optional := func(p *bool) bool { return p != nil && *p }
	switch {
	case src.FieldRef != nil:
		v, err := podField(pod, src.FieldRef.FieldPath, podIPs, hostIP)
		return v, false, err
	case src.ResourceFieldRef != nil:
		v, err := resourceField(c, src.ResourceFieldRef)
		return v, false, err
	case src.ConfigMapKeyRef != nil:
		r := src.ConfigMapKeyRef
		cm, err := get.ConfigMap(ctx, pod.Namespace, r.Name)
		if err != nil {
			if apierrors.IsNotFound(err) && optional(r.Optional) {
				return "", true, nil
			}
			return "", false, refError("configmap", r.Name, err)
		}
		v, ok := cm.Data[r.Key]
		if !ok {
			if optional(r.Optional) {
				return "", true, nil
			}
			return "", false, &envError{msg: fmt.Sprintf("couldn't find key %s in ConfigMap %s/%s", r.Key, pod.Namespace, r.Name)}
		}
		return v, false, nil
	case src.SecretKeyRef != nil:
		r := src.SecretKeyRef
		s, err := get.Secret(ctx, pod.Namespace, r.Name)
		if err != nil {
			if apierrors.IsNotFound(err) && optional(r.Optional) {
				return "", true, nil
			}
			return "", false, refError("secret", r.Name, err)
		}
		v, ok := s.Data[r.Key]
		if !ok {
			if optional(r.Optional) {
				return "", true, nil
			}
			return "", false, &envError{msg: fmt.Sprintf("couldn't find key %s in Secret %s/%s", r.Key, pod.Namespace, r.Name)}
		}
		return string(v), false, nil
	}
	return "", true, nil
}

// podField implements the downward API fields env may reference.
func podField(pod *v1.Pod, path string, podIPs []string, hostIP string) (string, error) {
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
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.hostIP", "status.hostIPs":
		return hostIP, nil
	case "status.podIP":
		if len(podIPs) > 0 {
			return podIPs[0], nil
		}
		return "", nil
	case "status.podIPs":
		return strings.Join(podIPs, ","), nil
	}
	return "", &envError{msg: fmt.Sprintf("unsupported fieldRef path %q", path)}
}

func subscript(path, prefix string) (string, bool) {
	if !strings.HasPrefix(path, prefix+"['") || !strings.HasSuffix(path, "']") {
		return "", false
	}
	return path[len(prefix)+2 : len(path)-2], true
}

// resourceField renders a limit or request in the divisor's units, rounding
// up as upstream does; an unset limit reports the node's allocatable in
// upstream, here it reports 0 until node allocatable is plumbed through.
func resourceField(c *v1.Container, r *v1.ResourceFieldSelector) (string, error) {
	var q resource.Quantity
	switch r.Resource {
	case "limits.cpu":
		q = c.Resources.Limits[v1.ResourceCPU]
	case "limits.memory":
		q = c.Resources.Limits[v1.ResourceMemory]
	case "limits.ephemeral-storage":
		q = c.Resources.Limits[v1.ResourceEphemeralStorage]
	case "requests.cpu":
		q = c.Resources.Requests[v1.ResourceCPU]
	case "requests.memory":
		q = c.Resources.Requests[v1.ResourceMemory]
	case "requests.ephemeral-storage":
		q = c.Resources.Requests[v1.ResourceEphemeralStorage]
	default:
		return "", &envError{msg: fmt.Sprintf("unsupported resourceFieldRef %q", r.Resource)}
	}
	div := r.Divisor
	if div.IsZero() {
		div = resource.MustParse("1")
	}
	if strings.HasSuffix(r.Resource, ".cpu") {
		v := (q.MilliValue() + div.MilliValue() - 1) / div.MilliValue()
		return fmt.Sprint(v), nil
	}
	v := (q.Value() + div.Value() - 1) / div.Value()
	return fmt.Sprint(v), nil
}

// expand replaces $(VAR) with vars[VAR] when defined, leaves unknown
// references as written, and turns $$ into $.
func expand(s string, vars map[string]string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+2+end]
			if v, ok := vars[name]; ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}
