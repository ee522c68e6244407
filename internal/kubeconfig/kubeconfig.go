// Package kubeconfig writes kubeconfig files that kubectl and client-go read,
// using client-go's own clientcmd serialisation.
//
// Every file holds one cluster, one user and one context, all credentials
// embedded (no paths to other files), so a kubeconfig can be copied to
// another machine as is. Names are fixed so scripts can rely on them:
// cluster and context ClusterName ("skiff"), user AdminUser ("skiff-admin")
// for the admin's client certificate and TokenUser ("skiff") for a bearer
// token. (k3s calls all three "default"; skiff's names say whose they are
// when merged with other kubeconfigs.)
//
// Contract: files are written atomically with mode 0600, whether or not they
// existed before, and the parent directory is created if missing.
package kubeconfig

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Names used inside the files.
const (
	ClusterName = "skiff"
	ContextName = "skiff"
	AdminUser   = "skiff-admin"
	TokenUser   = "skiff"
)

// Credentials is what a kubeconfig user entry holds: a client certificate
// and key, or a bearer token.
type Credentials struct {
	User    string // entry name; defaults to AdminUser or TokenUser
	CertPEM []byte
	KeyPEM  []byte
	Token   string
}

// Build returns the kubeconfig for one server and one set of credentials.
func Build(serverURL string, caPEM []byte, creds Credentials) (*clientcmdapi.Config, error) {
	if serverURL == "" {
		return nil, errors.New("building kubeconfig: empty server url")
	}
	hasCert := len(creds.CertPEM) > 0 || len(creds.KeyPEM) > 0
	switch {
	case hasCert && (len(creds.CertPEM) == 0 || len(creds.KeyPEM) == 0):
		return nil, errors.New("building kubeconfig: a client certificate needs both cert and key")
	case hasCert == (creds.Token != ""):
		return nil, errors.New("building kubeconfig: want exactly one of a client certificate or a token")
	}
	user := creds.User
	if user == "" {
		user = AdminUser
		if creds.Token != "" {
			user = TokenUser
		}
	}
	cfg := clientcmdapi.NewConfig()
	cluster := clientcmdapi.NewCluster()
	cluster.Server = serverURL
	cluster.CertificateAuthorityData = caPEM
	cfg.Clusters[ClusterName] = cluster
	auth := clientcmdapi.NewAuthInfo()
	auth.ClientCertificateData = creds.CertPEM
	auth.ClientKeyData = creds.KeyPEM
	auth.Token = creds.Token
	cfg.AuthInfos[user] = auth
	ctx := clientcmdapi.NewContext()
	ctx.Cluster = ClusterName
	ctx.AuthInfo = user
	cfg.Contexts[ContextName] = ctx
	cfg.CurrentContext = ContextName
	return cfg, nil
}

// Write serialises cfg to path with mode 0600.
func Write(path string, cfg *clientcmdapi.Config) error {
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return fmt.Errorf("serialising kubeconfig: %w", err)
	}
	if err := writeFileAtomic(path, data); err != nil {
		return fmt.Errorf("writing kubeconfig: %w", err)
	}
	return nil
}

// WriteAdmin writes a kubeconfig that authenticates with a client
// certificate (normally the admin's: CN system:admin, O system:masters).
func WriteAdmin(path, serverURL string, caPEM, certPEM, keyPEM []byte) error {
	return WriteCert(path, serverURL, caPEM, AdminUser, certPEM, keyPEM)
}

// WriteCert writes a kubeconfig whose user entry, called user, authenticates
// with a client certificate (an agent's system:node:NAME identity, say).
func WriteCert(path, serverURL string, caPEM []byte, user string, certPEM, keyPEM []byte) error {
	if len(certPEM) == 0 || len(keyPEM) == 0 {
		return errors.New("writing kubeconfig: empty client certificate or key")
	}
	cfg, err := Build(serverURL, caPEM, Credentials{User: user, CertPEM: certPEM, KeyPEM: keyPEM})
	if err != nil {
		return err
	}
	return Write(path, cfg)
}

// WriteToken writes a kubeconfig that authenticates with a bearer token.
func WriteToken(path, serverURL string, caPEM []byte, token string) error {
	if token == "" {
		return errors.New("writing kubeconfig: empty token")
	}
	cfg, err := Build(serverURL, caPEM, Credentials{Token: token})
	if err != nil {
		return err
	}
	return Write(path, cfg)
}

func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating directory %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("creating temporary file for %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	// CreateTemp already uses 0600; Chmod states the contract regardless of
	// how that default evolves.
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("setting mode of %s: %w", tmp, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
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
