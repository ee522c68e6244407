// Package networking holds the registry descriptors for networking.k8s.io/v1:
// ingresses (namespaced, with status), ingressclasses (cluster-scoped) and
// networkpolicies (namespaced).
//
// Contract: Resources returns the descriptors with upstream's defaulting
// (NetworkPolicy policyTypes and port protocol TCP, IngressClass parameters
// scope Cluster), the validation users hit (ingress needs a default backend
// or rules, absolute paths with a supported pathType, one backend kind,
// service port by name or number; networkpolicy ports and peers; ingress
// class controller immutable) and upstream's tables.
package networking

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"skiff.dev/skiff/internal/registry"
	"skiff.dev/skiff/internal/registry/printing"
)

// Resources returns the networking.k8s.io/v1 resources.
func Resources() []*registry.Resource {
	return []*registry.Resource{ingresses(), ingressClasses(), networkPolicies()}
}

func ingresses() *registry.Resource {
	return &registry.Resource{
		GroupVersion: networkingv1.SchemeGroupVersion, Resource: "ingresses", Singular: "ingress", Kind: "Ingress", ListKind: "IngressList",
		Namespaced: true, ShortNames: []string{"ing"},
		New:     func() runtime.Object { return &networkingv1.Ingress{} },
		NewList: func() runtime.Object { return &networkingv1.IngressList{} },
		PrepareForCreate: func(obj runtime.Object) {
			if i, ok := obj.(*networkingv1.Ingress); ok {
				i.Status = networkingv1.IngressStatus{}
			}
		},
		PrepareForUpdate: func(obj, old runtime.Object) {
			n, ok1 := obj.(*networkingv1.Ingress)
			o, ok2 := old.(*networkingv1.Ingress)
			if ok1 && ok2 {
				n.Status = o.Status
			}
		},
		PrepareForStatusUpdate: func(obj, old runtime.Object) {
			n, ok1 := obj.(*networkingv1.Ingress)
			o, ok2 := old.(*networkingv1.Ingress)
			if ok1 && ok2 {
				n.Spec = o.Spec
			}
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			return validateIngressSpec(&obj.(*networkingv1.Ingress).Spec)
		},
		Subresources: []string{"status"},
		TableColumns: []metav1.TableColumnDefinition{
			printing.NameColumn(),
			printing.Column("Class", "string", "The name of the IngressClass resource that should be used for ingress."),
			printing.Column("Hosts", "string", "Hosts that incoming requests are matched against before the ingress rule"),
			printing.Column("Address", "string", "Address is a list containing ingress points for the load-balancer"),
			printing.Column("Ports", "string", "Ports of TLS configurations that open"),
			printing.AgeColumn(),
		},
		TableRow: func(obj runtime.Object) []interface{} {
			i := obj.(*networkingv1.Ingress)
			class := "<none>"
			if i.Spec.IngressClassName != nil {
				class = *i.Spec.IngressClassName
			}
			var hosts []string
			for _, r := range i.Spec.Rules {
				if r.Host != "" {
					hosts = append(hosts, r.Host)
				}
			}
			hostCell := "*"
			if len(hosts) > 0 {
				hostCell = printing.ListWithMore(hosts, 3)
			}
			addrs := map[string]bool{}
			for _, lb := range i.Status.LoadBalancer.Ingress {
				if lb.IP != "" {
					addrs[lb.IP] = true
				} else if lb.Hostname != "" {
					addrs[lb.Hostname] = true
				}
			}
			var list []string
			for a := range addrs {
				list = append(list, a)
			}
			sort.Strings(list)
			ports := "80"
			if len(i.Spec.TLS) > 0 {
				ports = "80, 443"
			}
			return []interface{}{i.Name, class, hostCell, strings.Join(list, ","), ports, printing.Age(i.CreationTimestamp)}
		},
	}
}

func validateIngressSpec(s *networkingv1.IngressSpec) field.ErrorList {
	p := field.NewPath("spec")
	var errs field.ErrorList
	if len(s.Rules) == 0 && s.DefaultBackend == nil {
		errs = append(errs, field.Invalid(p, s.Rules, "either `defaultBackend` or `rules` must be specified"))
	}
	if s.DefaultBackend != nil {
		errs = append(errs, validateBackend(s.DefaultBackend, p.Child("defaultBackend"))...)
	}
	if s.IngressClassName != nil {
		for _, msg := range apimachineryvalidation.NameIsDNSSubdomain(*s.IngressClassName, false) {
			errs = append(errs, field.Invalid(p.Child("ingressClassName"), *s.IngressClassName, msg))
		}
	}
	for i, tls := range s.TLS {
		for j, h := range tls.Hosts {
			hp := p.Child("tls").Index(i).Child("hosts").Index(j)
			check := validation.IsDNS1123Subdomain
			if strings.Contains(h, "*") {
				check = validation.IsWildcardDNS1123Subdomain
			}
			for _, msg := range check(h) {
				errs = append(errs, field.Invalid(hp, h, msg))
			}
		}
	}
	for i, r := range s.Rules {
		rp := p.Child("rules").Index(i)
		if r.Host != "" {
			if _, err := netip.ParseAddr(r.Host); err == nil {
				errs = append(errs, field.Invalid(rp.Child("host"), r.Host, "must be a DNS name, not an IP address"))
			} else if strings.Contains(r.Host, "*") {
				for _, msg := range validation.IsWildcardDNS1123Subdomain(r.Host) {
					errs = append(errs, field.Invalid(rp.Child("host"), r.Host, msg))
				}
			} else {
				for _, msg := range validation.IsDNS1123Subdomain(r.Host) {
					errs = append(errs, field.Invalid(rp.Child("host"), r.Host, msg))
				}
			}
		}
		if r.HTTP == nil {
			continue
		}
		hp := rp.Child("http")
		if len(r.HTTP.Paths) == 0 {
			errs = append(errs, field.Required(hp.Child("paths"), ""))
		}
		for j, path := range r.HTTP.Paths {
			errs = append(errs, validatePath(path, hp.Child("paths").Index(j))...)
		}
	}
	return errs
}

var invalidPathSequences = []string{"//", "/./", "/../", "%2f", "%2F"}
var invalidPathSuffixes = []string{"/..", "/."}

func validatePath(path networkingv1.HTTPIngressPath, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if path.PathType == nil {
		return append(errs, field.Required(p.Child("pathType"), "pathType must be specified"))
	}
	switch *path.PathType {
	case networkingv1.PathTypeExact, networkingv1.PathTypePrefix:
		if !strings.HasPrefix(path.Path, "/") {
			errs = append(errs, field.Invalid(p.Child("path"), path.Path, "must be an absolute path"))
		}
		for _, seq := range invalidPathSequences {
			if strings.Contains(path.Path, seq) {
				errs = append(errs, field.Invalid(p.Child("path"), path.Path, fmt.Sprintf("must not contain '%s'", seq)))
			}
		}
		for _, suf := range invalidPathSuffixes {
			if strings.HasSuffix(path.Path, suf) {
				errs = append(errs, field.Invalid(p.Child("path"), path.Path, fmt.Sprintf("cannot end with '%s'", suf)))
			}
		}
	case networkingv1.PathTypeImplementationSpecific:
		if path.Path != "" && !strings.HasPrefix(path.Path, "/") {
			errs = append(errs, field.Invalid(p.Child("path"), path.Path, "must be an absolute path"))
		}
	default:
		errs = append(errs, field.NotSupported(p.Child("pathType"), *path.PathType, []string{string(networkingv1.PathTypeExact),
			string(networkingv1.PathTypePrefix), string(networkingv1.PathTypeImplementationSpecific)}))
	}
	return append(errs, validateBackend(&path.Backend, p.Child("backend"))...)
}

func validateBackend(b *networkingv1.IngressBackend, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch {
	case b.Service != nil && b.Resource != nil:
		return append(errs, field.Invalid(p, "", "cannot set both resource and service backends"))
	case b.Resource != nil:
		if b.Resource.Kind == "" {
			errs = append(errs, field.Required(p.Child("resource", "kind"), ""))
		}
		if b.Resource.Name == "" {
			errs = append(errs, field.Required(p.Child("resource", "name"), ""))
		}
		return errs
	case b.Service == nil:
		return append(errs, field.Required(p, "resource or service must be specified"))
	}
	sp := p.Child("service")
	if b.Service.Name == "" {
		errs = append(errs, field.Required(sp.Child("name"), ""))
	} else {
		for _, msg := range apimachineryvalidation.NameIsDNS1035Label(b.Service.Name, false) {
			errs = append(errs, field.Invalid(sp.Child("name"), b.Service.Name, msg))
		}
	}
	port := b.Service.Port
	pp := sp.Child("port")
	switch {
	case port.Name != "" && port.Number != 0:
		errs = append(errs, field.Invalid(pp, port.Name, "cannot set both port name & port number"))
	case port.Name != "":
		for _, msg := range validation.IsValidPortName(port.Name) {
			errs = append(errs, field.Invalid(pp.Child("name"), port.Name, msg))
		}
	case port.Number != 0:
		for _, msg := range validation.IsValidPortNum(int(port.Number)) {
			errs = append(errs, field.Invalid(pp.Child("number"), port.Number, msg))
		}
	default:
		errs = append(errs, field.Required(pp, "port name or number is required"))
	}
	return errs
}

func ingressClasses() *registry.Resource {
	return &registry.Resource{
		GroupVersion: networkingv1.SchemeGroupVersion, Resource: "ingressclasses", Singular: "ingressclass", Kind: "IngressClass",
		ListKind: "IngressClassList",
		New:      func() runtime.Object { return &networkingv1.IngressClass{} },
		NewList:  func() runtime.Object { return &networkingv1.IngressClassList{} },
		Default: func(obj runtime.Object) {
			if c, ok := obj.(*networkingv1.IngressClass); ok && c.Spec.Parameters != nil && c.Spec.Parameters.Scope == nil {
				scope := networkingv1.IngressClassParametersReferenceScopeCluster
				c.Spec.Parameters.Scope = &scope
			}
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			c := obj.(*networkingv1.IngressClass)
			p := field.NewPath("spec")
			var errs field.ErrorList
			if c.Spec.Controller == "" {
				errs = append(errs, field.Required(p.Child("controller"), ""))
			} else {
				if len(c.Spec.Controller) > 250 {
					errs = append(errs, field.TooLong(p.Child("controller"), "", 250))
				}
				errs = append(errs, validation.IsDomainPrefixedPath(p.Child("controller"), c.Spec.Controller)...)
			}
			if par := c.Spec.Parameters; par != nil {
				pp := p.Child("parameters")
				if par.Kind == "" {
					errs = append(errs, field.Required(pp.Child("kind"), ""))
				}
				if par.Name == "" {
					errs = append(errs, field.Required(pp.Child("name"), ""))
				}
				if par.Scope != nil {
					switch *par.Scope {
					case networkingv1.IngressClassParametersReferenceScopeCluster:
						if par.Namespace != nil {
							errs = append(errs, field.Forbidden(pp.Child("namespace"), "`parameters.scope` is set to 'Cluster'"))
						}
					case networkingv1.IngressClassParametersReferenceScopeNamespace:
						if par.Namespace == nil {
							errs = append(errs, field.Required(pp.Child("namespace"), "`parameters.scope` is set to 'Namespace'"))
						}
					default:
						errs = append(errs, field.NotSupported(pp.Child("scope"), *par.Scope, []string{
							networkingv1.IngressClassParametersReferenceScopeCluster, networkingv1.IngressClassParametersReferenceScopeNamespace}))
					}
				}
			}
			return errs
		},
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			return apimachineryvalidation.ValidateImmutableField(obj.(*networkingv1.IngressClass).Spec.Controller,
				old.(*networkingv1.IngressClass).Spec.Controller, field.NewPath("spec", "controller"))
		},
		TableColumns: []metav1.TableColumnDefinition{
			printing.NameColumn(),
			printing.Column("Controller", "string", "Controller that is responsible for handling this class"),
			printing.Column("Parameters", "string", "A reference to a resource with additional parameters"),
			printing.AgeColumn(),
		},
		TableRow: func(obj runtime.Object) []interface{} {
			c := obj.(*networkingv1.IngressClass)
			params := "<none>"
			if par := c.Spec.Parameters; par != nil {
				params = par.Kind
				if par.APIGroup != nil {
					params += "." + *par.APIGroup
				}
				params += "/" + par.Name
			}
			return []interface{}{c.Name, c.Spec.Controller, params, printing.Age(c.CreationTimestamp)}
		},
	}
}

func networkPolicies() *registry.Resource {
	return &registry.Resource{
		GroupVersion: networkingv1.SchemeGroupVersion, Resource: "networkpolicies", Singular: "networkpolicy", Kind: "NetworkPolicy",
		ListKind: "NetworkPolicyList", Namespaced: true, ShortNames: []string{"netpol"},
		New:     func() runtime.Object { return &networkingv1.NetworkPolicy{} },
		NewList: func() runtime.Object { return &networkingv1.NetworkPolicyList{} },
		Default: func(obj runtime.Object) {
			np, ok := obj.(*networkingv1.NetworkPolicy)
			if !ok {
				return
			}
			tcp := corev1.ProtocolTCP
			for i := range np.Spec.Ingress {
				for j := range np.Spec.Ingress[i].Ports {
					if np.Spec.Ingress[i].Ports[j].Protocol == nil {
						np.Spec.Ingress[i].Ports[j].Protocol = &tcp
					}
				}
			}
			for i := range np.Spec.Egress {
				for j := range np.Spec.Egress[i].Ports {
					if np.Spec.Egress[i].Ports[j].Protocol == nil {
						np.Spec.Egress[i].Ports[j].Protocol = &tcp
					}
				}
			}
			if len(np.Spec.PolicyTypes) == 0 {
				np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
				if len(np.Spec.Egress) != 0 {
					np.Spec.PolicyTypes = append(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
				}
			}
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			return validateNetworkPolicy(&obj.(*networkingv1.NetworkPolicy).Spec)
		},
		TableColumns: []metav1.TableColumnDefinition{
			printing.NameColumn(),
			printing.Column("Pod-Selector", "string", "Selects the pods to which this NetworkPolicy object applies."),
			printing.AgeColumn(),
		},
		TableRow: func(obj runtime.Object) []interface{} {
			np := obj.(*networkingv1.NetworkPolicy)
			return []interface{}{np.Name, metav1.FormatLabelSelector(&np.Spec.PodSelector), printing.Age(np.CreationTimestamp)}
		},
	}
}

func validateNetworkPolicy(s *networkingv1.NetworkPolicySpec) field.ErrorList {
	p := field.NewPath("spec")
	opts := metav1validation.LabelSelectorValidationOptions{}
	errs := metav1validation.ValidateLabelSelector(&s.PodSelector, opts, p.Child("podSelector"))
	for i, r := range s.Ingress {
		rp := p.Child("ingress").Index(i)
		errs = append(errs, validatePorts(r.Ports, rp.Child("ports"))...)
		errs = append(errs, validatePeers(r.From, rp.Child("from"))...)
	}
	for i, r := range s.Egress {
		rp := p.Child("egress").Index(i)
		errs = append(errs, validatePorts(r.Ports, rp.Child("ports"))...)
		errs = append(errs, validatePeers(r.To, rp.Child("to"))...)
	}
	if len(s.PolicyTypes) > 2 {
		errs = append(errs, field.Invalid(p.Child("policyTypes"), s.PolicyTypes, "may not specify more than two policyTypes"))
	}
	for i, t := range s.PolicyTypes {
		if t != networkingv1.PolicyTypeIngress && t != networkingv1.PolicyTypeEgress {
			errs = append(errs, field.NotSupported(p.Child("policyTypes").Index(i), t,
				[]string{string(networkingv1.PolicyTypeIngress), string(networkingv1.PolicyTypeEgress)}))
		}
	}
	return errs
}

func validatePorts(ports []networkingv1.NetworkPolicyPort, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, port := range ports {
		pp := p.Index(i)
		if port.Protocol != nil {
			switch *port.Protocol {
			case corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP:
			default:
				errs = append(errs, field.NotSupported(pp.Child("protocol"), *port.Protocol,
					[]string{string(corev1.ProtocolTCP), string(corev1.ProtocolUDP), string(corev1.ProtocolSCTP)}))
			}
		}
		if port.Port == nil {
			if port.EndPort != nil {
				errs = append(errs, field.Forbidden(pp.Child("endPort"), "may not be specified when `port` is not specified"))
			}
			continue
		}
		if port.Port.Type == intstr.Int {
			for _, msg := range validation.IsValidPortNum(port.Port.IntValue()) {
				errs = append(errs, field.Invalid(pp.Child("port"), port.Port.IntVal, msg))
			}
			if port.EndPort != nil {
				if *port.EndPort < port.Port.IntVal {
					errs = append(errs, field.Invalid(pp.Child("endPort"), *port.EndPort, "must be greater than or equal to `port`"))
				}
				for _, msg := range validation.IsValidPortNum(int(*port.EndPort)) {
					errs = append(errs, field.Invalid(pp.Child("endPort"), *port.EndPort, msg))
				}
			}
		} else {
			if port.EndPort != nil {
				errs = append(errs, field.Forbidden(pp.Child("endPort"), "may not be specified when `port` is non-numeric"))
			}
			for _, msg := range validation.IsValidPortName(port.Port.StrVal) {
				errs = append(errs, field.Invalid(pp.Child("port"), port.Port.StrVal, msg))
			}
		}
	}
	return errs
}

func validatePeers(peers []networkingv1.NetworkPolicyPeer, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	opts := metav1validation.LabelSelectorValidationOptions{}
	for i, peer := range peers {
		pp := p.Index(i)
		n := 0
		if peer.PodSelector != nil {
			n++
			errs = append(errs, metav1validation.ValidateLabelSelector(peer.PodSelector, opts, pp.Child("podSelector"))...)
		}
		if peer.NamespaceSelector != nil {
			n++
			errs = append(errs, metav1validation.ValidateLabelSelector(peer.NamespaceSelector, opts, pp.Child("namespaceSelector"))...)
		}
		if peer.IPBlock != nil {
			if n > 0 {
				errs = append(errs, field.Forbidden(pp, "may not specify both ipBlock and another peer"))
			}
			n++
			bp := pp.Child("ipBlock")
			cidr, err := netip.ParsePrefix(peer.IPBlock.CIDR)
			if peer.IPBlock.CIDR == "" {
				errs = append(errs, field.Required(bp.Child("cidr"), ""))
			} else if err != nil {
				errs = append(errs, field.Invalid(bp.Child("cidr"), peer.IPBlock.CIDR, "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"))
			}
			for j, ex := range peer.IPBlock.Except {
				exc, err := netip.ParsePrefix(ex)
				switch {
				case err != nil:
					errs = append(errs, field.Invalid(bp.Child("except").Index(j), ex, "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"))
				case cidr.IsValid() && (!cidr.Contains(exc.Addr()) || exc.Bits() < cidr.Bits()):
					errs = append(errs, field.Invalid(bp.Child("except").Index(j), ex, "must be a strict subset of `cidr`"))
				}
			}
		}
		if n == 0 {
			errs = append(errs, field.Required(pp, "must specify a peer"))
		}
	}
	return errs
}
