// Package rbac holds the registry descriptors for rbac.authorization.k8s.io/v1:
// roles, rolebindings (namespaced), clusterroles and clusterrolebindings
// (cluster-scoped).
//
// Contract: Resources returns the four descriptors with upstream's
// defaulting (roleRef and User/Group subject apiGroup), validation (every
// rule has verbs; resource rules name api groups and resources; non-resource
// URLs only in cluster roles; roleRef kinds per binding type; subjects
// well-formed) and an immutable roleRef. Authorization itself lives in the
// API server, not here.
package rbac

import (
	"strings"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/api/validation/path"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"skiff.dev/skiff/internal/registry"
	"skiff.dev/skiff/internal/registry/printing"
)

// Resources returns the rbac.authorization.k8s.io/v1 resources.
func Resources() []*registry.Resource {
	roleCols := []metav1.TableColumnDefinition{
		printing.NameColumn(),
		{Name: "Created At", Type: "string", Format: "date", Description: "CreationTimestamp is a timestamp representing the server time when this object was created."},
	}
	bindingCols := []metav1.TableColumnDefinition{
		printing.NameColumn(),
		printing.Column("Role", "string", "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace."),
		printing.AgeColumn(),
		printing.Wide("Users", "string", "Users in the roleBinding"),
		printing.Wide("Groups", "string", "Groups in the roleBinding"),
		printing.Wide("ServiceAccounts", "string", "ServiceAccounts in the roleBinding"),
	}
	createdAt := func(m metav1.ObjectMeta) string { return m.CreationTimestamp.Time.UTC().Format(time.RFC3339) }
	return []*registry.Resource{
		{
			GroupVersion: rbacv1.SchemeGroupVersion, Resource: "roles", Singular: "role", Kind: "Role", ListKind: "RoleList",
			Namespaced:   true,
			New:          func() runtime.Object { return &rbacv1.Role{} },
			NewList:      func() runtime.Object { return &rbacv1.RoleList{} },
			Validate:     func(obj runtime.Object) field.ErrorList { return validateRules(obj.(*rbacv1.Role).Rules, true) },
			TableColumns: roleCols,
			TableRow: func(obj runtime.Object) []interface{} {
				r := obj.(*rbacv1.Role)
				return []interface{}{r.Name, createdAt(r.ObjectMeta)}
			},
		},
		{
			GroupVersion: rbacv1.SchemeGroupVersion, Resource: "clusterroles", Singular: "clusterrole", Kind: "ClusterRole", ListKind: "ClusterRoleList",
			New:     func() runtime.Object { return &rbacv1.ClusterRole{} },
			NewList: func() runtime.Object { return &rbacv1.ClusterRoleList{} },
			Validate: func(obj runtime.Object) field.ErrorList {
				r := obj.(*rbacv1.ClusterRole)
				errs := validateRules(r.Rules, false)
				if r.AggregationRule != nil {
					for i, sel := range r.AggregationRule.ClusterRoleSelectors {
						errs = append(errs, metav1validation.ValidateLabelSelector(&sel, metav1validation.LabelSelectorValidationOptions{},
							field.NewPath("aggregationRule", "clusterRoleSelectors").Index(i))...)
					}
				}
				return errs
			},
			TableColumns: roleCols,
			TableRow: func(obj runtime.Object) []interface{} {
				r := obj.(*rbacv1.ClusterRole)
				return []interface{}{r.Name, createdAt(r.ObjectMeta)}
			},
		},
		{
			GroupVersion: rbacv1.SchemeGroupVersion, Resource: "rolebindings", Singular: "rolebinding", Kind: "RoleBinding", ListKind: "RoleBindingList",
			Namespaced: true,
			New:        func() runtime.Object { return &rbacv1.RoleBinding{} },
			NewList:    func() runtime.Object { return &rbacv1.RoleBindingList{} },
			Default: func(obj runtime.Object) {
				if b, ok := obj.(*rbacv1.RoleBinding); ok {
					defaultBinding(&b.RoleRef, b.Subjects)
				}
			},
			Validate: func(obj runtime.Object) field.ErrorList {
				b := obj.(*rbacv1.RoleBinding)
				return validateBinding(b.RoleRef, b.Subjects, []string{"Role", "ClusterRole"}, true)
			},
			ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
				return roleRefImmutable(obj.(*rbacv1.RoleBinding).RoleRef, old.(*rbacv1.RoleBinding).RoleRef)
			},
			TableColumns: bindingCols,
			TableRow: func(obj runtime.Object) []interface{} {
				b := obj.(*rbacv1.RoleBinding)
				return bindingRow(b.ObjectMeta, b.RoleRef, b.Subjects)
			},
		},
		{
			GroupVersion: rbacv1.SchemeGroupVersion, Resource: "clusterrolebindings", Singular: "clusterrolebinding", Kind: "ClusterRoleBinding",
			ListKind: "ClusterRoleBindingList",
			New:      func() runtime.Object { return &rbacv1.ClusterRoleBinding{} },
			NewList:  func() runtime.Object { return &rbacv1.ClusterRoleBindingList{} },
			Default: func(obj runtime.Object) {
				if b, ok := obj.(*rbacv1.ClusterRoleBinding); ok {
					defaultBinding(&b.RoleRef, b.Subjects)
				}
			},
			Validate: func(obj runtime.Object) field.ErrorList {
				b := obj.(*rbacv1.ClusterRoleBinding)
				return validateBinding(b.RoleRef, b.Subjects, []string{"ClusterRole"}, false)
			},
			ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
				return roleRefImmutable(obj.(*rbacv1.ClusterRoleBinding).RoleRef, old.(*rbacv1.ClusterRoleBinding).RoleRef)
			},
			TableColumns: bindingCols,
			TableRow: func(obj runtime.Object) []interface{} {
				b := obj.(*rbacv1.ClusterRoleBinding)
				return bindingRow(b.ObjectMeta, b.RoleRef, b.Subjects)
			},
		},
	}
}

func defaultBinding(ref *rbacv1.RoleRef, subjects []rbacv1.Subject) {
	if ref.APIGroup == "" {
		ref.APIGroup = rbacv1.GroupName
	}
	for i := range subjects {
		s := &subjects[i]
		if s.APIGroup == "" && (s.Kind == rbacv1.UserKind || s.Kind == rbacv1.GroupKind) {
			s.APIGroup = rbacv1.GroupName
		}
	}
}

func validateRules(rules []rbacv1.PolicyRule, namespaced bool) field.ErrorList {
	var errs field.ErrorList
	for i, r := range rules {
		p := field.NewPath("rules").Index(i)
		if len(r.Verbs) == 0 {
			errs = append(errs, field.Required(p.Child("verbs"), "verbs must contain at least one value"))
		}
		if len(r.NonResourceURLs) > 0 {
			if namespaced {
				errs = append(errs, field.Invalid(p.Child("nonResourceURLs"), r.NonResourceURLs, "namespaced rules cannot apply to non-resource URLs"))
			}
			if len(r.APIGroups) > 0 || len(r.Resources) > 0 || len(r.ResourceNames) > 0 {
				errs = append(errs, field.Invalid(p.Child("nonResourceURLs"), r.NonResourceURLs, "rules cannot apply to both regular resources and non-resource URLs"))
			}
			continue
		}
		if len(r.APIGroups) == 0 {
			errs = append(errs, field.Required(p.Child("apiGroups"), "resource rules must supply at least one api group"))
		}
		if len(r.Resources) == 0 {
			errs = append(errs, field.Required(p.Child("resources"), "resource rules must supply at least one resource"))
		}
	}
	return errs
}

func validateBinding(ref rbacv1.RoleRef, subjects []rbacv1.Subject, kinds []string, namespaced bool) field.ErrorList {
	var errs field.ErrorList
	rp := field.NewPath("roleRef")
	if ref.APIGroup != rbacv1.GroupName {
		errs = append(errs, field.NotSupported(rp.Child("apiGroup"), ref.APIGroup, []string{rbacv1.GroupName}))
	}
	okKind := false
	for _, k := range kinds {
		okKind = okKind || ref.Kind == k
	}
	if !okKind {
		errs = append(errs, field.NotSupported(rp.Child("kind"), ref.Kind, kinds))
	}
	if ref.Name == "" {
		errs = append(errs, field.Required(rp.Child("name"), ""))
	} else {
		for _, msg := range path.ValidatePathSegmentName(ref.Name, false) {
			errs = append(errs, field.Invalid(rp.Child("name"), ref.Name, msg))
		}
	}
	for i, s := range subjects {
		p := field.NewPath("subjects").Index(i)
		if s.Name == "" {
			errs = append(errs, field.Required(p.Child("name"), ""))
		}
		switch s.Kind {
		case rbacv1.ServiceAccountKind:
			if s.Name != "" {
				for _, msg := range apimachineryvalidation.NameIsDNSSubdomain(s.Name, false) {
					errs = append(errs, field.Invalid(p.Child("name"), s.Name, msg))
				}
			}
			if s.APIGroup != "" {
				errs = append(errs, field.NotSupported(p.Child("apiGroup"), s.APIGroup, []string{""}))
			}
			if !namespaced && s.Namespace == "" {
				errs = append(errs, field.Required(p.Child("namespace"), ""))
			}
		case rbacv1.UserKind, rbacv1.GroupKind:
			if s.APIGroup != rbacv1.GroupName {
				errs = append(errs, field.NotSupported(p.Child("apiGroup"), s.APIGroup, []string{rbacv1.GroupName}))
			}
		default:
			errs = append(errs, field.NotSupported(p.Child("kind"), s.Kind, []string{rbacv1.ServiceAccountKind, rbacv1.UserKind, rbacv1.GroupKind}))
		}
	}
	return errs
}

func roleRefImmutable(n, o rbacv1.RoleRef) field.ErrorList {
	if n != o {
		return field.ErrorList{field.Invalid(field.NewPath("roleRef"), n, "cannot change roleRef")}
	}
	return nil
}

func bindingRow(m metav1.ObjectMeta, ref rbacv1.RoleRef, subjects []rbacv1.Subject) []interface{} {
	var users, groups, sas []string
	for _, s := range subjects {
		switch s.Kind {
		case rbacv1.UserKind:
			users = append(users, s.Name)
		case rbacv1.GroupKind:
			groups = append(groups, s.Name)
		case rbacv1.ServiceAccountKind:
			if s.Namespace != "" {
				sas = append(sas, s.Namespace+"/"+s.Name)
			} else {
				sas = append(sas, s.Name)
			}
		}
	}
	return []interface{}{m.Name, ref.Kind + "/" + ref.Name, printing.Age(m.CreationTimestamp),
		strings.Join(users, ", "), strings.Join(groups, ", "), strings.Join(sas, ", ")}
}
