package kubeconfig

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
)

func TestWriteAdminLoadsWithClientcmd(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "admin.kubeconfig")
	ca, cert, key := []byte("ca-pem"), []byte("cert-pem"), []byte("key-pem")
	// An existing world-readable file must end up 0600 too.
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteAdmin(path, "https://127.0.0.1:6443", ca, cert, key); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %o, want 600", fi.Mode().Perm())
	}
	cfg, err := clientcmd.LoadFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.CurrentContext != ContextName {
		t.Errorf("current context %q", cfg.CurrentContext)
	}
	ctx := cfg.Contexts[ContextName]
	if ctx == nil || ctx.Cluster != ClusterName || ctx.AuthInfo != AdminUser {
		t.Fatalf("context = %+v", ctx)
	}
	cl, ai := cfg.Clusters[ClusterName], cfg.AuthInfos[AdminUser]
	if cl.Server != "https://127.0.0.1:6443" || !bytes.Equal(cl.CertificateAuthorityData, ca) {
		t.Errorf("cluster = %+v", cl)
	}
	if !bytes.Equal(ai.ClientCertificateData, cert) || !bytes.Equal(ai.ClientKeyData, key) || ai.Token != "" {
		t.Errorf("user = %+v", ai)
	}
}

func TestWriteTokenBuildsRestConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.kubeconfig")
	if err := WriteToken(path, "https://10.0.0.1:6443", []byte("ca"), "s3cret"); err != nil {
		t.Fatal(err)
	}
	rc, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	if rc.Host != "https://10.0.0.1:6443" || rc.BearerToken != "s3cret" || string(rc.CAData) != "ca" || len(rc.CertData) != 0 {
		t.Errorf("rest config = host %q token %q ca %q", rc.Host, rc.BearerToken, rc.CAData)
	}
}

func TestRejectsIncompleteCredentials(t *testing.T) {
	dir := t.TempDir()
	if err := WriteAdmin(filepath.Join(dir, "a"), "https://x", nil, []byte("c"), nil); err == nil {
		t.Error("cert without key accepted")
	}
	if err := WriteToken(filepath.Join(dir, "b"), "https://x", nil, ""); err == nil {
		t.Error("empty token accepted")
	}
	if _, err := Build("", nil, Credentials{Token: "t"}); err == nil {
		t.Error("empty server accepted")
	}
	if _, err := Build("https://x", nil, Credentials{Token: "t", CertPEM: []byte("c"), KeyPEM: []byte("k")}); err == nil {
		t.Error("both a token and a certificate accepted")
	}
	if _, err := os.Stat(filepath.Join(dir, "a")); !os.IsNotExist(err) {
		t.Error("a rejected kubeconfig was written")
	}
}
