package server

import (
	"context"
	"fmt"
	"time"

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

// noQuotaTTL is how long a live read that found no quota in a namespace is
// trusted while the watch cache shows none either (upstream's quota
// admission live-lookup TTL).
const noQuotaTTL = 30 * time.Second

// ListResourceQuotas reads quotas from etcd (not the watch cache), so a
// charge just written is seen by the next create.
//
// Most namespaces have no quota, and a consistent read costs every create
// an etcd round trip plus the wait for the idle quota cache to catch up
// with etcd's revision (a progress notification: ~50 ms, which made
// single-client pod creates 20x slower). So the watch cache is asked
// first; when it holds no quota for the namespace, a live read confirms
// that at most every noQuotaTTL, as upstream's quota admission does. A
// quota created meanwhile is in the watch cache within milliseconds.
func (g *getter) ListResourceQuotas(ctx context.Context, ns string) ([]corev1.ResourceQuota, error) {
	st := g.s.store("", "resourcequotas")
	o, err := st.List(ctx, ns, generic.ListOptions{ResourceVersion: "0"})
	if err != nil {
		return nil, err
	}
	if len(o.(*corev1.ResourceQuotaList).Items) == 0 {
		if until, ok := g.noQuota.Load(ns); ok && time.Now().Before(until.(time.Time)) {
			return nil, nil
		}
	}
	o, err = st.List(ctx, ns, generic.ListOptions{})
	if err != nil {
		return nil, err
	}
	items := o.(*corev1.ResourceQuotaList).Items
	if len(items) == 0 {
		g.noQuota.Store(ns, time.Now().Add(noQuotaTTL))
	} else {
		g.noQuota.Delete(ns)
	}
	return items, nil
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
