package authn

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
)

// Union tries authenticators in order; the first success wins and the user
// gains AuthenticatedGroup. When none succeeds but some failed, the failures
// are returned together (so a foreign client certificate plus a valid token
// still authenticates, but a foreign certificate alone is a 401).
type Union struct {
	authenticators []Authenticator
}

var _ Authenticator = (*Union)(nil)

// NewUnion returns a union of authenticators.
func NewUnion(authenticators ...Authenticator) *Union {
	return &Union{authenticators: authenticators}
}

// Authenticate implements Authenticator.
func (u *Union) Authenticate(r *http.Request) (*User, bool, error) {
	var errs []error
	for _, a := range u.authenticators {
		user, ok, err := a.Authenticate(r)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if ok {
			return withAuthenticatedGroup(user), true, nil
		}
	}
	if len(errs) > 0 {
		return nil, false, errors.Join(errs...)
	}
	return nil, false, nil
}

// withAuthenticatedGroup returns a copy of u (which may be shared through a
// cache) with AuthenticatedGroup added, unless it already has it.
func withAuthenticatedGroup(u *User) *User {
	if u.InGroup(AuthenticatedGroup) {
		return u
	}
	groups := make([]string, 0, len(u.Groups)+1)
	groups = append(groups, u.Groups...)
	groups = append(groups, AuthenticatedGroup)
	return &User{Name: u.Name, UID: u.UID, Groups: groups, Extra: u.Extra}
}

// MiddlewareOptions configures Middleware.
type MiddlewareOptions struct {
	// AllowAnonymous says whether a request without credentials may proceed
	// as Anonymous(); nil means never.
	AllowAnonymous func(r *http.Request) bool
	// Unauthorized answers rejected requests; nil writes a 401 Status.
	Unauthorized http.Handler
	// Logger records why credentials were rejected; nil discards.
	Logger *slog.Logger
}

// Middleware authenticates every request, stores the user in the request
// context (UserFrom) and strips the Authorization header so it is never
// forwarded by proxying handlers. Invalid credentials get 401 on every
// path; missing credentials get 401 unless AllowAnonymous says otherwise.
func Middleware(a Authenticator, opts MiddlewareOptions, next http.Handler) http.Handler {
	unauthorized := opts.Unauthorized
	if unauthorized == nil {
		unauthorized = http.HandlerFunc(WriteUnauthorized)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, ok, err := a.Authenticate(r)
		switch {
		case err != nil:
			if opts.Logger != nil {
				opts.Logger.Info("rejected credentials", "path", r.URL.Path, "remote", r.RemoteAddr, "err", err)
			}
			unauthorized.ServeHTTP(w, r)
			return
		case !ok:
			if opts.AllowAnonymous == nil || !opts.AllowAnonymous(r) {
				unauthorized.ServeHTTP(w, r)
				return
			}
			u = Anonymous()
		}
		r.Header.Del("Authorization")
		next.ServeHTTP(w, r.WithContext(WithUser(r.Context(), u)))
	})
}

// unauthorizedBody is the Status kube-apiserver answers a 401 with
// (TestWriteUnauthorizedIsAStatus decodes it as a metav1.Status).
const unauthorizedBody = `{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}` + "\n"

// WriteUnauthorized writes a 401 metav1.Status.
func WriteUnauthorized(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache, private")
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = io.WriteString(w, unauthorizedBody)
}
