package kubelet

import (
	"context"
	"errors"
	"fmt"
	"strings"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"skiff.dev/skiff/internal/kubelet/downward"
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
func resolveEnv(ctx context.Context, pod *v1.Pod, c *v1.Container, rt downward.Runtime, get objectGetter) ([]string, error) {
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
		v, skip, err := envValueFrom(ctx, pod, c, e.ValueFrom, rt, get)
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

func envValueFrom(ctx context.Context, pod *v1.Pod, c *v1.Container, src *v1.EnvVarSource, rt downward.Runtime, get objectGetter) (string, bool, error) {
	optional := func(p *bool) bool { return p != nil && *p }
	switch {
	case src.FieldRef != nil:
		if p := src.FieldRef.FieldPath; p == "metadata.labels" || p == "metadata.annotations" {
			return "", false, &envError{msg: fmt.Sprintf("fieldRef %q is only supported in downwardAPI volumes", p)}
		}
		v, err := downwardErr(downward.PodField(pod, src.FieldRef.FieldPath, rt))
		return v, false, err
	case src.ResourceFieldRef != nil:
		target := c
		if n := src.ResourceFieldRef.ContainerName; n != "" && n != c.Name {
			other, ok := downward.FindContainer(pod, n)
			if !ok {
				return "", false, &envError{msg: fmt.Sprintf("resourceFieldRef names unknown container %q", n)}
			}
			target = other
		}
		v, err := downwardErr(downward.ResourceField(target, src.ResourceFieldRef, rt))
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

// downwardErr turns a bad downward API reference into a configuration
// error.
func downwardErr(v string, err error) (string, error) {
	var de *downward.Error
	if errors.As(err, &de) {
		return "", &envError{msg: de.Msg}
	}
	return v, err
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
