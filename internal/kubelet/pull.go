package kubelet

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/utils/clock"
)

// The image pull path: imagePullPolicy, imagePullSecrets turned into CRI
// AuthConfigs, and the per-pod, per-image back-off that turns repeated
// ErrImagePull into ImagePullBackOff (10 s doubling to 5 min, as upstream).

// Waiting reasons of a container whose image is not there.
const (
	reasonErrImagePull      = "ErrImagePull"
	reasonImagePullBackOff  = "ImagePullBackOff"
	reasonErrImageNeverPull = "ErrImageNeverPull"
	reasonInvalidImageName  = "InvalidImageName"
)

const (
	pullBackOffInitial = 10 * time.Second
	pullBackOffMax     = 5 * time.Minute
)

// imageError is an image failure reported as the container's waiting
// reason (ErrImagePull, ImagePullBackOff, ErrImageNeverPull).
type imageError struct {
	reason string
	err    error
}

func (e *imageError) Error() string { return e.err.Error() }
func (e *imageError) Unwrap() error { return e.err }

// secretGetter reads the pod's pull secrets.
type secretGetter interface {
	Secret(ctx context.Context, ns, name string) (*v1.Secret, error)
}

// imagePuller ensures images are present according to the pull policy.
type imagePuller struct {
	img     runtimeapi.ImageServiceClient
	secrets secretGetter
	clock   clock.PassiveClock

	mu      sync.Mutex
	backoff map[string]pullBackoff // podUID + "/" + image
}

type pullBackoff struct {
	until time.Time
	delay time.Duration
}

func newImagePuller(img runtimeapi.ImageServiceClient, secrets secretGetter, clk clock.PassiveClock) *imagePuller {
	return &imagePuller{img: img, secrets: secrets, clock: clk, backoff: map[string]pullBackoff{}}
}

// effectivePullPolicy is the container's policy. The API server defaults
// it (Always for :latest or untagged images); a pod that reaches the
// kubelet without one is treated as IfNotPresent, so an image that is
// already there is never pulled again.
func effectivePullPolicy(c *v1.Container) v1.PullPolicy {
	if c.ImagePullPolicy == "" {
		return v1.PullIfNotPresent
	}
	return c.ImagePullPolicy
}

// ensure applies the pull policy to c's image and returns the image
// reference to create the container from.
func (p *imagePuller) ensure(ctx context.Context, pod *v1.Pod, c *v1.Container, sandbox *runtimeapi.PodSandboxConfig) (string, error) {
	if strings.TrimSpace(c.Image) == "" {
		return "", &imageError{reasonInvalidImageName, errors.New("container has no image")}
	}
	spec := &runtimeapi.ImageSpec{Image: c.Image}
	policy := effectivePullPolicy(c)
	if policy != v1.PullAlways {
		st, err := p.img.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: spec})
		if err != nil {
			return "", fmt.Errorf("getting status of image %s: %w", c.Image, err)
		}
		if st.GetImage() != nil {
			return st.GetImage().GetId(), nil
		}
		if policy == v1.PullNever {
			return "", &imageError{reasonErrImageNeverPull, fmt.Errorf("container image %q is not present with pull policy of Never", c.Image)}
		}
	}
	key := string(pod.UID) + "/" + c.Image
	now := p.clock.Now()
	p.mu.Lock()
	b, failed := p.backoff[key]
	p.mu.Unlock()
	if failed && now.Before(b.until) {
		return "", &imageError{reasonImagePullBackOff, fmt.Errorf("Back-off pulling image %q", c.Image)}
	}
	ref, err := p.pull(ctx, pod, spec, sandbox)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		d := pullBackOffInitial
		if failed {
			d = min(2*b.delay, pullBackOffMax)
		}
		p.backoff[key] = pullBackoff{until: now.Add(d), delay: d}
		return "", &imageError{reasonErrImagePull, err}
	}
	delete(p.backoff, key)
	return ref, nil
}

// forget drops the back-off state of a pod that is gone.
func (p *imagePuller) forget(uid types.UID) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k := range p.backoff {
		if strings.HasPrefix(k, string(uid)+"/") {
			delete(p.backoff, k)
		}
	}
}

// pull pulls with each matching credential from the pod's pull secrets in
// turn (anonymously when none matches), as upstream's keyring does.
func (p *imagePuller) pull(ctx context.Context, pod *v1.Pod, spec *runtimeapi.ImageSpec, sandbox *runtimeapi.PodSandboxConfig) (string, error) {
	var secrets []*v1.Secret
	for _, ref := range pod.Spec.ImagePullSecrets {
		if ref.Name == "" {
			continue
		}
		s, err := p.secrets.Secret(ctx, pod.Namespace, ref.Name)
		if err != nil {
			// Upstream carries on without a missing secret; so do we.
			continue
		}
		secrets = append(secrets, s)
	}
	auths, err := credentialsFor(spec.Image, secrets)
	if err != nil {
		return "", err
	}
	if len(auths) == 0 {
		auths = []*runtimeapi.AuthConfig{nil}
	}
	var errs []error
	for _, a := range auths {
		resp, err := p.img.PullImage(ctx, &runtimeapi.PullImageRequest{Image: spec, Auth: a, SandboxConfig: sandbox})
		if err == nil {
			return resp.GetImageRef(), nil
		}
		errs = append(errs, err)
	}
	return "", fmt.Errorf("pulling image %s: %w", spec.Image, errors.Join(errs...))
}

// dockerAuth is one registry's entry in a docker config.
type dockerAuth struct {
	Username      string `json:"username,omitempty"`
	Password      string `json:"password,omitempty"`
	Auth          string `json:"auth,omitempty"`
	IdentityToken string `json:"identitytoken,omitempty"`
	RegistryToken string `json:"registrytoken,omitempty"`
}

// secretAuths reads the registry entries of a kubernetes.io/dockerconfigjson
// or kubernetes.io/dockercfg secret; other types hold none.
func secretAuths(s *v1.Secret) (map[string]dockerAuth, error) {
	switch s.Type {
	case v1.SecretTypeDockerConfigJson:
		var cfg struct {
			Auths map[string]dockerAuth `json:"auths"`
		}
		if err := json.Unmarshal(s.Data[v1.DockerConfigJsonKey], &cfg); err != nil {
			return nil, fmt.Errorf("parsing %s of secret %s/%s: %w", v1.DockerConfigJsonKey, s.Namespace, s.Name, err)
		}
		return cfg.Auths, nil
	case v1.SecretTypeDockercfg:
		var cfg map[string]dockerAuth
		if err := json.Unmarshal(s.Data[v1.DockerConfigKey], &cfg); err != nil {
			return nil, fmt.Errorf("parsing %s of secret %s/%s: %w", v1.DockerConfigKey, s.Namespace, s.Name, err)
		}
		return cfg, nil
	}
	return nil, nil
}

// credentialsFor returns the AuthConfigs of the secrets' entries that
// match image's registry and repository, most specific entry first.
func credentialsFor(image string, secrets []*v1.Secret) ([]*runtimeapi.AuthConfig, error) {
	host, repo := splitImage(image)
	type match struct {
		pathLen int
		auth    *runtimeapi.AuthConfig
	}
	var ms []match
	for _, s := range secrets {
		entries, err := secretAuths(s)
		if err != nil {
			return nil, err
		}
		keys := make([]string, 0, len(entries))
		for k := range entries {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			kh, kp := splitKey(k)
			if kh != host || (kp != "" && repo != kp && !strings.HasPrefix(repo, kp+"/")) {
				continue
			}
			e := entries[k]
			// ServerAddress stays empty: the runtime applies the
			// credentials to the image's own registry, and containerd
			// 1.6 cannot parse a key without a scheme (host:port).
			a := &runtimeapi.AuthConfig{Username: e.Username, Password: e.Password, Auth: e.Auth,
				IdentityToken: e.IdentityToken, RegistryToken: e.RegistryToken}
			if a.Username == "" && a.Password == "" && e.Auth != "" {
				if raw, err := base64.StdEncoding.DecodeString(e.Auth); err == nil {
					if u, pw, ok := strings.Cut(string(raw), ":"); ok {
						a.Username, a.Password = u, pw
					}
				}
			}
			ms = append(ms, match{len(kp), a})
		}
	}
	sort.SliceStable(ms, func(i, j int) bool { return ms[i].pathLen > ms[j].pathLen })
	out := make([]*runtimeapi.AuthConfig, len(ms))
	for i, m := range ms {
		out[i] = m.auth
	}
	return out, nil
}

// splitImage is the registry host and repository path of an image
// reference, with Docker Hub's defaults.
func splitImage(image string) (host, repo string) {
	name := image
	if i := strings.Index(name, "@"); i >= 0 {
		name = name[:i]
	}
	if i := strings.LastIndex(name, ":"); i >= 0 && !strings.Contains(name[i:], "/") {
		name = name[:i]
	}
	first, rest, ok := strings.Cut(name, "/")
	if !ok || (!strings.ContainsAny(first, ".:") && first != "localhost") {
		host, repo = "docker.io", name
		if !ok {
			repo = "library/" + name
		}
		return host, repo
	}
	return normalizeHost(first), rest
}

// splitKey parses a docker config key: a host, host/path, or a URL such as
// https://index.docker.io/v1/.
func splitKey(k string) (host, path string) {
	k = strings.TrimPrefix(strings.TrimPrefix(k, "https://"), "http://")
	k = strings.TrimSuffix(k, "/")
	host, path, _ = strings.Cut(k, "/")
	host = normalizeHost(host)
	if host == "docker.io" && (path == "v1" || path == "v2") {
		path = ""
	}
	return host, path
}

func normalizeHost(h string) string {
	h = strings.ToLower(h)
	switch h {
	case "index.docker.io", "registry-1.docker.io":
		return "docker.io"
	}
	return h
}
