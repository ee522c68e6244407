package multinode

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// selfSigned returns a PEM certificate and key for host.
func selfSigned(t *testing.T, host string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: host},
		DNSNames: []string{host}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

// An Ingress routes two hosts to two services whose pods sit on other
// nodes than the one the host connects to, over HTTP and over TLS with
// each host's own certificate (SNI).
func TestIngressTwoHostsTLS(t *testing.T) {
	c := getCluster(t)
	ns := namespace(t, c)
	ctx := context.Background()
	runPods(t, c, ns,
		testappPod("site-a", c.nodes[1].name, map[string]string{"app": "site-a"}),
		testappPod("site-b", c.nodes[2].name, map[string]string{"app": "site-b"}),
	)
	hosts := map[string]string{"a.skiffmn.test": "site-a", "b.skiffmn.test": "site-b"}
	roots := x509.NewCertPool()
	ing := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Name: "sites"}}
	prefix := networkingv1.PathTypePrefix
	for host, app := range hosts {
		service(t, c, ns, app, app, v1.ServiceTypeClusterIP)
		cert, key := selfSigned(t, host)
		roots.AppendCertsFromPEM(cert)
		secret := &v1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: app + "-tls"}, Type: v1.SecretTypeTLS,
			Data: map[string][]byte{v1.TLSCertKey: cert, v1.TLSPrivateKeyKey: key},
		}
		if _, err := c.client.CoreV1().Secrets(ns).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		ing.Spec.TLS = append(ing.Spec.TLS, networkingv1.IngressTLS{Hosts: []string{host}, SecretName: secret.Name})
		ing.Spec.Rules = append(ing.Spec.Rules, networkingv1.IngressRule{
			Host: host,
			IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{{
				Path: "/", PathType: &prefix,
				Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
					Name: app, Port: networkingv1.ServiceBackendPort{Number: 80},
				}},
			}}}},
		})
	}
	if _, err := c.client.NetworkingV1().Ingresses(ns).Create(ctx, ing, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// Through node 1, which runs neither backend.
	entry := c.nodes[0].ip
	for host, want := range hosts {
		httpClient := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, net.JoinHostPort(entry, "80"))
			},
		}}
		tlsClient := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{
			DisableKeepAlives: true,
			TLSClientConfig:   &tls.Config{RootCAs: roots, ServerName: host},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, net.JoinHostPort(entry, "443"))
			},
		}}
		for scheme, cl := range map[string]*http.Client{"http": httpClient, "https": tlsClient} {
			deadline := time.Now().Add(60 * time.Second)
			for {
				got, err := fetch(cl, scheme+"://"+host+"/hostname")
				if err == nil && got == want {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s://%s/hostname via %s: %q, %v; want %q", scheme, host, entry, got, err, want)
				}
				time.Sleep(250 * time.Millisecond)
			}
		}
	}
}

func fetch(cl *http.Client, u string) (string, error) {
	resp, err := cl.Get(u)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return string(b), &statusError{resp.Status}
	}
	return string(b), err
}

type statusError struct{ status string }

func (e *statusError) Error() string { return "status " + e.status }
