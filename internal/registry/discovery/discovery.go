// Package discovery holds the registry descriptor for discovery.k8s.io/v1
// endpointslices.
//
// Contract: Resources returns the descriptor with upstream's defaulting
// (port name "" and protocol TCP), validation (supported, immutable
// addressType; 1-100 addresses per endpoint formatted for that type; port
// names and protocols) and the ADDRESSTYPE PORTS ENDPOINTS table.
package discovery

import (
	"net/netip"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"skiff.dev/skiff/internal/registry"
	"skiff.dev/skiff/internal/registry/printing"
)

const (
	maxAddresses = 100
	maxEndpoints = 1000
	maxPorts     = 20000
)

// Resources returns the discovery.k8s.io/v1 resources.
func Resources() []*registry.Resource {
	return []*registry.Resource{{
		GroupVersion: discoveryv1.SchemeGroupVersion, Resource: "endpointslices", Singular: "endpointslice", Kind: "EndpointSlice",
		ListKind: "EndpointSliceList", Namespaced: true,
		New:     func() runtime.Object { return &discoveryv1.EndpointSlice{} },
		NewList: func() runtime.Object { return &discoveryv1.EndpointSliceList{} },
		Default: func(obj runtime.Object) {
			s, ok := obj.(*discoveryv1.EndpointSlice)
			if !ok {
				return
			}
			for i := range s.Ports {
				if s.Ports[i].Name == nil {
					empty := ""
					s.Ports[i].Name = &empty
				}
				if s.Ports[i].Protocol == nil {
					tcp := corev1.ProtocolTCP
					s.Ports[i].Protocol = &tcp
				}
			}
		},
		Validate: func(obj runtime.Object) field.ErrorList { return validate(obj.(*discoveryv1.EndpointSlice)) },
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			return apimachineryvalidation.ValidateImmutableField(obj.(*discoveryv1.EndpointSlice).AddressType,
				old.(*discoveryv1.EndpointSlice).AddressType, field.NewPath("addressType"))
		},
		TableColumns: []metav1.TableColumnDefinition{
			printing.NameColumn(),
			printing.Column("AddressType", "string", "Type of address carried by this EndpointSlice"),
			printing.Column("Ports", "string", "Ports in this EndpointSlice"),
			printing.Column("Endpoints", "string", "Endpoints in this EndpointSlice"),
			printing.AgeColumn(),
		},
		TableRow: func(obj runtime.Object) []interface{} {
			s := obj.(*discoveryv1.EndpointSlice)
			var ports, addrs []string
			for _, p := range s.Ports {
				switch {
				case p.Port != nil:
					ports = append(ports, strconv.Itoa(int(*p.Port)))
				case p.Name != nil && *p.Name != "":
					ports = append(ports, *p.Name)
				default:
					ports = append(ports, "*")
				}
			}
			for _, e := range s.Endpoints {
				addrs = append(addrs, e.Addresses...)
			}
			return []interface{}{s.Name, string(s.AddressType), printing.ListWithMore(ports, 3), printing.ListWithMore(addrs, 3), printing.Age(s.CreationTimestamp)}
		},
	}}
}

func validate(s *discoveryv1.EndpointSlice) field.ErrorList {
	var errs field.ErrorList
	switch s.AddressType {
	case discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6, discoveryv1.AddressTypeFQDN:
	case "":
		errs = append(errs, field.Required(field.NewPath("addressType"), ""))
	default:
		errs = append(errs, field.NotSupported(field.NewPath("addressType"), s.AddressType, []string{
			string(discoveryv1.AddressTypeIPv4), string(discoveryv1.AddressTypeIPv6), string(discoveryv1.AddressTypeFQDN)}))
	}
	if len(s.Endpoints) > maxEndpoints {
		errs = append(errs, field.TooMany(field.NewPath("endpoints"), len(s.Endpoints), maxEndpoints))
	}
	for i, e := range s.Endpoints {
		ep := field.NewPath("endpoints").Index(i)
		ap := ep.Child("addresses")
		if len(e.Addresses) == 0 {
			errs = append(errs, field.Required(ap, "must contain at least 1 address"))
		} else if len(e.Addresses) > maxAddresses {
			errs = append(errs, field.TooMany(ap, len(e.Addresses), maxAddresses))
		}
		for j, a := range e.Addresses {
			switch s.AddressType {
			case discoveryv1.AddressTypeIPv4:
				if ip, err := netip.ParseAddr(a); err != nil || !ip.Is4() {
					errs = append(errs, field.Invalid(ap.Index(j), a, "must be a valid IPv4 address"))
				}
			case discoveryv1.AddressTypeIPv6:
				if ip, err := netip.ParseAddr(a); err != nil || !ip.Is6() {
					errs = append(errs, field.Invalid(ap.Index(j), a, "must be a valid IPv6 address"))
				}
			case discoveryv1.AddressTypeFQDN:
				errs = append(errs, validation.IsFullyQualifiedDomainName(ap.Index(j), a)...)
			}
		}
		if e.Hostname != nil {
			for _, msg := range validation.IsDNS1123Label(*e.Hostname) {
				errs = append(errs, field.Invalid(ep.Child("hostname"), *e.Hostname, msg))
			}
		}
		if e.NodeName != nil {
			for _, msg := range apimachineryvalidation.NameIsDNSSubdomain(*e.NodeName, false) {
				errs = append(errs, field.Invalid(ep.Child("nodeName"), *e.NodeName, msg))
			}
		}
	}
	if len(s.Ports) > maxPorts {
		errs = append(errs, field.TooMany(field.NewPath("ports"), len(s.Ports), maxPorts))
	}
	names := map[string]bool{}
	for i, p := range s.Ports {
		pp := field.NewPath("ports").Index(i)
		if p.Name != nil && *p.Name != "" {
			for _, msg := range validation.IsDNS1123Label(*p.Name) {
				errs = append(errs, field.Invalid(pp.Child("name"), *p.Name, msg))
			}
		}
		name := ""
		if p.Name != nil {
			name = *p.Name
		}
		if names[name] {
			errs = append(errs, field.Duplicate(pp.Child("name"), name))
		}
		names[name] = true
		if p.Protocol == nil {
			errs = append(errs, field.Required(pp.Child("protocol"), ""))
		} else if *p.Protocol != corev1.ProtocolTCP && *p.Protocol != corev1.ProtocolUDP && *p.Protocol != corev1.ProtocolSCTP {
			errs = append(errs, field.NotSupported(pp.Child("protocol"), *p.Protocol,
				[]string{string(corev1.ProtocolTCP), string(corev1.ProtocolUDP), string(corev1.ProtocolSCTP)}))
		}
		if p.Port != nil {
			for _, msg := range validation.IsInRange(int(*p.Port), 0, 65535) {
				errs = append(errs, field.Invalid(pp.Child("port"), *p.Port, msg))
			}
		}
	}
	return errs
}
