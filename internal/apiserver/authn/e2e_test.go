package authn_test

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"skiff.dev/skiff/internal/apiserver/authn"
	"skiff.dev/skiff/internal/kubeconfig"
	"skiff.dev/skiff/internal/pki"
	"skiff.dev/skiff/internal/serviceaccount"
)

// selfSubjectReview answers POST .../selfsubjectreviews (kubectl auth
// whoami) with the authenticated user, so client-go can ask who it is.
func selfSubjectReview(w http.ResponseWriter, r *http.Request) {
	u, ok := authn.UserFrom(r.Context())
	if !ok || r.Method != http.MethodPost || r.URL.Path != "/apis/authentication.k8s.io/v1/selfsubjectreviews" {
		http.Error(w, "unexpected request", http.StatusNotFound)
		return
	}
	extra := map[string]authnv1.ExtraValue{}
	for k, v := range u.Extra {
		extra[k] = v
	}
	review := authnv1.SelfSubjectReview{
		TypeMeta: metav1.TypeMeta{Kind: "SelfSubjectReview", APIVersion: "authentication.k8s.io/v1"},
		Status: authnv1.SelfSubjectReviewStatus{UserInfo: authnv1.UserInfo{
			Username: u.Name, UID: u.UID, Groups: u.Groups, Extra: extra,
		}},
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(&review)
}

func whoami(t *testing.T, kubeconfigPath string) (authnv1.UserInfo, error) {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfigPath)
	if err != nil {
		t.Fatalf("loading kubeconfig: %v", err)
	}
	cfg.Timeout = 10 * time.Second
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	res, err := cs.AuthenticationV1().SelfSubjectReviews().Create(context.Background(), &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return authnv1.UserInfo{}, err
	}
	return res.Status.UserInfo, nil
}

// TestEndToEnd runs a TLS server configured as the API server will be
// (serving cert from the data dir, client certificates requested but
// verified by authn) and drives it with client-go through kubeconfigs
// written by internal/kubeconfig.
func TestEndToEnd(t *testing.T) {
	dataDir := t.TempDir()
	bundle, err := pki.Bootstrap(pki.BootstrapOptions{DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := bundle.ServingTLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	iss, err := serviceaccount.NewIssuer(bundle.ServiceAccountKey, serviceaccount.IssuerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ver, err := serviceaccount.NewVerifier([]*ecdsa.PublicKey{iss.PublicKey()}, serviceaccount.VerifierOptions{})
	if err != nil {
		t.Fatal(err)
	}
	static, err := authn.NewStaticTokens(map[string]authn.User{
		bundle.JoinToken.Secret: {Name: "skiff-agent-join", Groups: []string{"system:bootstrappers"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	a := authn.NewUnion(
		authn.NewX509(bundle.CA.Pool(), authn.X509Options{}),
		authn.NewBearer(static, authn.NewServiceAccountTokens(ver, authn.ServiceAccountOptions{})),
	)
	srv := httptest.NewUnstartedServer(authn.Middleware(a, authn.MiddlewareOptions{}, http.HandlerFunc(selfSubjectReview)))
	srv.TLS = tlsCfg
	srv.StartTLS()
	defer srv.Close()
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()

	t.Run("admin client certificate", func(t *testing.T) {
		// Both a loopback IP and a DNS name must match the serving cert.
		for _, host := range []string{"127.0.0.1", "localhost"} {
			path := filepath.Join(dir, "admin-"+host)
			server := "https://" + host + ":" + u.Port()
			if err := kubeconfig.WriteAdmin(path, server, bundle.CA.CertPEM, bundle.AdminCertPEM, bundle.AdminKeyPEM); err != nil {
				t.Fatal(err)
			}
			info, err := whoami(t, path)
			if err != nil {
				t.Fatalf("%s: %v", server, err)
			}
			if info.Username != "system:admin" || !slices.Equal(info.Groups, []string{"system:masters", "system:authenticated"}) {
				t.Errorf("%s: user = %+v", server, info)
			}
		}
	})

	t.Run("service-account token", func(t *testing.T) {
		tok, _, err := iss.Issue(serviceaccount.Request{Namespace: "default", ServiceAccount: serviceaccount.Ref{Name: "default", UID: "sa-1"}})
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "sa")
		if err := kubeconfig.WriteToken(path, srv.URL, bundle.CA.CertPEM, tok); err != nil {
			t.Fatal(err)
		}
		info, err := whoami(t, path)
		if err != nil {
			t.Fatal(err)
		}
		if info.Username != "system:serviceaccount:default:default" || info.UID != "sa-1" ||
			!slices.Equal(info.Groups, []string{"system:serviceaccounts", "system:serviceaccounts:default", "system:authenticated"}) {
			t.Errorf("user = %+v", info)
		}
	})

	t.Run("join token", func(t *testing.T) {
		path := filepath.Join(dir, "join")
		if err := kubeconfig.WriteToken(path, srv.URL, bundle.CA.CertPEM, bundle.JoinToken.Secret); err != nil {
			t.Fatal(err)
		}
		info, err := whoami(t, path)
		if err != nil || info.Username != "skiff-agent-join" {
			t.Fatalf("user = %+v, err %v", info, err)
		}
	})

	t.Run("rejected credentials", func(t *testing.T) {
		// Go's TLS client withholds a certificate whose issuer is not among
		// the server's acceptable CAs, so the foreign certificate may never
		// reach authn here; TestX509 covers its rejection by chain
		// verification. What matters end to end is the 401.
		other, err := pki.NewCA("intruder", time.Now(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		cert, key, err := other.IssueClient("system:admin", []string{"system:masters"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		foreign := filepath.Join(dir, "foreign")
		if err := kubeconfig.WriteAdmin(foreign, srv.URL, bundle.CA.CertPEM, cert, key); err != nil {
			t.Fatal(err)
		}
		badToken := filepath.Join(dir, "bad-token")
		if err := kubeconfig.WriteToken(badToken, srv.URL, bundle.CA.CertPEM, "not-a-token"); err != nil {
			t.Fatal(err)
		}
		for _, path := range []string{foreign, badToken} {
			if _, err := whoami(t, path); !apierrors.IsUnauthorized(err) {
				t.Errorf("%s: err = %v, want 401 Unauthorized", filepath.Base(path), err)
			}
		}
	})
}
