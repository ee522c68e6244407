package generic

import (
	"strings"

	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	v1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"skiff.dev/skiff/internal/registry"
)

// Metadata validation runs on every write: ValidateObjectMetaAccessor on a
// create, and on an update that plus ValidateObjectMetaAccessorUpdate.
// Upstream's validators check every label key and value, annotation key,
// name and namespace with regular expressions and build field paths as
// they go, even when nothing is wrong: 1-2 µs per label and most of the
// metadata validation CPU of a pod create, binding or status update. The
// same few label keys and values, namespaces and generateName prefixes
// come back on every write, so metaValid answers "valid" from memos of
// strings upstream's own per-string checks accepted (and a byte check for
// DNS-1123 subdomain names, which are unique), and only when every part
// passes. Anything it does not find valid goes to upstream's validator,
// which produces the errors exactly as before: the fast path can only
// ever skip a validation that would have returned no errors.
// TestMetaValidMatchesUpstream holds it to upstream's answer.

var (
	annotationKeys = registry.NewValidMemo(func(s string) bool { return len(validation.IsQualifiedName(strings.ToLower(s))) == 0 })
	namespaces     = registry.NewValidMemo(func(s string) bool { return len(apimachineryvalidation.ValidateNamespaceName(s, false)) == 0 })
	finalizerNames = registry.NewValidMemo(func(s string) bool {
		return len(apimachineryvalidation.ValidateFinalizerName(s, field.NewPath("f"))) == 0
	})
	fieldManagers = registry.NewValidMemo(func(s string) bool {
		return len(v1validation.ValidateFieldManager(s, field.NewPath("m"))) == 0
	})
	// ownerKinds holds apiVersion + "\x00" + kind of owner references
	// upstream accepts (a parseable group version that may own objects).
	ownerKinds = registry.NewValidMemo(func(s string) bool {
		av, kind, _ := strings.Cut(s, "\x00")
		ref := metav1.OwnerReference{APIVersion: av, Kind: kind, Name: "n", UID: "u"}
		return len(apimachineryvalidation.ValidateOwnerReferences([]metav1.OwnerReference{ref}, field.NewPath("o"))) == 0
	})
	// generateNames is keyed by the name rule's kind (see nameRule) and
	// the prefix.
	generateNames = registry.NewValidMemo(func(s string) bool {
		kind, prefix, _ := strings.Cut(s, "\x00")
		return len(nameRuleFunc(kind)(prefix, true)) == 0
	})
)

// nameRule names the rule NameValidator gives r, without allocating.
func nameRule(r *registry.Resource) string {
	if r.GroupVersion.Group == "" {
		switch r.Resource {
		case "namespaces":
			return "namespace"
		case "services":
			return "dns1035"
		case "nodes":
			return "path"
		}
		return "subdomain"
	}
	if r.GroupVersion.Group == "rbac.authorization.k8s.io" {
		switch r.Resource {
		case "roles", "rolebindings", "clusterroles", "clusterrolebindings":
			return "path"
		}
	}
	if r.GroupVersion.Group == "certificates.k8s.io" && r.Resource == "certificatesigningrequests" {
		return "path"
	}
	return "subdomain"
}

func nameRuleFunc(kind string) apimachineryvalidation.ValidateNameFunc {
	switch kind {
	case "namespace":
		return apimachineryvalidation.ValidateNamespaceName
	case "dns1035":
		return apimachineryvalidation.NameIsDNS1035Label
	case "path":
		return pathSegmentName
	}
	return apimachineryvalidation.NameIsDNSSubdomain
}

// isDNS1123Subdomain is validation.IsDNS1123Subdomain(s) == nil without the
// regular expression: at most 253 characters of [a-z0-9.-], dot-separated
// labels that each start and end with a letter or digit.
func isDNS1123Subdomain(s string) bool {
	if len(s) == 0 || len(s) > validation.DNS1123SubdomainMaxLength {
		return false
	}
	prev := byte('.')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '-':
			if prev == '.' {
				return false
			}
		case c == '.':
			if prev == '.' || prev == '-' {
				return false
			}
		default:
			return false
		}
		prev = c
	}
	return prev != '.' && prev != '-'
}

// nameValid reports whether the rule accepts name (not a prefix).
func nameValid(kind, name string) bool {
	if kind == "subdomain" {
		return isDNS1123Subdomain(name)
	}
	return len(nameRuleFunc(kind)(name, false)) == 0
}

// metaValid reports whether upstream's ValidateObjectMetaAccessor(m,
// namespaced, NameValidator(r), ...) returns no errors. false means "not
// known to be valid": run upstream's validator.
func metaValid(r *registry.Resource, m metav1.Object) bool {
	kind := nameRule(r)
	if gn := m.GetGenerateName(); gn != "" && !generateNames.Valid(kind+"\x00"+gn) {
		return false
	}
	if name := m.GetName(); name == "" || !nameValid(kind, name) {
		return false
	}
	if ns := m.GetNamespace(); r.Namespaced {
		if ns == "" || !namespaces.Valid(ns) {
			return false
		}
	} else if ns != "" {
		return false
	}
	if m.GetGeneration() < 0 {
		return false
	}
	return metaCommonValid(m)
}

// metaCommonValid covers the checks both of upstream's validators make:
// labels, annotations, owner references and managed fields, plus
// finalizers (only the create validator checks them; an update always
// runs both).
func metaCommonValid(m metav1.Object) bool {
	for k, v := range m.GetLabels() {
		if !registry.LabelKeys.Valid(k) || !registry.LabelValues.Valid(v) {
			return false
		}
	}
	if ann := m.GetAnnotations(); len(ann) > 0 {
		for k := range ann {
			if !annotationKeys.Valid(k) {
				return false
			}
		}
		if apimachineryvalidation.ValidateAnnotationsSize(ann) != nil {
			return false
		}
	}
	controllers := 0
	for _, ref := range m.GetOwnerReferences() {
		if ref.Name == "" || ref.UID == "" || ref.Kind == "" || ref.APIVersion == "" ||
			!ownerKinds.Valid(ref.APIVersion+"\x00"+ref.Kind) {
			return false
		}
		if ref.Controller != nil && *ref.Controller {
			controllers++
		}
	}
	if controllers > 1 {
		return false
	}
	orphan, foreground := false, false
	for _, f := range m.GetFinalizers() {
		if !finalizerNames.Valid(f) {
			return false
		}
		orphan = orphan || f == metav1.FinalizerOrphanDependents
		foreground = foreground || f == metav1.FinalizerDeleteDependents
	}
	if orphan && foreground {
		return false
	}
	for i := range m.GetManagedFields() {
		e := &m.GetManagedFields()[i]
		if e.Operation != metav1.ManagedFieldsOperationApply && e.Operation != metav1.ManagedFieldsOperationUpdate {
			return false
		}
		if e.FieldsType != "" && e.FieldsType != "FieldsV1" {
			return false
		}
		if len(e.Subresource) > v1validation.MaxSubresourceNameLength || !fieldManagers.Valid(e.Manager) {
			return false
		}
	}
	return true
}

// metaUpdateValid reports whether upstream's
// ValidateObjectMetaAccessorUpdate(m, old, ...) returns no errors, given
// that metaCommonValid(m) holds. The immutable fields are compared with
// ==, stricter than the semantic equality upstream uses.
func metaUpdateValid(m, old metav1.Object) bool {
	if old.GetDeletionTimestamp() != nil || m.GetDeletionTimestamp() != nil {
		return false // finalizer rules and timestamp comparison: upstream's
	}
	if m.GetResourceVersion() == "" || m.GetGeneration() < 0 || m.GetGeneration() < old.GetGeneration() {
		return false
	}
	if m.GetName() != old.GetName() || m.GetNamespace() != old.GetNamespace() || m.GetUID() != old.GetUID() ||
		m.GetCreationTimestamp() != old.GetCreationTimestamp() {
		return false
	}
	g, og := m.GetDeletionGracePeriodSeconds(), old.GetDeletionGracePeriodSeconds()
	if (g == nil) != (og == nil) || (g != nil && *g != *og) {
		return false
	}
	return true
}

// validateObjectMeta is ValidateObjectMetaAccessor for r's objects.
func validateObjectMeta(r *registry.Resource, m metav1.Object) field.ErrorList {
	if metaValid(r, m) {
		return nil
	}
	return apimachineryvalidation.ValidateObjectMetaAccessor(m, r.Namespaced, NameValidator(r), field.NewPath("metadata"))
}

// validateObjectMetaUpdate is ValidateObjectMetaAccessorUpdate(m, old)
// followed by ValidateObjectMetaAccessor(m) for r's objects.
func validateObjectMetaUpdate(r *registry.Resource, m, old metav1.Object) field.ErrorList {
	if metaUpdateValid(m, old) && metaValid(r, m) {
		return nil
	}
	errs := apimachineryvalidation.ValidateObjectMetaAccessorUpdate(m, old, field.NewPath("metadata"))
	return append(errs, apimachineryvalidation.ValidateObjectMetaAccessor(m, r.Namespaced, NameValidator(r), field.NewPath("metadata"))...)
}
