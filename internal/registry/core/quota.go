package core

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"skiff.dev/skiff/internal/registry"
)

func limitRangeResource() *registry.Resource {
	return &registry.Resource{
		GroupVersion: corev1.SchemeGroupVersion,
		Resource:     "limitranges", Singular: "limitrange", Kind: "LimitRange", ListKind: "LimitRangeList",
		Namespaced: true, ShortNames: []string{"limits"},
		New:     func() runtime.Object { return &corev1.LimitRange{} },
		NewList: func() runtime.Object { return &corev1.LimitRangeList{} },
		Default: func(obj runtime.Object) {
			lr := obj.(*corev1.LimitRange)
			for i := range lr.Spec.Limits {
				defaultLimitRangeItem(&lr.Spec.Limits[i])
			}
		},
		Validate: func(obj runtime.Object) field.ErrorList { return validateLimitRange(obj.(*corev1.LimitRange)) },
		TableColumns: []metav1.TableColumnDefinition{
			nameColumn,
			{Name: "Created At", Type: "date", Description: metav1.ObjectMeta{}.SwaggerDoc()["creationTimestamp"]},
		},
		TableRow: func(obj runtime.Object) []interface{} {
			lr := obj.(*corev1.LimitRange)
			return []interface{}{lr.Name, lr.CreationTimestamp.UTC().Format("2006-01-02T15:04:05Z")}
		},
	}
}

// defaultLimitRangeItem: for containers, default limits come from max,
// default requests from the default limits, then from min.
func defaultLimitRangeItem(it *corev1.LimitRangeItem) {
	if it.Type != corev1.LimitTypeContainer {
		return
	}
	if it.Default == nil {
		it.Default = corev1.ResourceList{}
	}
	if it.DefaultRequest == nil {
		it.DefaultRequest = corev1.ResourceList{}
	}
	for k, v := range it.Max {
		if _, ok := it.Default[k]; !ok {
			it.Default[k] = v.DeepCopy()
		}
	}
	for k, v := range it.Default {
		if _, ok := it.DefaultRequest[k]; !ok {
			it.DefaultRequest[k] = v.DeepCopy()
		}
	}
	for k, v := range it.Min {
		if _, ok := it.DefaultRequest[k]; !ok {
			it.DefaultRequest[k] = v.DeepCopy()
		}
	}
}

var supportedLimitTypes = []corev1.LimitType{corev1.LimitTypeContainer, corev1.LimitTypePersistentVolumeClaim, corev1.LimitTypePod}

func validateLimitRange(lr *corev1.LimitRange) field.ErrorList {
	var errs field.ErrorList
	seen := sets.New[corev1.LimitType]()
	for i, it := range lr.Spec.Limits {
		p := field.NewPath("spec", "limits").Index(i)
		errs = append(errs, oneOf(it.Type, supportedLimitTypes, p.Child("type"))...)
		if seen.Has(it.Type) {
			errs = append(errs, field.Duplicate(p.Child("type"), it.Type))
		}
		seen.Insert(it.Type)
		lists := []struct {
			name string
			l    corev1.ResourceList
		}{{"max", it.Max}, {"min", it.Min}, {"default", it.Default}, {"defaultRequest", it.DefaultRequest}, {"maxLimitRequestRatio", it.MaxLimitRequestRatio}}
		for _, l := range lists {
			for _, name := range sortedResourceNames(l.l) {
				kp := p.Child(l.name).Key(string(name))
				errs = append(errs, validateResourceName(name, kp)...)
				errs = append(errs, nonNegativeQuantity(l.l[name], kp)...)
			}
		}
		if it.Type == corev1.LimitTypePod && (len(it.Default) > 0 || len(it.DefaultRequest) > 0) {
			if len(it.Default) > 0 {
				errs = append(errs, field.Forbidden(p.Child("default"), "may not be specified when `type` is 'Pod'"))
			}
			if len(it.DefaultRequest) > 0 {
				errs = append(errs, field.Forbidden(p.Child("defaultRequest"), "may not be specified when `type` is 'Pod'"))
			}
		}
		for _, name := range sortedResourceNames(it.Min) {
			minQ := it.Min[name]
			if maxQ, ok := it.Max[name]; ok && minQ.Cmp(maxQ) > 0 {
				errs = append(errs, field.Invalid(p.Child("min").Key(string(name)), minQ.String(),
					fmt.Sprintf("min value %s is greater than max value %s", minQ.String(), maxQ.String())))
			}
			if dr, ok := it.DefaultRequest[name]; ok && minQ.Cmp(dr) > 0 {
				errs = append(errs, field.Invalid(p.Child("defaultRequest").Key(string(name)), dr.String(),
					fmt.Sprintf("min value %s is greater than default request value %s", minQ.String(), dr.String())))
			}
		}
		for _, name := range sortedResourceNames(it.DefaultRequest) {
			dr := it.DefaultRequest[name]
			if d, ok := it.Default[name]; ok && dr.Cmp(d) > 0 {
				errs = append(errs, field.Invalid(p.Child("defaultRequest").Key(string(name)), dr.String(),
					fmt.Sprintf("default request value %s is greater than default limit value %s", dr.String(), d.String())))
			}
			if m, ok := it.Max[name]; ok && dr.Cmp(m) > 0 {
				errs = append(errs, field.Invalid(p.Child("defaultRequest").Key(string(name)), dr.String(),
					fmt.Sprintf("default request value %s is greater than max value %s", dr.String(), m.String())))
			}
		}
		for _, name := range sortedResourceNames(it.Default) {
			d := it.Default[name]
			if m, ok := it.Max[name]; ok && d.Cmp(m) > 0 {
				errs = append(errs, field.Invalid(p.Child("default").Key(string(name)), d.String(),
					fmt.Sprintf("default value %s is greater than max value %s", d.String(), m.String())))
			}
		}
	}
	return errs
}

var supportedQuotaScopes = []corev1.ResourceQuotaScope{corev1.ResourceQuotaScopeTerminating, corev1.ResourceQuotaScopeNotTerminating,
	corev1.ResourceQuotaScopeBestEffort, corev1.ResourceQuotaScopeNotBestEffort, corev1.ResourceQuotaScopePriorityClass,
	corev1.ResourceQuotaScopeCrossNamespacePodAffinity, corev1.ResourceQuotaScopeVolumeAttributesClass}

func resourceQuotaResource() *registry.Resource {
	return &registry.Resource{
		GroupVersion: corev1.SchemeGroupVersion,
		Resource:     "resourcequotas", Singular: "resourcequota", Kind: "ResourceQuota", ListKind: "ResourceQuotaList",
		Namespaced: true, ShortNames: []string{"quota"},
		New:     func() runtime.Object { return &corev1.ResourceQuota{} },
		NewList: func() runtime.Object { return &corev1.ResourceQuotaList{} },
		PrepareForCreate: func(obj runtime.Object) {
			obj.(*corev1.ResourceQuota).Status = corev1.ResourceQuotaStatus{}
		},
		PrepareForUpdate: func(obj, old runtime.Object) {
			obj.(*corev1.ResourceQuota).Status = old.(*corev1.ResourceQuota).Status
		},
		PrepareForStatusUpdate: func(obj, old runtime.Object) {
			obj.(*corev1.ResourceQuota).Spec = old.(*corev1.ResourceQuota).Spec
		},
		Validate: func(obj runtime.Object) field.ErrorList { return validateResourceQuota(obj.(*corev1.ResourceQuota)) },
		ValidateStatusUpdate: func(obj, old runtime.Object) field.ErrorList {
			q := obj.(*corev1.ResourceQuota)
			var errs field.ErrorList
			for _, l := range []struct {
				name string
				l    corev1.ResourceList
			}{{"hard", q.Status.Hard}, {"used", q.Status.Used}} {
				for _, name := range sortedResourceNames(l.l) {
					kp := field.NewPath("status", l.name).Key(string(name))
					errs = append(errs, validateResourceName(name, kp)...)
					errs = append(errs, nonNegativeQuantity(l.l[name], kp)...)
				}
			}
			return errs
		},
		Subresources: []string{"status"},
		TableColumns: []metav1.TableColumnDefinition{
			nameColumn,
			ageColumn,
			{Name: "Request", Type: "string", Description: "Request represents a minimum amount of cpu/memory that a container may consume."},
			{Name: "Limit", Type: "string", Description: "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node."},
		},
		TableRow: func(obj runtime.Object) []interface{} { return quotaRow(obj.(*corev1.ResourceQuota)) },
	}
}

func validateResourceQuota(q *corev1.ResourceQuota) field.ErrorList {
	var errs field.ErrorList
	specPath := field.NewPath("spec")
	for _, name := range sortedResourceNames(q.Spec.Hard) {
		kp := specPath.Child("hard").Key(string(name))
		errs = append(errs, validateResourceName(name, kp)...)
		errs = append(errs, nonNegativeQuantity(q.Spec.Hard[name], kp)...)
	}
	for i, s := range q.Spec.Scopes {
		errs = append(errs, oneOf(s, supportedQuotaScopes, specPath.Child("scopes").Index(i))...)
	}
	if q.Spec.ScopeSelector != nil {
		for i, e := range q.Spec.ScopeSelector.MatchExpressions {
			p := specPath.Child("scopeSelector", "matchExpressions").Index(i)
			errs = append(errs, oneOf(e.ScopeName, supportedQuotaScopes, p.Child("scopeName"))...)
			ops := []corev1.ScopeSelectorOperator{corev1.ScopeSelectorOpIn, corev1.ScopeSelectorOpNotIn,
				corev1.ScopeSelectorOpExists, corev1.ScopeSelectorOpDoesNotExist}
			errs = append(errs, oneOf(e.Operator, ops, p.Child("operator"))...)
		}
	}
	return errs
}

func quotaRow(q *corev1.ResourceQuota) []interface{} {
	var req, lim []string
	for _, name := range sortedResourceNames(q.Spec.Hard) {
		hard := q.Spec.Hard[name]
		used := q.Status.Used[name]
		s := fmt.Sprintf("%s: %s/%s", name, used.String(), hard.String())
		if strings.HasPrefix(string(name), "limits.") {
			lim = append(lim, s)
		} else {
			req = append(req, s)
		}
	}
	return []interface{}{q.Name, age(q.CreationTimestamp), strings.Join(req, ", "), strings.Join(lim, ", ")}
}
