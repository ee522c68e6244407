package authn

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"skiff.dev/skiff/internal/serviceaccount"
)

// ErrInvalidBearerToken is returned when a bearer token is present but no
// token authenticator recognises it.
var ErrInvalidBearerToken = errors.New("invalid bearer token")

// Bearer authenticates "Authorization: Bearer <token>" with a chain of token
// authenticators tried in order.
type Bearer struct {
	tokens []TokenAuthenticator
}

var _ Authenticator = (*Bearer)(nil)

// NewBearer returns a bearer-token authenticator.
func NewBearer(tokens ...TokenAuthenticator) *Bearer { return &Bearer{tokens: tokens} }

// Authenticate implements Authenticator.
func (b *Bearer) Authenticate(r *http.Request) (*User, bool, error) {
	token, ok := bearerToken(r)
	if !ok {
		return nil, false, nil
	}
	var errs []error
	for _, ta := range b.tokens {
		u, ok, err := ta.AuthenticateToken(r.Context(), token)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if ok {
			return u, true, nil
		}
	}
	if len(errs) > 0 {
		return nil, false, errors.Join(errs...)
	}
	return nil, false, ErrInvalidBearerToken
}

// bearerToken extracts the token; the scheme is case-insensitive (RFC 7235).
func bearerToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// StaticTokens is a fixed token table. Tokens are stored as SHA-256 digests
// so the table neither keeps the secrets in memory nor compares them with
// an early-exit string comparison.
type StaticTokens struct {
	users map[[32]byte]*User
}

var _ TokenAuthenticator = (*StaticTokens)(nil)

// NewStaticTokens builds the table; an empty token or user name is an error.
func NewStaticTokens(tokens map[string]User) (*StaticTokens, error) {
	s := &StaticTokens{users: make(map[[32]byte]*User, len(tokens))}
	for tok, u := range tokens {
		if tok == "" || u.Name == "" {
			return nil, errors.New("building static token table: empty token or user name")
		}
		u := u
		s.users[sha256.Sum256([]byte(tok))] = &u
	}
	return s, nil
}

// AuthenticateToken implements TokenAuthenticator.
func (s *StaticTokens) AuthenticateToken(_ context.Context, token string) (*User, bool, error) {
	u, ok := s.users[sha256.Sum256([]byte(token))]
	return u, ok, nil
}

// TokenVerifier is what ServiceAccountTokens needs from
// internal/serviceaccount (*serviceaccount.Verifier implements it).
type TokenVerifier interface {
	Verify(ctx context.Context, token string, audiences []string) (*serviceaccount.Claims, error)
}

// ServiceAccountOptions configures NewServiceAccountTokens.
type ServiceAccountOptions struct {
	// Audiences the API server accepts; empty means the verifier's default.
	Audiences []string
	// CacheTTL bounds how long a verified token is remembered (never past
	// its exp); zero means 10 s, upstream's default. It is also how long a
	// deleted service account's token keeps working.
	CacheTTL time.Duration
	// CacheSize bounds the number of remembered tokens; zero means 10000.
	CacheSize int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// ServiceAccountTokens authenticates service-account JWTs.
type ServiceAccountTokens struct {
	verifier  TokenVerifier
	audiences []string
	ttl       time.Duration
	now       func() time.Time
	cache     *ttlCache
}

var _ TokenAuthenticator = (*ServiceAccountTokens)(nil)

// NewServiceAccountTokens wraps a verifier with a cache.
func NewServiceAccountTokens(v TokenVerifier, opts ServiceAccountOptions) *ServiceAccountTokens {
	a := &ServiceAccountTokens{verifier: v, audiences: opts.Audiences, ttl: opts.CacheTTL, now: opts.Now, cache: newTTLCache(opts.CacheSize)}
	if a.ttl <= 0 {
		a.ttl = 10 * time.Second
	}
	if a.now == nil {
		a.now = time.Now
	}
	return a
}

// AuthenticateToken implements TokenAuthenticator. Tokens that are not
// JWTs from our issuer are ok=false so other authenticators may claim them;
// our tokens that fail verification are errors.
func (a *ServiceAccountTokens) AuthenticateToken(ctx context.Context, token string) (*User, bool, error) {
	if strings.Count(token, ".") != 2 {
		return nil, false, nil // cheap: static tokens are not JWTs
	}
	now := a.now()
	key := sha256.Sum256([]byte(token))
	if u, ok := a.cache.get(key, now); ok {
		return u, true, nil
	}
	claims, err := a.verifier.Verify(ctx, token, a.audiences)
	switch {
	case errors.Is(err, serviceaccount.ErrNotServiceAccountToken):
		return nil, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("authenticating service-account token: %w", err)
	}
	u := serviceAccountUser(claims)
	expires := now.Add(a.ttl)
	if claims.ExpiresAt != nil && claims.ExpiresAt.Time.Before(expires) {
		expires = claims.ExpiresAt.Time
	}
	a.cache.put(key, u, expires, now)
	return u, true, nil
}

func serviceAccountUser(c *serviceaccount.Claims) *User {
	k := c.Kubernetes
	u := &User{
		Name:   c.UserName(),
		UID:    k.ServiceAccount.UID,
		Groups: []string{ServiceAccountsGroup, ServiceAccountsGroup + ":" + k.Namespace},
		Extra:  map[string][]string{},
	}
	if c.ID != "" {
		u.Extra[ExtraCredentialID] = []string{"JTI=" + c.ID}
	}
	if k.Pod != nil {
		u.Extra[ExtraPodName] = []string{k.Pod.Name}
		u.Extra[ExtraPodUID] = []string{k.Pod.UID}
	}
	if k.Node != nil {
		u.Extra[ExtraNodeName] = []string{k.Node.Name}
		u.Extra[ExtraNodeUID] = []string{k.Node.UID}
	}
	return u
}
