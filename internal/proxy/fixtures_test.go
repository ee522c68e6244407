package proxy

import (
	"net/netip"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

const testNode = "node-a"

func testRules() *Rules {
	return &Rules{NodeName: testNode, ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}}
}

type svcOpt func(*v1.Service)

func service(name, clusterIP string, opts ...svcOpt) *v1.Service {
	s := &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: v1.ServiceSpec{
			Type: v1.ServiceTypeClusterIP, ClusterIP: clusterIP,
			Ports: []v1.ServicePort{{Port: 80, Protocol: v1.ProtocolTCP, TargetPort: intstr.FromInt32(8080)}},
		},
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

func ports(p ...v1.ServicePort) svcOpt { return func(s *v1.Service) { s.Spec.Ports = p } }

func nodePort(np int32) svcOpt {
	return func(s *v1.Service) { s.Spec.Type = v1.ServiceTypeNodePort; s.Spec.Ports[0].NodePort = np }
}

func loadBalancer(np int32, ip string) svcOpt {
	return func(s *v1.Service) {
		s.Spec.Type = v1.ServiceTypeLoadBalancer
		s.Spec.Ports[0].NodePort = np
		s.Status.LoadBalancer.Ingress = []v1.LoadBalancerIngress{{IP: ip}}
	}
}

func etpLocal(s *v1.Service) { s.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal }

func itpLocal(s *v1.Service) {
	s.Spec.InternalTrafficPolicy = ptr.To(v1.ServiceInternalTrafficPolicyLocal)
}

func affinity(sec int32) svcOpt {
	return func(s *v1.Service) {
		s.Spec.SessionAffinity = v1.ServiceAffinityClientIP
		s.Spec.SessionAffinityConfig = &v1.SessionAffinityConfig{ClientIP: &v1.ClientIPConfig{TimeoutSeconds: ptr.To(sec)}}
	}
}

type ep struct {
	ip, node                    string
	ready, serving, terminating bool
}

func readyEP(ip, node string) ep { return ep{ip: ip, node: node, ready: true, serving: true} }

type slicePort struct {
	name  string
	proto v1.Protocol
	port  int32
}

func slice(svc, name string, ps []slicePort, eps ...ep) *discovery.EndpointSlice {
	sl := &discovery.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name,
			Labels: map[string]string{discovery.LabelServiceName: svc}},
		AddressType: discovery.AddressTypeIPv4,
	}
	for _, p := range ps {
		sl.Ports = append(sl.Ports, discovery.EndpointPort{Name: ptr.To(p.name), Protocol: ptr.To(p.proto), Port: ptr.To(p.port)})
	}
	for _, e := range eps {
		sl.Endpoints = append(sl.Endpoints, discovery.Endpoint{
			Addresses: []string{e.ip}, NodeName: ptr.To(e.node),
			Conditions: discovery.EndpointConditions{Ready: ptr.To(e.ready), Serving: ptr.To(e.serving), Terminating: ptr.To(e.terminating)},
		})
	}
	return sl
}

var tcp8080 = []slicePort{{"", v1.ProtocolTCP, 8080}}

// fixture is a set of services exercising every rendering rule.
func fixture() (map[string]*v1.Service, map[string][]*discovery.EndpointSlice) {
	svcs := []*v1.Service{
		service("web", "10.96.0.10", ports(v1.ServicePort{Name: "http", Port: 80, Protocol: v1.ProtocolTCP, TargetPort: intstr.FromString("http")})),
		service("dns", "10.96.0.53", ports(
			v1.ServicePort{Name: "dns", Port: 53, Protocol: v1.ProtocolUDP, TargetPort: intstr.FromInt32(5353)},
			v1.ServicePort{Name: "dns-tcp", Port: 53, Protocol: v1.ProtocolTCP, TargetPort: intstr.FromInt32(5353)})),
		service("np", "10.96.0.20", nodePort(30080)),
		service("lb", "10.96.0.30", loadBalancer(30443, "10.96.100.1"), etpLocal),
		service("sticky", "10.96.0.40", affinity(600)),
		service("empty", "10.96.0.50", nodePort(30050)),
		service("itp", "10.96.0.60", itpLocal),
		service("sctp", "10.96.0.70", ports(v1.ServicePort{Port: 9999, Protocol: v1.ProtocolSCTP, TargetPort: intstr.FromInt32(9999)})),
		service("term", "10.96.0.80"),
		service("headless", v1.ClusterIPNone),
		{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "extname"}, Spec: v1.ServiceSpec{Type: v1.ServiceTypeExternalName, ExternalName: "example.com"}},
	}
	slices := map[string][]*discovery.EndpointSlice{
		"default/web": {
			slice("web", "web-a", []slicePort{{"http", v1.ProtocolTCP, 8080}}, readyEP("10.244.1.2", "node-a"), readyEP("10.244.2.3", "node-b"),
				ep{ip: "10.244.1.9", node: "node-a"}),
			// A second slice: pods whose named port "http" resolves to 9090.
			slice("web", "web-b", []slicePort{{"http", v1.ProtocolTCP, 9090}}, readyEP("10.244.3.4", "node-c")),
		},
		"default/dns":    {slice("dns", "dns-a", []slicePort{{"dns", v1.ProtocolUDP, 5353}, {"dns-tcp", v1.ProtocolTCP, 5353}}, readyEP("10.244.1.3", "node-a"))},
		"default/np":     {slice("np", "np-a", tcp8080, readyEP("10.244.2.4", "node-b"))},
		"default/lb":     {slice("lb", "lb-a", tcp8080, readyEP("10.244.1.4", "node-a"), readyEP("10.244.2.5", "node-b"))},
		"default/sticky": {slice("sticky", "sticky-a", tcp8080, readyEP("10.244.1.5", "node-a"), readyEP("10.244.2.6", "node-b"))},
		"default/itp":    {slice("itp", "itp-a", tcp8080, readyEP("10.244.2.7", "node-b"))},
		"default/sctp":   {slice("sctp", "sctp-a", []slicePort{{"", v1.ProtocolSCTP, 9999}}, readyEP("10.244.1.6", "node-a"))},
		"default/term": {slice("term", "term-a", tcp8080,
			ep{ip: "10.244.1.7", node: "node-a", serving: true, terminating: true},
			ep{ip: "10.244.1.8", node: "node-a", terminating: true})},
		"default/headless": {slice("headless", "headless-a", tcp8080, readyEP("10.244.1.10", "node-a"))},
	}
	m := map[string]*v1.Service{}
	for _, s := range svcs {
		m[s.Namespace+"/"+s.Name] = s
	}
	return m, slices
}
