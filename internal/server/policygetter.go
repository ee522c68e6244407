package server

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"

	"skiff.dev/skiff/internal/apiserver/admission"
	"skiff.dev/skiff/internal/registry/generic"
)

// The getter also serves the resource-policy admission plugins
// (LimitRanger, ResourceQuota, DefaultStorageClass).
var _ admission.PolicyGetter = (*getter)(nil)

func (g *getter) ListLimitRanges(ctx context.Context, ns string) ([]corev1.LimitRange, error) {
	o, err := g.s.store("", "limitranges").List(ctx, ns, generic.ListOptions{ResourceVersion: "0"})
	if err != nil {
		return nil, err
	}
	return o.(*corev1.LimitRangeList).Items, nil
}

// ListResourceQuotas reads quotas from etcd (not the watch cache), so a
// charge just written is seen by the next create.
func (g *getter) ListResourceQuotas(ctx context.Context, ns string) ([]corev1.ResourceQuota, error) {
	o, err := g.s.store("", "resourcequotas").List(ctx, ns, generic.ListOptions{})
	if err != nil {
		return nil, err
	}
	return o.(*corev1.ResourceQuotaList).Items, nil
}

func (g *getter) UpdateResourceQuotaStatus(ctx context.Context, ns, name string, fn func(*corev1.ResourceQuota) error) error {
	st := g.s.store("", "resourcequotas")
	var fnErr error
	_, _, err := st.Update(ctx, ns, name, func(_ context.Context, cur runtime.Object) (runtime.Object, error) {
		if cur == nil {
			return nil, apierrors.NewNotFound(corev1.Resource("resourcequotas"), name)
		}
		q := cur.(*corev1.ResourceQuota)
		if fnErr = fn(q); fnErr != nil {
			return nil, fnErr
		}
		return q, nil
	}, generic.UpdateOptions{Subresource: "status", FieldManager: "resourcequota-admission"})
	if fnErr != nil {
		return fnErr
	}
	if err != nil {
		return fmt.Errorf("updating quota %s/%s: %w", ns, name, err)
	}
	return nil
}

func (g *getter) ListStorageClasses(ctx context.Context) ([]storagev1.StorageClass, error) {
	st := g.s.store("storage.k8s.io", "storageclasses")
	if st == nil {
		return nil, nil
	}
	o, err := st.List(ctx, "", generic.ListOptions{ResourceVersion: "0"})
	if err != nil {
		return nil, err
	}
	return o.(*storagev1.StorageClassList).Items, nil
}
