package admission

// This file hooks the resource-policy plugins into the Chain: LimitRanger
// (defaults in Admit, bounds in Validate), DefaultStorageClass (claims
// without storageClassName get the default class) and ResourceQuota (last,
// as upstream, so it charges the object as it will be stored). They run
// only when the Getter also implements PolicyGetter.

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"

	"skiff.dev/skiff/internal/registry"
	"skiff.dev/skiff/internal/registry/generic"
)

// PolicyGetter is what the resource-policy plugins read and write.
type PolicyGetter interface {
	LimitRangeLister
	QuotaStore
	ListStorageClasses(ctx context.Context) ([]storagev1.StorageClass, error)
}

// IsDefaultClassAnnotation marks the default StorageClass.
const IsDefaultClassAnnotation = "storageclass.kubernetes.io/is-default-class"

type policyPlugins struct {
	get    PolicyGetter
	limits *LimitRanger
	quota  *Quota
}

func newPolicyPlugins(get Getter) *policyPlugins {
	pg, ok := get.(PolicyGetter)
	if !ok {
		return nil
	}
	return &policyPlugins{get: pg, limits: NewLimitRanger(pg), quota: NewQuota(pg)}
}

func (p *policyPlugins) admit(ctx context.Context, r *registry.Resource, op generic.Operation, obj runtime.Object) error {
	if p == nil || op != generic.OpCreate {
		return nil
	}
	switch o := obj.(type) {
	case *corev1.Pod:
		return p.limits.AdmitPod(ctx, o)
	case *corev1.PersistentVolumeClaim:
		return p.defaultStorageClass(ctx, o)
	}
	return nil
}

func (p *policyPlugins) validate(ctx context.Context, r *registry.Resource, op generic.Operation, obj runtime.Object) error {
	if p == nil || op != generic.OpCreate || !r.Namespaced || !r.StorageResource.Empty() {
		return nil
	}
	switch o := obj.(type) {
	case *corev1.Pod:
		if err := p.limits.ValidatePod(ctx, o); err != nil {
			return err
		}
	case *corev1.PersistentVolumeClaim:
		if err := p.limits.ValidateClaim(ctx, o); err != nil {
			return err
		}
	}
	return p.quota.Validate(ctx, r.GroupResource(), obj)
}

// defaultStorageClass gives a claim without storageClassName the default
// class (the newest when several claim to be default, as upstream). An
// explicit "" means "no class" and is left alone.
func (p *policyPlugins) defaultStorageClass(ctx context.Context, pvc *corev1.PersistentVolumeClaim) error {
	if pvc.Spec.StorageClassName != nil {
		return nil
	}
	classes, err := p.get.ListStorageClasses(ctx)
	if err != nil {
		return apierrors.NewInternalError(fmt.Errorf("listing storage classes: %w", err))
	}
	var best *storagev1.StorageClass
	for i := range classes {
		sc := &classes[i]
		if sc.Annotations[IsDefaultClassAnnotation] != "true" {
			continue
		}
		if best == nil || sc.CreationTimestamp.After(best.CreationTimestamp.Time) ||
			(sc.CreationTimestamp.Equal(&best.CreationTimestamp) && sc.Name < best.Name) {
			best = sc
		}
	}
	if best != nil {
		name := best.Name
		pvc.Spec.StorageClassName = &name
	}
	return nil
}

// admitAll runs the built-in mutating plugins, then the policy ones.
func (c *Chain) admitAll(ctx context.Context, r *registry.Resource, op generic.Operation, obj, old runtime.Object) error {
	if err := c.Admit(ctx, r, op, obj, old); err != nil {
		return err
	}
	if err := c.admitDefaultIngressClass(ctx, op, obj); err != nil {
		return err
	}
	return c.policy.admit(ctx, r, op, obj)
}

// validateAll runs the built-in validating plugins, then the policy ones.
func (c *Chain) validateAll(ctx context.Context, r *registry.Resource, op generic.Operation, obj, old runtime.Object) error {
	if err := c.Validate(ctx, r, op, obj, old); err != nil {
		return err
	}
	return c.policy.validate(ctx, r, op, obj)
}
