package controllers

import (
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

func TestDefaultServiceAccountAndTokenRequest(t *testing.T) {
	e := start(t, 0)
	waitFor(t, 10*time.Second, "default service account in "+e.ns, func() (bool, error) {
		_, err := e.client.CoreV1().ServiceAccounts(e.ns).Get(e.ctx, "default", metav1.GetOptions{})
		return err == nil, err
	})
	// Deleted, it comes back.
	if err := e.client.CoreV1().ServiceAccounts(e.ns).Delete(e.ctx, "default", metav1.DeleteOptions{}); err != nil {
		t.Fatalf("deleting default service account: %v", err)
	}
	waitFor(t, 10*time.Second, "default service account recreated", func() (bool, error) {
		_, err := e.client.CoreV1().ServiceAccounts(e.ns).Get(e.ctx, "default", metav1.GetOptions{})
		return err == nil, err
	})

	tr, err := e.client.CoreV1().ServiceAccounts(e.ns).CreateToken(e.ctx, "default", &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr(int64(600))},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("requesting token: %v", err)
	}
	if tr.Status.Token == "" || time.Until(tr.Status.ExpirationTimestamp.Time) > 11*time.Minute || time.Until(tr.Status.ExpirationTimestamp.Time) < 9*time.Minute {
		t.Errorf("token response: token %d bytes, expires %v", len(tr.Status.Token), tr.Status.ExpirationTimestamp)
	}
	bearer := func(token string) kubernetes.Interface {
		rc := &rest.Config{Host: e.c.Config.Host, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{CAData: e.c.Config.CAData}}
		cs, err := kubernetes.NewForConfig(rc)
		if err != nil {
			t.Fatalf("building bearer client: %v", err)
		}
		return cs
	}
	if _, err := bearer(tr.Status.Token).CoreV1().ServiceAccounts(e.ns).Get(e.ctx, "default", metav1.GetOptions{}); err != nil {
		t.Errorf("GET with the service account token: %v", err)
	}
	if _, err := bearer(tr.Status.Token+"x").CoreV1().ServiceAccounts(e.ns).Get(e.ctx, "default", metav1.GetOptions{}); !apierrors.IsUnauthorized(err) {
		t.Errorf("GET with a tampered token: err = %v, want Unauthorized", err)
	}
	// A token for another audience is not accepted by the API server.
	other, err := e.client.CoreV1().ServiceAccounts(e.ns).CreateToken(e.ctx, "default", &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{"vault"}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("requesting vault token: %v", err)
	}
	if len(other.Status.Token) == 0 {
		t.Fatalf("empty vault token")
	}
	if _, err := bearer(other.Status.Token).CoreV1().ServiceAccounts(e.ns).Get(e.ctx, "default", metav1.GetOptions{}); !apierrors.IsUnauthorized(err) {
		t.Errorf("GET with a token for audience vault: err = %v, want Unauthorized", err)
	}
	// Tokens name a service account that exists.
	if _, err := e.client.CoreV1().ServiceAccounts(e.ns).CreateToken(e.ctx, "nobody", &authenticationv1.TokenRequest{}, metav1.CreateOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("token for a missing service account: err = %v, want NotFound", err)
	}
}
