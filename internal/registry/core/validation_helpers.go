package core

import (
	"fmt"
	"reflect"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// dns1123Label reports each reason value is not a DNS-1123 label as an
// Invalid error at fldPath, or Required when empty.
func dns1123Label(value string, fldPath *field.Path) field.ErrorList {
	if value == "" {
		return field.ErrorList{field.Required(fldPath, "")}
	}
	return invalidMsgs(fldPath, value, validation.IsDNS1123Label(value))
}

// dns1123Subdomain is dns1123Label for DNS-1123 subdomains.
func dns1123Subdomain(value string, fldPath *field.Path) field.ErrorList {
	if value == "" {
		return field.ErrorList{field.Required(fldPath, "")}
	}
	return invalidMsgs(fldPath, value, validation.IsDNS1123Subdomain(value))
}

func invalidMsgs(fldPath *field.Path, value interface{}, msgs []string) field.ErrorList {
	var errs field.ErrorList
	for _, m := range msgs {
		errs = append(errs, field.Invalid(fldPath, value, m))
	}
	return errs
}

const isNegativeErrorMsg = "must be greater than or equal to 0"
const isNotPositiveErrorMsg = "must be greater than zero"

func nonNegative(v int64, fldPath *field.Path) field.ErrorList {
	if v < 0 {
		return field.ErrorList{field.Invalid(fldPath, v, isNegativeErrorMsg)}
	}
	return nil
}

func positive(v int64, fldPath *field.Path) field.ErrorList {
	if v <= 0 {
		return field.ErrorList{field.Invalid(fldPath, v, isNotPositiveErrorMsg)}
	}
	return nil
}

func portNum(port int32, fldPath *field.Path) field.ErrorList {
	return invalidMsgs(fldPath, port, validation.IsValidPortNum(int(port)))
}

// portNumOrName validates an intstr port reference (probes, targetPort).
func portNumOrName(p intstr.IntOrString, fldPath *field.Path) field.ErrorList {
	switch p.Type {
	case intstr.Int:
		return invalidMsgs(fldPath, p.IntValue(), validation.IsValidPortNum(p.IntValue()))
	case intstr.String:
		return invalidMsgs(fldPath, p.StrVal, validation.IsValidPortName(p.StrVal))
	}
	return field.ErrorList{field.InternalError(fldPath, fmt.Errorf("unknown type %v", p.Type))}
}

var supportedPortProtocols = []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP}

func portProtocol(p corev1.Protocol, fldPath *field.Path) field.ErrorList {
	if p == "" {
		return field.ErrorList{field.Required(fldPath, "")}
	}
	for _, s := range supportedPortProtocols {
		if p == s {
			return nil
		}
	}
	return field.ErrorList{field.NotSupported(fldPath, p, protocolStrings(supportedPortProtocols))}
}

func protocolStrings(ps []corev1.Protocol) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = string(p)
	}
	return out
}

// oneOf returns a NotSupported error unless value is one of allowed (or
// Required when empty).
func oneOf[T ~string](value T, allowed []T, fldPath *field.Path) field.ErrorList {
	if value == "" {
		return field.ErrorList{field.Required(fldPath, "")}
	}
	for _, a := range allowed {
		if value == a {
			return nil
		}
	}
	strs := make([]string, len(allowed))
	for i, a := range allowed {
		strs[i] = string(a)
	}
	return field.ErrorList{field.NotSupported(fldPath, value, strs)}
}

// Standard container resource names; anything else must be qualified
// (extended resources, hugepages-<size>).
var standardContainerResources = map[corev1.ResourceName]bool{
	corev1.ResourceCPU: true, corev1.ResourceMemory: true, corev1.ResourceEphemeralStorage: true,
}

func isHugePages(name corev1.ResourceName) bool {
	return strings.HasPrefix(string(name), corev1.ResourceHugePagesPrefix)
}

// isNativeResource: unqualified or in the kubernetes.io domain.
func isNativeResource(name corev1.ResourceName) bool {
	return !strings.Contains(string(name), "/") || strings.Contains(string(name), "kubernetes.io/")
}

func validateContainerResourceName(name corev1.ResourceName, fldPath *field.Path) field.ErrorList {
	errs := validateResourceName(name, fldPath)
	if len(strings.Split(string(name), "/")) == 1 && !standardContainerResources[name] && !isHugePages(name) {
		errs = append(errs, field.Invalid(fldPath, name, "must be a standard resource for containers"))
	}
	return errs
}

func validateResourceName(name corev1.ResourceName, fldPath *field.Path) field.ErrorList {
	return invalidMsgs(fldPath, name, validation.IsQualifiedName(string(name)))
}

func nonNegativeQuantity(q resource.Quantity, fldPath *field.Path) field.ErrorList {
	if q.Sign() < 0 {
		return field.ErrorList{field.Invalid(fldPath, q.String(), isNegativeErrorMsg)}
	}
	return nil
}

// validateResourceRequirements checks names, signs, requests <= limits and,
// for extended resources and hugepages, the rules on requests vs limits.
func validateResourceRequirements(r *corev1.ResourceRequirements, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	limPath, reqPath := fldPath.Child("limits"), fldPath.Child("requests")
	for _, name := range sortedResourceNames(r.Limits) {
		q := r.Limits[name]
		p := limPath.Key(string(name))
		errs = append(errs, validateContainerResourceName(name, p)...)
		errs = append(errs, nonNegativeQuantity(q, p)...)
	}
	for _, name := range sortedResourceNames(r.Requests) {
		q := r.Requests[name]
		p := reqPath.Key(string(name))
		errs = append(errs, validateContainerResourceName(name, p)...)
		errs = append(errs, nonNegativeQuantity(q, p)...)
		lim, hasLimit := r.Limits[name]
		if hasLimit && q.Cmp(lim) > 0 {
			errs = append(errs, field.Invalid(p, q.String(), fmt.Sprintf("must be less than or equal to %s limit of %s", name, lim.String())))
		}
		if !isNativeResource(name) || isHugePages(name) {
			if !hasLimit {
				errs = append(errs, field.Required(limPath, "Limit must be set for non overcommitable resources"))
			} else if q.Cmp(lim) != 0 {
				errs = append(errs, field.Invalid(p, q.String(), fmt.Sprintf("must be equal to %s limit of %s", name, lim.String())))
			}
		}
	}
	return errs
}

func sortedResourceNames(l corev1.ResourceList) []corev1.ResourceName {
	out := make([]corev1.ResourceName, 0, len(l))
	for k := range l {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// setPointerFields returns the JSON names of the non-nil pointer fields of
// a struct (used to count "exactly one of" unions such as VolumeSource).
func setPointerFields(v interface{}) []string {
	rv := reflect.Indirect(reflect.ValueOf(v))
	rt := rv.Type()
	var names []string
	for i := 0; i < rt.NumField(); i++ {
		f := rv.Field(i)
		if f.Kind() != reflect.Pointer || f.IsNil() {
			continue
		}
		name := strings.Split(rt.Field(i).Tag.Get("json"), ",")[0]
		if name == "" {
			name = rt.Field(i).Name
		}
		names = append(names, name)
	}
	return names
}

// validateLocalDescendingPath: relative, no ".." element.
func validateLocalDescendingPath(p string, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	if strings.HasPrefix(p, "/") {
		errs = append(errs, field.Invalid(fldPath, p, "must be a relative path"))
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			errs = append(errs, field.Invalid(fldPath, p, "must not contain '..'"))
			break
		}
	}
	return errs
}

func validateLocalNonReservedPath(p string, fldPath *field.Path) field.ErrorList {
	errs := validateLocalDescendingPath(p, fldPath)
	if strings.HasPrefix(p, "..") {
		errs = append(errs, field.Invalid(fldPath, p, "must not start with '..'"))
	}
	return errs
}
