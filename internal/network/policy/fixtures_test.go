package policy

import (
	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

const localNode = "node-a"

func ns(name string, lbls map[string]string) *v1.Namespace {
	return &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbls}}
}

type podOpt func(*v1.Pod)

func port(name string, n int32, proto v1.Protocol) podOpt {
	return func(p *v1.Pod) {
		p.Spec.Containers[0].Ports = append(p.Spec.Containers[0].Ports, v1.ContainerPort{Name: name, ContainerPort: n, Protocol: proto})
	}
}

func pod(namespace, name, node, ip string, lbls map[string]string, opts ...podOpt) *v1.Pod {
	p := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: lbls},
		Spec:       v1.PodSpec{NodeName: node, Containers: []v1.Container{{Name: "c"}}},
		Status:     v1.PodStatus{Phase: v1.PodRunning, PodIP: ip},
	}
	if ip != "" {
		p.Status.PodIPs = []v1.PodIP{{IP: ip}}
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func sel(kv ...string) *metav1.LabelSelector {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return &metav1.LabelSelector{MatchLabels: m}
}

func proto(p v1.Protocol) *v1.Protocol { return &p }

func numPort(p v1.Protocol, n int32) networkingv1.NetworkPolicyPort {
	v := intstr.FromInt32(n)
	return networkingv1.NetworkPolicyPort{Protocol: proto(p), Port: &v}
}

func rangePort(p v1.Protocol, n, end int32) networkingv1.NetworkPolicyPort {
	np := numPort(p, n)
	np.EndPort = &end
	return np
}

func namedPortRef(p v1.Protocol, name string) networkingv1.NetworkPolicyPort {
	v := intstr.FromString(name)
	return networkingv1.NetworkPolicyPort{Protocol: proto(p), Port: &v}
}

func policy(namespace, name string, podSelector *metav1.LabelSelector, mutate func(*networkingv1.NetworkPolicySpec)) *networkingv1.NetworkPolicy {
	p := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	if podSelector != nil {
		p.Spec.PodSelector = *podSelector
	}
	if mutate != nil {
		mutate(&p.Spec)
	}
	return p
}

func podPeer(s *metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{PodSelector: s}
}

func nsPeer(s *metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{NamespaceSelector: s}
}

func blockPeer(cidr string, except ...string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: cidr, Except: except}}
}

// fixture is a small cluster: node-a is the enforcing node; every feature
// of the API appears in one of the policies.
func fixture() Input {
	hostNet := pod("default", "host-agent", localNode, "192.168.50.2", map[string]string{"app": "web"})
	hostNet.Spec.HostNetwork = true
	done := pod("default", "old-job", localNode, "10.96.1.99", map[string]string{"app": "web"})
	done.Status.Phase = v1.PodSucceeded
	return Input{
		NodeName: localNode,
		Namespaces: []*v1.Namespace{
			ns("default", nil),
			ns("prod", map[string]string{"team": "prod"}),
			ns("dev", map[string]string{"team": "dev"}),
		},
		Pods: []*v1.Pod{
			pod("default", "web-1", localNode, "10.96.1.10", map[string]string{"app": "web"},
				port("http", 8080, v1.ProtocolTCP), port("dns", 53, v1.ProtocolUDP), port("metrics", 9090, "")),
			pod("default", "web-2", "node-b", "10.96.2.10", map[string]string{"app": "web"}, port("http", 8081, v1.ProtocolTCP)),
			pod("default", "client-1", localNode, "10.96.1.20", map[string]string{"role": "client"}),
			pod("default", "client-2", "node-b", "10.96.2.21", map[string]string{"role": "client"}),
			pod("default", "db-1", localNode, "10.96.1.30", map[string]string{"app": "db"}, port("sql", 5432, v1.ProtocolTCP)),
			pod("default", "db-2", "node-b", "10.96.2.30", map[string]string{"app": "db"}, port("sql", 5433, v1.ProtocolTCP)),
			pod("default", "other", localNode, "10.96.1.50", map[string]string{"app": "other"}),
			pod("default", "pending", localNode, "", map[string]string{"app": "web"}),
			pod("prod", "api-1", "node-b", "10.96.2.40", map[string]string{"app": "api"}),
			pod("prod", "batch-1", "node-b", "10.96.2.41", map[string]string{"app": "batch"}),
			pod("dev", "api-1", localNode, "10.96.1.40", map[string]string{"app": "api"}),
			pod("dev", "batch-1", localNode, "10.96.1.41", map[string]string{"app": "batch"}),
			hostNet, done,
		},
		Policies: []*networkingv1.NetworkPolicy{
			// Default deny of ingress for the databases…
			policy("default", "db-deny", sel("app", "db"), func(s *networkingv1.NetworkPolicySpec) {
				s.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
			}),
			// …plus an additive allow for clients on the named port.
			policy("default", "db-allow-clients", sel("app", "db"), func(s *networkingv1.NetworkPolicySpec) {
				s.Ingress = []networkingv1.NetworkPolicyIngressRule{{
					From:  []networkingv1.NetworkPolicyPeer{podPeer(sel("role", "client"))},
					Ports: []networkingv1.NetworkPolicyPort{namedPortRef(v1.ProtocolTCP, "sql")},
				}}
			}),
			// Every peer kind and port kind.
			policy("default", "web-ingress", sel("app", "web"), func(s *networkingv1.NetworkPolicySpec) {
				both := podPeer(sel("app", "api"))
				both.NamespaceSelector = sel("team", "dev")
				s.Ingress = []networkingv1.NetworkPolicyIngressRule{{
					From: []networkingv1.NetworkPolicyPeer{
						podPeer(sel("role", "client")),
						nsPeer(sel("team", "prod")),
						both,
						blockPeer("192.168.0.0/16", "192.168.1.0/24", "192.168.2.0/24"),
					},
					Ports: []networkingv1.NetworkPolicyPort{
						namedPortRef(v1.ProtocolTCP, "http"),
						numPort(v1.ProtocolUDP, 53),
						rangePort(v1.ProtocolTCP, 9000, 9100),
						numPort(v1.ProtocolSCTP, 7777),
						namedPortRef(v1.ProtocolTCP, "absent"),
					},
				}, {
					// All sources, one protocol, every port.
					Ports: []networkingv1.NetworkPolicyPort{{Protocol: proto(v1.ProtocolUDP)}},
				}}
			}),
			policy("default", "web-egress", sel("app", "web"), func(s *networkingv1.NetworkPolicySpec) {
				s.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
				s.Egress = []networkingv1.NetworkPolicyEgressRule{{
					To:    []networkingv1.NetworkPolicyPeer{podPeer(sel("app", "db"))},
					Ports: []networkingv1.NetworkPolicyPort{namedPortRef(v1.ProtocolTCP, "sql")},
				}, {
					Ports: []networkingv1.NetworkPolicyPort{numPort(v1.ProtocolUDP, 53), numPort(v1.ProtocolTCP, 53)},
				}, {
					To: []networkingv1.NetworkPolicyPeer{blockPeer("10.0.0.0/8", "10.96.0.0/16"), blockPeer("fd00::/8")},
				}}
			}),
			// No policyTypes and egress rules: Ingress (default deny, no
			// ingress rules) and Egress.
			policy("default", "client", sel("role", "client"), func(s *networkingv1.NetworkPolicySpec) {
				s.Egress = []networkingv1.NetworkPolicyEgressRule{{
					To:    []networkingv1.NetworkPolicyPeer{podPeer(sel("app", "web"))},
					Ports: []networkingv1.NetworkPolicyPort{namedPortRef(v1.ProtocolTCP, "http"), numPort(v1.ProtocolTCP, 8443)},
				}}
			}),
			// Empty podSelector: every pod of dev; allow from the same
			// namespace only.
			policy("dev", "same-namespace", nil, func(s *networkingv1.NetworkPolicySpec) {
				s.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{podPeer(&metav1.LabelSelector{})}}}
			}),
			// Selects no pod of this node: contributes nothing here.
			policy("prod", "deny-all", nil, func(s *networkingv1.NetworkPolicySpec) {
				s.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
			}),
		},
	}
}
