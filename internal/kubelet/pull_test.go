package kubelet

import (
	"context"
	"encoding/base64"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	clocktesting "k8s.io/utils/clock/testing"
)

// fakeImages is a CRI image service holding a set of images; pulls
// succeed only with the wanted credentials (or any, when want is nil).
type fakeImages struct {
	runtimeapi.ImageServiceClient
	have  map[string]bool
	want  *runtimeapi.AuthConfig
	pulls []*runtimeapi.AuthConfig
}

func (f *fakeImages) ImageStatus(_ context.Context, r *runtimeapi.ImageStatusRequest, _ ...grpc.CallOption) (*runtimeapi.ImageStatusResponse, error) {
	if f.have[r.GetImage().GetImage()] {
		return &runtimeapi.ImageStatusResponse{Image: &runtimeapi.Image{Id: "sha256:" + r.GetImage().GetImage()}}, nil
	}
	return &runtimeapi.ImageStatusResponse{}, nil
}

func (f *fakeImages) PullImage(_ context.Context, r *runtimeapi.PullImageRequest, _ ...grpc.CallOption) (*runtimeapi.PullImageResponse, error) {
	f.pulls = append(f.pulls, r.GetAuth())
	if f.want != nil && (r.GetAuth() == nil || r.GetAuth().GetUsername() != f.want.Username || r.GetAuth().GetPassword() != f.want.Password) {
		return nil, errors.New("401 unauthorized")
	}
	f.have[r.GetImage().GetImage()] = true
	return &runtimeapi.PullImageResponse{ImageRef: "sha256:" + r.GetImage().GetImage()}, nil
}

type fakeSecrets map[string]*v1.Secret

func (f fakeSecrets) Secret(_ context.Context, ns, name string) (*v1.Secret, error) {
	if s, ok := f[ns+"/"+name]; ok {
		return s, nil
	}
	return nil, apierrors.NewNotFound(v1.Resource("secrets"), name)
}

func reasonOf(err error) string {
	var ie *imageError
	if errors.As(err, &ie) {
		return ie.reason
	}
	return ""
}

func TestPullPolicy(t *testing.T) {
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", UID: "u1"}}
	for _, tc := range []struct {
		name       string
		policy     v1.PullPolicy
		image      string
		present    bool
		wantPulls  int
		wantReason string
	}{
		{"IfNotPresent present", v1.PullIfNotPresent, "r.example/a:v1", true, 0, ""},
		{"IfNotPresent absent", v1.PullIfNotPresent, "r.example/a:v1", false, 1, ""},
		{"Always present", v1.PullAlways, "r.example/a:v1", true, 1, ""},
		{"Never present", v1.PullNever, "r.example/a:v1", true, 0, ""},
		{"Never absent", v1.PullNever, "r.example/a:v1", false, 0, reasonErrImageNeverPull},
		{"unset present", "", "r.example/a:latest", true, 0, ""},
		{"unset absent", "", "r.example:5000/a", false, 1, ""},
	} {
		imgs := &fakeImages{have: map[string]bool{}}
		if tc.present {
			imgs.have[tc.image] = true
		}
		p := newImagePuller(imgs, fakeSecrets{}, clocktesting.NewFakeClock(time.Now()))
		_, err := p.ensure(context.Background(), pod, &v1.Container{Image: tc.image, ImagePullPolicy: tc.policy}, nil)
		if got := reasonOf(err); got != tc.wantReason || (tc.wantReason == "" && err != nil) {
			t.Errorf("%s: err %v (reason %q), want reason %q", tc.name, err, got, tc.wantReason)
		}
		if len(imgs.pulls) != tc.wantPulls {
			t.Errorf("%s: %d pulls, want %d", tc.name, len(imgs.pulls), tc.wantPulls)
		}
	}
}

func TestPullBackOff(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Now())
	imgs := &fakeImages{have: map[string]bool{}, want: &runtimeapi.AuthConfig{Username: "u", Password: "p"}}
	secrets := fakeSecrets{}
	p := newImagePuller(imgs, secrets, clk)
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", UID: "u1"},
		Spec: v1.PodSpec{ImagePullSecrets: []v1.LocalObjectReference{{Name: "creds"}}}}
	c := &v1.Container{Image: "r.example/team/app:v1", ImagePullPolicy: v1.PullIfNotPresent}
	ensure := func() error { _, err := p.ensure(context.Background(), pod, c, nil); return err }

	steps := []struct {
		advance time.Duration
		reason  string
		pulls   int
	}{
		{0, reasonErrImagePull, 1},                    // no secret yet: anonymous pull fails
		{time.Second, reasonImagePullBackOff, 1},      // within 10 s: no pull
		{10 * time.Second, reasonErrImagePull, 2},     // retried, fails; back-off now 20 s
		{15 * time.Second, reasonImagePullBackOff, 2}, // 15 < 20
		{6 * time.Second, reasonErrImagePull, 3},      // 21 s: retried
		{30 * time.Second, reasonImagePullBackOff, 3}, // 30 < 40
		{10 * time.Second, reasonErrImagePull, 4},     // 72 s: retried; back-off 80 s
	}
	for i, s := range steps {
		clk.Step(s.advance)
		if got := reasonOf(ensure()); got != s.reason || len(imgs.pulls) != s.pulls {
			t.Fatalf("step %d: reason %q after %d pulls, want %q after %d", i, got, len(imgs.pulls), s.reason, s.pulls)
		}
	}
	for _, want := range []time.Duration{160 * time.Second, pullBackOffMax, pullBackOffMax} {
		clk.Step(p.backoff["u1/"+c.Image].delay)
		if got := reasonOf(ensure()); got != reasonErrImagePull {
			t.Fatalf("retry after the back-off: reason %q", got)
		}
		if d := p.backoff["u1/"+c.Image].delay; d != want {
			t.Fatalf("back-off %s, want %s", d, want)
		}
	}
	// With the secret in place the next attempt after the back-off pulls
	// with its credentials and clears the back-off.
	auth := base64.StdEncoding.EncodeToString([]byte("u:p"))
	secrets["ns/creds"] = &v1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "creds"}, Type: v1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{v1.DockerConfigJsonKey: []byte(`{"auths":{"r.example":{"auth":"` + auth + `"}}}`)}}
	clk.Step(pullBackOffMax)
	if err := ensure(); err != nil {
		t.Fatalf("pull with credentials: %v", err)
	}
	if last := imgs.pulls[len(imgs.pulls)-1]; last.GetUsername() != "u" || last.GetPassword() != "p" {
		t.Fatalf("last pull used %+v", last)
	}
	p.forget("u1")
	if len(p.backoff) != 0 {
		t.Fatalf("back-off left behind: %v", p.backoff)
	}
}

func TestCredentialsFor(t *testing.T) {
	json := func(s string) *v1.Secret {
		return &v1.Secret{Type: v1.SecretTypeDockerConfigJson, Data: map[string][]byte{v1.DockerConfigJsonKey: []byte(s)}}
	}
	cfg := func(s string) *v1.Secret {
		return &v1.Secret{Type: v1.SecretTypeDockercfg, Data: map[string][]byte{v1.DockerConfigKey: []byte(s)}}
	}
	secrets := []*v1.Secret{
		json(`{"auths":{"https://index.docker.io/v1/":{"username":"hub","password":"h"},"reg.example:5000":{"username":"any","password":"a"}}}`),
		cfg(`{"reg.example:5000/team":{"username":"team","password":"t"},"other.example":{"username":"o","password":"o"}}`),
		{Type: v1.SecretTypeOpaque, Data: map[string][]byte{"x": []byte("y")}},
	}
	for _, tc := range []struct {
		image string
		want  []string
	}{
		{"busybox", []string{"hub"}},
		{"docker.io/library/busybox:1", []string{"hub"}},
		{"reg.example:5000/team/app:v1", []string{"team", "any"}},
		{"reg.example:5000/teamx/app@sha256:abc", []string{"any"}},
		{"reg.example/app", nil},
		{"localhost/skiff/pause:v1", nil},
	} {
		got, err := credentialsFor(tc.image, secrets)
		if err != nil {
			t.Fatal(err)
		}
		var users []string
		for _, a := range got {
			users = append(users, a.Username)
		}
		if len(users) != len(tc.want) {
			t.Errorf("%s: users %v, want %v", tc.image, users, tc.want)
			continue
		}
		for i := range users {
			if users[i] != tc.want[i] {
				t.Errorf("%s: users %v, want %v", tc.image, users, tc.want)
			}
		}
	}
	if _, err := credentialsFor("x", []*v1.Secret{json("{")}); err == nil {
		t.Error("a malformed dockerconfigjson was accepted")
	}
}
