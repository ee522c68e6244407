package certificates

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"testing"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func csrPEM(t *testing.T) []byte {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "alice"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func TestCSR(t *testing.T) {
	r := Resources()[0]
	req := csrPEM(t)
	short := int32(60)
	newCSR := func() *certificatesv1.CertificateSigningRequest {
		return &certificatesv1.CertificateSigningRequest{ObjectMeta: metav1.ObjectMeta{Name: "alice"},
			Spec: certificatesv1.CertificateSigningRequestSpec{Request: req, SignerName: "kubernetes.io/kube-apiserver-client",
				Usages: []certificatesv1.KeyUsage{certificatesv1.UsageClientAuth}, Username: "admin"}}
	}
	cases := []struct {
		name   string
		mutate func(*certificatesv1.CertificateSigningRequest)
		want   string
	}{
		{"valid", func(*certificatesv1.CertificateSigningRequest) {}, ""},
		{"garbage request", func(c *certificatesv1.CertificateSigningRequest) { c.Spec.Request = []byte("nope") }, "FieldValueInvalid spec.request"},
		{"no signer", func(c *certificatesv1.CertificateSigningRequest) { c.Spec.SignerName = "" }, "FieldValueRequired spec.signerName"},
		{"short expiry", func(c *certificatesv1.CertificateSigningRequest) { c.Spec.ExpirationSeconds = &short }, "FieldValueInvalid spec.expirationSeconds"},
		{"no usages", func(c *certificatesv1.CertificateSigningRequest) { c.Spec.Usages = nil }, "FieldValueRequired spec.usages"},
	}
	for _, c := range cases {
		x := newCSR()
		c.mutate(x)
		errs := r.Validate(x)
		if c.want == "" && len(errs) != 0 || c.want != "" && (len(errs) != 1 || string(errs[0].Type)+" "+errs[0].Field != c.want) {
			t.Errorf("%s: errs %v, want %q", c.name, errs, c.want)
		}
	}

	approved := certificatesv1.CertificateSigningRequestCondition{Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue}
	old := newCSR()
	// Main updates cannot change spec or status.
	upd := newCSR()
	upd.Spec.SignerName = "other.io/x"
	upd.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{approved}
	r.PrepareForUpdate(upd, old)
	if upd.Spec.SignerName != old.Spec.SignerName || len(upd.Status.Conditions) != 0 {
		t.Errorf("main update changed spec/status: %+v", upd)
	}
	// Status updates cannot approve.
	st := newCSR()
	st.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{approved}
	st.Status.Certificate = []byte("cert")
	r.PrepareForStatusUpdate(st, old)
	if len(st.Status.Conditions) != 0 || string(st.Status.Certificate) != "cert" {
		t.Errorf("status update: %+v", st.Status)
	}
	// Approval updates can, and nothing else.
	ap := newCSR()
	ap.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{approved}
	ap.Status.Certificate = []byte("sneaky")
	PrepareForApprovalUpdate(ap, old)
	if len(ap.Status.Conditions) != 1 || ap.Status.Certificate != nil {
		t.Errorf("approval update: %+v", ap.Status)
	}
	if errs := ValidateApprovalUpdate(ap, old); len(errs) != 0 {
		t.Errorf("approval rejected: %v", errs)
	}
	both := ap.DeepCopy()
	both.Status.Conditions = append(both.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{Type: certificatesv1.CertificateDenied, Status: corev1.ConditionTrue})
	if errs := ValidateApprovalUpdate(both, old); len(errs) != 1 {
		t.Errorf("approved+denied: %v", errs)
	}
	withdrawn := newCSR()
	if errs := ValidateApprovalUpdate(withdrawn, ap); len(errs) != 1 {
		t.Errorf("withdrawn approval: %v", errs)
	}

	ap.Status.Certificate = []byte("c")
	row := r.TableRow(ap)
	want := []interface{}{"alice", "<unknown>", "kubernetes.io/kube-apiserver-client", "admin", "<none>", "Approved,Issued"}
	for i := range want {
		if row[i] != want[i] {
			t.Errorf("cell %d = %#v, want %#v", i, row[i], want[i])
		}
	}
	if got := condition(newCSR()); got != "Pending" {
		t.Errorf("condition = %q", got)
	}
}
