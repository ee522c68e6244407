package pki

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func mustCA(t testing.TB, dir string) *CA {
	t.Helper()
	ca, err := LoadOrCreateCA(dir)
	if err != nil {
		t.Fatalf("LoadOrCreateCA: %v", err)
	}
	return ca
}

func parseLeaf(t *testing.T, certPEM, keyPEM []byte) *x509.Certificate {
	t.Helper()
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatalf("key pair does not load: %v", err)
	}
	return pair.Leaf
}

func TestServingCertVerifiesForEverySAN(t *testing.T) {
	dir := t.TempDir()
	ca := mustCA(t, dir)
	dns, ips := ServingSANs([]string{"skiff.example.com", "192.0.2.10"})
	for _, want := range []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "skiff.example.com"} {
		if !slices.Contains(dns, want) {
			t.Errorf("ServingSANs DNS names %v lack %q", dns, want)
		}
	}
	if h, err := os.Hostname(); err == nil && !slices.Contains(dns, h) {
		t.Errorf("ServingSANs DNS names %v lack hostname %q", dns, h)
	}
	for _, want := range []string{"127.0.0.1", "::1", "10.43.0.1", "192.0.2.10"} {
		if !slices.ContainsFunc(ips, net.ParseIP(want).Equal) {
			t.Errorf("ServingSANs IPs %v lack %s", ips, want)
		}
	}

	certPEM, keyPEM, err := ca.LoadOrIssueServing(dir, dns, ips, LeafValidity)
	if err != nil {
		t.Fatal(err)
	}
	leaf := parseLeaf(t, certPEM, keyPEM)
	names := append(slices.Clone(dns), func() (s []string) {
		for _, ip := range ips {
			s = append(s, ip.String())
		}
		return s
	}()...)
	for _, name := range names {
		_, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		if err != nil {
			t.Errorf("serving cert does not verify for %q: %v", name, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "evil.example.com", Roots: ca.Pool()}); err == nil {
		t.Error("serving cert verified for a name it does not carry")
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("serving cert verified for client auth")
	}
}

func TestRestartReusesFiles(t *testing.T) {
	dataDir := t.TempDir()
	first, err := Bootstrap(BootstrapOptions{DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	second, err := Bootstrap(BootstrapOptions{DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first.CA.CertPEM, second.CA.CertPEM) {
		t.Error("restart created a new CA")
	}
	if !bytes.Equal(first.ServingCertPEM, second.ServingCertPEM) || !bytes.Equal(first.ServingKeyPEM, second.ServingKeyPEM) {
		t.Error("restart re-issued an unchanged serving cert")
	}
	if !bytes.Equal(first.AdminCertPEM, second.AdminCertPEM) {
		t.Error("restart re-issued the admin cert")
	}
	if !first.ServiceAccountKey.Equal(second.ServiceAccountKey) {
		t.Error("restart created a new service-account key")
	}
	if first.JoinToken != second.JoinToken {
		t.Errorf("join token changed: %v -> %v", first.JoinToken, second.JoinToken)
	}
	if err := second.JoinToken.VerifyCA(second.CA.CertPEM); err != nil {
		t.Errorf("join token does not pin its own CA: %v", err)
	}
	if _, err := second.ServingTLSConfig(); err != nil {
		t.Error(err)
	}

	for path, want := range map[string]os.FileMode{
		filepath.Join(first.Dir, CAKeyFile):              0o600,
		filepath.Join(first.Dir, ServingKeyFile):         0o600,
		filepath.Join(first.Dir, AdminClientName+".key"): 0o600,
		filepath.Join(first.Dir, ServiceAccountKeyFile):  0o600,
		filepath.Join(dataDir, JoinTokenFile):            0o600,
		filepath.Join(first.Dir, CACertFile):             0o644,
	} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Error(err)
			continue
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s has mode %o, want %o", path, got, want)
		}
	}
}

func TestServingCertReissuedOnSANChangeAndNearExpiry(t *testing.T) {
	dir := t.TempDir()
	ca := mustCA(t, dir)
	now := time.Now()
	ca.Now = func() time.Time { return now }
	dns, ips := []string{"a.example"}, []net.IP{net.ParseIP("127.0.0.1")}
	c1, _, err := ca.LoadOrIssueServing(dir, dns, ips, 100*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// Same SANs, in another order and form: reused.
	c2, _, err := ca.LoadOrIssueServing(dir, []string{"a.example", "a.example"}, []net.IP{net.ParseIP("127.0.0.1").To16()}, 100*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(c1, c2) {
		t.Fatal("equivalent SANs caused a re-issue")
	}
	c3, k3, err := ca.LoadOrIssueServing(dir, []string{"a.example", "b.example"}, ips, 100*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(c1, c3) {
		t.Fatal("new SAN did not cause a re-issue")
	}
	if !slices.Contains(parseLeaf(t, c3, k3).DNSNames, "b.example") {
		t.Fatal("re-issued cert lacks the new SAN")
	}
	// 90 of 101 hours gone (NotBefore is backdated an hour): under a fifth left.
	now = now.Add(90 * time.Hour)
	c4, _, err := ca.LoadOrIssueServing(dir, []string{"a.example", "b.example"}, ips, 100*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(c3, c4) {
		t.Fatal("near-expiry cert was reused")
	}
}

func TestLeafFromOtherCAIsReplaced(t *testing.T) {
	dir := t.TempDir()
	other, err := NewCA("other", time.Now(), CAValidity)
	if err != nil {
		t.Fatal(err)
	}
	c1, _, err := other.LoadOrIssueClient(dir, "x", "alice", nil, LeafValidity)
	if err != nil {
		t.Fatal(err)
	}
	ca := mustCA(t, filepath.Join(dir, "ca"))
	c2, k2, err := ca.LoadOrIssueClient(dir, "x", "alice", nil, LeafValidity)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(c1, c2) {
		t.Fatal("client cert signed by another CA was reused")
	}
	if err := ca.verifyLeaf(parseLeaf(t, c2, k2), x509.ExtKeyUsageClientAuth); err != nil {
		t.Fatal(err)
	}
	// Different groups: re-issued with the groups as O.
	c3, k3, err := ca.LoadOrIssueClient(dir, "x", "alice", []string{"devs", "ops"}, LeafValidity)
	if err != nil {
		t.Fatal(err)
	}
	if got := parseLeaf(t, c3, k3).Subject.Organization; !sameSet(got, []string{"devs", "ops"}) {
		t.Fatalf("organization = %v", got)
	}
	c4, _, err := ca.LoadOrIssueClient(dir, "x", "alice", []string{"ops", "devs"}, LeafValidity)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(c3, c4) {
		t.Fatal("same groups in another order caused a re-issue")
	}
}

func TestCAHalfPresentIsAnError(t *testing.T) {
	dir := t.TempDir()
	mustCA(t, dir)
	if err := os.Remove(filepath.Join(dir, CACertFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateCA(dir); err == nil {
		t.Fatal("LoadOrCreateCA silently replaced a CA whose certificate is missing")
	}
}

func TestJoinToken(t *testing.T) {
	caPEM := []byte("-----BEGIN CERTIFICATE-----\nfake\n-----END CERTIFICATE-----\n")
	path := filepath.Join(t.TempDir(), "token")
	tok, err := LoadOrCreateJoinToken(path, caPEM)
	if err != nil {
		t.Fatal(err)
	}
	if len(tok.Secret) != 32 || tok.CAHash != CAHash(caPEM) {
		t.Fatalf("unexpected token %+v", tok)
	}
	s := tok.String()
	if want := "K10" + CAHash(caPEM) + "::server:" + tok.Secret; s != want {
		t.Fatalf("String() = %q, want %q", s, want)
	}
	parsed, err := ParseJoinToken(s)
	if err != nil || parsed != tok {
		t.Fatalf("ParseJoinToken(%q) = %+v, %v", s, parsed, err)
	}
	if err := parsed.VerifyCA(append([]byte("x"), caPEM...)); err == nil {
		t.Fatal("VerifyCA accepted a different CA")
	}
	bare, err := ParseJoinToken("abc123")
	if err != nil || bare.Secret != "abc123" || bare.CAHash != "" {
		t.Fatalf("bare secret parsed as %+v, %v", bare, err)
	}
	for _, bad := range []string{"", "K10zz::server:x", "K10" + CAHash(caPEM) + "::node:x", "K10" + CAHash(caPEM) + "::server:", "a:b"} {
		if _, err := ParseJoinToken(bad); err == nil {
			t.Errorf("ParseJoinToken(%q) accepted", bad)
		}
	}
	// A new CA keeps the secret and updates the pin.
	newCA := []byte("other")
	tok2, err := LoadOrCreateJoinToken(path, newCA)
	if err != nil {
		t.Fatal(err)
	}
	if tok2.Secret != tok.Secret || tok2.CAHash != CAHash(newCA) {
		t.Fatalf("after CA change: %+v", tok2)
	}
}

func TestServiceAccountKeyPersists(t *testing.T) {
	dir := t.TempDir()
	k1, err := LoadOrCreateServiceAccountKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := LoadOrCreateServiceAccountKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !k1.Equal(k2) {
		t.Fatal("key changed across loads")
	}
	if err := os.WriteFile(filepath.Join(dir, ServiceAccountKeyFile), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateServiceAccountKey(dir); err == nil {
		t.Fatal("corrupt key file was silently replaced")
	}
}

// BenchmarkBootstrap measures a cold start: every file created from nothing.
func BenchmarkBootstrap(b *testing.B) {
	for b.Loop() {
		b.StopTimer()
		dir := b.TempDir()
		b.StartTimer()
		if _, err := Bootstrap(BootstrapOptions{DataDir: dir}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBootstrapWarm measures a restart: every file already present.
func BenchmarkBootstrapWarm(b *testing.B) {
	dir := b.TempDir()
	if _, err := Bootstrap(BootstrapOptions{DataDir: dir}); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := Bootstrap(BootstrapOptions{DataDir: dir}); err != nil {
			b.Fatal(err)
		}
	}
}
