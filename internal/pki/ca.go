package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"path/filepath"
	"time"
)

// Validity periods used when the caller does not care.
const (
	CAValidity     = 10 * 365 * 24 * time.Hour
	LeafValidity   = 365 * 24 * time.Hour
	clockSkewGrace = time.Hour // NotBefore is backdated by this much
)

// CA is a certificate authority that signs skiff's leaf certificates.
type CA struct {
	Cert    *x509.Certificate
	Key     *ecdsa.PrivateKey
	CertPEM []byte

	// Now is the clock used for NotBefore/NotAfter and freshness checks;
	// nil means time.Now.
	Now func() time.Time

	pool *x509.CertPool
}

func (ca *CA) now() time.Time {
	if ca.Now != nil {
		return ca.Now()
	}
	return time.Now()
}

// NewCA creates a self-signed CA in memory.
func NewCA(commonName string, now time.Time, validity time.Duration) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating ca key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-clockSkewGrace),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("signing ca certificate: %w", err)
	}
	return caFromDER(der, key)
}

func caFromDER(der []byte, key *ecdsa.PrivateKey) (*CA, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing ca certificate: %w", err)
	}
	return newCA(cert, key, EncodeCertPEM(der))
}

func newCA(cert *x509.Certificate, key *ecdsa.PrivateKey, certPEM []byte) (*CA, error) {
	if !cert.IsCA {
		return nil, errors.New("certificate is not a ca")
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, errors.New("ca key does not match ca certificate")
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{Cert: cert, Key: key, CertPEM: certPEM, pool: pool}, nil
}

// LoadCA reads ca.crt and ca.key from dir without creating anything.
func LoadCA(dir string) (*CA, error) {
	certPEM, err := readIfExists(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, err
	}
	keyPEM, err := readIfExists(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, err
	}
	if certPEM == nil || keyPEM == nil {
		return nil, fmt.Errorf("loading ca from %s: files missing", dir)
	}
	return parseCA(certPEM, keyPEM)
}

func parseCA(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := ParseCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("loading ca certificate: %w", err)
	}
	key, err := ParseKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("loading ca key: %w", err)
	}
	return newCA(cert, key, certPEM)
}

// LoadOrCreateCA loads the CA from dir (normally TLSDir(dataDir)), creating
// and persisting a new one when neither file exists. One file without the
// other is an error rather than a reason to start over: replacing the CA
// would silently invalidate every issued certificate and kubeconfig.
func LoadOrCreateCA(dir string) (*CA, error) {
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	certPEM, err := readIfExists(certPath)
	if err != nil {
		return nil, err
	}
	keyPEM, err := readIfExists(keyPath)
	if err != nil {
		return nil, err
	}
	switch {
	case certPEM != nil && keyPEM != nil:
		ca, err := parseCA(certPEM, keyPEM)
		if err != nil {
			return nil, err
		}
		if now := time.Now(); now.After(ca.Cert.NotAfter) {
			return nil, fmt.Errorf("ca in %s expired at %s", dir, ca.Cert.NotAfter.Format(time.RFC3339))
		}
		return ca, nil
	case certPEM != nil || keyPEM != nil:
		return nil, fmt.Errorf("loading ca from %s: only one of %s and %s exists", dir, CACertFile, CAKeyFile)
	}
	now := time.Now()
	ca, err := NewCA(fmt.Sprintf("skiff-ca@%d", now.Unix()), now, CAValidity)
	if err != nil {
		return nil, err
	}
	keyOut, err := EncodeKeyPEM(ca.Key)
	if err != nil {
		return nil, err
	}
	// Key first: a crash between the two writes leaves a key without a
	// certificate, which the check above reports instead of pairing a new
	// key with an old certificate.
	if err := writeFileAtomic(keyPath, keyOut, keyPerm); err != nil {
		return nil, fmt.Errorf("saving ca key: %w", err)
	}
	if err := writeFileAtomic(certPath, ca.CertPEM, certPerm); err != nil {
		return nil, fmt.Errorf("saving ca certificate: %w", err)
	}
	return ca, nil
}

// Pool returns a pool holding only this CA, for verifying peers.
func (ca *CA) Pool() *x509.CertPool { return ca.pool }

// IssueServing signs a server-auth certificate for the given names.
func (ca *CA) IssueServing(dnsNames []string, ips []net.IP, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	cn := "skiff-apiserver"
	if len(dnsNames) > 0 {
		cn = dnsNames[0]
	}
	return ca.issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		DNSNames:    dnsNames,
		IPAddresses: ips,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, validity)
}

// IssueClient signs a client-auth certificate whose subject carries the
// Kubernetes identity: CN is the user name and each O is a group.
func (ca *CA) IssueClient(user string, groups []string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if user == "" {
		return nil, nil, errors.New("issuing client certificate: empty user name")
	}
	return ca.issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: user, Organization: groups},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, validity)
}

func (ca *CA) issue(tmpl *x509.Certificate, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if validity <= 0 {
		return nil, nil, fmt.Errorf("issuing certificate %q: non-positive validity %s", tmpl.Subject.CommonName, validity)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	now := ca.now()
	tmpl.SerialNumber = serial
	tmpl.NotBefore = now.Add(-clockSkewGrace)
	tmpl.NotAfter = now.Add(validity)
	if tmpl.NotAfter.After(ca.Cert.NotAfter) {
		tmpl.NotAfter = ca.Cert.NotAfter
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.BasicConstraintsValid = true
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("signing certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	keyPEM, err = EncodeKeyPEM(key)
	if err != nil {
		return nil, nil, err
	}
	return EncodeCertPEM(der), keyPEM, nil
}

// verifyLeaf reports whether cert chains to this CA for the given usage at
// the CA's current time.
func (ca *CA) verifyLeaf(cert *x509.Certificate, usage x509.ExtKeyUsage) error {
	_, err := cert.Verify(x509.VerifyOptions{
		Roots:       ca.pool,
		CurrentTime: ca.now(),
		KeyUsages:   []x509.ExtKeyUsage{usage},
	})
	return err
}

// fresh reports whether more than a fifth of cert's lifetime remains.
func (ca *CA) fresh(cert *x509.Certificate) bool {
	life := cert.NotAfter.Sub(cert.NotBefore)
	return cert.NotAfter.Sub(ca.now()) > life/5
}

func randomSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generating serial number: %w", err)
	}
	return serial.Add(serial, big.NewInt(1)), nil // never zero
}
