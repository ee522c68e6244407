// Package ingress tests the built-in Ingress controller against a real
// skiff API server: the bootstrap IngressClass, DefaultIngressClass
// admission, routing two hosts to two services over HTTP and HTTPS (SNI),
// status.loadBalancer and Ingresses applied with real kubectl binaries.
// Backend "pods" are httptest servers on loopback addresses listed in
// EndpointSlices.
package ingress

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
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"skiff.dev/skiff/internal/ingress"
	"skiff.dev/skiff/test/integration/framework"
)

// backend is a fake pod: an HTTP server on a loopback address.
type backend struct {
	name string
	ip   string
	port int32
}

func startBackend(t *testing.T, name, ip string) backend {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatalf("listening on %s: %v", ip, err)
	}
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s %s", name, r.Host, r.URL.Path)
	}))
	s.Listener.Close()
	s.Listener = l
	s.Start()
	t.Cleanup(s.Close)
	return backend{name: name, ip: ip, port: int32(l.Addr().(*net.TCPAddr).Port)}
}

// createService creates a selector-less Service with port 80 "http" and
// an EndpointSlice pointing at b.
func createService(ctx context.Context, t *testing.T, client kubernetes.Interface, name string, b backend) {
	t.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{
			{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("http")},
		}},
	}
	if _, err := client.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating service %s: %v", name, err)
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name + "-1", Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(b.port), Protocol: ptr.To(corev1.ProtocolTCP)}},
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{b.ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
	}
	if _, err := client.DiscoveryV1().EndpointSlices("default").Create(ctx, slice, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating endpointslice for %s: %v", name, err)
	}
}

func createNode(ctx context.Context, t *testing.T, client kubernetes.Interface, name, ip string) {
	t.Helper()
	n, err := client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating node %s: %v", name, err)
	}
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now()}}
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}
	if _, err := client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("updating node %s status: %v", name, err)
	}
}

// tlsSecret is a kubernetes.io/tls secret for host signed by ca.
func tlsSecret(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, name, host string) *corev1.Secret {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Type:       corev1.SecretTypeTLS,
		Data: map[string][]byte{
			corev1.TLSCertKey:       pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
			corev1.TLSPrivateKeyKey: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}),
		},
	}
}

func newCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ingress test ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return cert, key, pool
}

// client sends every request to addr (the ingress listener), whatever the
// URL's host, verifying TLS against pool.
func client(addr string, pool *x509.CertPool) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}}
}

func fetch(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return fmt.Sprintf("%d %s", resp.StatusCode, b), err
}

// eventually retries f until it returns want (the controller's informers
// lag the API by a few milliseconds).
func eventually(t *testing.T, what string, want string, f func() (string, error)) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var got string
	var err error
	for time.Now().Before(deadline) {
		got, err = f()
		if err == nil && got == want {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: got %q (err %v), want %q", what, got, err, want)
}

func TestIngressTwoHostsTLS(t *testing.T) {
	c := framework.Start(t, framework.Options{})
	ctx := context.Background()
	cs := c.Client

	class, err := cs.NetworkingV1().IngressClasses().Get(ctx, ingress.DefaultClassName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("bootstrap ingress class: %v", err)
	}
	if class.Spec.Controller != ingress.DefaultControllerName || class.Annotations[networkingv1.AnnotationIsDefaultIngressClass] != "true" {
		t.Fatalf("bootstrap ingress class = %+v, want the default class of %s", class, ingress.DefaultControllerName)
	}

	a := startBackend(t, "backend-a", "127.0.0.2")
	b := startBackend(t, "backend-b", "127.0.0.3")
	createService(ctx, t, cs, "svc-a", a)
	createService(ctx, t, cs, "svc-b", b)
	createService(ctx, t, cs, "svc-empty", backend{ip: "127.0.0.4", port: 1})
	empty, err := cs.DiscoveryV1().EndpointSlices("default").Get(ctx, "svc-empty-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	empty.Endpoints[0].Conditions.Ready = ptr.To(false)
	if _, err := cs.DiscoveryV1().EndpointSlices("default").Update(ctx, empty, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	ca, caKey, pool := newCA(t)
	for _, s := range []*corev1.Secret{tlsSecret(t, ca, caKey, "a-tls", "a.example.com"), tlsSecret(t, ca, caKey, "b-tls", "b.example.com")} {
		if _, err := cs.CoreV1().Secrets("default").Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating secret: %v", err)
		}
	}
	createNode(ctx, t, cs, "node-1", "10.97.0.1")
	createNode(ctx, t, cs, "node-2", "10.97.0.2")

	prefix := networkingv1.PathTypePrefix
	ing := &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Name: "two-hosts", Namespace: "default"},
		Spec: networkingv1.IngressSpec{
			TLS: []networkingv1.IngressTLS{{Hosts: []string{"a.example.com"}, SecretName: "a-tls"}, {Hosts: []string{"b.example.com"}, SecretName: "b-tls"}},
			Rules: []networkingv1.IngressRule{
				{Host: "a.example.com", IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{
					{Path: "/", PathType: &prefix, Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "svc-a", Port: networkingv1.ServiceBackendPort{Number: 80}}}},
					{Path: "/down", PathType: &prefix, Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "svc-empty", Port: networkingv1.ServiceBackendPort{Number: 80}}}},
				}}}},
				{Host: "b.example.com", IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{
					{Path: "/", PathType: &prefix, Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "svc-b", Port: networkingv1.ServiceBackendPort{Name: "http"}}}},
				}}}},
			},
		},
	}
	created, err := cs.NetworkingV1().Ingresses("default").Create(ctx, ing, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating ingress: %v", err)
	}
	if created.Spec.IngressClassName == nil || *created.Spec.IngressClassName != ingress.DefaultClassName {
		t.Fatalf("ingressClassName = %v, want the default %q set by admission", created.Spec.IngressClassName, ingress.DefaultClassName)
	}

	ctrl, err := ingress.New(ingress.Config{
		HTTPAddr: "127.0.0.1:0", HTTPSAddr: "127.0.0.1:0", NodeName: "node-1",
		Status: ingress.StatusConfig{LeaseDuration: 2 * time.Second, RenewDeadline: time.Second, RetryPeriod: 200 * time.Millisecond},
	}, ingress.Deps{Client: cs, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := ctrl.Listen(); err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- ctrl.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ingress run: %v", err)
		}
	})
	https := client(ctrl.HTTPSAddr().String(), pool)
	plain := client(ctrl.HTTPAddr().String(), pool)

	for _, tc := range []struct{ url, want string }{
		{"https://a.example.com/hello", "200 backend-a a.example.com /hello"},
		{"https://b.example.com/x/y", "200 backend-b b.example.com /x/y"},
		{"http://a.example.com/", "200 backend-a a.example.com /"},
		{"http://b.example.com/", "200 backend-b b.example.com /"},
	} {
		c := plain
		if strings.HasPrefix(tc.url, "https") {
			c = https // verifies the certificate chosen by SNI against the test CA
		}
		eventually(t, tc.url, tc.want, func() (string, error) { return fetch(c, tc.url) })
	}
	if got, _ := fetch(plain, "http://c.example.com/"); !strings.HasPrefix(got, "404 ") {
		t.Errorf("unknown host: %q, want 404", got)
	}
	if got, _ := fetch(plain, "http://a.example.com/down/x"); !strings.HasPrefix(got, "503 ") {
		t.Errorf("service without ready endpoints: %q, want 503", got)
	}

	// status.loadBalancer lists both Ready nodes.
	eventually(t, "ingress status", "10.97.0.1,10.97.0.2", func() (string, error) {
		got, err := cs.NetworkingV1().Ingresses("default").Get(ctx, "two-hosts", metav1.GetOptions{})
		if err != nil {
			return "", err
		}
		var ips []string
		for _, i := range got.Status.LoadBalancer.Ingress {
			ips = append(ips, i.IP)
		}
		return strings.Join(ips, ","), nil
	})

	// Real kubectl: apply an Ingress from YAML and route through it.
	bins := framework.KubectlBinaries()
	if len(bins) == 0 {
		t.Log("no kubectl binaries installed; skipping the kubectl part")
	}
	for v, bin := range bins {
		host := "kubectl-" + strings.ReplaceAll(v, ".", "-") + ".example.com"
		manifest := fmt.Sprintf(`apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: from-kubectl-%s
  namespace: default
spec:
  rules:
  - host: %s
    http:
      paths:
      - path: /only
        pathType: Exact
        backend:
          service:
            name: svc-b
            port:
              name: http
`, strings.ReplaceAll(v, ".", "-"), host)
		if out, err := c.Kubectl(t, bin, manifest, "apply", "-f", "-"); err != nil {
			t.Fatalf("kubectl %s apply: %v\n%s", v, err, out)
		}
		eventually(t, "kubectl "+v+" ingress", "200 backend-b "+host+" /only", func() (string, error) {
			return fetch(plain, "http://"+host+"/only")
		})
		if got, _ := fetch(plain, "http://"+host+"/only/more"); !strings.HasPrefix(got, "404 ") {
			t.Errorf("kubectl %s: Exact path matched a longer path: %q", v, got)
		}
		out, err := c.Kubectl(t, bin, "", "get", "ingress", "from-kubectl-"+strings.ReplaceAll(v, ".", "-"), "-o", "jsonpath={.spec.ingressClassName}")
		if err != nil || out != ingress.DefaultClassName {
			t.Errorf("kubectl %s get: %q (err %v), want class %s", v, out, err, ingress.DefaultClassName)
		}
	}

	// Removing the TLS host's Ingress stops routing it.
	if err := cs.NetworkingV1().Ingresses("default").Delete(ctx, "two-hosts", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "deleted ingress", "404", func() (string, error) {
		got, err := fetch(plain, "http://a.example.com/")
		return strings.Fields(got + " x")[0], err
	})
	if !reflect.DeepEqual(ctrl.Table().Match("a.example.com", "/"), (*ingress.Backend)(nil)) {
		t.Error("table still routes the deleted ingress")
	}
}
