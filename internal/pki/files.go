package pki

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// File names inside the TLS directory.
const (
	CACertFile             = "ca.crt"
	CAKeyFile              = "ca.key"
	ServingCertFile        = "serving.crt"
	ServingKeyFile         = "serving.key"
	ServiceAccountKeyFile  = "service-account.key"
	AdminClientName        = "client-admin"
	JoinTokenFile          = "token"
	certPerm               = 0o644
	keyPerm                = 0o600
	dirPerm                = 0o700
	pemTypeCertificate     = "CERTIFICATE"
	pemTypePKCS8PrivateKey = "PRIVATE KEY"
	pemTypeECPrivateKey    = "EC PRIVATE KEY"
)

// TLSDir is where the key material of a data directory lives.
func TLSDir(dataDir string) string { return filepath.Join(dataDir, "tls") }

// writeFileAtomic writes data to path through a temporary file in the same
// directory so a crash never leaves a half-written key behind.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, dirPerm); err != nil {
		return fmt.Errorf("creating directory %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("creating temporary file for %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("setting mode of %s: %w", tmp, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	// Sync before the rename: otherwise a crash can leave an empty key file
	// under the final name, which is worse than no file at all.
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("syncing %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("closing %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("renaming %s to %s: %w", tmp, path, err)
	}
	return nil
}

// readIfExists returns (nil, nil) when path does not exist.
func readIfExists(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return b, nil
}

// EncodeCertPEM encodes one DER certificate as PEM.
func EncodeCertPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: pemTypeCertificate, Bytes: der})
}

// EncodeKeyPEM encodes an ECDSA private key as a PKCS#8 PEM block.
func EncodeKeyPEM(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("marshalling private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemTypePKCS8PrivateKey, Bytes: der}), nil
}

// ParseCertPEM parses the first certificate in a PEM bundle.
func ParseCertPEM(b []byte) (*x509.Certificate, error) {
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return nil, errors.New("no certificate found in pem data")
		}
		if block.Type != pemTypeCertificate {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parsing certificate: %w", err)
		}
		return cert, nil
	}
}

// ParseKeyPEM parses an ECDSA private key in PKCS#8 or SEC 1 ("EC PRIVATE
// KEY") form.
func ParseKeyPEM(b []byte) (*ecdsa.PrivateKey, error) {
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return nil, errors.New("no private key found in pem data")
		}
		switch block.Type {
		case pemTypeECPrivateKey:
			k, err := x509.ParseECPrivateKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("parsing ec private key: %w", err)
			}
			return k, nil
		case pemTypePKCS8PrivateKey:
			k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("parsing pkcs8 private key: %w", err)
			}
			ek, ok := k.(*ecdsa.PrivateKey)
			if !ok {
				return nil, fmt.Errorf("private key is %T, want ecdsa", k)
			}
			return ek, nil
		}
	}
}
