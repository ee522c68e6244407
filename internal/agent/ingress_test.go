package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"skiff.dev/skiff/internal/ingress"
)

func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestStartIngress checks the agent's wiring: the configured ports serve
// the Ingresses of class skiff, and Disable leaves them closed.
func TestStartIngress(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "from backend") }))
	t.Cleanup(backend.Close)
	bport := int32(backend.Listener.Addr().(*net.TCPAddr).Port)
	pathType := networkingv1.PathTypePrefix
	client := fake.NewSimpleClientset(
		&networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: ingress.DefaultClassName}, Spec: networkingv1.IngressClassSpec{Controller: ingress.DefaultControllerName}},
		&networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Name: "i", Namespace: "default"}, Spec: networkingv1.IngressSpec{
			IngressClassName: ptr.To(ingress.DefaultClassName),
			Rules: []networkingv1.IngressRule{{Host: "app.test", IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
				Paths: []networkingv1.HTTPIngressPath{{Path: "/", PathType: &pathType, Backend: networkingv1.IngressBackend{
					Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80}}}}}}}}},
		}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}}},
		&discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: "web-1", Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To(""), Port: ptr.To(bport), Protocol: ptr.To(corev1.ProtocolTCP)}},
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"127.0.0.1"}}},
		},
	)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, disable := range []bool{false, true} {
		httpPort, httpsPort := freeTCPPort(t), freeTCPPort(t)
		a, err := New(Config{NodeName: "n1", Ingress: IngressConfig{Disable: disable, HTTPPort: httpPort, HTTPSPort: httpsPort, BindAddress: "127.0.0.1"}},
			Deps{RestConfig: &rest.Config{}, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		a.startIngress(ctx, client)
		url := "http://127.0.0.1:" + strconv.Itoa(httpPort) + "/"
		get := func() (string, error) {
			req, _ := http.NewRequest(http.MethodGet, url, nil)
			req.Host = "app.test"
			resp, err := (&http.Client{Timeout: 2 * time.Second}).Do(req)
			if err != nil {
				return "", err
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			return string(b), err
		}
		if disable {
			time.Sleep(200 * time.Millisecond)
			if _, err := get(); err == nil {
				t.Errorf("ingress disabled but port %d answers", httpPort)
			}
			cancel()
			continue
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			got, err := get()
			if err == nil && got == "from backend" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("GET through the agent's ingress on port %d: %q, %v", httpPort, got, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		cancel()
	}
}
