package ingress

import (
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

const (
	exact    = networkingv1.PathTypeExact
	prefix   = networkingv1.PathTypePrefix
	implSpec = networkingv1.PathTypeImplementationSpecific
)

func TestMatchPaths(t *testing.T) {
	src := newSource()
	for _, s := range []string{"root", "foo", "foo-exact", "foobar", "deep", "impl", "slash"} {
		src.addService("default", s, 8080, "10.0.0.1")
	}
	tab := Build([]*networkingv1.Ingress{
		ingress("a", 0, map[string][]path{"example.com": {
			{prefix, "/", "root"},
			{prefix, "/foo", "foo"},
			{exact, "/foo", "foo-exact"},
			{exact, "/foobar", "foobar"},
			{prefix, "/foo/bar/baz", "deep"},
			{implSpec, "/impl", "impl"},
			{prefix, "/slash/", "slash"},
		}}),
	}, src, nil)
	for _, tc := range []struct{ path, want string }{
		{"/", "root"},
		{"", "root"},
		{"/foo", "foo-exact"}, // Exact beats Prefix at equal length
		{"/foo/", "foo"},
		{"/foo/bar", "foo"},
		{"/foobar", "foobar"},
		{"/foobar/", "root"}, // Exact does not take a trailing slash
		{"/foobarx", "root"}, // Prefix is element-wise
		{"/foo/bar/baz", "deep"},
		{"/foo/bar/baz/qux", "deep"},
		{"/foo/bar/bazz", "foo"},
		{"/impl/x", "impl"}, // ImplementationSpecific is Prefix
		{"/implx", "root"},
		{"/slash", "slash"}, // the rule's trailing slash is ignored
		{"/slash/a", "slash"},
	} {
		b := tab.Match("example.com", tc.path)
		if b == nil || b.Service != tc.want {
			t.Errorf("Match(%q) = %v, want %s", tc.path, b, tc.want)
		}
	}
}

func TestMatchHosts(t *testing.T) {
	src := newSource()
	for _, s := range []string{"exact", "wild", "any", "def", "wild-only"} {
		src.addService("default", s, 8080, "10.0.0.1")
	}
	def := ingress("def", time.Hour, nil)
	def.Spec.DefaultBackend = &networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "def", Port: networkingv1.ServiceBackendPort{Name: "http"}}}
	tab := Build([]*networkingv1.Ingress{
		ingress("a", 0, map[string][]path{
			"foo.bar.com": {{prefix, "/api", "exact"}},
			"*.bar.com":   {{prefix, "/", "wild"}},
			"":            {{prefix, "/any", "any"}},
			"*.only.com":  {{prefix, "/", "wild-only"}},
		}),
		def,
	}, src, nil)
	for _, tc := range []struct{ host, path, want string }{
		{"foo.bar.com", "/api/v1", "exact"},
		{"FOO.bar.com:8443", "/api", "exact"}, // case and port do not matter
		{"foo.bar.com.", "/api", "exact"},
		{"foo.bar.com", "/other", "wild"}, // exact host without a matching path falls to the wildcard
		{"baz.bar.com", "/", "wild"},
		{"bar.com", "/", "def"},          // the wildcard needs one more label
		{"a.baz.bar.com", "/", "def"},    // and only one
		{"a.baz.bar.com", "/any", "any"}, // host-less rules match every host
		{"x.only.com", "/z", "wild-only"},
		{"unknown.org", "/", "def"},
	} {
		b := tab.Match(tc.host, tc.path)
		if b == nil || b.Service != tc.want {
			t.Errorf("Match(%q, %q) = %v, want %s", tc.host, tc.path, b, tc.want)
		}
	}
	// Without a default backend, no rule is a 404 (nil).
	tab = Build([]*networkingv1.Ingress{ingress("a", 0, map[string][]path{"foo.com": {{prefix, "/", "exact"}}})}, src, nil)
	if b := tab.Match("bar.com", "/"); b != nil {
		t.Errorf("Match(unknown host) = %v, want nil", b)
	}
	if b := (*Table)(nil).Match("foo.com", "/"); b != nil {
		t.Errorf("nil table matched %v", b)
	}
}

func TestMatchAcrossIngresses(t *testing.T) {
	src := newSource()
	for _, s := range []string{"old", "new", "longer"} {
		src.addService("default", s, 8080, "10.0.0.1")
	}
	old := ingress("z-old", time.Hour, map[string][]path{"foo.com": {{prefix, "/app", "old"}}})
	newer := ingress("a-new", 0, map[string][]path{"foo.com": {{prefix, "/app/", "new"}, {prefix, "/app/v2", "longer"}}})
	tab := Build([]*networkingv1.Ingress{newer, old}, src, nil)
	if b := tab.Match("foo.com", "/app/x"); b == nil || b.Service != "old" {
		t.Errorf("conflicting prefix: got %v, want the oldest ingress's backend", b)
	}
	if b := tab.Match("foo.com", "/app/v2/x"); b == nil || b.Service != "longer" {
		t.Errorf("longest match across ingresses: got %v, want longer", b)
	}
	if len(tab.Problems) != 1 || !strings.Contains(tab.Problems[0], "z-old") {
		t.Errorf("problems = %q, want one conflict naming the older ingress", tab.Problems)
	}
	if want := []string{"default/z-old", "default/a-new"}; !reflect.DeepEqual(tab.Ingresses, want) {
		t.Errorf("ingresses = %v, want %v (oldest first)", tab.Ingresses, want)
	}
}

func TestBackendResolution(t *testing.T) {
	src := newSource()
	src.addService("default", "web", 8080, "10.0.0.2", "10.0.0.1", "!10.0.0.3")
	src.addService("default", "empty", 8080)
	src.addService("default", "down", 8080, "!10.0.0.9")
	src.services["default/ext"] = &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "ext"},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "example.org"},
	}
	// A slice with no ready condition counts as ready (the API's meaning
	// of an unset condition).
	src.slices["default/web"][0].Endpoints = append(src.slices["default/web"][0].Endpoints, src.slices["default/web"][0].Endpoints[0])
	src.slices["default/web"][0].Endpoints[3].Addresses = []string{"10.0.0.4"}
	src.slices["default/web"][0].Endpoints[3].Conditions.Ready = nil

	be := func(svc string, port networkingv1.ServiceBackendPort) networkingv1.IngressBackend {
		return networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: svc, Port: port}}
	}
	num, named := networkingv1.ServiceBackendPort{Number: 80}, networkingv1.ServiceBackendPort{Name: "http"}
	paths := []networkingv1.HTTPIngressPath{
		{Path: "/num", PathType: ptr.To(exact), Backend: be("web", num)},
		{Path: "/named", PathType: ptr.To(exact), Backend: be("web", named)},
		{Path: "/badport", PathType: ptr.To(exact), Backend: be("web", networkingv1.ServiceBackendPort{Number: 81})},
		{Path: "/missing", PathType: ptr.To(exact), Backend: be("nope", num)},
		{Path: "/empty", PathType: ptr.To(exact), Backend: be("empty", num)},
		{Path: "/down", PathType: ptr.To(exact), Backend: be("down", named)},
		{Path: "/ext", PathType: ptr.To(exact), Backend: be("ext", networkingv1.ServiceBackendPort{Number: 8443})},
		{Path: "/resource", PathType: ptr.To(exact), Backend: networkingv1.IngressBackend{Resource: &corev1.TypedLocalObjectReference{Kind: "Bucket", Name: "b"}}},
	}
	ing := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "i"}, Spec: networkingv1.IngressSpec{
		Rules: []networkingv1.IngressRule{{IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: paths}}}},
	}}
	tab := Build([]*networkingv1.Ingress{ing}, src, nil)
	want := []string{"10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.4:8080"}
	for _, p := range []string{"/num", "/named"} {
		if b := tab.Match("x", p); b == nil || !reflect.DeepEqual(b.Endpoints, want) {
			t.Errorf("%s: endpoints = %v, want %v (ready only, sorted)", p, b, want)
		}
	}
	if b := tab.Match("x", "/ext"); b == nil || !reflect.DeepEqual(b.Endpoints, []string{"example.org:8443"}) {
		t.Errorf("ExternalName: %+v", b)
	}
	for p, reason := range map[string]string{
		"/badport": "no port 81", "/missing": "service not found", "/empty": "no ready endpoints",
		"/down": "no ready endpoints", "/resource": "resource backends",
	} {
		b := tab.Match("x", p)
		if b == nil || len(b.Endpoints) != 0 || !strings.Contains(b.Reason, reason) {
			t.Errorf("%s: got %+v, want no endpoints because %q", p, b, reason)
		}
	}
}

func TestClasses(t *testing.T) {
	classes := []*networkingv1.IngressClass{
		{ObjectMeta: metav1.ObjectMeta{Name: "skiff", Annotations: map[string]string{IsDefaultClassAnnotation: "true"}}, Spec: networkingv1.IngressClassSpec{Controller: DefaultControllerName}},
		{ObjectMeta: metav1.ObjectMeta{Name: "skiff-internal"}, Spec: networkingv1.IngressClassSpec{Controller: DefaultControllerName}},
		{ObjectMeta: metav1.ObjectMeta{Name: "nginx"}, Spec: networkingv1.IngressClassSpec{Controller: "k8s.io/ingress-nginx"}},
	}
	ours := ClassesOf(DefaultControllerName, classes)
	ing := func(class *string, annotation string) *networkingv1.Ingress {
		i := &networkingv1.Ingress{Spec: networkingv1.IngressSpec{IngressClassName: class}}
		if annotation != "" {
			i.Annotations = map[string]string{ClassAnnotation: annotation}
		}
		return i
	}
	for _, tc := range []struct {
		name string
		ing  *networkingv1.Ingress
		want bool
	}{
		{"class skiff", ing(ptr.To("skiff"), ""), true},
		{"second class of ours", ing(ptr.To("skiff-internal"), ""), true},
		{"other controller", ing(ptr.To("nginx"), ""), false},
		{"unknown class", ing(ptr.To("gone"), ""), false},
		{"annotation ours", ing(nil, "skiff"), true},
		{"annotation other", ing(nil, "nginx"), false},
		{"no class, we are default", ing(nil, ""), true},
	} {
		if got := ours.Handles(tc.ing); got != tc.want {
			t.Errorf("%s: Handles = %v, want %v", tc.name, got, tc.want)
		}
	}
	noDefault := ClassesOf(DefaultControllerName, classes[1:])
	if noDefault.Handles(ing(nil, "")) {
		t.Error("an ingress without class was handled though no class of ours is default")
	}
}

func TestCertificateSelection(t *testing.T) {
	ca := newTestCA(t)
	src := newSource()
	src.secrets["default/a"] = ca.secret(t, "default", "a", "a.example.com")
	src.secrets["default/wild"] = ca.secret(t, "default", "wild", "*.example.com")
	src.secrets["default/fallback"] = ca.secret(t, "default", "fallback", "fallback.local")
	src.secrets["default/opaque"] = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "opaque"}, Type: corev1.SecretTypeOpaque}
	ing := ingress("i", 0, nil)
	ing.Spec.TLS = []networkingv1.IngressTLS{
		{Hosts: []string{"A.example.com"}, SecretName: "a"},
		{Hosts: []string{"*.example.com"}, SecretName: "wild"},
		{SecretName: "fallback"},
		{Hosts: []string{"broken.example.com"}, SecretName: "opaque"},
		{Hosts: []string{"missing.example.com"}, SecretName: "missing"},
	}
	certs := NewCertCache()
	tab := Build([]*networkingv1.Ingress{ing}, src, certs)
	cn := func(name string) string {
		c := tab.Certificate(name)
		if c == nil {
			return "<nil>"
		}
		if c.Leaf != nil {
			return c.Leaf.Subject.CommonName
		}
		return parseLeaf(t, c.Certificate[0]).Subject.CommonName
	}
	for name, want := range map[string]string{
		"a.example.com":       "a.example.com",
		"A.EXAMPLE.COM":       "a.example.com",
		"b.example.com":       "*.example.com",
		"x.b.example.com":     "fallback.local",
		"broken.example.com":  "*.example.com", // a bad secret does not shadow the wildcard
		"missing.example.com": "*.example.com",
		"":                    "fallback.local",
	} {
		if got := cn(name); got != want {
			t.Errorf("Certificate(%q) = %s, want %s", name, got, want)
		}
	}
	if len(tab.Problems) != 2 {
		t.Errorf("problems = %q, want the opaque and the missing secret", tab.Problems)
	}
	// Unchanged secrets are not parsed again; deleted ones are forgotten.
	before := tab.Certificate("a.example.com")
	tab = Build([]*networkingv1.Ingress{ing}, src, certs)
	if tab.Certificate("a.example.com") != before {
		t.Error("an unchanged secret was parsed again")
	}
	src.secrets["default/a"] = ca.secret(t, "default", "a", "a.example.com")
	src.secrets["default/a"].ResourceVersion = "2"
	tab = Build([]*networkingv1.Ingress{ing}, src, certs)
	if tab.Certificate("a.example.com") == before {
		t.Error("a changed secret was not parsed again")
	}
	tab = Build(nil, src, certs)
	if len(certs.m) != 0 || tab.Certificate("a.example.com") != nil {
		t.Errorf("cache kept %d secrets no ingress uses", len(certs.m))
	}
}

func TestReferences(t *testing.T) {
	a := ingress("a", 0, map[string][]path{"h": {{prefix, "/", "svc-a"}}, "": {{exact, "/x", "svc-x"}}})
	a.Spec.DefaultBackend = &networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "def"}}
	a.Spec.TLS = []networkingv1.IngressTLS{{SecretName: "tls"}, {Hosts: []string{"h"}}}
	b := ingress("b", 0, map[string][]path{"h": {{prefix, "/", "svc-b"}}})
	b.Namespace = "other"
	got := References([]*networkingv1.Ingress{a, b})
	want := Refs{
		Services: map[string]bool{"default/svc-a": true, "default/svc-x": true, "default/def": true, "other/svc-b": true},
		Secrets:  map[string]bool{"default/tls": true},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("References = %+v, want %+v", got, want)
	}
}
