package generic_test

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/applyconfigurations"

	"skiff.dev/skiff/internal/registry"
	"skiff.dev/skiff/internal/registry/core"
	"skiff.dev/skiff/internal/registry/generic"
)

// BenchmarkCreateManagedFields measures the managedFields bookkeeping of a
// small pod create (structured-merge-diff typing of the empty live object
// and the new one, and their comparison): the largest single cost in
// Store.Create, see docs/PERFORMANCE.md.
func BenchmarkCreateManagedFields(b *testing.B) {
	scheme := registry.NewScheme()
	fms := generic.NewFieldManagers(scheme, applyconfigurations.NewTypeConverter(scheme))
	var r *registry.Resource
	for _, x := range core.Resources() {
		if x.Resource == "pods" && x.StorageResource.Empty() {
			r = x
		}
	}
	if r == nil {
		b.Fatal("no pods resource")
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Labels: map[string]string{"app": "bench"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "registry.k8s.io/pause:3.10"}}}}
	r.Default(pod)
	b.ReportAllocs()
	for b.Loop() {
		out := fms.Update(r, "", r.New(), pod.DeepCopy(), "bench")
		if len(out.(*corev1.Pod).ManagedFields) != 1 {
			b.Fatal("no managedFields entry recorded")
		}
	}
}
