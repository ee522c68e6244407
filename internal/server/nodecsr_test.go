package server

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"skiff.dev/skiff/internal/pki"
)

func TestDecideNodeCSR(t *testing.T) {
	nodeReq, _, err := pki.NewNodeCSR("n1")
	if err != nil {
		t.Fatal(err)
	}
	clientUsages := []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth}
	csr := func(mut func(*certificatesv1.CertificateSigningRequest)) *certificatesv1.CertificateSigningRequest {
		c := &certificatesv1.CertificateSigningRequest{Spec: certificatesv1.CertificateSigningRequestSpec{
			SignerName: pki.KubeletClientSigner, Request: nodeReq, Usages: clientUsages,
			Username: "system:node-join", Groups: []string{"system:nodes", BootstrapGroup, "system:authenticated"},
		}}
		if mut != nil {
			mut(c)
		}
		return c
	}
	approved := func(c *certificatesv1.CertificateSigningRequest) {
		c.Status.Conditions = append(c.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue})
	}
	for _, tc := range []struct {
		name string
		csr  *certificatesv1.CertificateSigningRequest
		want csrVerdict
	}{
		{"join token", csr(nil), csrApprove},
		{"renewal by the node itself", csr(func(c *certificatesv1.CertificateSigningRequest) {
			c.Spec.Username, c.Spec.Groups = "system:node:n1", []string{"system:nodes"}
		}), csrApprove},
		{"another node's name", csr(func(c *certificatesv1.CertificateSigningRequest) {
			c.Spec.Username, c.Spec.Groups = "system:node:n2", []string{"system:nodes"}
		}), csrIgnore},
		{"a node renewing for another node's name", csr(func(c *certificatesv1.CertificateSigningRequest) {
			c.Spec.Username, c.Spec.Groups = "system:node:n2", []string{"system:nodes"} // the request names n1
		}), csrIgnore},
		{"renewal with key encipherment", csr(func(c *certificatesv1.CertificateSigningRequest) {
			c.Spec.Username, c.Spec.Groups = "system:node:n1", []string{"system:nodes"}
			c.Spec.Usages = append(c.Spec.Usages, certificatesv1.UsageKeyEncipherment)
		}), csrApprove},
		{"renewal without client auth", csr(func(c *certificatesv1.CertificateSigningRequest) {
			c.Spec.Username, c.Spec.Groups = "system:node:n1", []string{"system:nodes"}
			c.Spec.Usages = []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature}
		}), csrIgnore},
		{"renewal asking for code signing", csr(func(c *certificatesv1.CertificateSigningRequest) {
			c.Spec.Username, c.Spec.Groups = "system:node:n1", []string{"system:nodes"}
			c.Spec.Usages = append(c.Spec.Usages, certificatesv1.UsageCodeSigning)
		}), csrIgnore},
		{"ordinary user", csr(func(c *certificatesv1.CertificateSigningRequest) {
			c.Spec.Username, c.Spec.Groups = "alice", []string{"system:authenticated"}
		}), csrIgnore},
		{"other signer", csr(func(c *certificatesv1.CertificateSigningRequest) { c.Spec.SignerName = "example.com/x" }), csrIgnore},
		{"server auth usage", csr(func(c *certificatesv1.CertificateSigningRequest) {
			c.Spec.Usages = append(c.Spec.Usages, certificatesv1.UsageServerAuth)
		}), csrIgnore},
		{"not a node subject", csr(func(c *certificatesv1.CertificateSigningRequest) { c.Spec.Request = []byte("junk") }), csrIgnore},
		{"approved", csr(approved), csrSign},
		{"approved but invalid", csr(func(c *certificatesv1.CertificateSigningRequest) {
			approved(c)
			c.Spec.Usages = []certificatesv1.KeyUsage{certificatesv1.UsageServerAuth}
		}), csrFail},
		{"denied", csr(func(c *certificatesv1.CertificateSigningRequest) {
			c.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{{Type: certificatesv1.CertificateDenied, Status: corev1.ConditionTrue}}
		}), csrIgnore},
		{"already signed", csr(func(c *certificatesv1.CertificateSigningRequest) {
			approved(c)
			c.Status.Certificate = []byte("x")
		}), csrIgnore},
	} {
		if got, _ := decideNodeCSR(tc.csr); got != tc.want {
			t.Errorf("%s: verdict %d, want %d", tc.name, got, tc.want)
		}
	}
}

// TestNodeCSRSignerSync: a node's renewal is approved and signed for the
// signer's configured lifetime (shorter when the CSR asks), and a CSR for
// another node's name or with a wrong usage is left untouched.
func TestNodeCSRSignerSync(t *testing.T) {
	ca, err := pki.NewCA("test-ca", time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	client := fake.NewClientset()
	ns := &nodeCSRSigner{client: client, ca: ca, validity: 90 * time.Second, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ns.lister = func(name string) (*certificatesv1.CertificateSigningRequest, error) {
		return client.CertificatesV1().CertificateSigningRequests().Get(context.Background(), name, metav1.GetOptions{})
	}
	ctx := context.Background()
	create := func(name, node, user string, usages []certificatesv1.KeyUsage, expSeconds int32) {
		t.Helper()
		req, _, err := pki.NewNodeCSR(node)
		if err != nil {
			t.Fatal(err)
		}
		c := &certificatesv1.CertificateSigningRequest{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: certificatesv1.CertificateSigningRequestSpec{
			SignerName: pki.KubeletClientSigner, Request: req, Usages: usages, Username: user, Groups: []string{pki.NodesGroup},
		}}
		if expSeconds > 0 {
			c.Spec.ExpirationSeconds = &expSeconds
		}
		if _, err := client.CertificatesV1().CertificateSigningRequests().Create(ctx, c, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := ns.sync(ctx, name); err != nil {
			t.Fatalf("sync %s: %v", name, err)
		}
	}
	get := func(name string) *certificatesv1.CertificateSigningRequest {
		t.Helper()
		c, err := client.CertificatesV1().CertificateSigningRequests().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	lifetime := func(c *certificatesv1.CertificateSigningRequest) time.Duration {
		t.Helper()
		cert, err := pki.ParseCertPEM(c.Status.Certificate)
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		return time.Until(cert.NotAfter)
	}
	client1 := []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth}

	create("renew", "n1", "system:node:n1", client1, 0)
	if l := lifetime(get("renew")); l <= 80*time.Second || l > 90*time.Second {
		t.Errorf("renewed certificate lives %s, want the signer's 90s", l)
	}
	create("renew-short", "n1", "system:node:n1", client1, 60)
	if l := lifetime(get("renew-short")); l <= 50*time.Second || l > 60*time.Second {
		t.Errorf("certificate asking for 60s lives %s", l)
	}
	create("other-node", "n2", "system:node:n1", client1, 0)
	create("server-usage", "n1", "system:node:n1", []certificatesv1.KeyUsage{certificatesv1.UsageServerAuth, certificatesv1.UsageClientAuth}, 0)
	for _, name := range []string{"other-node", "server-usage"} {
		if c := get(name); len(c.Status.Conditions) > 0 || len(c.Status.Certificate) > 0 {
			t.Errorf("%s: conditions %v, signed %v; want it left pending", name, c.Status.Conditions, len(c.Status.Certificate) > 0)
		}
	}
}
