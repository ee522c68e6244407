package agent

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
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

func (a *Agent) nodeKeyPath() string { return filepath.Join(a.Dir(), nodeKeyFile) }

// ClientConfig is how the agent talks to the API server: the injected
// config, the kubeconfig, or (with --server/--token) its node identity,
// obtained with the join token on first start and renewed in the
// background until ctx ends (certrotation.go). The returned config's
// CertData is the certificate at start; its clients present the current
// one.
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
// is reused while it is valid for this node and CA (one already due for
// rotation is renewed at once, with itself); otherwise, expired or
// missing, the agent sends a CertificateSigningRequest with the token and
// waits for the server's signer (internal/server/nodecsr.go).
func (a *Agent) nodeIdentity(ctx context.Context, bootstrap *rest.Config) (*rest.Config, error) {
	ca := bootstrap.TLSClientConfig.CAData
	cur, err := a.loadNodeCert(ca)
	if err == nil {
		a.log.Info("using saved node certificate", "path", a.NodeCertPath(), "expires", cur.tls.Leaf.NotAfter)
	} else {
		a.log.Info("requesting a new node certificate", "reason", err)
		if cur, err = a.obtainNodeCert(ctx, bootstrap, "joining"); err != nil {
			return nil, err
		}
		if err := writeAtomic(filepath.Join(a.Dir(), serverCAFile), ca, 0o644); err != nil {
			return nil, fmt.Errorf("saving node identity: %w", err)
		}
	}
	holder := &certHolder{}
	holder.set(cur)
	rot, err := newRotatingClient(bootstrap, holder)
	if err != nil {
		return nil, err
	}
	rc := nodeConfig(bootstrap, cur.certPEM, cur.keyPEM)
	rot.wrap(rc)
	r := &certRotator{
		holder: holder, clock: a.deps.Clock, rand: rand.Float64, rotated: rot.dialer.CloseAll,
		log: a.log.With("component", "node-certificate"),
		renew: func(ctx context.Context, useToken bool) (*nodeCert, error) {
			if useToken {
				return a.obtainNodeCert(ctx, bootstrap, "renewing the node certificate with the join token")
			}
			return a.obtainNodeCert(ctx, rc, "renewing the node certificate")
		},
	}
	go r.run(ctx)
	return rc, nil
}

// loadNodeCert reads the saved certificate and checks that it is this
// node's, signed by ca and not expired. A rotation interrupted between its
// two renames (new key, old certificate) is completed here.
func (a *Agent) loadNodeCert(ca []byte) (*nodeCert, error) {
	certPath, keyPath := a.NodeCertPath(), a.nodeKeyPath()
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, err
	}
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(certPath)
	if err != nil {
		return nil, err
	}
	c, err := parseNodeCert(certPEM, keyPEM, fi.ModTime())
	if err != nil {
		next, nerr := os.ReadFile(certPath + nextSuffix)
		if nerr != nil {
			return nil, err
		}
		if c, nerr = parseNodeCert(next, keyPEM, a.deps.Clock.Now()); nerr != nil {
			return nil, err
		}
		if err := os.Rename(certPath+nextSuffix, certPath); err != nil {
			return nil, fmt.Errorf("completing node certificate rotation: %w", err)
		}
	}
	if err := checkNodeCert(c, ca, a.cfg.NodeName, a.deps.Clock.Now()); err != nil {
		return nil, err
	}
	return c, nil
}

// checkNodeCert reports why c is not a client identity of node under ca
// at now: another name, another CA, expired.
func checkNodeCert(c *nodeCert, ca []byte, node string, now time.Time) error {
	leaf := c.tls.Leaf
	if leaf.Subject.CommonName != pki.NodeUserPrefix+node {
		return fmt.Errorf("node certificate is for %q, not %q", leaf.Subject.CommonName, pki.NodeUserPrefix+node)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return errors.New("no ca certificate to verify the node certificate against")
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return fmt.Errorf("verifying node certificate: %w", err)
	}
	return nil
}

// nextSuffix marks a certificate saved but not yet renamed into place.
const nextSuffix = ".next"

// obtainNodeCert gets a certificate signed through a CSR authenticated by
// rc and saves it: the key and certificate are written beside the current
// ones, then renamed over them key first; loadNodeCert finishes a rotation
// cut between the two renames.
func (a *Agent) obtainNodeCert(ctx context.Context, rc *rest.Config, doing string) (*nodeCert, error) {
	certPEM, keyPEM, err := a.requestNodeCert(ctx, rc, doing)
	if err != nil {
		return nil, err
	}
	c, err := parseNodeCert(certPEM, keyPEM, a.deps.Clock.Now())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", doing, err)
	}
	if err := os.MkdirAll(a.Dir(), 0o700); err != nil {
		return nil, fmt.Errorf("creating agent dir: %w", err)
	}
	certPath, keyPath := a.NodeCertPath(), a.nodeKeyPath()
	if err := writeAtomic(keyPath+nextSuffix, keyPEM, 0o600); err != nil {
		return nil, fmt.Errorf("saving node identity: %w", err)
	}
	if err := writeAtomic(certPath+nextSuffix, certPEM, 0o644); err != nil {
		return nil, fmt.Errorf("saving node identity: %w", err)
	}
	if err := os.Rename(keyPath+nextSuffix, keyPath); err != nil {
		return nil, fmt.Errorf("saving node identity: %w", err)
	}
	if err := os.Rename(certPath+nextSuffix, certPath); err != nil {
		return nil, fmt.Errorf("saving node identity: %w", err)
	}
	return c, nil
}

// nodeConfig is bootstrap with the token replaced by the certificate.
func nodeConfig(bootstrap *rest.Config, certPEM, keyPEM []byte) *rest.Config {
	rc := rest.CopyConfig(bootstrap)
	rc.BearerToken, rc.BearerTokenFile = "", ""
	rc.TLSClientConfig.CertData, rc.TLSClientConfig.KeyData = certPEM, keyPEM
	return rc
}

// requestNodeCert creates a CSR with rc's credentials (the join token, or
// the node's current certificate) and waits for it to be signed, denied or
// failed. doing prefixes its errors.
func (a *Agent) requestNodeCert(ctx context.Context, rc *rest.Config, doing string) (certPEM, keyPEM []byte, err error) {
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: building client: %w", doing, err)
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
		return nil, nil, fmt.Errorf("%s: creating certificate signing request: %w", doing, err)
	}
	a.log.Info("waiting for the node certificate", "csr", created.Name)
	sel := fields.OneTermEqualSelector("metadata.name", created.Name).String()
	for {
		// Watch from the created version; re-list after a dropped watch.
		cur, err := csrs.Get(ctx, created.Name, metav1.GetOptions{})
		if err != nil {
			return nil, nil, fmt.Errorf("%s: reading csr %s: %w", doing, created.Name, err)
		}
		if cert, done, err := csrOutcome(cur); done {
			return cert, keyPEM, wrapOutcome(doing, err)
		}
		w, err := csrs.Watch(ctx, metav1.ListOptions{FieldSelector: sel, ResourceVersion: cur.ResourceVersion})
		if err != nil {
			return nil, nil, fmt.Errorf("%s: watching csr %s: %w", doing, created.Name, err)
		}
		for ev := range w.ResultChan() {
			c, ok := ev.Object.(*certificatesv1.CertificateSigningRequest)
			if !ok {
				continue
			}
			if cert, done, err := csrOutcome(c); done {
				w.Stop()
				return cert, keyPEM, wrapOutcome(doing, err)
			}
		}
		w.Stop()
		if ctx.Err() != nil {
			return nil, nil, fmt.Errorf("%s: csr %s was not signed within %s (is the server's signer running?)", doing, created.Name, joinTimeout)
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
			return nil, true, fmt.Errorf("csr %s %s: %s %s", c.Name, cond.Type, cond.Reason, cond.Message)
		}
	}
	if len(c.Status.Certificate) > 0 {
		return c.Status.Certificate, true, nil
	}
	return nil, false, nil
}

func wrapOutcome(doing string, err error) error {
	if err != nil {
		return fmt.Errorf("%s: %w", doing, err)
	}
	return nil
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
