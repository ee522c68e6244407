// Package serviceaccount issues and verifies service-account tokens: the
// audience-bound, expiring ES256 JWTs of the TokenRequest API
// (serviceaccounts/token) and of projected service-account token volumes.
//
// A token carries the registered claims iss, sub
// ("system:serviceaccount:<namespace>:<name>"), aud (always a list), exp,
// iat, nbf and jti, and the private claim "kubernetes.io" naming the
// namespace, the service account and, when the token is bound, the pod and
// node, each by name and UID, as upstream does.
//
// Contract:
//   - Issue refuses requests for less than MinExpiration (upstream: "may not
//     specify a duration less than 10 minutes") with ErrInvalidRequest, caps
//     them at the issuer's MaxExpiration, and defaults the audiences to the
//     issuer URL.
//   - Verify returns ErrNotServiceAccountToken for anything that is not a JWT
//     from one of the verifier's issuers, so a bearer-token chain can try the
//     next authenticator; every other failure (signature, expiry, audience,
//     claims, the Validator) wraps ErrInvalidToken and must become a 401.
//   - Time comes from injected clocks; nothing here sleeps or reads the API:
//     whether the service account or pod still exists is the Validator's job,
//     which the API server supplies.
package serviceaccount

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Defaults, as upstream's TokenRequest.
const (
	DefaultIssuer     = "https://kubernetes.default.svc.cluster.local"
	DefaultExpiration = time.Hour
	MinExpiration     = 10 * time.Minute
	// MaxExpiration is the default cap: 2^32 seconds, upstream's validation
	// limit for expirationSeconds.
	MaxExpiration = (1 << 32) * time.Second
	// clockSkew tolerates servers whose clocks disagree on nbf and iat; it
	// does not extend exp.
	clockSkew = time.Minute

	userPrefix = "system:serviceaccount:"
)

// Errors callers distinguish with errors.Is.
var (
	ErrInvalidRequest         = errors.New("invalid token request")
	ErrNotServiceAccountToken = errors.New("not a service-account token")
	ErrInvalidToken           = errors.New("invalid service-account token")
)

// Ref names an object by name and UID.
type Ref struct {
	Name string `json:"name"`
	UID  string `json:"uid"`
}

// PrivateClaims is the "kubernetes.io" claim.
type PrivateClaims struct {
	Namespace      string `json:"namespace"`
	ServiceAccount Ref    `json:"serviceaccount"`
	Pod            *Ref   `json:"pod,omitempty"`
	Node           *Ref   `json:"node,omitempty"`
}

// Claims is the payload of a service-account token.
type Claims struct {
	jwt.RegisteredClaims
	Kubernetes PrivateClaims `json:"kubernetes.io"`
}

// UserName is the Kubernetes user the token authenticates as.
func (c *Claims) UserName() string {
	return UserName(c.Kubernetes.Namespace, c.Kubernetes.ServiceAccount.Name)
}

// UserName returns "system:serviceaccount:<namespace>:<name>".
func UserName(namespace, name string) string {
	return userPrefix + namespace + ":" + name
}

// Request is what a TokenRequest asks for.
type Request struct {
	Namespace string
	// ServiceAccount is the account's name and UID.
	ServiceAccount Ref
	// Audiences defaults to the issuer's default audiences when empty.
	Audiences []string
	// Expiration is the requested lifetime; zero means DefaultExpiration.
	Expiration time.Duration
	// Pod and Node bind the token to objects; both optional.
	Pod  *Ref
	Node *Ref
}

// IssuerOptions configures NewIssuer.
type IssuerOptions struct {
	// Issuer is the iss claim; empty means DefaultIssuer.
	Issuer string
	// Audiences is the default aud; empty means []string{Issuer}.
	Audiences []string
	// MaxExpiration caps token lifetimes; zero means MaxExpiration.
	MaxExpiration time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Issuer signs service-account tokens.
type Issuer struct {
	key       *ecdsa.PrivateKey
	keyID     string
	issuer    string
	audiences []string
	max       time.Duration
	now       func() time.Time
}

// NewIssuer returns an issuer signing with key, which must be P-256.
func NewIssuer(key *ecdsa.PrivateKey, opts IssuerOptions) (*Issuer, error) {
	if key == nil || key.Curve != elliptic.P256() {
		return nil, errors.New("creating token issuer: es256 needs a p-256 key")
	}
	kid, err := KeyID(&key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("creating token issuer: %w", err)
	}
	i := &Issuer{key: key, keyID: kid, issuer: opts.Issuer, audiences: opts.Audiences, max: opts.MaxExpiration, now: opts.Now}
	if i.issuer == "" {
		i.issuer = DefaultIssuer
	}
	if len(i.audiences) == 0 {
		i.audiences = []string{i.issuer}
	}
	if i.max <= 0 {
		i.max = MaxExpiration
	}
	if i.max < MinExpiration {
		return nil, fmt.Errorf("creating token issuer: max expiration %s is below the %s minimum", i.max, MinExpiration)
	}
	if i.now == nil {
		i.now = time.Now
	}
	return i, nil
}

// IssuerURL is the iss claim of the tokens this issuer signs.
func (i *Issuer) IssuerURL() string { return i.issuer }

// PublicKey is the key a Verifier needs.
func (i *Issuer) PublicKey() *ecdsa.PublicKey { return &i.key.PublicKey }

// Issue signs a token for req and returns it with its expiry.
func (i *Issuer) Issue(req Request) (token string, exp time.Time, err error) {
	switch {
	case req.Namespace == "" || req.ServiceAccount.Name == "":
		return "", time.Time{}, fmt.Errorf("%w: namespace and service account name are required", ErrInvalidRequest)
	case strings.Contains(req.Namespace, ":") || strings.Contains(req.ServiceAccount.Name, ":"):
		return "", time.Time{}, fmt.Errorf("%w: namespace and name may not contain ':'", ErrInvalidRequest)
	case req.Expiration != 0 && req.Expiration < MinExpiration:
		return "", time.Time{}, fmt.Errorf("%w: may not specify a duration less than %s", ErrInvalidRequest, MinExpiration)
	case req.Pod != nil && (req.Pod.Name == "" || req.Pod.UID == ""):
		return "", time.Time{}, fmt.Errorf("%w: a bound pod needs a name and uid", ErrInvalidRequest)
	case req.Node != nil && (req.Node.Name == "" || req.Node.UID == ""):
		return "", time.Time{}, fmt.Errorf("%w: a bound node needs a name and uid", ErrInvalidRequest)
	}
	lifetime := req.Expiration
	if lifetime == 0 {
		lifetime = DefaultExpiration
	}
	lifetime = min(lifetime, i.max)
	aud := req.Audiences
	if len(aud) == 0 {
		aud = i.audiences
	}
	jti, err := newUUID()
	if err != nil {
		return "", time.Time{}, err
	}
	now := i.now().Truncate(time.Second) // NumericDate has second precision
	exp = now.Add(lifetime)
	claims := &Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    i.issuer,
			Subject:   UserName(req.Namespace, req.ServiceAccount.Name),
			Audience:  slices.Clone(aud),
			ExpiresAt: jwt.NewNumericDate(exp),
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ID:        jti,
		},
		Kubernetes: PrivateClaims{
			Namespace:      req.Namespace,
			ServiceAccount: req.ServiceAccount,
			Pod:            req.Pod,
			Node:           req.Node,
		},
	}
	t := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	t.Header["kid"] = i.keyID
	token, err = t.SignedString(i.key)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("signing service-account token: %w", err)
	}
	return token, exp, nil
}

// Validator checks that what a verified token refers to still exists: the
// service account (and the bound pod, node) with the UIDs in the claims. The
// API server implements it against storage; an error rejects the token.
type Validator interface {
	Validate(ctx context.Context, c *Claims) error
}

// ValidatorFunc adapts a function to Validator.
type ValidatorFunc func(ctx context.Context, c *Claims) error

// Validate calls f.
func (f ValidatorFunc) Validate(ctx context.Context, c *Claims) error { return f(ctx, c) }

// VerifierOptions configures NewVerifier.
type VerifierOptions struct {
	// Issuers are the accepted iss values; empty means DefaultIssuer.
	Issuers []string
	// Audiences are those accepted when Verify is called without any
	// (the API server's own audiences); empty means the issuers.
	Audiences []string
	// Validator, when set, runs after every other check.
	Validator Validator
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Verifier checks service-account tokens.
type Verifier struct {
	keys      map[string]*ecdsa.PublicKey // by key ID
	issuers   []string
	audiences []string
	validator Validator
	now       func() time.Time
	parser    *jwt.Parser
}

// NewVerifier returns a verifier trusting the given public keys (several
// during a key rotation).
func NewVerifier(keys []*ecdsa.PublicKey, opts VerifierOptions) (*Verifier, error) {
	if len(keys) == 0 {
		return nil, errors.New("creating token verifier: no keys")
	}
	v := &Verifier{
		keys:      make(map[string]*ecdsa.PublicKey, len(keys)),
		issuers:   opts.Issuers,
		audiences: opts.Audiences,
		validator: opts.Validator,
		now:       opts.Now,
		// Claims are checked below against the injected clock, not jwt's.
		parser: jwt.NewParser(jwt.WithValidMethods([]string{jwt.SigningMethodES256.Alg()}), jwt.WithoutClaimsValidation()),
	}
	for _, k := range keys {
		kid, err := KeyID(k)
		if err != nil {
			return nil, fmt.Errorf("creating token verifier: %w", err)
		}
		v.keys[kid] = k
	}
	if len(v.issuers) == 0 {
		v.issuers = []string{DefaultIssuer}
	}
	if len(v.audiences) == 0 {
		v.audiences = v.issuers
	}
	if v.now == nil {
		v.now = time.Now
	}
	return v, nil
}

// errForeignIssuer travels out of the key function to Verify.
var errForeignIssuer = errors.New("foreign issuer")

// Verify checks token and returns its claims. audiences are those the caller
// accepts (an intersection with the token's aud suffices); empty means the
// verifier's default audiences.
func (v *Verifier) Verify(ctx context.Context, token string, audiences []string) (*Claims, error) {
	if strings.Count(token, ".") != 2 {
		return nil, ErrNotServiceAccountToken
	}
	claims := &Claims{}
	_, err := v.parser.ParseWithClaims(token, claims, func(t *jwt.Token) (any, error) {
		// jwt decodes the claims before asking for a key, so the issuer can
		// be checked here without parsing the token twice.
		if !slices.Contains(v.issuers, claims.Issuer) {
			return nil, errForeignIssuer
		}
		if kid, _ := t.Header["kid"].(string); kid != "" {
			if k, ok := v.keys[kid]; ok {
				return k, nil
			}
			return nil, fmt.Errorf("unknown key id %q", kid)
		}
		set := jwt.VerificationKeySet{}
		for _, k := range v.keys {
			set.Keys = append(set.Keys, k)
		}
		return set, nil
	})
	switch {
	case errors.Is(err, errForeignIssuer), errors.Is(err, jwt.ErrTokenMalformed):
		return nil, ErrNotServiceAccountToken
	case err != nil:
		return nil, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	if err := v.checkClaims(claims, audiences); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	if v.validator != nil {
		if err := v.validator.Validate(ctx, claims); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidToken, err)
		}
	}
	return claims, nil
}

func (v *Verifier) checkClaims(c *Claims, audiences []string) error {
	now := v.now()
	switch {
	case c.ExpiresAt == nil:
		return errors.New("token has no expiry")
	case !now.Before(c.ExpiresAt.Time):
		return fmt.Errorf("token expired at %s", c.ExpiresAt.Time.UTC().Format(time.RFC3339))
	case c.NotBefore != nil && now.Add(clockSkew).Before(c.NotBefore.Time):
		return errors.New("token is not valid yet")
	case c.IssuedAt != nil && now.Add(clockSkew).Before(c.IssuedAt.Time):
		return errors.New("token was issued in the future")
	}
	if len(audiences) == 0 {
		audiences = v.audiences
	}
	if !slices.ContainsFunc(c.Audience, func(a string) bool { return slices.Contains(audiences, a) }) {
		return fmt.Errorf("token audiences %q do not intersect %q", []string(c.Audience), audiences)
	}
	k := c.Kubernetes
	switch {
	case k.Namespace == "" || k.ServiceAccount.Name == "":
		return errors.New("token does not name a service account")
	case c.Subject != c.UserName():
		return fmt.Errorf("subject %q does not match the service account claim", c.Subject)
	}
	return nil
}

// KeyID derives the kid header from a public key as upstream does: the
// unpadded base64url SHA-256 of its PKIX DER encoding.
func KeyID(pub *ecdsa.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("marshalling public key: %w", err)
	}
	sum := sha256.Sum256(der)
	return base64.RawURLEncoding.EncodeToString(sum[:]), nil
}

func newUUID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generating token id: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}
