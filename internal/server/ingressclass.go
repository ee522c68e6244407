package server

import (
	"context"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"skiff.dev/skiff/internal/apiserver/admission"
	"skiff.dev/skiff/internal/ingress"
	"skiff.dev/skiff/internal/registry/generic"
)

// defaultIngressClass is the IngressClass of skiff's built-in ingress
// controller (internal/ingress, served by every agent), the cluster default: Ingresses created without a class get
// it from the DefaultIngressClass admission plugin.
func defaultIngressClass() *networkingv1.IngressClass {
	return &networkingv1.IngressClass{
		ObjectMeta: metav1.ObjectMeta{
			Name:        ingress.DefaultClassName,
			Annotations: map[string]string{networkingv1.AnnotationIsDefaultIngressClass: "true"},
		},
		Spec: networkingv1.IngressClassSpec{Controller: ingress.DefaultControllerName},
	}
}

// The getter also serves the DefaultIngressClass admission plugin.
var _ admission.IngressClassLister = (*getter)(nil)

func (g *getter) ListIngressClasses(ctx context.Context) ([]networkingv1.IngressClass, error) {
	st := g.s.store("networking.k8s.io", "ingressclasses")
	if st == nil {
		return nil, nil
	}
	o, err := st.List(ctx, "", generic.ListOptions{ResourceVersion: "0"})
	if err != nil {
		return nil, err
	}
	return o.(*networkingv1.IngressClassList).Items, nil
}
