package coordination

import (
	"testing"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestLease(t *testing.T) {
	r := Resources()[0]
	i32 := func(v int32) *int32 { return &v }
	str := func(v string) *string { return &v }
	cases := []struct {
		spec coordinationv1.LeaseSpec
		want string
	}{
		{coordinationv1.LeaseSpec{HolderIdentity: str("node-1"), LeaseDurationSeconds: i32(40), LeaseTransitions: i32(0)}, ""},
		{coordinationv1.LeaseSpec{LeaseDurationSeconds: i32(0)}, "FieldValueInvalid spec.leaseDurationSeconds"},
		{coordinationv1.LeaseSpec{LeaseTransitions: i32(-1)}, "FieldValueInvalid spec.leaseTransitions"},
		{coordinationv1.LeaseSpec{PreferredHolder: str("x")}, "FieldValueForbidden spec.preferredHolder"},
	}
	for i, c := range cases {
		errs := r.Validate(&coordinationv1.Lease{Spec: c.spec})
		if c.want == "" && len(errs) != 0 || c.want != "" && (len(errs) != 1 || string(errs[0].Type)+" "+errs[0].Field != c.want) {
			t.Errorf("case %d: errs %v, want %q", i, errs, c.want)
		}
	}
	row := r.TableRow(&coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "n"}, Spec: coordinationv1.LeaseSpec{HolderIdentity: str("node-1")}})
	if len(row) != 3 || row[0] != "n" || row[1] != "node-1" || row[2] != "<unknown>" {
		t.Errorf("row %v", row)
	}
}
