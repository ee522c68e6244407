package admission

import (
	"context"
	"errors"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"skiff.dev/skiff/internal/registry"
	"skiff.dev/skiff/internal/registry/generic"
)

type ingressClassGetter struct {
	fakeGetter
	classes []networkingv1.IngressClass
	err     error
}

func (g *ingressClassGetter) ListIngressClasses(context.Context) ([]networkingv1.IngressClass, error) {
	return g.classes, g.err
}

var ingressesR = &registry.Resource{GroupVersion: networkingv1.SchemeGroupVersion, Resource: "ingresses", Kind: "Ingress", Namespaced: true}

func TestDefaultIngressClass(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	class := func(name string, age time.Duration, def bool) networkingv1.IngressClass {
		c := networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(t0.Add(-age))}}
		if def {
			c.Annotations = map[string]string{networkingv1.AnnotationIsDefaultIngressClass: "true"}
		}
		return c
	}
	str := func(s string) *string { return &s }
	for _, tc := range []struct {
		name    string
		classes []networkingv1.IngressClass
		ing     networkingv1.Ingress
		op      generic.Operation
		want    *string
	}{
		{name: "default set", classes: []networkingv1.IngressClass{class("skiff", 0, true), class("other", 0, false)}, op: generic.OpCreate, want: str("skiff")},
		{name: "newest default wins", classes: []networkingv1.IngressClass{class("old", time.Hour, true), class("new", 0, true)}, op: generic.OpCreate, want: str("new")},
		{name: "no default", classes: []networkingv1.IngressClass{class("other", 0, false)}, op: generic.OpCreate},
		{name: "explicit class kept", classes: []networkingv1.IngressClass{class("skiff", 0, true)}, op: generic.OpCreate,
			ing: networkingv1.Ingress{Spec: networkingv1.IngressSpec{IngressClassName: str("nginx")}}, want: str("nginx")},
		{name: "annotation is a choice", classes: []networkingv1.IngressClass{class("skiff", 0, true)}, op: generic.OpCreate,
			ing: networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{"kubernetes.io/ingress.class": "nginx"}}}},
		{name: "updates untouched", classes: []networkingv1.IngressClass{class("skiff", 0, true)}, op: generic.OpUpdate},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := New(&ingressClassGetter{classes: tc.classes})
			ing := tc.ing.DeepCopy()
			if err := c.admitAll(context.Background(), ingressesR, tc.op, ing, ing.DeepCopy()); err != nil {
				t.Fatalf("admit: %v", err)
			}
			got := ing.Spec.IngressClassName
			if (got == nil) != (tc.want == nil) || (got != nil && *got != *tc.want) {
				t.Errorf("ingressClassName = %v, want %v", deref(got), deref(tc.want))
			}
		})
	}
	c := New(&ingressClassGetter{err: errors.New("etcd down")})
	if err := c.admitAll(context.Background(), ingressesR, generic.OpCreate, &networkingv1.Ingress{}, nil); !apierrors.IsInternalError(err) {
		t.Errorf("list failure: %v, want an internal error", err)
	}
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}
