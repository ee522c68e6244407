package volume

import (
	"context"
	"fmt"
	"os"
	"path"

	authv1 "k8s.io/api/authentication/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"skiff.dev/skiff/internal/kubelet/downward"
)

const defaultMode = 0o644

func modeOr(m *int32, def os.FileMode) os.FileMode {
	if m != nil {
		return os.FileMode(*m) & 0o777
	}
	return def
}

func isTrue(b *bool) bool { return b != nil && *b }

// keyFiles maps an object's keys to files: every key when items is empty,
// else only the listed ones (a listed key that is missing is an error
// unless the source is optional).
func keyFiles(out map[string]File, kind, name string, data map[string][]byte, items []v1.KeyToPath, mode os.FileMode, optional bool) error {
	if len(items) == 0 {
		for k, v := range data {
			out[k] = File{Data: v, Mode: mode}
		}
		return nil
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			if optional {
				continue
			}
			return fmt.Errorf("configuration error: key %q not found in %s %q", it.Key, kind, name)
		}
		out[it.Path] = File{Data: v, Mode: modeOr(it.Mode, mode)}
	}
	return nil
}

func configMapData(cm *v1.ConfigMap) map[string][]byte {
	d := make(map[string][]byte, len(cm.Data)+len(cm.BinaryData))
	for k, v := range cm.Data {
		d[k] = []byte(v)
	}
	for k, v := range cm.BinaryData {
		d[k] = v
	}
	return d
}

func (m *Manager) configMapFiles(ctx context.Context, pod *v1.Pod, out map[string]File, name string, items []v1.KeyToPath, mode os.FileMode, optional bool) error {
	cm, err := m.objects.ConfigMap(ctx, pod.Namespace, name)
	if err != nil {
		if apierrors.IsNotFound(err) && optional {
			return nil
		}
		return fmt.Errorf("getting configmap %q: %w", name, err)
	}
	return keyFiles(out, "configmap", name, configMapData(cm), items, mode, optional)
}

func (m *Manager) secretFiles(ctx context.Context, pod *v1.Pod, out map[string]File, name string, items []v1.KeyToPath, mode os.FileMode, optional bool) error {
	s, err := m.objects.Secret(ctx, pod.Namespace, name)
	if err != nil {
		if apierrors.IsNotFound(err) && optional {
			return nil
		}
		return fmt.Errorf("getting secret %q: %w", name, err)
	}
	data := make(map[string][]byte, len(s.Data)+len(s.StringData))
	for k, v := range s.Data {
		data[k] = v
	}
	for k, v := range s.StringData {
		data[k] = []byte(v)
	}
	return keyFiles(out, "secret", name, data, items, mode, optional)
}

func (m *Manager) downwardFiles(pod *v1.Pod, out map[string]File, items []v1.DownwardAPIVolumeFile, mode os.FileMode) error {
	for _, it := range items {
		var v string
		var err error
		switch {
		case it.FieldRef != nil:
			v, err = downward.PodField(pod, it.FieldRef.FieldPath, m.downwardRT)
		case it.ResourceFieldRef != nil:
			c, ok := downward.FindContainer(pod, it.ResourceFieldRef.ContainerName)
			if !ok {
				return fmt.Errorf("downwardAPI item %q: unknown container %q", it.Path, it.ResourceFieldRef.ContainerName)
			}
			v, err = downward.ResourceField(c, it.ResourceFieldRef, m.downwardRT)
		default:
			return fmt.Errorf("downwardAPI item %q has neither fieldRef nor resourceFieldRef", it.Path)
		}
		if err != nil {
			return fmt.Errorf("downwardAPI item %q: %w", it.Path, err)
		}
		out[it.Path] = File{Data: []byte(v), Mode: modeOr(it.Mode, mode)}
	}
	return nil
}

// projectedFiles renders a projected volume; tokens it requests are
// refreshed later, so it also returns when the soonest one goes stale.
func (m *Manager) projectedFiles(ctx context.Context, pod *v1.Pod, volName string, p *v1.ProjectedVolumeSource) (map[string]File, error) {
	out := map[string]File{}
	mode := modeOr(p.DefaultMode, defaultMode)
	for i, src := range p.Sources {
		var err error
		switch {
		case src.ConfigMap != nil:
			err = m.configMapFiles(ctx, pod, out, src.ConfigMap.Name, src.ConfigMap.Items, mode, isTrue(src.ConfigMap.Optional))
		case src.Secret != nil:
			err = m.secretFiles(ctx, pod, out, src.Secret.Name, src.Secret.Items, mode, isTrue(src.Secret.Optional))
		case src.DownwardAPI != nil:
			err = m.downwardFiles(pod, out, src.DownwardAPI.Items, mode)
		case src.ServiceAccountToken != nil:
			var tok string
			tok, err = m.token(ctx, pod, volName, i, src.ServiceAccountToken)
			if err == nil {
				// Tokens are private to the pod's user unless the pod
				// says otherwise, as upstream.
				tmode := os.FileMode(0o600)
				if p.DefaultMode != nil {
					tmode = mode
				}
				out[path.Clean(src.ServiceAccountToken.Path)] = File{Data: []byte(tok), Mode: tmode}
			}
		case src.ClusterTrustBundle != nil, src.PodCertificate != nil:
			err = fmt.Errorf("projected source %d: only configMap, secret, downwardAPI and serviceAccountToken are supported", i)
		}
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// token returns a service-account token for the pod, requesting a new one
// through the TokenRequest API when there is none yet or the cached one has
// lived 80% of its lifetime (or 24 h), as upstream's token manager does.
func (m *Manager) token(ctx context.Context, pod *v1.Pod, volName string, idx int, src *v1.ServiceAccountTokenProjection) (string, error) {
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	exp := int64(3600)
	if src.ExpirationSeconds != nil {
		exp = *src.ExpirationSeconds
	}
	key := tokenKey{uid: pod.UID, volume: volName, index: idx}
	now := m.clock.Now()
	m.mu.Lock()
	cached, ok := m.tokens[key]
	m.mu.Unlock()
	if ok && cached.audience == src.Audience && cached.exp == exp && now.Before(cached.refreshAt) {
		return cached.token, nil
	}
	req := &authv1.TokenRequest{Spec: authv1.TokenRequestSpec{
		ExpirationSeconds: &exp,
		BoundObjectRef:    &authv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
	}}
	if src.Audience != "" {
		req.Spec.Audiences = []string{src.Audience}
	}
	resp, err := m.objects.Token(ctx, pod.Namespace, sa, req)
	if err != nil {
		if ok && now.Before(cached.expires) {
			return cached.token, nil // keep serving the old one until it expires
		}
		return "", fmt.Errorf("requesting token for service account %s/%s: %w", pod.Namespace, sa, err)
	}
	issued := now
	if resp.Status.ExpirationTimestamp.IsZero() {
		return "", fmt.Errorf("token for service account %s/%s has no expiration", pod.Namespace, sa)
	}
	expires := resp.Status.ExpirationTimestamp.Time
	ttl := expires.Sub(issued)
	if ttl <= 0 {
		return "", fmt.Errorf("token for service account %s/%s expired on arrival (%s)", pod.Namespace, sa, expires)
	}
	refreshAt := issued.Add(ttl * 8 / 10)
	if lim := issued.Add(24 * 3600e9); refreshAt.After(lim) {
		refreshAt = lim
	}
	m.mu.Lock()
	m.tokens[key] = cachedToken{token: resp.Status.Token, audience: src.Audience, exp: exp, refreshAt: refreshAt, expires: expires}
	m.mu.Unlock()
	return resp.Status.Token, nil
}
