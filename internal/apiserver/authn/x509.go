package authn

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// X509Options configures NewX509.
type X509Options struct {
	// CacheTTL bounds how long a verified chain is remembered; zero means
	// one minute. Entries never outlive the certificates.
	CacheTTL time.Duration
	// CacheSize bounds the number of remembered chains; zero means 10000.
	CacheSize int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// X509 authenticates TLS client certificates issued by a trusted CA. It
// expects the server to request certificates without verifying them
// (tls.RequestClientCert), so that clients with foreign certificates can
// still fall back to tokens; the chain is verified here.
type X509 struct {
	roots *x509.CertPool
	ttl   time.Duration
	now   func() time.Time
	cache *ttlCache
}

var _ Authenticator = (*X509)(nil)

// NewX509 trusts the CAs in roots.
func NewX509(roots *x509.CertPool, opts X509Options) *X509 {
	a := &X509{roots: roots, ttl: opts.CacheTTL, now: opts.Now, cache: newTTLCache(opts.CacheSize)}
	if a.ttl <= 0 {
		a.ttl = time.Minute
	}
	if a.now == nil {
		a.now = time.Now
	}
	return a
}

// Authenticate implements Authenticator.
func (a *X509) Authenticate(r *http.Request) (*User, bool, error) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil, false, nil
	}
	chain := r.TLS.PeerCertificates
	now := a.now()
	// Verification costs tens of microseconds and a connection sends the same
	// chain with every request, so verified chains are cached by digest.
	key := chainDigest(chain)
	if u, ok := a.cache.get(key, now); ok {
		return u, true, nil
	}
	leaf := chain[0]
	opts := x509.VerifyOptions{
		Roots:         a.roots,
		Intermediates: x509.NewCertPool(),
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	for _, c := range chain[1:] {
		opts.Intermediates.AddCert(c)
	}
	verified, err := leaf.Verify(opts)
	if err != nil {
		return nil, false, fmt.Errorf("verifying client certificate %q: %w", leaf.Subject.CommonName, err)
	}
	if leaf.Subject.CommonName == "" {
		return nil, false, errors.New("verifying client certificate: empty common name")
	}
	leafSum := sha256.Sum256(leaf.Raw)
	u := &User{
		Name:   leaf.Subject.CommonName,
		Groups: leaf.Subject.Organization,
		Extra:  map[string][]string{ExtraCredentialID: {"X509SHA256=" + hex.EncodeToString(leafSum[:])}},
	}
	expires := now.Add(a.ttl)
	for _, c := range verified[0] {
		if c.NotAfter.Before(expires) {
			expires = c.NotAfter
		}
	}
	a.cache.put(key, u, expires, now)
	return u, true, nil
}

func chainDigest(chain []*x509.Certificate) [32]byte {
	if len(chain) == 1 {
		return sha256.Sum256(chain[0].Raw)
	}
	h := sha256.New()
	for _, c := range chain {
		h.Write(c.Raw)
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}
