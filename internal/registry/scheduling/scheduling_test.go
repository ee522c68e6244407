package scheduling

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestPriorityClass(t *testing.T) {
	r := Resources()[0]
	if r.Namespaced {
		t.Errorf("priorityclasses must be cluster-scoped")
	}
	pc := func(name string, v int32) *schedulingv1.PriorityClass {
		p := &schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Value: v}
		r.Default(p)
		return p
	}
	if p := pc("high", 1); *p.PreemptionPolicy != corev1.PreemptLowerPriority {
		t.Errorf("preemptionPolicy default = %v", *p.PreemptionPolicy)
	}
	never := corev1.PreemptionPolicy("Sometimes")
	badPolicy := pc("x", 1)
	badPolicy.PreemptionPolicy = &never
	cases := []struct {
		obj  *schedulingv1.PriorityClass
		want string
	}{
		{pc("high", 1000), ""},
		{pc("system-cluster-critical", SystemCriticalPriority), ""},
		{pc("too-high", HighestUserDefinablePriority+1), "FieldValueForbidden value"},
		{pc("system-mine", 5), "FieldValueForbidden metadata.name"},
		{badPolicy, "FieldValueNotSupported preemptionPolicy"},
	}
	for i, c := range cases {
		errs := r.Validate(c.obj)
		if c.want == "" && len(errs) != 0 || c.want != "" && (len(errs) != 1 || string(errs[0].Type)+" "+errs[0].Field != c.want) {
			t.Errorf("case %d: errs %v, want %q", i, errs, c.want)
		}
	}
	old := pc("high", 10)
	upd := old.DeepCopy()
	upd.Value = 11
	if errs := r.ValidateUpdate(upd, old); len(errs) != 1 || errs[0].Field != "value" {
		t.Errorf("value change: %v", errs)
	}
	upd = old.DeepCopy()
	upd.Description = "new"
	if errs := r.ValidateUpdate(upd, old); len(errs) != 0 {
		t.Errorf("description change rejected: %v", errs)
	}
	row := r.TableRow(old)
	if len(row) != len(r.TableColumns) || row[1] != int64(10) || row[2] != false || row[4] != "PreemptLowerPriority" {
		t.Errorf("row %v", row)
	}
}
