package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"skiff.dev/skiff/internal/pki"
)

// Files of the node's client identity, under the agent's directory.
const (
	nodeCertFile = "client-kubelet.crt"
	nodeKeyFile  = "client-kubelet.key"
	serverCAFile = "server-ca.crt"
)

// joinTimeout bounds the wait for the server to sign the node's CSR.
const joinTimeout = 2 * time.Minute

// NodeCertPath is where the agent keeps its signed client certificate.
func (a *Agent) NodeCertPath() string { return filepath.Join(a.Dir(), nodeCertFile) }

// ClientConfig is how the agent talks to the API server: the injected
// config, the kubeconfig, or (with --server/--token) its node identity,
// obtained with the join token on first start.
func (a *Agent) ClientConfig(ctx context.Context) (*rest.Config, error) {
	rc, err := a.restConfig()
	if err != nil || a.deps.RestConfig != nil || a.cfg.Kubeconfig != "" {
		return rc, err
	}
	// The join token only admits; the node works as system:node:NAME.
	return a.nodeIdentity(ctx, rc)
}

// nodeIdentity turns the join-token configuration into one that
// authenticates as system:node:NAME. A certificate saved by an earlier run
// is reused while it is valid for this node and CA and not near expiry;
// otherwise the agent sends a CertificateSigningRequest with the token and
// waits for the server's signer (internal/server/nodecsr.go).
func (a *Agent) nodeIdentity(ctx context.Context, bootstrap *rest.Config) (*rest.Config, error) {
	ca := bootstrap.TLSClientConfig.CAData
	certPath, keyPath := a.NodeCertPath(), filepath.Join(a.Dir(), nodeKeyFile)
	certPEM, cerr := os.ReadFile(certPath)
	keyPEM, kerr := os.ReadFile(keyPath)
	if cerr == nil && kerr == nil {
		err := pki.CheckNodeClientCert(certPEM, keyPEM, ca, a.cfg.NodeName, a.deps.Clock.Now())
		if err == nil {
			a.log.Info("using saved node certificate", "path", certPath)
			return nodeConfig(bootstrap, certPEM, keyPEM), nil
		}
		a.log.Info("requesting a new node certificate", "reason", err)
	}
	certPEM, keyPEM, err := a.requestNodeCert(ctx, bootstrap)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(a.Dir(), 0o700); err != nil {
		return nil, fmt.Errorf("creating agent dir: %w", err)
	}
	for _, f := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{{keyPath, keyPEM, 0o600}, {certPath, certPEM, 0o644}, {filepath.Join(a.Dir(), serverCAFile), ca, 0o644}} {
		if err := writeAtomic(f.path, f.data, f.mode); err != nil {
			return nil, fmt.Errorf("saving node identity: %w", err)
		}
	}
	return nodeConfig(bootstrap, certPEM, keyPEM), nil
}

// nodeConfig is bootstrap with the token replaced by the certificate.
func nodeConfig(bootstrap *rest.Config, certPEM, keyPEM []byte) *rest.Config {
	rc := rest.CopyConfig(bootstrap)
	rc.BearerToken, rc.BearerTokenFile = "", ""
	rc.TLSClientConfig.CertData, rc.TLSClientConfig.KeyData = certPEM, keyPEM
	return rc
}

// requestNodeCert creates a CSR with the join token and waits for it to be
// signed, denied or failed.
func (a *Agent) requestNodeCert(ctx context.Context, bootstrap *rest.Config) (certPEM, keyPEM []byte, err error) {
	client, err := kubernetes.NewForConfig(bootstrap)
	if err != nil {
		return nil, nil, fmt.Errorf("building join client: %w", err)
	}
	csrPEM, keyPEM, err := pki.NewNodeCSR(a.cfg.NodeName)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, joinTimeout)
	defer cancel()
	csrs := client.CertificatesV1().CertificateSigningRequests()
	created, err := csrs.Create(ctx, &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "node-csr-" + a.cfg.NodeName + "-"},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			Request:    csrPEM,
			SignerName: pki.KubeletClientSigner,
			Usages:     []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("joining: creating certificate signing request: %w", err)
	}
	a.log.Info("waiting for the node certificate", "csr", created.Name)
	sel := fields.OneTermEqualSelector("metadata.name", created.Name).String()
	for {
		// Watch from the created version; re-list after a dropped watch.
		cur, err := csrs.Get(ctx, created.Name, metav1.GetOptions{})
		if err != nil {
			return nil, nil, fmt.Errorf("joining: reading csr %s: %w", created.Name, err)
		}
		if cert, done, err := csrOutcome(cur); done {
			return cert, keyPEM, err
		}
		w, err := csrs.Watch(ctx, metav1.ListOptions{FieldSelector: sel, ResourceVersion: cur.ResourceVersion})
		if err != nil {
			return nil, nil, fmt.Errorf("joining: watching csr %s: %w", created.Name, err)
		}
		for ev := range w.ResultChan() {
			c, ok := ev.Object.(*certificatesv1.CertificateSigningRequest)
			if !ok {
				continue
			}
			if cert, done, err := csrOutcome(c); done {
				w.Stop()
				return cert, keyPEM, err
			}
		}
		w.Stop()
		if ctx.Err() != nil {
			return nil, nil, fmt.Errorf("joining: csr %s was not signed within %s (is the server's signer running?)", created.Name, joinTimeout)
		}
	}
}

// csrOutcome reports whether c is finished: signed (the certificate),
// denied or failed (an error).
func csrOutcome(c *certificatesv1.CertificateSigningRequest) ([]byte, bool, error) {
	for _, cond := range c.Status.Conditions {
		if cond.Status != corev1.ConditionTrue {
			continue
		}
		switch cond.Type {
		case certificatesv1.CertificateDenied, certificatesv1.CertificateFailed:
			return nil, true, fmt.Errorf("joining: csr %s %s: %s %s", c.Name, cond.Type, cond.Reason, cond.Message)
		}
	}
	if len(c.Status.Certificate) > 0 {
		return c.Status.Certificate, true, nil
	}
	return nil, false, nil
}

func writeAtomic(path string, data []byte, mode os.FileMode) error {
	if len(data) == 0 {
		return errors.New("writing " + path + ": empty")
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
