package generic

import (
	"math/rand"
	"testing"

	"k8s.io/apimachinery/pkg/api/apitesting/fuzzer"
	metafuzzer "k8s.io/apimachinery/pkg/apis/meta/fuzzer"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime/serializer"

	"skiff.dev/skiff/internal/registry"
)

// TestFieldViewMatchesFieldSet: the predicate's view of an object's
// selectable fields answers Has, Get and selectors as FieldSet's map does,
// for random objects of every resource (each field it has, with its own
// value, another value and the empty one, plus fields it lacks).
func TestFieldViewMatchesFieldSet(t *testing.T) {
	codecs := serializer.NewCodecFactory(registry.NewScheme())
	checked := 0
	for i, r := range allResources() {
		st := NewStore(r, nil, "/registry/x")
		f := fuzzer.FuzzerFor(metafuzzer.Funcs, rand.NewSource(int64(i)), codecs)
		for range 4 {
			obj := r.New()
			f.Fill(obj)
			set, view := st.FieldSet(obj), st.fieldView(obj)
			keys := []string{"metadata.name", "metadata.namespace", "spec.nodeName", "status.phase", "no.such.field"}
			for k := range set {
				keys = append(keys, k)
			}
			for _, k := range keys {
				if set.Has(k) != view.Has(k) || set.Get(k) != view.Get(k) {
					t.Fatalf("%s %q: map (%v, %q), view (%v, %q)", r.GroupResource(), k, set.Has(k), set.Get(k), view.Has(k), view.Get(k))
				}
				for _, v := range []string{set.Get(k), "", "x"} {
					for _, sel := range []fields.Selector{fields.OneTermEqualSelector(k, v), fields.OneTermNotEqualSelector(k, v)} {
						if sel.Matches(set) != sel.Matches(view) {
							t.Fatalf("%s %s: map %v, view %v", r.GroupResource(), sel, sel.Matches(set), sel.Matches(view))
						}
						checked++
					}
				}
			}
		}
	}
	if checked < 1000 {
		t.Errorf("only %d selector checks", checked)
	}
}
