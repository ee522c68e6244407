package core

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"skiff.dev/skiff/internal/registry"
)

func serviceAccountResource() *registry.Resource {
	return &registry.Resource{
		GroupVersion: corev1.SchemeGroupVersion,
		Resource:     "serviceaccounts", Singular: "serviceaccount", Kind: "ServiceAccount", ListKind: "ServiceAccountList",
		Namespaced: true, ShortNames: []string{"sa"},
		New:     func() runtime.Object { return &corev1.ServiceAccount{} },
		NewList: func() runtime.Object { return &corev1.ServiceAccountList{} },
		Validate: func(obj runtime.Object) field.ErrorList {
			sa := obj.(*corev1.ServiceAccount)
			var errs field.ErrorList
			for i, ref := range sa.ImagePullSecrets {
				if ref.Name == "" {
					errs = append(errs, field.Required(field.NewPath("imagePullSecrets").Index(i).Child("name"), ""))
				}
			}
			return errs
		},
		Subresources: []string{"token"},
		TableColumns: []metav1.TableColumnDefinition{
			nameColumn,
			{Name: "Secrets", Type: "string", Description: corev1.ServiceAccount{}.SwaggerDoc()["secrets"]},
			ageColumn,
		},
		TableRow: func(obj runtime.Object) []interface{} {
			sa := obj.(*corev1.ServiceAccount)
			return []interface{}{sa.Name, int64(len(sa.Secrets)), age(sa.CreationTimestamp)}
		},
	}
}

func endpointsResource() *registry.Resource {
	return &registry.Resource{
		GroupVersion: corev1.SchemeGroupVersion,
		Resource:     "endpoints", Singular: "endpoints", Kind: "Endpoints", ListKind: "EndpointsList",
		Namespaced: true, ShortNames: []string{"ep"},
		New:     func() runtime.Object { return &corev1.Endpoints{} },
		NewList: func() runtime.Object { return &corev1.EndpointsList{} },
		Default: func(obj runtime.Object) {
			ep := obj.(*corev1.Endpoints)
			for i := range ep.Subsets {
				for j := range ep.Subsets[i].Ports {
					if ep.Subsets[i].Ports[j].Protocol == "" {
						ep.Subsets[i].Ports[j].Protocol = corev1.ProtocolTCP
					}
				}
			}
		},
		Validate: func(obj runtime.Object) field.ErrorList { return validateEndpoints(obj.(*corev1.Endpoints)) },
		TableColumns: []metav1.TableColumnDefinition{
			nameColumn,
			{Name: "Endpoints", Type: "string", Description: corev1.Endpoints{}.SwaggerDoc()["subsets"]},
			ageColumn,
		},
		TableRow: func(obj runtime.Object) []interface{} {
			ep := obj.(*corev1.Endpoints)
			return []interface{}{ep.Name, formatEndpoints(ep), age(ep.CreationTimestamp)}
		},
	}
}

func validateEndpoints(ep *corev1.Endpoints) field.ErrorList {
	var errs field.ErrorList
	for i, ss := range ep.Subsets {
		sp := field.NewPath("subsets").Index(i)
		if len(ss.Addresses) == 0 && len(ss.NotReadyAddresses) == 0 {
			errs = append(errs, field.Required(sp, "must specify `addresses` or `notReadyAddresses`"))
		}
		for j, a := range ss.Addresses {
			errs = append(errs, validateEndpointAddress(a, sp.Child("addresses").Index(j))...)
		}
		for j, a := range ss.NotReadyAddresses {
			errs = append(errs, validateEndpointAddress(a, sp.Child("notReadyAddresses").Index(j))...)
		}
		for j, p := range ss.Ports {
			pp := sp.Child("ports").Index(j)
			if len(ss.Ports) > 1 && p.Name == "" {
				errs = append(errs, field.Required(pp.Child("name"), ""))
			} else if p.Name != "" {
				errs = append(errs, dns1123Label(p.Name, pp.Child("name"))...)
			}
			errs = append(errs, portNum(p.Port, pp.Child("port"))...)
			errs = append(errs, portProtocol(p.Protocol, pp.Child("protocol"))...)
		}
	}
	return errs
}

func validateEndpointAddress(a corev1.EndpointAddress, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	ip := net.ParseIP(a.IP)
	if ip == nil {
		return field.ErrorList{field.Invalid(fldPath.Child("ip"), a.IP, "must be a valid IP address")}
	}
	if ip.IsUnspecified() || ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() {
		errs = append(errs, field.Invalid(fldPath.Child("ip"), a.IP, "may not be unspecified, loopback or link-local"))
	}
	if a.Hostname != "" {
		errs = append(errs, dns1123Label(a.Hostname, fldPath.Child("hostname"))...)
	}
	if a.NodeName != nil && *a.NodeName != "" {
		errs = append(errs, dns1123Subdomain(*a.NodeName, fldPath.Child("nodeName"))...)
	}
	return errs
}

// formatEndpoints lists up to three ip:port pairs as kubectl does.
func formatEndpoints(ep *corev1.Endpoints) string {
	const max = 3
	var list []string
	count := 0
	for _, ss := range ep.Subsets {
		if len(ss.Ports) == 0 {
			for _, a := range ss.Addresses {
				if count < max {
					list = append(list, a.IP)
				}
				count++
			}
			continue
		}
		for _, p := range ss.Ports {
			for _, a := range ss.Addresses {
				if count < max {
					list = append(list, net.JoinHostPort(a.IP, strconv.Itoa(int(p.Port))))
				}
				count++
			}
		}
	}
	s := strings.Join(list, ",")
	if count > max {
		s += fmt.Sprintf(" + %d more...", count-max)
	}
	return orNone(s)
}
