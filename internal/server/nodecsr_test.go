package server

import (
	"testing"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"

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
