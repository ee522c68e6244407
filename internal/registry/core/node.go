package core

import (
	"fmt"
	"net"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"skiff.dev/skiff/internal/registry"
)

const (
	nodeRoleLabelPrefix = "node-role.kubernetes.io/"
	nodeLegacyRoleLabel = "kubernetes.io/role"
)

func nodeResource() *registry.Resource {
	return &registry.Resource{
		GroupVersion: corev1.SchemeGroupVersion,
		Resource:     "nodes", Singular: "node", Kind: "Node", ListKind: "NodeList",
		ShortNames: []string{"no"},
		New:        func() runtime.Object { return &corev1.Node{} },
		NewList:    func() runtime.Object { return &corev1.NodeList{} },
		Default:    func(obj runtime.Object) { defaultNode(obj.(*corev1.Node)) },
		// Nodes keep the status the kubelet registers them with.
		PrepareForCreate: func(obj runtime.Object) {},
		PrepareForUpdate: func(obj, old runtime.Object) {
			obj.(*corev1.Node).Status = old.(*corev1.Node).Status
		},
		PrepareForStatusUpdate: func(obj, old runtime.Object) {
			obj.(*corev1.Node).Spec = old.(*corev1.Node).Spec
		},
		Validate: func(obj runtime.Object) field.ErrorList { return validateNode(obj.(*corev1.Node)) },
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			return validateNodeUpdate(obj.(*corev1.Node), old.(*corev1.Node))
		},
		ValidateStatusUpdate: func(obj, old runtime.Object) field.ErrorList {
			n := obj.(*corev1.Node)
			return append(validateNode(n), validateNodeUpdate(n, old.(*corev1.Node))...)
		},
		Subresources: []string{"status", "proxy"},
		TableColumns: nodeColumns,
		TableRow:     func(obj runtime.Object) []interface{} { return nodeRow(obj.(*corev1.Node)) },
		SelectableFields: func(obj runtime.Object) fields.Set {
			return fields.Set{"spec.unschedulable": fmt.Sprint(obj.(*corev1.Node).Spec.Unschedulable)}
		},
	}
}

func defaultNode(n *corev1.Node) {
	if n.Status.Allocatable == nil && len(n.Status.Capacity) > 0 {
		n.Status.Allocatable = n.Status.Capacity.DeepCopy()
	}
}

func validateNode(n *corev1.Node) field.ErrorList {
	var errs field.ErrorList
	specPath := field.NewPath("spec")
	if n.Spec.PodCIDR != "" {
		if _, _, err := net.ParseCIDR(n.Spec.PodCIDR); err != nil {
			errs = append(errs, field.Invalid(specPath.Child("podCIDR"), n.Spec.PodCIDR, "must be a valid CIDR"))
		}
	}
	for i, c := range n.Spec.PodCIDRs {
		if _, _, err := net.ParseCIDR(c); err != nil {
			errs = append(errs, field.Invalid(specPath.Child("podCIDRs").Index(i), c, "must be a valid CIDR"))
		}
	}
	if len(n.Spec.PodCIDRs) > 0 && n.Spec.PodCIDR != n.Spec.PodCIDRs[0] {
		errs = append(errs, field.Invalid(specPath.Child("podCIDRs"), n.Spec.PodCIDRs, "first entry must match `podCIDR`"))
	}
	type taintKey struct {
		key    string
		effect corev1.TaintEffect
	}
	seen := map[taintKey]bool{}
	for i, t := range n.Spec.Taints {
		p := specPath.Child("taints").Index(i)
		errs = append(errs, metav1validation.ValidateLabelName(t.Key, p.Child("key"))...)
		if t.Value != "" {
			errs = append(errs, metav1validation.ValidateLabels(map[string]string{"x": t.Value}, p.Child("value"))...)
		}
		errs = append(errs, oneOf(t.Effect, supportedTaintEffects, p.Child("effect"))...)
		k := taintKey{t.Key, t.Effect}
		if seen[k] {
			errs = append(errs, field.Duplicate(p, "taints must be unique by key and effect pair"))
		}
		seen[k] = true
	}
	statusPath := field.NewPath("status")
	for _, name := range sortedResourceNames(n.Status.Capacity) {
		errs = append(errs, nonNegativeQuantity(n.Status.Capacity[name], statusPath.Child("capacity").Key(string(name)))...)
	}
	for _, name := range sortedResourceNames(n.Status.Allocatable) {
		errs = append(errs, nonNegativeQuantity(n.Status.Allocatable[name], statusPath.Child("allocatable").Key(string(name)))...)
	}
	return errs
}

func validateNodeUpdate(n, old *corev1.Node) field.ErrorList {
	var errs field.ErrorList
	specPath := field.NewPath("spec")
	if old.Spec.PodCIDR != "" && n.Spec.PodCIDR != old.Spec.PodCIDR {
		errs = append(errs, field.Forbidden(specPath.Child("podCIDR"), "node updates may not change podCIDR except from \"\" to valid"))
	}
	if len(old.Spec.PodCIDRs) > 0 && strings.Join(n.Spec.PodCIDRs, ",") != strings.Join(old.Spec.PodCIDRs, ",") {
		errs = append(errs, field.Forbidden(specPath.Child("podCIDRs"), "node updates may only change podCIDRs from empty to valid"))
	}
	if old.Spec.ProviderID != "" && n.Spec.ProviderID != old.Spec.ProviderID {
		errs = append(errs, field.Forbidden(specPath.Child("providerID"), "node updates may not change providerID except from \"\" to valid"))
	}
	if old.Spec.ConfigSource == nil && n.Spec.ConfigSource != nil {
		errs = append(errs, field.Forbidden(specPath.Child("configSource"), "update to deprecated field is not allowed"))
	}
	return errs
}

var nodeColumns = []metav1.TableColumnDefinition{
	nameColumn,
	{Name: "Status", Type: "string", Description: "The status of the node"},
	{Name: "Roles", Type: "string", Description: "The roles of the node"},
	ageColumn,
	{Name: "Version", Type: "string", Description: corev1.NodeSystemInfo{}.SwaggerDoc()["kubeletVersion"]},
	{Name: "Internal-IP", Type: "string", Priority: 1, Description: corev1.NodeStatus{}.SwaggerDoc()["addresses"]},
	{Name: "External-IP", Type: "string", Priority: 1, Description: corev1.NodeStatus{}.SwaggerDoc()["addresses"]},
	{Name: "OS-Image", Type: "string", Priority: 1, Description: corev1.NodeSystemInfo{}.SwaggerDoc()["osImage"]},
	{Name: "Kernel-Version", Type: "string", Priority: 1, Description: corev1.NodeSystemInfo{}.SwaggerDoc()["kernelVersion"]},
	{Name: "Container-Runtime", Type: "string", Priority: 1, Description: corev1.NodeSystemInfo{}.SwaggerDoc()["containerRuntimeVersion"]},
}

func nodeStatus(n *corev1.Node) string {
	var status []string
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			if c.Status == corev1.ConditionTrue {
				status = append(status, string(c.Type))
			} else {
				status = append(status, "Not"+string(c.Type))
			}
			break
		}
	}
	if len(status) == 0 {
		status = append(status, "Unknown")
	}
	if n.Spec.Unschedulable {
		status = append(status, "SchedulingDisabled")
	}
	return strings.Join(status, ",")
}

func nodeRoles(n *corev1.Node) string {
	var roles []string
	for k, v := range n.Labels {
		switch {
		case strings.HasPrefix(k, nodeRoleLabelPrefix):
			if r := strings.TrimPrefix(k, nodeRoleLabelPrefix); r != "" {
				roles = append(roles, r)
			}
		case k == nodeLegacyRoleLabel && v != "":
			roles = append(roles, v)
		}
	}
	sort.Strings(roles)
	return orNone(strings.Join(roles, ","))
}

func nodeAddress(n *corev1.Node, t corev1.NodeAddressType) string {
	for _, a := range n.Status.Addresses {
		if a.Type == t {
			return a.Address
		}
	}
	return "<none>"
}

func orUnknown(s string) string {
	if s == "" {
		return "<unknown>"
	}
	return s
}

func nodeRow(n *corev1.Node) []interface{} {
	info := n.Status.NodeInfo
	return []interface{}{n.Name, nodeStatus(n), nodeRoles(n), age(n.CreationTimestamp), info.KubeletVersion,
		nodeAddress(n, corev1.NodeInternalIP), nodeAddress(n, corev1.NodeExternalIP),
		orUnknown(info.OSImage), orUnknown(info.KernelVersion), orUnknown(info.ContainerRuntimeVersion)}
}
