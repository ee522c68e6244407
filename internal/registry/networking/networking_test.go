package networking

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func check(t *testing.T, name string, errs field.ErrorList, want string) {
	t.Helper()
	if want == "" && len(errs) != 0 || want != "" && (len(errs) != 1 || string(errs[0].Type)+" "+errs[0].Field != want) {
		t.Errorf("%s: errs %v, want %q", name, errs, want)
	}
}

func ingress() *networkingv1.Ingress {
	prefix := networkingv1.PathTypePrefix
	class := "nginx"
	return &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: networkingv1.IngressSpec{
		IngressClassName: &class,
		Rules: []networkingv1.IngressRule{{Host: "example.com", IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
			Paths: []networkingv1.HTTPIngressPath{{Path: "/", PathType: &prefix, Backend: networkingv1.IngressBackend{
				Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80}}}}}}}}},
	}}
}

func TestIngress(t *testing.T) {
	r := Resources()[0]
	exact := networkingv1.PathTypeExact
	odd := networkingv1.PathType("Regex")
	cases := []struct {
		name   string
		mutate func(*networkingv1.Ingress)
		want   string
	}{
		{"valid", func(*networkingv1.Ingress) {}, ""},
		{"empty", func(i *networkingv1.Ingress) { i.Spec.Rules = nil }, "FieldValueInvalid spec"},
		{"ip host", func(i *networkingv1.Ingress) { i.Spec.Rules[0].Host = "10.0.0.1" }, "FieldValueInvalid spec.rules[0].host"},
		{"wildcard host", func(i *networkingv1.Ingress) { i.Spec.Rules[0].Host = "*.example.com" }, ""},
		{"no pathType", func(i *networkingv1.Ingress) { i.Spec.Rules[0].HTTP.Paths[0].PathType = nil },
			"FieldValueRequired spec.rules[0].http.paths[0].pathType"},
		{"bad pathType", func(i *networkingv1.Ingress) { i.Spec.Rules[0].HTTP.Paths[0].PathType = &odd },
			"FieldValueNotSupported spec.rules[0].http.paths[0].pathType"},
		{"relative path", func(i *networkingv1.Ingress) {
			i.Spec.Rules[0].HTTP.Paths[0].PathType = &exact
			i.Spec.Rules[0].HTTP.Paths[0].Path = "api"
		}, "FieldValueInvalid spec.rules[0].http.paths[0].path"},
		{"no port", func(i *networkingv1.Ingress) { i.Spec.Rules[0].HTTP.Paths[0].Backend.Service.Port.Number = 0 },
			"FieldValueRequired spec.rules[0].http.paths[0].backend.service.port"},
		{"no backend", func(i *networkingv1.Ingress) { i.Spec.Rules[0].HTTP.Paths[0].Backend.Service = nil },
			"FieldValueRequired spec.rules[0].http.paths[0].backend"},
	}
	for _, c := range cases {
		i := ingress()
		c.mutate(i)
		check(t, c.name, r.Validate(i), c.want)
	}
	i := ingress()
	i.Spec.TLS = []networkingv1.IngressTLS{{Hosts: []string{"example.com"}}}
	i.Status.LoadBalancer.Ingress = []networkingv1.IngressLoadBalancerIngress{{IP: "10.0.0.2"}, {Hostname: "lb.example.com"}}
	row := r.TableRow(i)
	want := []interface{}{"web", "nginx", "example.com", "10.0.0.2,lb.example.com", "80, 443", "<unknown>"}
	for k := range want {
		if row[k] != want[k] {
			t.Errorf("cell %d = %#v, want %#v", k, row[k], want[k])
		}
	}
}

func TestIngressClass(t *testing.T) {
	r := Resources()[1]
	if r.Namespaced {
		t.Errorf("ingressclasses are cluster-scoped")
	}
	c := &networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: "nginx"}, Spec: networkingv1.IngressClassSpec{Controller: "k8s.io/ingress-nginx",
		Parameters: &networkingv1.IngressClassParametersReference{Kind: "Params", Name: "p"}}}
	r.Default(c)
	if *c.Spec.Parameters.Scope != "Cluster" {
		t.Errorf("scope default %v", *c.Spec.Parameters.Scope)
	}
	check(t, "valid", r.Validate(c), "")
	upd := c.DeepCopy()
	upd.Spec.Controller = "other.io/x"
	check(t, "controller change", r.ValidateUpdate(upd, c), "FieldValueInvalid spec.controller")
	bad := c.DeepCopy()
	bad.Spec.Controller = ""
	check(t, "no controller", r.Validate(bad), "FieldValueRequired spec.controller")
	if row := r.TableRow(c); row[2] != "Params/p" {
		t.Errorf("parameters cell %v", row[2])
	}
}

func TestNetworkPolicy(t *testing.T) {
	r := Resources()[2]
	port := intstr.FromInt32(80)
	np := &networkingv1.NetworkPolicy{Spec: networkingv1.NetworkPolicySpec{
		PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
		Ingress:     []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{{Port: &port}}}},
		Egress:      []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8", Except: []string{"10.1.0.0/16"}}}}}},
	}}
	r.Default(np)
	if len(np.Spec.PolicyTypes) != 2 || *np.Spec.Ingress[0].Ports[0].Protocol != corev1.ProtocolTCP {
		t.Fatalf("defaults: %+v", np.Spec)
	}
	check(t, "valid", r.Validate(np), "")
	bad := np.DeepCopy()
	bad.Spec.Egress[0].To[0].IPBlock.Except = []string{"192.168.0.0/16"}
	check(t, "except outside", r.Validate(bad), "FieldValueInvalid spec.egress[0].to[0].ipBlock.except[0]")
	bad = np.DeepCopy()
	end := int32(70)
	bad.Spec.Ingress[0].Ports[0].EndPort = &end
	check(t, "endPort < port", r.Validate(bad), "FieldValueInvalid spec.ingress[0].ports[0].endPort")
	bad = np.DeepCopy()
	bad.Spec.Egress[0].To = []networkingv1.NetworkPolicyPeer{{}}
	check(t, "empty peer", r.Validate(bad), "FieldValueRequired spec.egress[0].to[0]")
	onlyIngress := &networkingv1.NetworkPolicy{}
	r.Default(onlyIngress)
	if len(onlyIngress.Spec.PolicyTypes) != 1 || onlyIngress.Spec.PolicyTypes[0] != networkingv1.PolicyTypeIngress {
		t.Errorf("policyTypes %v", onlyIngress.Spec.PolicyTypes)
	}
	if row := r.TableRow(np); row[1] != "app=db" {
		t.Errorf("pod selector cell %v", row[1])
	}
}
