// Package authn authenticates API requests: it turns the credentials on an
// HTTP request into a User (name, UID, groups, extra), as upstream's
// authentication layer does.
//
// Authenticators:
//   - X509 verifies the TLS client certificate chain against the cluster CA
//     (client-auth usage required); CN is the user name, each O a group.
//   - Bearer takes "Authorization: Bearer <token>" and asks a chain of
//     TokenAuthenticators: StaticTokens (a fixed token table: the admin
//     token, the agent join token) and ServiceAccountTokens (JWTs checked by
//     internal/serviceaccount, cached).
//   - Union tries authenticators in order and adds system:authenticated.
//
// Contract of Authenticate: (user, true, nil) on success; (nil, false, nil)
// when the request carries no credentials of that kind; (nil, false, err)
// when credentials are present but invalid, which the caller must answer
// with 401 even on paths open to anonymous users (as upstream, where a bad
// token never silently degrades to system:anonymous). Whether a request
// without credentials may proceed as Anonymous() is the caller's decision
// (see Middleware).
//
// Users returned by authenticators may be shared between requests through
// caches: treat them as immutable.
package authn

import (
	"context"
	"net/http"
)

// Well-known users, groups and extra keys, as upstream names them.
const (
	AnonymousUser        = "system:anonymous"
	UnauthenticatedGroup = "system:unauthenticated"
	AuthenticatedGroup   = "system:authenticated"
	MastersGroup         = "system:masters"
	ServiceAccountsGroup = "system:serviceaccounts"

	ExtraCredentialID = "authentication.kubernetes.io/credential-id"
	ExtraPodName      = "authentication.kubernetes.io/pod-name"
	ExtraPodUID       = "authentication.kubernetes.io/pod-uid"
	ExtraNodeName     = "authentication.kubernetes.io/node-name"
	ExtraNodeUID      = "authentication.kubernetes.io/node-uid"
)

// User is an authenticated identity.
type User struct {
	Name   string
	UID    string
	Groups []string
	Extra  map[string][]string
}

// InGroup reports whether u is a member of group.
func (u *User) InGroup(group string) bool {
	for _, g := range u.Groups {
		if g == group {
			return true
		}
	}
	return false
}

// Anonymous returns a new system:anonymous user in group
// system:unauthenticated.
func Anonymous() *User {
	return &User{Name: AnonymousUser, Groups: []string{UnauthenticatedGroup}}
}

// Authenticator authenticates a request; see the package contract.
type Authenticator interface {
	Authenticate(r *http.Request) (*User, bool, error)
}

// AuthenticatorFunc adapts a function to Authenticator.
type AuthenticatorFunc func(r *http.Request) (*User, bool, error)

// Authenticate calls f.
func (f AuthenticatorFunc) Authenticate(r *http.Request) (*User, bool, error) { return f(r) }

// TokenAuthenticator authenticates a bearer token. ok=false means the token
// is not one this authenticator knows, so the next may try it.
type TokenAuthenticator interface {
	AuthenticateToken(ctx context.Context, token string) (*User, bool, error)
}

type userKey struct{}

// WithUser returns a context carrying u.
func WithUser(ctx context.Context, u *User) context.Context {
	return context.WithValue(ctx, userKey{}, u)
}

// UserFrom returns the user stored by WithUser.
func UserFrom(ctx context.Context) (*User, bool) {
	u, ok := ctx.Value(userKey{}).(*User)
	return u, ok && u != nil
}
