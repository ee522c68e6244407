package authn

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"skiff.dev/skiff/internal/pki"
	"skiff.dev/skiff/internal/serviceaccount"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time { return c.t }

func newCA(t testing.TB, name string) *pki.CA {
	t.Helper()
	ca, err := pki.NewCA(name, time.Now(), pki.CAValidity)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func leafChain(t testing.TB, certPEM, keyPEM []byte) []*x509.Certificate {
	t.Helper()
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return []*x509.Certificate{pair.Leaf}
}

func clientChain(t testing.TB, ca *pki.CA, user string, groups []string, validity time.Duration) []*x509.Certificate {
	t.Helper()
	c, k, err := ca.IssueClient(user, groups, validity)
	if err != nil {
		t.Fatal(err)
	}
	return leafChain(t, c, k)
}

func tlsRequest(chain []*x509.Certificate) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/api", nil)
	r.TLS = &tls.ConnectionState{PeerCertificates: chain}
	return r
}

func bearerRequest(token string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/api", nil)
	r.Header.Set("Authorization", "Bearer "+token)
	return r
}

func TestX509(t *testing.T) {
	ca, other := newCA(t, "cluster"), newCA(t, "other")
	clock := &fakeClock{t: time.Now()}
	a := NewX509(ca.Pool(), X509Options{Now: clock.Now})

	u, ok, err := a.Authenticate(tlsRequest(clientChain(t, ca, "alice", []string{"devs", "ops"}, time.Hour)))
	if err != nil || !ok {
		t.Fatalf("valid client cert: ok=%v err=%v", ok, err)
	}
	if u.Name != "alice" || !slices.Contains(u.Groups, "devs") || !slices.Contains(u.Groups, "ops") || len(u.Groups) != 2 {
		t.Errorf("user = %+v", u)
	}
	if id := u.Extra[ExtraCredentialID]; len(id) != 1 || !strings.HasPrefix(id[0], "X509SHA256=") {
		t.Errorf("credential id = %v", id)
	}

	if _, ok, err := a.Authenticate(httptest.NewRequest(http.MethodGet, "/", nil)); ok || err != nil {
		t.Errorf("plain HTTP request: ok=%v err=%v, want no credentials", ok, err)
	}
	if _, ok, err := a.Authenticate(tlsRequest(nil)); ok || err != nil {
		t.Errorf("TLS without client cert: ok=%v err=%v, want no credentials", ok, err)
	}

	servingPEM, servingKey, err := ca.IssueServing([]string{"alice"}, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for name, chain := range map[string][]*x509.Certificate{
		"other CA":         clientChain(t, other, "alice", nil, time.Hour),
		"server-auth only": leafChain(t, servingPEM, servingKey),
	} {
		if u, ok, err := a.Authenticate(tlsRequest(chain)); ok || err == nil {
			t.Errorf("%s: authenticated as %+v (err %v), want an error", name, u, err)
		}
	}

	// A cached chain stops working when the certificate expires.
	short := clientChain(t, ca, "bob", nil, 30*time.Second)
	if _, ok, err := a.Authenticate(tlsRequest(short)); !ok || err != nil {
		t.Fatalf("short-lived cert: ok=%v err=%v", ok, err)
	}
	clock.t = clock.t.Add(31 * time.Second)
	if _, ok, err := a.Authenticate(tlsRequest(short)); ok || err == nil {
		t.Fatalf("expired cert (cached before expiry): ok=%v err=%v, want an error", ok, err)
	}
}

func TestBearerStaticTokens(t *testing.T) {
	static, err := NewStaticTokens(map[string]User{
		"admin-secret": {Name: "system:admin", Groups: []string{MastersGroup}},
		"join-secret":  {Name: "system:bootstrap:join", Groups: []string{"system:bootstrappers"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	b := NewBearer(static)
	for _, tc := range []struct {
		name, header string
		wantUser     string
		wantErr      bool
	}{
		{"admin", "Bearer admin-secret", "system:admin", false},
		{"lower-case scheme", "bearer join-secret", "system:bootstrap:join", false},
		{"unknown token", "Bearer nope", "", true},
		{"no header", "", "", false},
		{"basic auth", "Basic YWxpY2U6cHc=", "", false},
		{"empty token", "Bearer ", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			if tc.header != "" {
				r.Header.Set("Authorization", tc.header)
			}
			u, ok, err := b.Authenticate(r)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if tc.wantErr && !errors.Is(err, ErrInvalidBearerToken) {
				t.Errorf("err = %v, want ErrInvalidBearerToken", err)
			}
			if got := ""; ok {
				got = u.Name
				if got != tc.wantUser {
					t.Errorf("user %q, want %q", got, tc.wantUser)
				}
			} else if tc.wantUser != "" {
				t.Errorf("not authenticated, want %q", tc.wantUser)
			}
		})
	}
	if _, err := NewStaticTokens(map[string]User{"": {Name: "x"}}); err == nil {
		t.Error("empty token accepted")
	}
}

// countingVerifier counts real verifications, to observe the cache.
type countingVerifier struct {
	TokenVerifier
	calls atomic.Int32
}

func (c *countingVerifier) Verify(ctx context.Context, token string, aud []string) (*serviceaccount.Claims, error) {
	c.calls.Add(1)
	return c.TokenVerifier.Verify(ctx, token, aud)
}

func newSA(t testing.TB, clock *fakeClock) (*serviceaccount.Issuer, *countingVerifier) {
	t.Helper()
	key, err := pki.LoadOrCreateServiceAccountKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	iss, err := serviceaccount.NewIssuer(key, serviceaccount.IssuerOptions{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	ver, err := serviceaccount.NewVerifier([]*ecdsa.PublicKey{&key.PublicKey}, serviceaccount.VerifierOptions{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return iss, &countingVerifier{TokenVerifier: ver}
}

func TestServiceAccountTokens(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	iss, ver := newSA(t, clock)
	sa := NewServiceAccountTokens(ver, ServiceAccountOptions{Now: clock.Now, CacheTTL: 10 * time.Second})
	b := NewBearer(sa)

	token, exp, err := iss.Issue(serviceaccount.Request{
		Namespace:      "ci",
		ServiceAccount: serviceaccount.Ref{Name: "builder", UID: "sa-uid"},
		Expiration:     serviceaccount.MinExpiration,
		Pod:            &serviceaccount.Ref{Name: "job-1", UID: "pod-uid"},
		Node:           &serviceaccount.Ref{Name: "n1", UID: "node-uid"},
	})
	if err != nil {
		t.Fatal(err)
	}
	u, ok, err := b.Authenticate(bearerRequest(token))
	if err != nil || !ok {
		t.Fatalf("ok=%v err=%v", ok, err)
	}
	if u.Name != "system:serviceaccount:ci:builder" || u.UID != "sa-uid" {
		t.Errorf("user = %+v", u)
	}
	if !slices.Equal(u.Groups, []string{"system:serviceaccounts", "system:serviceaccounts:ci"}) {
		t.Errorf("groups = %v", u.Groups)
	}
	for k, want := range map[string]string{ExtraPodName: "job-1", ExtraPodUID: "pod-uid", ExtraNodeName: "n1", ExtraNodeUID: "node-uid"} {
		if got := u.Extra[k]; !slices.Equal(got, []string{want}) {
			t.Errorf("extra %s = %v, want %q", k, got, want)
		}
	}
	if id := u.Extra[ExtraCredentialID]; len(id) != 1 || !strings.HasPrefix(id[0], "JTI=") {
		t.Errorf("credential id = %v", id)
	}

	// Cached: no second verification within the TTL; verified again after.
	if _, ok, _ := b.Authenticate(bearerRequest(token)); !ok || ver.calls.Load() != 1 {
		t.Fatalf("second request: ok=%v verifications=%d, want 1", ok, ver.calls.Load())
	}
	clock.t = clock.t.Add(11 * time.Second)
	if _, ok, _ := b.Authenticate(bearerRequest(token)); !ok || ver.calls.Load() != 2 {
		t.Fatalf("after TTL: ok=%v verifications=%d, want 2", ok, ver.calls.Load())
	}
	// The cache never outlives exp, even with a long TTL.
	long := NewServiceAccountTokens(ver, ServiceAccountOptions{Now: clock.Now, CacheTTL: time.Hour})
	if _, ok, err := long.AuthenticateToken(context.Background(), token); !ok || err != nil {
		t.Fatal(err)
	}
	clock.t = exp
	if _, ok, err := long.AuthenticateToken(context.Background(), token); ok || err == nil {
		t.Fatalf("expired token served from cache: ok=%v err=%v", ok, err)
	}

	// Not a JWT, or a JWT from another issuer: not ours, so the bearer
	// chain reports an unknown token rather than a service-account error.
	foreignKey, _ := pki.LoadOrCreateServiceAccountKey(t.TempDir())
	foreign, _ := serviceaccount.NewIssuer(foreignKey, serviceaccount.IssuerOptions{Issuer: "https://elsewhere", Now: clock.Now})
	ftok, _, _ := foreign.Issue(serviceaccount.Request{Namespace: "ci", ServiceAccount: serviceaccount.Ref{Name: "x"}})
	for _, tok := range []string{"opaque", ftok} {
		if _, ok, err := sa.AuthenticateToken(context.Background(), tok); ok || err != nil {
			t.Errorf("AuthenticateToken(%.10q): ok=%v err=%v, want not ours", tok, ok, err)
		}
	}

	// Ours but for another audience: an error.
	clock.t = time.Unix(1_800_000_000, 0)
	other, _, _ := iss.Issue(serviceaccount.Request{Namespace: "ci", ServiceAccount: serviceaccount.Ref{Name: "x"}, Audiences: []string{"vault"}})
	if _, ok, err := b.Authenticate(bearerRequest(other)); ok || !errors.Is(err, serviceaccount.ErrInvalidToken) {
		t.Errorf("wrong audience: ok=%v err=%v", ok, err)
	}
}

func TestUnion(t *testing.T) {
	ca, other := newCA(t, "cluster"), newCA(t, "other")
	static, _ := NewStaticTokens(map[string]User{"tok": {Name: "carol", Groups: []string{"g"}}})
	u := NewUnion(NewX509(ca.Pool(), X509Options{}), NewBearer(static))

	if user, ok, err := u.Authenticate(httptest.NewRequest(http.MethodGet, "/", nil)); ok || err != nil || user != nil {
		t.Fatalf("no credentials: user=%v ok=%v err=%v", user, ok, err)
	}

	r := tlsRequest(clientChain(t, ca, "alice", []string{MastersGroup}, time.Hour))
	user, ok, err := u.Authenticate(r)
	if !ok || err != nil || !slices.Equal(user.Groups, []string{MastersGroup, AuthenticatedGroup}) {
		t.Fatalf("client cert: user=%+v ok=%v err=%v", user, ok, err)
	}
	// The cached user is not modified by adding the group.
	user2, _, _ := u.Authenticate(r)
	if !slices.Equal(user2.Groups, []string{MastersGroup, AuthenticatedGroup}) {
		t.Fatalf("second request groups = %v", user2.Groups)
	}

	// Foreign certificate plus a valid token: the token wins.
	r = tlsRequest(clientChain(t, other, "mallory", nil, time.Hour))
	r.Header.Set("Authorization", "Bearer tok")
	if user, ok, err := u.Authenticate(r); !ok || err != nil || user.Name != "carol" {
		t.Fatalf("foreign cert + token: user=%+v ok=%v err=%v", user, ok, err)
	}
	// Foreign certificate alone: an error.
	r.Header.Del("Authorization")
	if _, ok, err := u.Authenticate(r); ok || err == nil {
		t.Fatalf("foreign cert alone: ok=%v err=%v", ok, err)
	}
}

func TestMiddleware(t *testing.T) {
	static, _ := NewStaticTokens(map[string]User{"tok": {Name: "carol"}})
	var got *User
	var sawAuthz string
	h := Middleware(NewUnion(NewBearer(static)), MiddlewareOptions{
		AllowAnonymous: func(r *http.Request) bool { return r.URL.Path == "/healthz" },
	}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ = UserFrom(r.Context())
		sawAuthz = r.Header.Get("Authorization")
	}))
	for _, tc := range []struct {
		name, path, token string
		wantCode          int
		wantUser          string
	}{
		{"token", "/api", "tok", 200, "carol"},
		{"anonymous on open path", "/healthz", "", 200, AnonymousUser},
		{"anonymous on closed path", "/api", "", 401, ""},
		{"bad token on open path", "/healthz", "bad", 401, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, sawAuthz = nil, "unset"
			r := httptest.NewRequest(http.MethodGet, tc.path, nil)
			if tc.token != "" {
				r.Header.Set("Authorization", "Bearer "+tc.token)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.wantCode {
				t.Fatalf("code %d, want %d", w.Code, tc.wantCode)
			}
			if tc.wantCode == 401 {
				var st metav1.Status
				if err := json.Unmarshal(w.Body.Bytes(), &st); err != nil || st.Kind != "Status" || st.Reason != metav1.StatusReasonUnauthorized || st.Code != 401 {
					t.Errorf("401 body %q is not an Unauthorized Status: %v", w.Body, err)
				}
				if got != nil {
					t.Error("handler ran for a rejected request")
				}
				return
			}
			if got == nil || got.Name != tc.wantUser {
				t.Fatalf("user %+v, want %q", got, tc.wantUser)
			}
			if sawAuthz != "" {
				t.Errorf("Authorization header %q reached the handler", sawAuthz)
			}
			if tc.wantUser == AnonymousUser && !slices.Equal(got.Groups, []string{UnauthenticatedGroup}) {
				t.Errorf("anonymous groups = %v", got.Groups)
			}
			if tc.wantUser != AnonymousUser && !got.InGroup(AuthenticatedGroup) {
				t.Errorf("authenticated user lacks %s: %v", AuthenticatedGroup, got.Groups)
			}
		})
	}
}

func TestUserContext(t *testing.T) {
	if _, ok := UserFrom(context.Background()); ok {
		t.Fatal("empty context has a user")
	}
	u := &User{Name: "x"}
	if got, ok := UserFrom(WithUser(context.Background(), u)); !ok || got != u {
		t.Fatalf("UserFrom = %v, %v", got, ok)
	}
}

func TestCacheBounded(t *testing.T) {
	c := newTTLCache(4)
	now := time.Unix(0, 0)
	for i := range 10 {
		c.put([32]byte{byte(i)}, &User{}, now.Add(time.Minute), now)
	}
	if n := c.len(); n > 4 {
		t.Fatalf("cache holds %d entries, max 4", n)
	}
	if _, ok := c.get([32]byte{9}, now); !ok {
		t.Fatal("most recent entry missing")
	}
	if _, ok := c.get([32]byte{9}, now.Add(time.Minute)); ok {
		t.Fatal("entry served at its expiry")
	}
}

func BenchmarkAuthenticateCachedServiceAccountToken(b *testing.B) {
	clock := &fakeClock{t: time.Now()}
	iss, ver := newSA(b, clock)
	a := NewUnion(NewX509(x509.NewCertPool(), X509Options{}), NewBearer(NewServiceAccountTokens(ver, ServiceAccountOptions{Now: clock.Now})))
	tok, _, err := iss.Issue(serviceaccount.Request{Namespace: "ns", ServiceAccount: serviceaccount.Ref{Name: "sa", UID: "u"}})
	if err != nil {
		b.Fatal(err)
	}
	r := bearerRequest(tok)
	for b.Loop() {
		if _, ok, err := a.Authenticate(r); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}

func BenchmarkAuthenticateClientCert(b *testing.B) {
	ca := newCA(b, "cluster")
	a := NewUnion(NewX509(ca.Pool(), X509Options{}))
	r := tlsRequest(clientChain(b, ca, pki.AdminUser, []string{MastersGroup}, time.Hour))
	for b.Loop() {
		if _, ok, err := a.Authenticate(r); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}

func BenchmarkAuthenticateClientCertUncached(b *testing.B) {
	ca := newCA(b, "cluster")
	a := NewUnion(NewX509(ca.Pool(), X509Options{CacheTTL: time.Nanosecond}))
	r := tlsRequest(clientChain(b, ca, pki.AdminUser, []string{MastersGroup}, time.Hour))
	for b.Loop() {
		if _, ok, err := a.Authenticate(r); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}
