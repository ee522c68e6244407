package core

import (
	"fmt"
	"net"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"skiff.dev/skiff/internal/registry"
)

// Node port range the API accepts, as upstream's default
// --service-node-port-range.
const (
	nodePortMin = 30000
	nodePortMax = 32767
	// defaultClientIPTimeout is upstream's default ClientIP affinity
	// timeout (3 hours).
	defaultClientIPTimeout = int32(10800)
	maxClientIPTimeout     = 86400
)

func serviceResource() *registry.Resource {
	return &registry.Resource{
		GroupVersion: corev1.SchemeGroupVersion,
		Resource:     "services", Singular: "service", Kind: "Service", ListKind: "ServiceList",
		Namespaced: true, ShortNames: []string{"svc"}, Categories: []string{"all"},
		New:     func() runtime.Object { return &corev1.Service{} },
		NewList: func() runtime.Object { return &corev1.ServiceList{} },
		Default: func(obj runtime.Object) { defaultService(obj.(*corev1.Service)) },
		PrepareForCreate: func(obj runtime.Object) {
			svc := obj.(*corev1.Service)
			svc.Status = corev1.ServiceStatus{}
			defaultServiceIPFamilies(svc)
		},
		PrepareForUpdate: func(obj, old runtime.Object) {
			svc, oldSvc := obj.(*corev1.Service), old.(*corev1.Service)
			svc.Status = oldSvc.Status
			// A type change to/from ExternalName or a re-apply without
			// clusterIP keeps the allocated values.
			if svc.Spec.Type != corev1.ServiceTypeExternalName && oldSvc.Spec.Type != corev1.ServiceTypeExternalName {
				if svc.Spec.ClusterIP == "" {
					svc.Spec.ClusterIP = oldSvc.Spec.ClusterIP
				}
				if len(svc.Spec.ClusterIPs) == 0 {
					svc.Spec.ClusterIPs = oldSvc.Spec.ClusterIPs
				}
				if svc.Spec.IPFamilyPolicy == nil {
					svc.Spec.IPFamilyPolicy = oldSvc.Spec.IPFamilyPolicy
				}
				if len(svc.Spec.IPFamilies) == 0 {
					svc.Spec.IPFamilies = oldSvc.Spec.IPFamilies
				}
			}
		},
		PrepareForStatusUpdate: func(obj, old runtime.Object) {
			obj.(*corev1.Service).Spec = old.(*corev1.Service).Spec
		},
		Validate: func(obj runtime.Object) field.ErrorList { return validateService(obj.(*corev1.Service)) },
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			return validateServiceUpdate(obj.(*corev1.Service), old.(*corev1.Service))
		},
		ValidateStatusUpdate: func(obj, old runtime.Object) field.ErrorList {
			return validateServiceStatus(obj.(*corev1.Service))
		},
		Subresources: []string{"status", "proxy"},
		TableColumns: serviceColumns,
		TableRow:     func(obj runtime.Object) []interface{} { return serviceRow(obj.(*corev1.Service)) },
		SelectableFields: func(obj runtime.Object) fields.Set {
			svc := obj.(*corev1.Service)
			return fields.Set{"spec.clusterIP": svc.Spec.ClusterIP, "spec.type": string(svc.Spec.Type)}
		},
	}
}

func defaultService(svc *corev1.Service) {
	s := &svc.Spec
	if s.SessionAffinity == "" {
		s.SessionAffinity = corev1.ServiceAffinityNone
	}
	if s.SessionAffinity == corev1.ServiceAffinityNone {
		s.SessionAffinityConfig = nil
	}
	if s.SessionAffinity == corev1.ServiceAffinityClientIP &&
		(s.SessionAffinityConfig == nil || s.SessionAffinityConfig.ClientIP == nil || s.SessionAffinityConfig.ClientIP.TimeoutSeconds == nil) {
		t := defaultClientIPTimeout
		s.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: &t}}
	}
	if s.Type == "" {
		s.Type = corev1.ServiceTypeClusterIP
	}
	for i := range s.Ports {
		p := &s.Ports[i]
		if p.Protocol == "" {
			p.Protocol = corev1.ProtocolTCP
		}
		if p.TargetPort == (intstr.IntOrString{}) {
			p.TargetPort = intstr.FromInt32(p.Port)
		}
	}
	if (s.Type == corev1.ServiceTypeNodePort || s.Type == corev1.ServiceTypeLoadBalancer) && s.ExternalTrafficPolicy == "" {
		s.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
	}
	if s.InternalTrafficPolicy == nil && s.Type != corev1.ServiceTypeExternalName {
		p := corev1.ServiceInternalTrafficPolicyCluster
		s.InternalTrafficPolicy = &p
	}
	if s.Type == corev1.ServiceTypeLoadBalancer && s.AllocateLoadBalancerNodePorts == nil {
		v := true
		s.AllocateLoadBalancerNodePorts = &v
	}
}

// defaultServiceIPFamilies sets the families upstream's service REST sets
// in a single-stack IPv4 cluster: SingleStack/[IPv4], except headless
// services without selector which get RequireDualStack. ClusterIP
// allocation itself belongs to the API server.
func defaultServiceIPFamilies(svc *corev1.Service) {
	s := &svc.Spec
	if s.Type == corev1.ServiceTypeExternalName {
		return
	}
	if s.IPFamilyPolicy == nil {
		p := corev1.IPFamilyPolicySingleStack
		if s.ClusterIP == corev1.ClusterIPNone && len(s.Selector) == 0 {
			p = corev1.IPFamilyPolicyRequireDualStack
		}
		s.IPFamilyPolicy = &p
	}
	if len(s.IPFamilies) == 0 {
		s.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol}
	}
}

var (
	supportedServiceTypes = []corev1.ServiceType{corev1.ServiceTypeClusterIP, corev1.ServiceTypeExternalName,
		corev1.ServiceTypeLoadBalancer, corev1.ServiceTypeNodePort}
	supportedAffinities = []corev1.ServiceAffinity{corev1.ServiceAffinityClientIP, corev1.ServiceAffinityNone}
)

func validateService(svc *corev1.Service) field.ErrorList {
	var errs field.ErrorList
	s := &svc.Spec
	specPath := field.NewPath("spec")
	headless := s.ClusterIP == corev1.ClusterIPNone

	errs = append(errs, oneOf(s.Type, supportedServiceTypes, specPath.Child("type"))...)
	if len(s.Ports) == 0 && !headless && s.Type != corev1.ServiceTypeExternalName {
		errs = append(errs, field.Required(specPath.Child("ports"), ""))
	}
	if s.Type == corev1.ServiceTypeExternalName {
		if s.ClusterIP != "" {
			errs = append(errs, field.Forbidden(specPath.Child("clusterIP"), "may not be set for ExternalName services"))
		}
		cname := strings.TrimSuffix(s.ExternalName, ".")
		if cname == "" {
			errs = append(errs, field.Required(specPath.Child("externalName"), ""))
		} else {
			errs = append(errs, invalidMsgs(specPath.Child("externalName"), s.ExternalName, validation.IsDNS1123Subdomain(cname))...)
		}
	}
	if s.ClusterIP != "" && !headless && net.ParseIP(s.ClusterIP) == nil {
		errs = append(errs, field.Invalid(specPath.Child("clusterIP"), s.ClusterIP, "must be empty, 'None', or a valid IP address"))
	}
	for i, ip := range s.ClusterIPs {
		if ip != corev1.ClusterIPNone && net.ParseIP(ip) == nil {
			errs = append(errs, field.Invalid(specPath.Child("clusterIPs").Index(i), ip, "must be empty, 'None', or a valid IP address"))
		}
	}
	if len(s.ClusterIPs) > 0 && s.ClusterIP != "" && s.ClusterIPs[0] != s.ClusterIP {
		errs = append(errs, field.Invalid(specPath.Child("clusterIPs"), s.ClusterIPs, "first value must match `clusterIP`"))
	}

	names := sets.New[string]()
	type portKey struct {
		port     int32
		protocol corev1.Protocol
	}
	seen := map[portKey]bool{}
	for i := range s.Ports {
		p := &s.Ports[i]
		pp := specPath.Child("ports").Index(i)
		if len(s.Ports) > 1 && p.Name == "" {
			errs = append(errs, field.Required(pp.Child("name"), ""))
		} else if p.Name != "" {
			errs = append(errs, invalidMsgs(pp.Child("name"), p.Name, validation.IsDNS1123Label(p.Name))...)
			if names.Has(p.Name) {
				errs = append(errs, field.Duplicate(pp.Child("name"), p.Name))
			}
			names.Insert(p.Name)
		}
		errs = append(errs, portNum(p.Port, pp.Child("port"))...)
		errs = append(errs, portProtocol(p.Protocol, pp.Child("protocol"))...)
		errs = append(errs, portNumOrName(p.TargetPort, pp.Child("targetPort"))...)
		if p.AppProtocol != nil {
			errs = append(errs, invalidMsgs(pp.Child("appProtocol"), *p.AppProtocol, validation.IsQualifiedName(*p.AppProtocol))...)
		}
		if p.NodePort != 0 {
			if s.Type == corev1.ServiceTypeClusterIP {
				errs = append(errs, field.Forbidden(pp.Child("nodePort"), "may not be used when `type` is 'ClusterIP'"))
			} else if p.NodePort < nodePortMin || p.NodePort > nodePortMax {
				errs = append(errs, field.Invalid(pp.Child("nodePort"), p.NodePort,
					fmt.Sprintf("provided port is not in the valid range. The range of valid ports is %d-%d", nodePortMin, nodePortMax)))
			}
		}
		k := portKey{p.Port, p.Protocol}
		if seen[k] {
			errs = append(errs, field.Duplicate(pp, *p))
		}
		seen[k] = true
	}

	errs = append(errs, metav1validation.ValidateLabels(s.Selector, specPath.Child("selector"))...)
	errs = append(errs, oneOf(s.SessionAffinity, supportedAffinities, specPath.Child("sessionAffinity"))...)
	if s.SessionAffinity == corev1.ServiceAffinityClientIP {
		cp := specPath.Child("sessionAffinityConfig", "clientIP", "timeoutSeconds")
		if c := s.SessionAffinityConfig; c == nil || c.ClientIP == nil || c.ClientIP.TimeoutSeconds == nil {
			errs = append(errs, field.Required(cp, "when `sessionAffinity` is ClientIP"))
		} else if t := *c.ClientIP.TimeoutSeconds; t <= 0 || t > maxClientIPTimeout {
			errs = append(errs, field.Invalid(cp, t, fmt.Sprintf("must be greater than 0 and less than %d", maxClientIPTimeout)))
		}
	} else if s.SessionAffinityConfig != nil {
		errs = append(errs, field.Invalid(specPath.Child("sessionAffinityConfig"), s.SessionAffinityConfig,
			fmt.Sprintf("must not be set when `sessionAffinity` is %s", s.SessionAffinity)))
	}
	nodePorts := s.Type == corev1.ServiceTypeNodePort || s.Type == corev1.ServiceTypeLoadBalancer
	if s.ExternalTrafficPolicy != "" {
		if !nodePorts {
			errs = append(errs, field.Invalid(specPath.Child("externalTrafficPolicy"), s.ExternalTrafficPolicy,
				"may only be set when `type` is 'NodePort' or 'LoadBalancer'"))
		} else {
			errs = append(errs, oneOf(s.ExternalTrafficPolicy, []corev1.ServiceExternalTrafficPolicy{
				corev1.ServiceExternalTrafficPolicyCluster, corev1.ServiceExternalTrafficPolicyLocal}, specPath.Child("externalTrafficPolicy"))...)
		}
	} else if nodePorts {
		errs = append(errs, field.Required(specPath.Child("externalTrafficPolicy"), ""))
	}
	if s.InternalTrafficPolicy != nil {
		errs = append(errs, oneOf(*s.InternalTrafficPolicy, []corev1.ServiceInternalTrafficPolicy{
			corev1.ServiceInternalTrafficPolicyCluster, corev1.ServiceInternalTrafficPolicyLocal}, specPath.Child("internalTrafficPolicy"))...)
	}
	for i, ip := range s.ExternalIPs {
		if net.ParseIP(ip) == nil {
			errs = append(errs, field.Invalid(specPath.Child("externalIPs").Index(i), ip, "must be a valid IP address"))
		}
	}
	if s.Type != corev1.ServiceTypeLoadBalancer && len(s.LoadBalancerSourceRanges) > 0 {
		errs = append(errs, field.Forbidden(specPath.Child("loadBalancerSourceRanges"), "may only be used when `type` is 'LoadBalancer'"))
	}
	for i, r := range s.LoadBalancerSourceRanges {
		if _, _, err := net.ParseCIDR(strings.TrimSpace(r)); err != nil {
			errs = append(errs, field.Invalid(specPath.Child("loadBalancerSourceRanges").Index(i), r, "must be a list of IP ranges. For example, 10.240.0.0/24,10.250.0.0/24 "))
		}
	}
	return errs
}

func validateServiceUpdate(svc, old *corev1.Service) field.ErrorList {
	var errs field.ErrorList
	specPath := field.NewPath("spec")
	if svc.Spec.Type != corev1.ServiceTypeExternalName && old.Spec.Type != corev1.ServiceTypeExternalName && old.Spec.ClusterIP != "" {
		errs = append(errs, apivalidation.ValidateImmutableField(svc.Spec.ClusterIP, old.Spec.ClusterIP, specPath.Child("clusterIP"))...)
	}
	return errs
}

func validateServiceStatus(svc *corev1.Service) field.ErrorList {
	var errs field.ErrorList
	p := field.NewPath("status", "loadBalancer", "ingress")
	for i, ing := range svc.Status.LoadBalancer.Ingress {
		if ing.IP != "" && net.ParseIP(ing.IP) == nil {
			errs = append(errs, field.Invalid(p.Index(i).Child("ip"), ing.IP, "must be a valid IP address"))
		}
		if ing.Hostname != "" {
			errs = append(errs, invalidMsgs(p.Index(i).Child("hostname"), ing.Hostname, validation.IsDNS1123Subdomain(ing.Hostname))...)
		}
	}
	return errs
}

var serviceColumns = []metav1.TableColumnDefinition{
	nameColumn,
	{Name: "Type", Type: "string", Description: "The type of service."},
	{Name: "Cluster-IP", Type: "string", Description: "The cluster ip."},
	{Name: "External-IP", Type: "string", Description: "The external ip."},
	{Name: "Port(s)", Type: "string", Description: "The ports."},
	ageColumn,
	{Name: "Selector", Type: "string", Priority: 1, Description: corev1.ServiceSpec{}.SwaggerDoc()["selector"]},
}

func serviceRow(svc *corev1.Service) []interface{} {
	return []interface{}{svc.Name, string(svc.Spec.Type), orNone(svc.Spec.ClusterIP), serviceExternalIP(svc),
		orNone(servicePorts(svc.Spec.Ports)), age(svc.CreationTimestamp), orNone(labels.FormatLabels(svc.Spec.Selector))}
}

func servicePorts(ports []corev1.ServicePort) string {
	out := make([]string, 0, len(ports))
	for _, p := range ports {
		if p.NodePort > 0 {
			out = append(out, fmt.Sprintf("%d:%d/%s", p.Port, p.NodePort, p.Protocol))
		} else {
			out = append(out, fmt.Sprintf("%d/%s", p.Port, p.Protocol))
		}
	}
	return strings.Join(out, ",")
}

func loadBalancerIngress(st corev1.LoadBalancerStatus) string {
	var out []string
	for _, ing := range st.Ingress {
		if ing.IP != "" {
			out = append(out, ing.IP)
		} else if ing.Hostname != "" {
			out = append(out, ing.Hostname)
		}
	}
	return strings.Join(out, ",")
}

func serviceExternalIP(svc *corev1.Service) string {
	switch svc.Spec.Type {
	case corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort:
		if len(svc.Spec.ExternalIPs) > 0 {
			return strings.Join(svc.Spec.ExternalIPs, ",")
		}
		return "<none>"
	case corev1.ServiceTypeLoadBalancer:
		lb := loadBalancerIngress(svc.Status.LoadBalancer)
		if len(svc.Spec.ExternalIPs) > 0 {
			ips := append([]string(nil), svc.Spec.ExternalIPs...)
			if lb != "" {
				ips = append(ips, lb)
			}
			return strings.Join(ips, ",")
		}
		if lb != "" {
			return lb
		}
		return "<pending>"
	case corev1.ServiceTypeExternalName:
		return svc.Spec.ExternalName
	}
	return "<unknown>"
}

// sortedKeys is used by several printers for stable output.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
