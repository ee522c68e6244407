package servicealloc

import (
	"context"
	"errors"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"skiff.dev/skiff/internal/registry"
	"skiff.dev/skiff/internal/registry/generic"
)

func TestWrapRunsInnerAndOnlyTouchesServices(t *testing.T) {
	e := newEnv(t, "10.43.0.0/16", "")
	var calls []string
	inner := generic.Hooks{
		Admit: func(_ context.Context, r *registry.Resource, _ generic.Operation, _, _ runtime.Object) error {
			calls = append(calls, "admit "+r.Resource)
			if r.Resource == "refused" {
				return errors.New("refused by admission")
			}
			return nil
		},
		AfterDelete: func(_ context.Context, r *registry.Resource, _ runtime.Object) {
			calls = append(calls, "delete "+r.Resource)
		},
	}
	h := e.a.Wrap(inner)
	services := &registry.Resource{GroupVersion: corev1.SchemeGroupVersion, Resource: "services"}
	ctx := context.Background()

	s := svc("a", corev1.ServiceTypeClusterIP)
	if err := h.Admit(ctx, services, generic.OpCreate, s, nil); err != nil {
		t.Fatal(err)
	}
	if s.Spec.ClusterIP == "" {
		t.Fatal("service got no IP through the hooks")
	}
	// A service-shaped object of another resource is left alone.
	other := svc("b", corev1.ServiceTypeClusterIP)
	if err := h.Admit(ctx, &registry.Resource{GroupVersion: corev1.SchemeGroupVersion, Resource: "pods"}, generic.OpCreate, other, nil); err != nil {
		t.Fatal(err)
	}
	if other.Spec.ClusterIP != "" {
		t.Fatal("non-service resource was allocated an IP")
	}
	// Inner admission refusing stops allocation.
	refused := svc("c", corev1.ServiceTypeClusterIP)
	if err := h.Admit(ctx, &registry.Resource{Resource: "refused"}, generic.OpCreate, refused, nil); err == nil || refused.Spec.ClusterIP != "" {
		t.Fatalf("refused: err %v ip %q", err, refused.Spec.ClusterIP)
	}
	e.store.put(s)
	e.store.remove(s)
	h.AfterDelete(ctx, services, s)
	e.usage(0, 0)
	want := []string{"admit services", "admit pods", "admit refused", "delete services"}
	if len(calls) != len(want) {
		t.Fatalf("inner calls %v, want %v", calls, want)
	}
	for i := range want {
		if calls[i] != want[i] {
			t.Fatalf("inner calls %v, want %v", calls, want)
		}
	}
}
