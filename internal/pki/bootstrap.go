package pki

import (
	"crypto/ecdsa"
	"crypto/tls"
	"fmt"
	"path/filepath"
	"time"
)

// The identity of the admin client certificate: system:masters is the group
// RBAC's cluster-admin binding names, as upstream.
const (
	AdminUser  = "system:admin"
	AdminGroup = "system:masters"
)

// BootstrapOptions configures Bootstrap.
type BootstrapOptions struct {
	// DataDir is the server's data directory; files go to TLSDir(DataDir)
	// and DataDir/token.
	DataDir string
	// ExtraSANs are added to the serving certificate (IPs or DNS names).
	ExtraSANs []string
	// Now is the clock for issuing and freshness checks; nil is time.Now.
	Now func() time.Time
}

// Bundle is everything a server needs from the PKI at start-up.
type Bundle struct {
	Dir            string
	CA             *CA
	ServingCertPEM []byte
	ServingKeyPEM  []byte
	// AdminCertPEM/AdminKeyPEM identify AdminUser in group AdminGroup; the
	// admin kubeconfig embeds them.
	AdminCertPEM      []byte
	AdminKeyPEM       []byte
	ServiceAccountKey *ecdsa.PrivateKey
	JoinToken         JoinToken
}

// Bootstrap loads or creates the CA, the serving certificate, the admin client
// certificate, the service-account key and the join token in one call.
func Bootstrap(opts BootstrapOptions) (*Bundle, error) {
	if opts.DataDir == "" {
		return nil, fmt.Errorf("bootstrapping pki: empty data dir")
	}
	dir := TLSDir(opts.DataDir)
	ca, err := LoadOrCreateCA(dir)
	if err != nil {
		return nil, fmt.Errorf("bootstrapping pki: %w", err)
	}
	ca.Now = opts.Now
	b := &Bundle{Dir: dir, CA: ca}
	dns, ips := ServingSANs(opts.ExtraSANs)
	if b.ServingCertPEM, b.ServingKeyPEM, err = ca.LoadOrIssueServing(dir, dns, ips, LeafValidity); err != nil {
		return nil, fmt.Errorf("bootstrapping serving certificate: %w", err)
	}
	if b.AdminCertPEM, b.AdminKeyPEM, err = ca.LoadOrIssueClient(dir, AdminClientName, AdminUser, []string{AdminGroup}, LeafValidity); err != nil {
		return nil, fmt.Errorf("bootstrapping admin certificate: %w", err)
	}
	if b.ServiceAccountKey, err = LoadOrCreateServiceAccountKey(dir); err != nil {
		return nil, fmt.Errorf("bootstrapping pki: %w", err)
	}
	if b.JoinToken, err = LoadOrCreateJoinToken(filepath.Join(opts.DataDir, JoinTokenFile), ca.CertPEM); err != nil {
		return nil, fmt.Errorf("bootstrapping pki: %w", err)
	}
	return b, nil
}

// ServingTLSConfig is a server configuration for the API server. Client
// certificates are requested but not verified by the TLS stack
// (tls.RequestClientCert): the x509 authenticator verifies them, so a client
// with an unknown certificate can still authenticate with a bearer token, as
// upstream. ClientCAs only serves as the hint list sent to clients.
func (b *Bundle) ServingTLSConfig() (*tls.Config, error) {
	// The CA goes out after the leaf so an agent holding only a K10 join
	// token can pick it from the handshake and check it against the token's
	// pin (no unauthenticated CA endpoint needed).
	chain := append(append([]byte{}, b.ServingCertPEM...), b.CA.CertPEM...)
	cert, err := tls.X509KeyPair(chain, b.ServingKeyPEM)
	if err != nil {
		return nil, fmt.Errorf("loading serving key pair: %w", err)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequestClientCert,
		ClientCAs:    b.CA.Pool(),
		MinVersion:   tls.VersionTLS12,
	}, nil
}
