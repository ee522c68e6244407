package ingress

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
)

func node(name, ip string, ready bool, labels map[string]string) *corev1.Node {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Status: corev1.NodeStatus{
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: st}},
			Addresses:  []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: name}, {Type: corev1.NodeInternalIP, Address: ip}},
		},
	}
}

func TestLoadBalancerStatus(t *testing.T) {
	ext := node("ext", "", true, nil)
	ext.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeExternalIP, Address: "192.0.2.7"}}
	got := LoadBalancerStatus([]*corev1.Node{
		node("b", "10.0.0.2", true, nil),
		node("a", "10.0.0.10", true, nil),
		node("dup", "10.0.0.2", true, nil),
		node("down", "10.0.0.3", false, nil),
		node("excluded", "10.0.0.4", true, map[string]string{ExcludeFromLBLabel: ""}),
		ext,
		{ObjectMeta: metav1.ObjectMeta{Name: "no-conditions"}},
	})
	var ips []string
	for _, i := range got.Ingress {
		ips = append(ips, i.IP)
	}
	if want := []string{"10.0.0.2", "10.0.0.10", "192.0.2.7"}; !reflect.DeepEqual(ips, want) {
		t.Errorf("status ips = %v, want %v", ips, want)
	}
}

// TestControllerServesFromInformers runs the whole controller against a
// fake clientset: informers → table → HTTP and HTTPS listeners, and the
// status writer.
func TestControllerServesFromInformers(t *testing.T) {
	ca := newTestCA(t)
	a, b := named(t, "a"), named(t, "b")
	src := newSource()
	addrOf := func(url string) (string, int32) {
		ap := netip.MustParseAddrPort(strings.TrimPrefix(url, "http://"))
		return ap.Addr().String(), int32(ap.Port())
	}
	ipA, portA := addrOf(a.URL)
	ipB, portB := addrOf(b.URL)
	src.addService("default", "svc-a", portA, ipA)
	src.addService("default", "svc-b", portB, ipB)
	ing := ingress("web", 0, map[string][]path{
		"a.example.com": {{prefix, "/", "svc-a"}},
		"b.example.com": {{prefix, "/", "svc-b"}},
	})
	ing.Spec.IngressClassName = ptr.To("skiff")
	ing.Spec.TLS = []networkingv1.IngressTLS{{Hosts: []string{"a.example.com"}, SecretName: "a-tls"}, {Hosts: []string{"b.example.com"}, SecretName: "b-tls"}}
	other := ingress("other", 0, map[string][]path{"c.example.com": {{prefix, "/", "svc-a"}}})
	other.Spec.IngressClassName = ptr.To("nginx")
	objs := []runtime.Object{
		&networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: "skiff", Annotations: map[string]string{IsDefaultClassAnnotation: "true"}}, Spec: networkingv1.IngressClassSpec{Controller: DefaultControllerName}},
		ing, other,
		ca.secret(t, "default", "a-tls", "a.example.com"), ca.secret(t, "default", "b-tls", "b.example.com"),
		node("n1", "10.97.0.1", true, nil), node("n2", "10.97.0.2", true, nil),
	}
	for _, s := range src.services {
		objs = append(objs, s)
	}
	for _, ss := range src.slices {
		objs = append(objs, ss[0])
	}
	client := fake.NewSimpleClientset(objs...)
	c, err := New(Config{
		HTTPAddr: "127.0.0.1:0", HTTPSAddr: "127.0.0.1:0", NodeName: "n1",
		Status: StatusConfig{LeaseDuration: time.Second, RenewDeadline: 500 * time.Millisecond, RetryPeriod: 100 * time.Millisecond},
	}, Deps{Client: client, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	waitFor(t, "the table to serve default/web", func() bool {
		return reflect.DeepEqual(c.Table().Ingresses, []string{"default/web"})
	})

	httpClient := func(serverName string) *http.Client {
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: ca.pool, ServerName: serverName},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				var d net.Dialer
				if strings.HasPrefix(serverName, "plain:") {
					return d.DialContext(ctx, network, c.HTTPAddr().String())
				}
				return d.DialContext(ctx, network, c.HTTPSAddr().String())
			},
		}}
	}
	body := func(resp *http.Response, err error) string {
		t.Helper()
		if err != nil {
			t.Fatalf("request: %v", err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strconv.Itoa(resp.StatusCode) + " " + string(b)
	}
	for host, want := range map[string]string{"a.example.com": "200 a /p", "b.example.com": "200 b /p"} {
		if got := body(httpClient(host).Get("https://" + host + "/p")); got != want {
			t.Errorf("https %s: %q, want %q", host, got, want)
		}
		if got := body(httpClient("plain:" + host).Get("http://" + host + "/p")); got != want {
			t.Errorf("http %s: %q, want %q", host, got, want)
		}
	}
	if got := body(httpClient("plain:c").Get("http://c.example.com/")); !strings.HasPrefix(got, "404") {
		t.Errorf("ingress of another class served: %q", got)
	}
	// An unknown SNI name gets the self-signed default certificate.
	conn, err := tls.Dial("tcp", c.HTTPSAddr().String(), &tls.Config{ServerName: "nobody.example.com", InsecureSkipVerify: true}) //nolint:gosec // inspecting the default certificate
	if err != nil {
		t.Fatal(err)
	}
	if cn := conn.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != DefaultCertificateName {
		t.Errorf("default certificate CN = %q", cn)
	}
	conn.Close()

	// Status: the elected writer sets both Ready nodes' addresses.
	waitFor(t, "ingress status", func() bool {
		got, err := client.NetworkingV1().Ingresses("default").Get(ctx, "web", metav1.GetOptions{})
		return err == nil && reflect.DeepEqual(got.Status.LoadBalancer.Ingress, []networkingv1.IngressLoadBalancerIngress{{IP: "10.97.0.1"}, {IP: "10.97.0.2"}})
	})
	if got, _ := client.NetworkingV1().Ingresses("default").Get(ctx, "other", metav1.GetOptions{}); len(got.Status.LoadBalancer.Ingress) != 0 {
		t.Errorf("status written on another class's ingress: %v", got.Status.LoadBalancer)
	}

	// Live changes: a new endpoint set is picked up without a restart.
	slice := src.slices["default/svc-b"][0].DeepCopy()
	slice.Endpoints[0].Conditions.Ready = ptr.To(false)
	if _, err := client.DiscoveryV1().EndpointSlices("default").Update(ctx, slice, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "svc-b to have no endpoints", func() bool {
		be := c.Table().Match("b.example.com", "/")
		return be != nil && len(be.Endpoints) == 0
	})
	if got := body(httpClient("plain:b").Get("http://b.example.com/")); !strings.HasPrefix(got, "503") {
		t.Errorf("no ready endpoints: %q, want 503", got)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestOnlyReferencedObjectsTriggerBuilds: changes to Services, slices and
// Secrets no Ingress names do not rebuild the table.
func TestOnlyReferencedObjectsTriggerBuilds(t *testing.T) {
	c, err := New(Config{Status: StatusConfig{Disable: true}}, Deps{Client: fake.NewSimpleClientset(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	svc := func(ns, name string) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	}
	if !c.referenced(svc("default", "web"), false) {
		t.Error("before the first build everything must count")
	}
	refs := References([]*networkingv1.Ingress{ingress("i", 0, map[string][]path{"h": {{prefix, "/", "web"}}})})
	refs.Secrets["default/cert"] = true
	c.refs.Store(&refs)
	src := newSource()
	src.addService("default", "web", 80, "10.0.0.1")
	src.addService("default", "other", 80, "10.0.0.1")
	for _, tc := range []struct {
		name   string
		obj    any
		secret bool
		want   bool
	}{
		{"named service", svc("default", "web"), false, true},
		{"same name, other namespace", svc("kube-system", "web"), false, false},
		{"unnamed service", svc("default", "other"), false, false},
		{"slice of a named service", src.slices["default/web"][0], false, true},
		{"slice of another service", src.slices["default/other"][0], false, false},
		{"tombstone of a named service", cache.DeletedFinalStateUnknown{Key: "default/web", Obj: svc("default", "web")}, false, true},
		{"named secret", &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "cert"}}, true, true},
		{"other secret", &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "x"}}, true, false},
	} {
		if got := c.referenced(tc.obj, tc.secret); got != tc.want {
			t.Errorf("%s: referenced = %v, want %v", tc.name, got, tc.want)
		}
	}
}
