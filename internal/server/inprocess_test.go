package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"skiff.dev/skiff/internal/cputime"
)

// startTestServer runs a server until stop (or the test's end).
func startTestServer(t testing.TB) (s *Server, stop func()) {
	t.Helper()
	s, err := New(testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.InProcessConfig(); err == nil {
		t.Error("InProcessConfig before Run: no error")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var stopped error
	stopOnce := sync.OnceFunc(func() {
		cancel()
		select {
		case stopped = <-done:
		case <-time.After(time.Minute):
			t.Error("server did not stop")
		}
	})
	t.Cleanup(stopOnce)
	deadline := time.Now().Add(30 * time.Second)
	for !s.Ready() {
		select {
		case err := <-done:
			t.Fatalf("server exited: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("server not ready after 30s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return s, func() {
		stopOnce()
		if stopped != nil {
			t.Errorf("server stopped with %v", stopped)
		}
	}
}

// TestInProcessConfig drives the API server through InProcessConfig as
// the controller manager and scheduler do: JSON and protobuf, create,
// get, list and a watch that delivers events as they happen; the
// requests are counted in the API metrics and made as the same user as
// LoopbackConfig's client certificate.
func TestInProcessConfig(t *testing.T) {
	s, _ := startTestServer(t)
	rc, err := s.InProcessConfig()
	if err != nil {
		t.Fatal(err)
	}
	if rc.Transport == nil || len(rc.TLSClientConfig.CertData) != 0 {
		t.Fatalf("InProcessConfig is not in-process: %+v", rc)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	for _, ct := range []string{"application/json", "application/vnd.kubernetes.protobuf"} {
		t.Run(ct, func(t *testing.T) {
			c := rest.CopyConfig(rc)
			c.ContentType = ct
			c.AcceptContentTypes = ct
			cs := kubernetes.NewForConfigOrDie(c)
			ns := "inproc-" + strings.ReplaceAll(strings.TrimPrefix(ct, "application/"), ".", "-")
			if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			cms := cs.CoreV1().ConfigMaps(ns)
			first, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "a"}, Data: map[string]string{"k": strings.Repeat("v", 100000)}}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			got, err := cms.Get(ctx, "a", metav1.GetOptions{})
			if err != nil || got.Data["k"] != first.Data["k"] || got.UID != first.UID {
				t.Fatalf("get: %v", err)
			}
			if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "a"}}, metav1.CreateOptions{}); err == nil || !strings.Contains(err.Error(), "already exists") {
				t.Fatalf("second create: %v, want AlreadyExists", err)
			}
			w, err := cms.Watch(ctx, metav1.ListOptions{ResourceVersion: first.ResourceVersion})
			if err != nil {
				t.Fatal(err)
			}
			defer w.Stop()
			for i := range 3 {
				name := fmt.Sprintf("w%d", i)
				if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
				// Each event arrives before the next object exists.
				select {
				case ev := <-w.ResultChan():
					if ev.Type != watch.Added || ev.Object.(*corev1.ConfigMap).Name != name {
						t.Fatalf("event %v %#v, want ADDED %s", ev.Type, ev.Object, name)
					}
				case <-time.After(10 * time.Second):
					t.Fatalf("no watch event for %s", name)
				}
			}
			l, err := cms.List(ctx, metav1.ListOptions{})
			if err != nil || len(l.Items) != 4 {
				t.Fatalf("list: %v, %d items", err, len(l.Items))
			}
		})
	}

	// Identity: the CSR's requestor is set by the server from the
	// authenticated user, the same in-process as with the admin cert.
	csrUser := func(c *rest.Config, name string) (string, []string) {
		t.Helper()
		cs := kubernetes.NewForConfigOrDie(c)
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}}, key)
		if err != nil {
			t.Fatal(err)
		}
		csr, err := cs.CertificatesV1().CertificateSigningRequests().Create(ctx, &certificatesv1.CertificateSigningRequest{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: certificatesv1.CertificateSigningRequestSpec{
				Request:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
				SignerName: "kubernetes.io/kube-apiserver-client",
				Usages:     []certificatesv1.KeyUsage{certificatesv1.UsageClientAuth},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return csr.Spec.Username, csr.Spec.Groups
	}
	inName, inGroups := csrUser(rc, "inproc")
	tlsName, tlsGroups := csrUser(s.LoopbackConfig(), "loopback")
	if inName != "system:admin" || inName != tlsName || !slices.Equal(inGroups, tlsGroups) {
		t.Errorf("in-process user %s %v, over TLS %s %v", inName, inGroups, tlsName, tlsGroups)
	}

	// The requests went through the metrics filter: 4 configmaps
	// created per content type, and one conflict each.
	metrics, err := kubernetes.NewForConfigOrDie(rc).Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`apiserver_request_total{code="201",group="",resource="configmaps",subresource="",verb="POST",version="v1"} 8`,
		`apiserver_request_total{code="409",group="",resource="configmaps",subresource="",verb="POST",version="v1"} 2`,
	} {
		if !strings.Contains(string(metrics), want+"\n") {
			t.Errorf("metrics lack %s", want)
		}
	}

	// A request from the network without credentials is not the
	// in-process user.
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, Timeout: 10 * time.Second}
	resp, err := hc.Get(s.URL() + "/api/v1/namespaces")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("anonymous request over HTTPS: %d, want 401", resp.StatusCode)
	}
}

// BenchmarkClientTransport compares the process CPU of one API request
// (a protobuf PUT of a small ConfigMap, as the controllers' status
// writes) through LoopbackConfig (TLS, HTTP/2, loopback TCP) and through
// InProcessConfig. cpu-us/op counts every thread of the process (client,
// handler, storage), so it is what the transport saves per request.
//
//	go test -run XXX -bench ClientTransport -benchtime 2000x ./internal/server/
func BenchmarkClientTransport(b *testing.B) {
	s, _ := startTestServer(b)
	inproc, err := s.InProcessConfig()
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		rc   *rest.Config
	}{{"loopback", s.LoopbackConfig()}, {"inprocess", inproc}} {
		b.Run(tc.name, func(b *testing.B) {
			c := rest.CopyConfig(tc.rc)
			c.ContentType = "application/vnd.kubernetes.protobuf"
			cms := kubernetes.NewForConfigOrDie(c).CoreV1().ConfigMaps("default")
			ctx := context.Background()
			cm, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{GenerateName: "bench-"}, Data: map[string]string{"k": "v"}}, metav1.CreateOptions{})
			if err != nil {
				b.Fatal(err)
			}
			start := cputime.Process()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				cm.Data["k"] = strconv.Itoa(i)
				if cm, err = cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64((cputime.Process()-start).Microseconds())/float64(b.N), "cpu-us/op")
		})
	}
}

// TestInProcessAfterStop: once the server stopped, an in-process watch
// has ended and requests fail at once, as a closed connection's would,
// instead of reaching closed storage.
func TestInProcessAfterStop(t *testing.T) {
	s, stop := startTestServer(t)
	rc, err := s.InProcessConfig()
	if err != nil {
		t.Fatal(err)
	}
	cs := kubernetes.NewForConfigOrDie(rc)
	ctx := context.Background()
	w, err := cs.CoreV1().ConfigMaps("default").Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	stop()
	deadline := time.After(10 * time.Second)
	for ended := false; !ended; {
		select {
		case _, ok := <-w.ResultChan():
			ended = !ok
		case <-deadline:
			t.Fatal("watch still open after the server stopped")
		}
	}
	_, err = cs.CoreV1().ConfigMaps("default").Get(ctx, "x", metav1.GetOptions{})
	if err == nil || !strings.Contains(err.Error(), "server stopped") {
		t.Errorf("get after stop: %v, want the in-process transport's ErrClosed", err)
	}
}
