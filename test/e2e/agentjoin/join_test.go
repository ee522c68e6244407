package agentjoin

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"skiff.dev/skiff/internal/agent"
	"skiff.dev/skiff/internal/pki"
	"skiff.dev/skiff/test/integration/framework"
)

func joinToken(t *testing.T, c *framework.Cluster) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(c.DataDir, "token"))
	if err != nil {
		t.Fatalf("reading join token: %v", err)
	}
	return strings.TrimSpace(string(b))
}

// whoAmI is the user the server sees behind rc: the requestor it records
// in a CertificateSigningRequest (spec.username and groups come from the
// authenticated user, never from the body).
func whoAmI(t *testing.T, rc *rest.Config) (string, []string) {
	t.Helper()
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	req, _, err := pki.NewNodeCSR("probe")
	if err != nil {
		t.Fatal(err)
	}
	csr, err := client.CertificatesV1().CertificateSigningRequests().Create(context.Background(), &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "whoami-"},
		Spec:       certificatesv1.CertificateSigningRequestSpec{Request: req, SignerName: "example.com/none", Usages: []certificatesv1.KeyUsage{certificatesv1.UsageClientAuth}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating a probe csr: %v", err)
	}
	return csr.Spec.Username, csr.Spec.Groups
}

// TestJoinWithTokenOnly: an agent given only --server and --token pins the
// CA from the token, has its CSR approved and signed, and then is
// system:node:NAME; a restarted agent reuses the saved certificate.
func TestJoinWithTokenOnly(t *testing.T) {
	c := framework.Start(t, framework.Options{})
	dir := t.TempDir()
	cfg := agent.Config{Server: c.Server.URL(), Token: joinToken(t, c), DataDir: dir, NodeName: "joiner", NodeIP: "127.0.0.1"}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := agent.New(cfg, agent.Deps{Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	start := time.Now()
	rc, err := a.ClientConfig(ctx)
	if err != nil {
		t.Fatalf("joining: %v", err)
	}
	t.Logf("join (pin the ca, csr created, approved, signed, saved): %s", time.Since(start).Round(time.Millisecond))
	if rc.BearerToken != "" {
		t.Fatal("the node's config still carries the join token")
	}
	user, groups := whoAmI(t, rc)
	if user != "system:node:joiner" || !slices.Contains(groups, "system:nodes") {
		t.Fatalf("agent authenticates as %q %v, want system:node:joiner in system:nodes", user, groups)
	}
	csrs, err := c.Client.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var joins int
	for _, x := range csrs.Items {
		if x.Spec.SignerName == pki.KubeletClientSigner {
			joins++
			if x.Spec.Username != "system:node-join" || len(x.Status.Certificate) == 0 {
				t.Errorf("join csr %s: requestor %q, signed %v", x.Name, x.Spec.Username, len(x.Status.Certificate) > 0)
			}
		}
	}
	if joins != 1 {
		t.Fatalf("%d join csrs, want 1", joins)
	}

	// Restart: the saved certificate is reused, no new CSR.
	saved, err := os.ReadFile(a.NodeCertPath())
	if err != nil {
		t.Fatal(err)
	}
	a2, err := agent.New(cfg, agent.Deps{Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	rc2, err := a2.ClientConfig(ctx)
	if err != nil {
		t.Fatalf("restarted agent: %v", err)
	}
	t.Logf("restart with the saved certificate: %s", time.Since(start).Round(time.Millisecond))
	if !bytes.Equal(rc2.TLSClientConfig.CertData, saved) {
		t.Fatal("the restarted agent did not reuse its certificate")
	}
	after, err := c.Client.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(after.Items) != len(csrs.Items) {
		t.Fatalf("%d csrs after restart, want %d", len(after.Items), len(csrs.Items))
	}

	// Another node name on the same data dir asks for its own identity.
	cfg3 := cfg
	cfg3.NodeName = "renamed"
	a3, err := agent.New(cfg3, agent.Deps{Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	rc3, err := a3.ClientConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if user, _ := whoAmI(t, rc3); user != "system:node:renamed" {
		t.Fatalf("renamed agent is %q", user)
	}
}

func TestJoinWithWrongTokenFails(t *testing.T) {
	c := framework.Start(t, framework.Options{})
	tok, err := pki.ParseJoinToken(joinToken(t, c))
	if err != nil {
		t.Fatal(err)
	}
	tok.Secret = strings.Repeat("0", len(tok.Secret))
	a, err := agent.New(agent.Config{Server: c.Server.URL(), Token: tok.String(), DataDir: t.TempDir(), NodeName: "intruder", NodeIP: "127.0.0.1"},
		agent.Deps{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.ClientConfig(context.Background())
	if !apierrors.IsUnauthorized(err) {
		t.Fatalf("joining with a wrong token: %v, want 401", err)
	}
	// A token pinning another CA is refused before any request is sent.
	other, err := pki.NewCA("other", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tok2, _ := pki.ParseJoinToken(joinToken(t, c))
	tok2.CAHash = pki.CAHash(other.CertPEM)
	a2, _ := agent.New(agent.Config{Server: c.Server.URL(), Token: tok2.String(), DataDir: t.TempDir(), NodeName: "n", NodeIP: "127.0.0.1"},
		agent.Deps{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if _, err := a2.ClientConfig(context.Background()); err == nil || !strings.Contains(err.Error(), "pinned") {
		t.Fatalf("joining with a token pinning another ca: %v", err)
	}
}
