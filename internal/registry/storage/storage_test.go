package storagereg

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestStorageClass(t *testing.T) {
	r := Resources()[0]
	sc := func(prov string) *storagev1.StorageClass {
		s := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "local"}, Provisioner: prov}
		r.Default(s)
		return s
	}
	s := sc("rancher.io/local-path")
	if *s.ReclaimPolicy != corev1.PersistentVolumeReclaimDelete || *s.VolumeBindingMode != storagev1.VolumeBindingImmediate {
		t.Fatalf("bad defaults: %+v", s)
	}
	badMode := sc("a.b/c")
	m := storagev1.VolumeBindingMode("Later")
	badMode.VolumeBindingMode = &m
	badReclaim := sc("a.b/c")
	p := corev1.PersistentVolumeReclaimRecycle
	badReclaim.ReclaimPolicy = &p
	cases := []struct {
		obj  *storagev1.StorageClass
		want string
	}{
		{s, ""},
		{sc(""), "FieldValueRequired provisioner"},
		{sc("bad name!"), "FieldValueInvalid provisioner"},
		{badMode, "FieldValueNotSupported volumeBindingMode"},
		{badReclaim, "FieldValueNotSupported reclaimPolicy"},
	}
	for i, c := range cases {
		errs := r.Validate(c.obj)
		if c.want == "" && len(errs) != 0 || c.want != "" && (len(errs) != 1 || string(errs[0].Type)+" "+errs[0].Field != c.want) {
			t.Errorf("case %d: errs %v, want %q", i, errs, c.want)
		}
	}
	upd := s.DeepCopy()
	upd.Parameters = map[string]string{"a": "b"}
	upd.Provisioner = "other.io/x"
	if errs := r.ValidateUpdate(upd, s); len(errs) != 2 || errs[0].Field != "parameters" || errs[1].Field != "provisioner" {
		t.Errorf("update errs %v", errs)
	}
	s.Annotations = map[string]string{IsDefaultAnnotation: "true"}
	row := r.TableRow(s)
	want := []interface{}{"local (default)", "rancher.io/local-path", "Delete", "Immediate", false, "<unknown>"}
	if len(row) != len(r.TableColumns) {
		t.Fatalf("row %v", row)
	}
	for i := range want {
		if row[i] != want[i] {
			t.Errorf("cell %d = %#v, want %#v", i, row[i], want[i])
		}
	}
}
