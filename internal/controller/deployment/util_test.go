package deployment

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// equalIgnoreHashByCopy is the straightforward definition (copy, drop the
// hash label, compare) that equalIgnoreHash must agree with.
func equalIgnoreHashByCopy(a, b *v1.PodTemplateSpec) bool {
	a, b = a.DeepCopy(), b.DeepCopy()
	delete(a.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
	delete(b.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
	return apiequality.Semantic.DeepEqual(a, b)
}

func TestEqualIgnoreHash(t *testing.T) {
	const h = appsv1.DefaultDeploymentUniqueLabelKey
	tpl := func(labels map[string]string, image string) *v1.PodTemplateSpec {
		return &v1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{"a": "1"}},
			Spec: v1.PodSpec{Containers: []v1.Container{{Name: "c", Image: image}}}}
	}
	labelSets := []map[string]string{
		nil, {}, {h: "abc"}, {h: "def"}, {"app": "web"}, {"app": "web", h: "abc"}, {"app": "db", h: "abc"},
		{"app": "web", "tier": "x"}, {"tier": "x", h: "abc"}, {"app": ""},
	}
	n := 0
	for _, la := range labelSets {
		for _, lb := range labelSets {
			for _, img := range []string{"v1", "v2"} {
				a, b := tpl(la, "v1"), tpl(lb, img)
				aCopy, bCopy := a.DeepCopy(), b.DeepCopy()
				got, want := equalIgnoreHash(a, b), equalIgnoreHashByCopy(a, b)
				if got != want {
					t.Errorf("labels %v vs %v, image %s: %v, want %v", la, lb, img, got, want)
				}
				if want {
					n++
				}
				if !apiequality.Semantic.DeepEqual(a, aCopy) || !apiequality.Semantic.DeepEqual(b, bCopy) {
					t.Fatal("equalIgnoreHash modified its arguments")
				}
			}
		}
	}
	if n < 10 {
		t.Fatalf("only %d equal pairs: the table tests little", n)
	}
	// Other template fields still count.
	a, b := tpl(map[string]string{"app": "web"}, "v1"), tpl(map[string]string{"app": "web", h: "x"}, "v1")
	b.Annotations["a"] = "2"
	if equalIgnoreHash(a, b) {
		t.Error("templates with different annotations compare equal")
	}
}

func BenchmarkEqualIgnoreHash(b *testing.B) {
	d := newDeployment(3, intstr.FromInt32(1), intstr.FromInt32(0))
	rs := d.Spec.Template.DeepCopy()
	rs.Labels[appsv1.DefaultDeploymentUniqueLabelKey] = "abc"
	for _, impl := range []struct {
		name string
		f    func(a, b *v1.PodTemplateSpec) bool
	}{{"in-place", equalIgnoreHash}, {"copying", equalIgnoreHashByCopy}} {
		b.Run(impl.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if !impl.f(rs, &d.Spec.Template) {
					b.Fatal("not equal")
				}
			}
		})
	}
}

// TestTemplateMemo: the memo answers as sameTemplate does while neither
// generation moves, and compares again when one does.
func TestTemplateMemo(t *testing.T) {
	d := newDeployment(3, intstr.FromInt32(1), intstr.FromInt32(0))
	d.Generation = 1
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{UID: "rs-1", Generation: 1}, Spec: appsv1.ReplicaSetSpec{Template: *d.Spec.Template.DeepCopy()}}
	rs.Spec.Template.Labels[appsv1.DefaultDeploymentUniqueLabelKey] = "abc"
	var memo templateMemo
	check := func(step string, want bool) {
		t.Helper()
		if got := memo.same(d, rs); got != want || sameTemplate(d, rs) != want {
			t.Fatalf("%s: memo %v, sameTemplate %v, want %v", step, got, sameTemplate(d, rs), want)
		}
	}
	check("equal", true)
	check("equal, remembered", true)
	d = d.DeepCopy()
	d.Spec.Template.Spec.Containers[0].Image = "v2"
	d.Generation++
	check("deployment template changed", false)
	rs = rs.DeepCopy()
	rs.Spec.Template.Spec.Containers[0].Image = "v2"
	rs.Generation++
	check("replicaset template changed", true)
	other := d.DeepCopy()
	other.UID = "other"
	other.Spec.Template.Spec.Containers[0].Image = "v3"
	if memo.same(other, rs) {
		t.Fatal("another deployment got the memo of the first")
	}
	memo.forget(rs.UID)
	if len(memo.m) != 0 {
		t.Fatal("forget kept the entry")
	}
	// Without generations nothing is remembered.
	rs.Generation = 0
	check("no generation", true)
	if len(memo.m) != 0 {
		t.Fatal("remembered an object without a generation")
	}
}
