package admission

// DefaultIngressClass, as upstream's plugin of that name: an Ingress
// created without spec.ingressClassName (and without the deprecated
// kubernetes.io/ingress.class annotation) gets the IngressClass annotated
// ingressclass.kubernetes.io/is-default-class: "true"; when several are,
// the newest wins (upstream since 1.30; older releases refused the
// create). Runs only when the Getter implements IngressClassLister.

import (
	"context"
	"fmt"

	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"

	"skiff.dev/skiff/internal/registry/generic"
)

// IngressClassLister lists IngressClasses for DefaultIngressClass.
type IngressClassLister interface {
	ListIngressClasses(ctx context.Context) ([]networkingv1.IngressClass, error)
}

// ingressClassAnnotation is the deprecated per-Ingress class choice; an
// Ingress carrying it has chosen and is left alone, as upstream.
const ingressClassAnnotation = "kubernetes.io/ingress.class"

// admitDefaultIngressClass sets the default class on new Ingresses.
func (c *Chain) admitDefaultIngressClass(ctx context.Context, op generic.Operation, obj runtime.Object) error {
	ing, ok := obj.(*networkingv1.Ingress)
	if !ok || op != generic.OpCreate || ing.Spec.IngressClassName != nil {
		return nil
	}
	if _, ok := ing.Annotations[ingressClassAnnotation]; ok {
		return nil
	}
	lister, ok := c.get.(IngressClassLister)
	if !ok {
		return nil
	}
	classes, err := lister.ListIngressClasses(ctx)
	if err != nil {
		return apierrors.NewInternalError(fmt.Errorf("listing ingress classes: %w", err))
	}
	if name := defaultIngressClass(classes); name != "" {
		ing.Spec.IngressClassName = &name
	}
	return nil
}

// defaultIngressClass is the newest class marked default (ties broken by
// name), or "".
func defaultIngressClass(classes []networkingv1.IngressClass) string {
	var best *networkingv1.IngressClass
	for i := range classes {
		ic := &classes[i]
		if ic.Annotations[networkingv1.AnnotationIsDefaultIngressClass] != "true" {
			continue
		}
		if best == nil || ic.CreationTimestamp.After(best.CreationTimestamp.Time) ||
			(ic.CreationTimestamp.Equal(&best.CreationTimestamp) && ic.Name < best.Name) {
			best = ic
		}
	}
	if best == nil {
		return ""
	}
	return best.Name
}
