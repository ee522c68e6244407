package generic

import (
	"math/rand"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/apitesting/fuzzer"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metafuzzer "k8s.io/apimachinery/pkg/apis/meta/fuzzer"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"

	"skiff.dev/skiff/internal/registry"
)

// TestSemanticEqualMatchesDeepEqual: the field-ordered comparison gives
// apiequality.Semantic.DeepEqual's answer for random objects of every
// resource, copies of them, and copies with one top-level field replaced.
func TestSemanticEqualMatchesDeepEqual(t *testing.T) {
	codecs := serializer.NewCodecFactory(registry.NewScheme())
	equal, differ := 0, 0
	for i, r := range allResources() {
		f := fuzzer.FuzzerFor(metafuzzer.Funcs, rand.NewSource(int64(i)), codecs)
		for range 4 {
			a, other := r.New(), r.New()
			f.Fill(a)
			f.Fill(other)
			check := func(what string, x, y runtime.Object) {
				t.Helper()
				want := apiequality.Semantic.DeepEqual(x, y)
				if got := semanticEqual(x, y); got != want {
					t.Fatalf("%s %s: semanticEqual %v, Semantic.DeepEqual %v", r.GroupResource(), what, got, want)
				}
				if want {
					equal++
				} else {
					differ++
				}
			}
			check("copy", a, a.DeepCopyObject())
			check("other", a, other)
			for _, name := range append(topLevelFields(r), "ObjectMeta", "TypeMeta") {
				b := a.DeepCopyObject()
				copyField(b, other, name)
				check("with "+name+" replaced", a, b)
			}
		}
	}
	// Semantic equality that is not reflect.DeepEqual: equal quantities
	// written differently, nil and empty maps.
	p1 := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}}}}}}
	p2 := p1.DeepCopy()
	p2.Spec.Containers[0].Resources.Requests[corev1.ResourceCPU] = resource.MustParse("1000m")
	p2.Labels = map[string]string{}
	p2.Status.Conditions = []corev1.PodCondition{}
	if !semanticEqual(p1, p2) {
		t.Fatal("semantically equal pods (1 vs 1000m CPU, nil vs empty labels and conditions) compared unequal")
	}
	p2.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, LastTransitionTime: metav1.Now()}}
	if semanticEqual(p1, p2) {
		t.Fatal("pods with different conditions compared equal")
	}
	t.Logf("%d equal and %d different pairs agreed", equal, differ)
	if equal == 0 || differ == 0 {
		t.Fatal("the comparison saw only one answer")
	}
}
