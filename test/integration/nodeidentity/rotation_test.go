// Package nodeidentity tests a joined agent's client identity against an
// in-process API server: the node certificate is rotated while the agent
// runs and its clients switch to the new one without a restart.
package nodeidentity

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"skiff.dev/skiff/internal/agent"
	"skiff.dev/skiff/internal/pki"
	"skiff.dev/skiff/test/integration/framework"
)

// certValidity is the signer's lifetime in this test: the agent rotates
// at 70-90% of it, 1.5 s or more before the old certificate lapses.
const certValidity = 15 * time.Second

// TestNodeCertificateRotation: an agent joined with the token gets a
// 15-second certificate, renews it twice while running through CSRs
// authenticated with the certificate itself, and its client (including an
// informer's long-lived watch) keeps working after the first certificate
// has expired, presenting the new one.
func TestNodeCertificateRotation(t *testing.T) {
	c := framework.Start(t, framework.Options{NodeCertValidity: certValidity})
	tok, err := os.ReadFile(filepath.Join(c.DataDir, "token"))
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Config{Server: c.Server.URL(), Token: strings.TrimSpace(string(tok)), DataDir: t.TempDir(), NodeName: "rotor", NodeIP: "127.0.0.1"},
		agent.Deps{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	rc, err := a.ClientConfig(ctx)
	if err != nil {
		t.Fatalf("joining: %v", err)
	}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	first := savedCert(t, a)
	if life := first.notAfter.Sub(time.Now()); life > certValidity || life < certValidity/2 {
		t.Fatalf("first certificate lives %s more, want about %s", life, certValidity)
	}

	// A watch held open by the node's client across the rotations.
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace("default"))
	cms := factory.Core().V1().ConfigMaps()
	cmInformer := cms.Informer()
	factory.Start(ctx.Done())
	t.Cleanup(func() { cancel(); factory.Shutdown() })
	if !cache.WaitForCacheSync(ctx.Done(), cmInformer.HasSynced) {
		t.Fatal("configmap informer did not sync")
	}

	// Probe every 200 ms: the request must succeed and the server must
	// see the node presenting a certificate the agent holds.
	seen := map[string]bool{first.sha: true}
	var afterExpiry []string // certificates presented once the first had expired
	deadline := time.Now().Add(4 * certValidity)
	transient := 0
	for len(seen) < 3 || time.Now().Before(first.notAfter.Add(time.Second)) {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %d certificates seen, want 3", 4*certValidity, len(seen))
		}
		probeAt := time.Now()
		user, credential, err := whoAmI(ctx, t, client)
		if apierrors.IsUnauthorized(err) {
			t.Fatalf("the node's request at %s was refused: %v", probeAt.Format(time.StampMilli), err)
		}
		if err != nil {
			// A request in flight when a rotation closes the connections
			// fails (as upstream's kubelet's do); the next one reconnects.
			if transient++; transient > 5 {
				t.Fatalf("%d failed requests, the last: %v", transient, err)
			}
			t.Logf("request failed during a rotation: %v", err)
			continue
		}
		if user != "system:node:rotor" {
			t.Fatalf("node client authenticates as %q", user)
		}
		cur := savedCert(t, a)
		seen[cur.sha] = true
		if probeAt.After(first.notAfter) {
			afterExpiry = append(afterExpiry, credential)
		}
		if !seen[credential] {
			t.Fatalf("the node presented certificate %s, not one it saved", credential[:12])
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, cred := range afterExpiry {
		if cred == first.sha {
			t.Fatal("a request after the first certificate expired presented it (and yet succeeded?)")
		}
	}
	if len(afterExpiry) == 0 {
		t.Fatal("no request made after the first certificate expired")
	}

	// The renewals were CSRs by the node itself, signed.
	csrs, err := c.Client.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var joins, renewals int
	for _, x := range csrs.Items {
		if x.Spec.SignerName != pki.KubeletClientSigner {
			continue
		}
		switch x.Spec.Username {
		case "system:node-join":
			joins++
		case "system:node:rotor":
			if len(x.Status.Certificate) > 0 {
				renewals++
			}
		}
	}
	if joins != 1 || renewals < 1 {
		t.Errorf("%d join csrs (want 1) and %d signed self-renewals (want at least 1)", joins, renewals)
	}

	// The informer's watch came back after the rotations closed its
	// connection: a new ConfigMap reaches it.
	if _, err := c.Client.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "after-rotation"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := cms.Lister().ConfigMaps("default").Get("after-rotation"); err == nil {
			break
		}
		if time.Now().After(end) {
			t.Fatal("the node's informer did not see a ConfigMap created after the rotations")
		}
	}
}

type certInfo struct {
	sha      string // as the server's credential-id: hex SHA-256 of the DER
	notAfter time.Time
}

// savedCert is the agent's certificate on disk.
func savedCert(t *testing.T, a *agent.Agent) certInfo {
	t.Helper()
	b, err := os.ReadFile(a.NodeCertPath())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := pki.ParseCertPEM(b)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(cert.Raw)
	return certInfo{sha: hex.EncodeToString(sum[:]), notAfter: cert.NotAfter}
}

// whoAmI is the user the server authenticated and the certificate it saw,
// from a probe CSR (the server fills spec.username and spec.extra from the
// request's authentication; the certificate is its credential-id).
func whoAmI(ctx context.Context, t *testing.T, client kubernetes.Interface) (user, certSHA string, err error) {
	t.Helper()
	req, _, err := pki.NewNodeCSR("probe")
	if err != nil {
		t.Fatal(err)
	}
	csrs := client.CertificatesV1().CertificateSigningRequests()
	csr, err := csrs.Create(ctx, &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "whoami-"},
		Spec:       certificatesv1.CertificateSigningRequestSpec{Request: req, SignerName: "example.com/none", Usages: []certificatesv1.KeyUsage{certificatesv1.UsageClientAuth}},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", "", err
	}
	// Deleting needs no particular identity; keep the list short.
	_ = csrs.Delete(ctx, csr.Name, metav1.DeleteOptions{})
	for _, v := range csr.Spec.Extra["authentication.kubernetes.io/credential-id"] {
		if s, ok := strings.CutPrefix(v, "X509SHA256="); ok {
			return csr.Spec.Username, s, nil
		}
	}
	t.Fatalf("probe csr carries no certificate credential-id: %v", csr.Spec.Extra)
	return "", "", nil
}

// TestExpiredCertificateAtStart: an agent whose saved certificate has
// expired (it was stopped past its lifetime) joins again with the token
// instead of failing with 401.
func TestExpiredCertificateAtStart(t *testing.T) {
	c := framework.Start(t, framework.Options{})
	tok, err := os.ReadFile(filepath.Join(c.DataDir, "token"))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.LoadCA(pki.TLSDir(c.DataDir))
	if err != nil {
		t.Fatal(err)
	}
	// A certificate of this node from the cluster CA that expired an hour ago.
	ca.Now = func() time.Time { return time.Now().Add(-2 * time.Hour) }
	csrPEM, keyPEM, err := pki.NewNodeCSR("sleeper")
	if err != nil {
		t.Fatal(err)
	}
	req, _, err := pki.ParseNodeCSR(csrPEM)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := ca.SignClientCSR(req, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Config{Server: c.Server.URL(), Token: strings.TrimSpace(string(tok)), DataDir: t.TempDir(), NodeName: "sleeper", NodeIP: "127.0.0.1"},
		agent.Deps{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(a.Dir(), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(a.NodeCertPath(), certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(a.Dir(), "client-kubelet.key"), keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	rc, err := a.ClientConfig(ctx)
	if err != nil {
		t.Fatalf("starting with an expired certificate: %v", err)
	}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	user, cred, err := whoAmI(ctx, t, client)
	if err != nil || user != "system:node:sleeper" {
		t.Fatalf("after rejoining: user %q, %v", user, err)
	}
	now := savedCert(t, a)
	if cred != now.sha || !now.notAfter.After(time.Now().Add(300*24*time.Hour)) {
		t.Errorf("the agent presents %s, saved %s expiring %s; want a fresh one-year certificate", cred[:12], now.sha[:12], now.notAfter)
	}
	csrs, err := c.Client.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	joins := 0
	for _, x := range csrs.Items {
		if x.Spec.SignerName == pki.KubeletClientSigner && x.Spec.Username == "system:node-join" {
			joins++
		}
	}
	if joins != 1 {
		t.Errorf("%d csrs made with the join token, want 1", joins)
	}
}
