package pki

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestNodeCSRSignedAndChecked(t *testing.T) {
	ca := mustCA(t, t.TempDir())
	csrPEM, keyPEM, err := NewNodeCSR("n1")
	if err != nil {
		t.Fatal(err)
	}
	req, name, err := ParseNodeCSR(csrPEM)
	if err != nil || name != "n1" {
		t.Fatalf("ParseNodeCSR = %q, %v", name, err)
	}
	certPEM, err := ca.SignClientCSR(req, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	leaf := parseLeaf(t, certPEM, keyPEM)
	if leaf.Subject.CommonName != "system:node:n1" || !slices.Equal(leaf.Subject.Organization, []string{"system:nodes"}) {
		t.Fatalf("subject %v", leaf.Subject)
	}
	now := time.Now()
	if err := CheckNodeClientCert(certPEM, keyPEM, ca.CertPEM, "n1", now); err != nil {
		t.Fatalf("fresh certificate rejected: %v", err)
	}
	for _, tc := range []struct {
		name, node string
		now        time.Time
		ca         []byte
		want       string
	}{
		{"other node", "n2", now, ca.CertPEM, "not \"system:node:n2\""},
		{"near expiry", "n1", now.Add(50 * time.Minute), ca.CertPEM, "expires"},
		{"other ca", "n1", now, mustCA(t, t.TempDir()).CertPEM, "verifying"},
	} {
		err := CheckNodeClientCert(certPEM, keyPEM, tc.ca, tc.node, tc.now)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want it to mention %q", tc.name, err, tc.want)
		}
	}
	_, otherKey, _ := NewNodeCSR("n1")
	if err := CheckNodeClientCert(certPEM, otherKey, ca.CertPEM, "n1", now); err == nil {
		t.Error("a certificate with someone else's key was accepted")
	}
}

func TestParseNodeCSRRejectsOtherSubjects(t *testing.T) {
	ca := mustCA(t, t.TempDir())
	// A client certificate request for the admin identity must not pass
	// as a node's.
	_, adminKey, err := ca.IssueClient("system:admin", []string{"system:masters"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ParseKeyPEM(adminKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		cn  string
		org []string
	}{
		{"system:admin", []string{"system:nodes"}},
		{"system:node:", []string{"system:nodes"}},
		{"system:node:n1", []string{"system:masters"}},
		{"system:node:n1", []string{"system:nodes", "system:masters"}},
	} {
		p := csrFor(t, key, tc.cn, tc.org)
		if _, _, err := ParseNodeCSR(p); err == nil {
			t.Errorf("csr for %s %v accepted", tc.cn, tc.org)
		}
	}
	if _, _, err := ParseNodeCSR([]byte("junk")); err == nil {
		t.Error("junk accepted")
	}
}

func TestServingChainCarriesTheCA(t *testing.T) {
	b, err := Bootstrap(BootstrapOptions{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := b.ServingTLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	chain := cfg.Certificates[0].Certificate
	if len(chain) != 2 {
		t.Fatalf("chain has %d certificates, want leaf and ca", len(chain))
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: chain[1]})
	if err := b.JoinToken.VerifyCA(caPEM); err != nil {
		t.Fatalf("the served ca does not match the token's pin: %v", err)
	}
}

func csrFor(t *testing.T, key crypto.Signer, cn string, org []string) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn, Organization: org}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}
