package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Node identities, as upstream: a kubelet's client certificate names user
// system:node:NAME in group system:nodes.
const (
	NodeUserPrefix = "system:node:"
	NodesGroup     = "system:nodes"
	// KubeletClientSigner is the CSR signerName for kubelet client
	// certificates.
	KubeletClientSigner = "kubernetes.io/kube-apiserver-client-kubelet"
	// NodeClientValidity is how long a signed node certificate lasts
	// unless the CSR asks for less.
	NodeClientValidity = 365 * 24 * time.Hour
)

// NewNodeCSR creates a key and a PEM certificate request for node's client
// identity.
func NewNodeCSR(node string) (csrPEM, keyPEM []byte, err error) {
	if node == "" {
		return nil, nil, errors.New("creating node csr: empty node name")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating node key: %w", err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: NodeUserPrefix + node, Organization: []string{NodesGroup}},
	}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("creating node csr: %w", err)
	}
	keyPEM, err = EncodeKeyPEM(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), keyPEM, nil
}

// ParseNodeCSR parses a PEM certificate request, checks its signature and
// that its subject is exactly a node identity (CN system:node:NAME, O
// system:nodes, no SANs), and returns the node name.
func ParseNodeCSR(csrPEM []byte) (*x509.CertificateRequest, string, error) {
	blk, _ := pem.Decode(csrPEM)
	if blk == nil || blk.Type != "CERTIFICATE REQUEST" {
		return nil, "", errors.New("parsing node csr: no PEM CERTIFICATE REQUEST block")
	}
	req, err := x509.ParseCertificateRequest(blk.Bytes)
	if err != nil {
		return nil, "", fmt.Errorf("parsing node csr: %w", err)
	}
	if err := req.CheckSignature(); err != nil {
		return nil, "", fmt.Errorf("checking node csr signature: %w", err)
	}
	cn := req.Subject.CommonName
	name, ok := strings.CutPrefix(cn, NodeUserPrefix)
	switch {
	case !ok || name == "":
		return nil, "", fmt.Errorf("node csr common name %q does not start with %q", cn, NodeUserPrefix)
	case !slices.Equal(req.Subject.Organization, []string{NodesGroup}):
		return nil, "", fmt.Errorf("node csr organization %v, want [%s]", req.Subject.Organization, NodesGroup)
	case len(req.DNSNames)+len(req.IPAddresses)+len(req.EmailAddresses)+len(req.URIs) > 0:
		return nil, "", errors.New("node csr must not carry subject alternative names")
	}
	return req, name, nil
}

// SignClientCSR signs req as a client-auth certificate keeping its subject,
// valid for validity (capped by the CA's own lifetime).
func (ca *CA) SignClientCSR(req *x509.CertificateRequest, validity time.Duration) ([]byte, error) {
	if validity <= 0 {
		return nil, fmt.Errorf("signing csr %q: non-positive validity %s", req.Subject.CommonName, validity)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := ca.now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               req.Subject,
		NotBefore:             now.Add(-clockSkewGrace),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	if tmpl.NotAfter.After(ca.Cert.NotAfter) {
		tmpl.NotAfter = ca.Cert.NotAfter
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, req.PublicKey, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("signing csr %q: %w", req.Subject.CommonName, err)
	}
	return EncodeCertPEM(der), nil
}

// CheckNodeClientCert reports why certPEM/keyPEM are not a usable client
// identity for node under caPEM: a different name, not signed by the CA,
// expired, or with less than a fifth of its life left (then the agent asks
// for a new one before it lapses). nil means reuse it.
func CheckNodeClientCert(certPEM, keyPEM, caPEM []byte, node string, now time.Time) error {
	cert, err := ParseCertPEM(certPEM)
	if err != nil {
		return err
	}
	key, err := ParseKeyPEM(keyPEM)
	if err != nil {
		return err
	}
	if pub, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(&key.PublicKey) {
		return errors.New("node certificate does not match its key")
	}
	if cert.Subject.CommonName != NodeUserPrefix+node {
		return fmt.Errorf("node certificate is for %q, not %q", cert.Subject.CommonName, NodeUserPrefix+node)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return errors.New("no ca certificate to verify the node certificate against")
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return fmt.Errorf("verifying node certificate: %w", err)
	}
	if life := cert.NotAfter.Sub(cert.NotBefore); cert.NotAfter.Sub(now) <= life/5 {
		return fmt.Errorf("node certificate expires at %s", cert.NotAfter.Format(time.RFC3339))
	}
	return nil
}
