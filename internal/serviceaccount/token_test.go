package serviceaccount

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time { return c.t }

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func setup(t testing.TB, v Validator) (*Issuer, *Verifier, *fakeClock) {
	t.Helper()
	clock := &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	key := newKey(t)
	iss, err := NewIssuer(key, IssuerOptions{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	ver, err := NewVerifier([]*ecdsa.PublicKey{&key.PublicKey}, VerifierOptions{Now: clock.Now, Validator: v})
	if err != nil {
		t.Fatal(err)
	}
	return iss, ver, clock
}

var sa = Ref{Name: "builder", UID: "sa-uid-1"}

func TestIssueVerifyRoundTrip(t *testing.T) {
	iss, ver, clock := setup(t, nil)
	pod, node := &Ref{Name: "web-0", UID: "pod-uid"}, &Ref{Name: "n1", UID: "node-uid"}
	token, exp, err := iss.Issue(Request{Namespace: "ci", ServiceAccount: sa, Audiences: []string{"vault", "api"}, Expiration: 2 * time.Hour, Pod: pod, Node: node})
	if err != nil {
		t.Fatal(err)
	}
	if want := clock.t.Add(2 * time.Hour); !exp.Equal(want) {
		t.Fatalf("exp = %s, want %s", exp, want)
	}
	c, err := ver.Verify(context.Background(), token, []string{"api"})
	if err != nil {
		t.Fatal(err)
	}
	if c.UserName() != "system:serviceaccount:ci:builder" || c.Subject != c.UserName() {
		t.Errorf("user %q subject %q", c.UserName(), c.Subject)
	}
	if c.Kubernetes.ServiceAccount != sa || *c.Kubernetes.Pod != *pod || *c.Kubernetes.Node != *node || c.Kubernetes.Namespace != "ci" {
		t.Errorf("private claims = %+v", c.Kubernetes)
	}
	if c.Issuer != DefaultIssuer || !c.ExpiresAt.Time.Equal(exp) || !c.IssuedAt.Time.Equal(clock.t) || !c.NotBefore.Time.Equal(clock.t) {
		t.Errorf("registered claims = %+v", c.RegisteredClaims)
	}
	if len(c.ID) != 36 {
		t.Errorf("jti %q is not a uuid", c.ID)
	}

	// The wire form is upstream's: aud is a list, the private claim is
	// "kubernetes.io", the header names the ES256 key.
	parts := strings.Split(token, ".")
	var header map[string]any
	var payload map[string]any
	for i, dst := range []*map[string]any{&header, &payload} {
		raw, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, dst); err != nil {
			t.Fatal(err)
		}
	}
	kid, _ := KeyID(iss.PublicKey())
	if header["alg"] != "ES256" || header["kid"] != kid {
		t.Errorf("header = %v", header)
	}
	if _, ok := payload["aud"].([]any); !ok {
		t.Errorf("aud is %T, want a list", payload["aud"])
	}
	k8s, _ := payload["kubernetes.io"].(map[string]any)
	if k8s["namespace"] != "ci" || k8s["pod"] == nil {
		t.Errorf("kubernetes.io claim = %v", k8s)
	}
}

func TestDefaultAudienceIsIssuer(t *testing.T) {
	iss, ver, clock := setup(t, nil)
	token, exp, err := iss.Issue(Request{Namespace: "ns", ServiceAccount: sa})
	if err != nil {
		t.Fatal(err)
	}
	if !exp.Equal(clock.t.Add(DefaultExpiration)) {
		t.Errorf("default expiry %s", exp)
	}
	c, err := ver.Verify(context.Background(), token, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.Audience, []string{DefaultIssuer}) {
		t.Errorf("aud = %v", c.Audience)
	}
}

func TestVerifyRejects(t *testing.T) {
	iss, ver, clock := setup(t, nil)
	token, exp, err := iss.Issue(Request{Namespace: "ns", ServiceAccount: sa, Audiences: []string{"api"}})
	if err != nil {
		t.Fatal(err)
	}
	otherIss, _ := NewIssuer(newKey(t), IssuerOptions{Now: clock.Now})
	forged, _, err := otherIss.Issue(Request{Namespace: "ns", ServiceAccount: sa, Audiences: []string{"api"}})
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(token, ".")
	// Flip a bit of the decoded signature and re-encode: flipping a bit of
	// the base64 text can leave the alphabet (a malformed token, not a
	// forged one) depending on the random key.
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		t.Fatal(err)
	}
	sig[5] ^= 1
	tampered := parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(sig)
	// Same signature over a payload naming another account.
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	payload = []byte(strings.ReplaceAll(string(payload), "builder", "admin00"))
	swapped := parts[0] + "." + base64.RawURLEncoding.EncodeToString(payload) + "." + parts[2]

	for _, tc := range []struct {
		name  string
		token string
		aud   []string
		at    time.Time
	}{
		{"wrong audience", token, []string{"vault"}, clock.t},
		{"expired", token, []string{"api"}, exp},
		{"not yet valid", token, []string{"api"}, clock.t.Add(-2 * time.Minute)},
		{"tampered signature", tampered, []string{"api"}, clock.t},
		{"tampered payload", swapped, []string{"api"}, clock.t},
		{"signed by another key", forged, []string{"api"}, clock.t},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock.t = tc.at
			defer func(t0 time.Time) { clock.t = t0 }(clock.t)
			_, err := ver.Verify(context.Background(), tc.token, tc.aud)
			if !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("Verify error = %v, want ErrInvalidToken", err)
			}
		})
	}
	// Still valid one second before expiry: the checks above fail for the
	// reason they name, not because the token is broken.
	clock.t = exp.Add(-time.Second)
	if _, err := ver.Verify(context.Background(), token, []string{"api"}); err != nil {
		t.Fatalf("token rejected before expiry: %v", err)
	}
}

func TestVerifyNotOurs(t *testing.T) {
	_, ver, clock := setup(t, nil)
	foreign, err := NewIssuer(newKey(t), IssuerOptions{Issuer: "https://dex.example", Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := foreign.Issue(Request{Namespace: "ns", ServiceAccount: sa})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"static-admin-token", "a.b.c", "", tok} {
		if _, err := ver.Verify(context.Background(), s, nil); !errors.Is(err, ErrNotServiceAccountToken) {
			t.Errorf("Verify(%.20q) = %v, want ErrNotServiceAccountToken", s, err)
		}
	}
}

func TestValidatorHook(t *testing.T) {
	deleted := errors.New("service account ns/builder was deleted")
	var seen *Claims
	iss, ver, _ := setup(t, ValidatorFunc(func(_ context.Context, c *Claims) error {
		seen = c
		if c.Kubernetes.ServiceAccount.UID != "sa-uid-1" {
			return deleted
		}
		return nil
	}))
	good, _, _ := iss.Issue(Request{Namespace: "ns", ServiceAccount: sa})
	if _, err := ver.Verify(context.Background(), good, nil); err != nil {
		t.Fatal(err)
	}
	if seen == nil || seen.Kubernetes.ServiceAccount.Name != "builder" {
		t.Fatalf("validator saw %+v", seen)
	}
	stale, _, _ := iss.Issue(Request{Namespace: "ns", ServiceAccount: Ref{Name: "builder", UID: "old-uid"}})
	if _, err := ver.Verify(context.Background(), stale, nil); !errors.Is(err, ErrInvalidToken) || !errors.Is(err, deleted) {
		t.Fatalf("Verify = %v, want ErrInvalidToken wrapping the validator's error", err)
	}
}

func TestIssueRequestBounds(t *testing.T) {
	key := newKey(t)
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	iss, err := NewIssuer(key, IssuerOptions{MaxExpiration: 24 * time.Hour, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	for _, req := range []Request{
		{Namespace: "ns", ServiceAccount: sa, Expiration: 599 * time.Second},
		{Namespace: "", ServiceAccount: sa},
		{Namespace: "ns", ServiceAccount: Ref{}},
		{Namespace: "ns", ServiceAccount: sa, Pod: &Ref{Name: "p"}},
		{Namespace: "a:b", ServiceAccount: sa},
	} {
		if _, _, err := iss.Issue(req); !errors.Is(err, ErrInvalidRequest) {
			t.Errorf("Issue(%+v) = %v, want ErrInvalidRequest", req, err)
		}
	}
	if _, exp, err := iss.Issue(Request{Namespace: "ns", ServiceAccount: sa, Expiration: MinExpiration}); err != nil || !exp.Equal(clock.t.Add(MinExpiration)) {
		t.Errorf("minimum expiration: exp %s err %v", exp, err)
	}
	if _, exp, err := iss.Issue(Request{Namespace: "ns", ServiceAccount: sa, Expiration: 48 * time.Hour}); err != nil || !exp.Equal(clock.t.Add(24*time.Hour)) {
		t.Errorf("capped expiration: exp %s err %v", exp, err)
	}
	if _, err := NewIssuer(key, IssuerOptions{MaxExpiration: time.Minute}); err == nil {
		t.Error("NewIssuer accepted a max expiration below the minimum")
	}
}

func TestKeyRotation(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	oldKey, newKeyPair := newKey(t), newKey(t)
	oldIss, _ := NewIssuer(oldKey, IssuerOptions{Now: clock.Now})
	newIss, _ := NewIssuer(newKeyPair, IssuerOptions{Now: clock.Now})
	ver, err := NewVerifier([]*ecdsa.PublicKey{&oldKey.PublicKey, &newKeyPair.PublicKey}, VerifierOptions{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	for _, iss := range []*Issuer{oldIss, newIss} {
		tok, _, err := iss.Issue(Request{Namespace: "ns", ServiceAccount: sa})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ver.Verify(context.Background(), tok, nil); err != nil {
			t.Errorf("token from a trusted key rejected: %v", err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	iss, ver, _ := setup(b, nil)
	tok, _, err := iss.Issue(Request{Namespace: "ns", ServiceAccount: sa})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := ver.Verify(context.Background(), tok, nil); err != nil {
			b.Fatal(err)
		}
	}
}
