package policy

import (
	"testing"
	"time"

	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func TestPDB(t *testing.T) {
	r := Resources()[0]
	i := func(n int32) *intstr.IntOrString { v := intstr.FromInt32(n); return &v }
	s := func(v string) *intstr.IntOrString { x := intstr.FromString(v); return &x }
	sel := &metav1.LabelSelector{MatchLabels: map[string]string{"app": "x"}}
	bad := policyv1.UnhealthyPodEvictionPolicyType("Never")
	cases := []struct {
		name string
		spec policyv1.PodDisruptionBudgetSpec
		want string // "" = valid, else "type field"
	}{
		{"min int", policyv1.PodDisruptionBudgetSpec{MinAvailable: i(2), Selector: sel}, ""},
		{"max pct", policyv1.PodDisruptionBudgetSpec{MaxUnavailable: s("30%"), Selector: sel}, ""},
		{"both", policyv1.PodDisruptionBudgetSpec{MinAvailable: i(1), MaxUnavailable: i(1)}, "FieldValueInvalid spec"},
		{"negative", policyv1.PodDisruptionBudgetSpec{MinAvailable: i(-1)}, "FieldValueInvalid spec.minAvailable"},
		{"over 100", policyv1.PodDisruptionBudgetSpec{MaxUnavailable: s("101%")}, "FieldValueInvalid spec.maxUnavailable"},
		{"bad pct", policyv1.PodDisruptionBudgetSpec{MaxUnavailable: s("1x")}, "FieldValueInvalid spec.maxUnavailable"},
		{"bad policy", policyv1.PodDisruptionBudgetSpec{UnhealthyPodEvictionPolicy: &bad}, "FieldValueNotSupported spec.unhealthyPodEvictionPolicy"},
	}
	for _, c := range cases {
		errs := r.Validate(&policyv1.PodDisruptionBudget{Spec: c.spec})
		if c.want == "" && len(errs) != 0 || c.want != "" && (len(errs) != 1 || string(errs[0].Type)+" "+errs[0].Field != c.want) {
			t.Errorf("%s: errs %v, want %q", c.name, errs, c.want)
		}
	}
	p := &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "p", CreationTimestamp: metav1.NewTime(time.Now().Add(-5 * time.Hour))},
		Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: s("50%")}, Status: policyv1.PodDisruptionBudgetStatus{DisruptionsAllowed: 2}}
	row := r.TableRow(p)
	want := []interface{}{"p", "50%", "N/A", int64(2), "5h"}
	if len(row) != len(r.TableColumns) {
		t.Fatalf("row %v", row)
	}
	for k := range want {
		if row[k] != want[k] {
			t.Errorf("cell %d = %#v, want %#v", k, row[k], want[k])
		}
	}
	r.PrepareForCreate(p)
	if p.Status.DisruptionsAllowed != 0 {
		t.Errorf("status not reset")
	}
}
