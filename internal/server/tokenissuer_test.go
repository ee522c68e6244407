package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"skiff.dev/skiff/internal/serviceaccount"
)

// A pod-bound token names the pod's node with its uid when the node
// exists (the kubelet's projected token volumes failed with "a bound node
// needs a name and uid" before), leaves the node out when it is gone, and
// fails when the node cannot be looked up.
func TestTokenIssuerBindsPodsNode(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := serviceaccount.NewIssuer(key, serviceaccount.IssuerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "default", UID: "sa-uid"}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", UID: "pod-uid"}, Spec: corev1.PodSpec{NodeName: "n1"}}
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{Audiences: []string{"api"}}}
	notFound := apierrors.NewNotFound(schema.GroupResource{Resource: "nodes"}, "n1")

	for _, tc := range []struct {
		name     string
		lookup   error
		wantNode *serviceaccount.Ref
		wantErr  bool
	}{
		{name: "node exists", wantNode: &serviceaccount.Ref{Name: "n1", UID: "node-uid"}},
		{name: "node gone", lookup: notFound},
		{name: "lookup fails", lookup: errors.New("etcd down"), wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ti := &tokenIssuer{issuer: issuer, nodeUID: func(_ context.Context, name string) (string, error) {
				if name != "n1" {
					t.Errorf("looked up node %q, want n1", name)
				}
				return "node-uid", tc.lookup
			}}
			tok, _, err := ti.IssueFor(context.Background(), sa, req, pod)
			if tc.wantErr {
				if err == nil {
					t.Fatal("issued a token although the node lookup failed")
				}
				return
			}
			if err != nil {
				t.Fatalf("IssueFor: %v", err)
			}
			parts := strings.Split(tok, ".")
			if len(parts) != 3 {
				t.Fatalf("token %q is not a JWS", tok)
			}
			payload, err := base64.RawURLEncoding.DecodeString(parts[1])
			if err != nil {
				t.Fatal(err)
			}
			var claims struct {
				K serviceaccount.PrivateClaims `json:"kubernetes.io"`
			}
			if err := json.Unmarshal(payload, &claims); err != nil {
				t.Fatal(err)
			}
			if claims.K.Pod == nil || claims.K.Pod.UID != "pod-uid" {
				t.Errorf("pod claim = %+v, want pod-uid", claims.K.Pod)
			}
			got, want := claims.K.Node, tc.wantNode
			if (got == nil) != (want == nil) || (got != nil && *got != *want) {
				t.Errorf("node claim = %+v, want %+v", got, want)
			}
		})
	}
}
