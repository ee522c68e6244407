package rbac

import (
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"skiff.dev/skiff/internal/registry"
)

func res(t *testing.T, name string) *registry.Resource {
	for _, r := range Resources() {
		if r.Resource == name {
			return r
		}
	}
	t.Fatalf("no %s", name)
	return nil
}

func check(t *testing.T, name string, errs field.ErrorList, want string) {
	t.Helper()
	if want == "" && len(errs) != 0 || want != "" && (len(errs) != 1 || string(errs[0].Type)+" "+errs[0].Field != want) {
		t.Errorf("%s: errs %v, want %q", name, errs, want)
	}
}

func TestRoles(t *testing.T) {
	role, crole := res(t, "roles"), res(t, "clusterroles")
	if !role.Namespaced || crole.Namespaced {
		t.Errorf("scope wrong")
	}
	cases := []struct {
		name string
		r    *registry.Resource
		rule rbacv1.PolicyRule
		want string
	}{
		{"valid", role, rbacv1.PolicyRule{Verbs: []string{"get"}, APIGroups: []string{""}, Resources: []string{"pods"}}, ""},
		{"no verbs", role, rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods"}}, "FieldValueRequired rules[0].verbs"},
		{"no groups", role, rbacv1.PolicyRule{Verbs: []string{"get"}, Resources: []string{"pods"}}, "FieldValueRequired rules[0].apiGroups"},
		{"no resources", role, rbacv1.PolicyRule{Verbs: []string{"get"}, APIGroups: []string{""}}, "FieldValueRequired rules[0].resources"},
		{"url in role", role, rbacv1.PolicyRule{Verbs: []string{"get"}, NonResourceURLs: []string{"/healthz"}}, "FieldValueInvalid rules[0].nonResourceURLs"},
		{"url in clusterrole", crole, rbacv1.PolicyRule{Verbs: []string{"get"}, NonResourceURLs: []string{"/healthz"}}, ""},
	}
	for _, c := range cases {
		var obj runtime.Object = &rbacv1.Role{Rules: []rbacv1.PolicyRule{c.rule}}
		r := role
		if c.r == crole {
			obj, r = &rbacv1.ClusterRole{Rules: []rbacv1.PolicyRule{c.rule}}, crole
		}
		check(t, c.name, r.Validate(obj), c.want)
	}
	ts := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	row := role.TableRow(&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "r", CreationTimestamp: metav1.NewTime(ts)}})
	if len(row) != 2 || row[1] != "2024-01-02T03:04:05Z" {
		t.Errorf("row %v", row)
	}
}

func TestBindings(t *testing.T) {
	rb, crb := res(t, "rolebindings"), res(t, "clusterrolebindings")
	b := &rbacv1.RoleBinding{RoleRef: rbacv1.RoleRef{Kind: "Role", Name: "r"},
		Subjects: []rbacv1.Subject{{Kind: "User", Name: "alice"}, {Kind: "ServiceAccount", Name: "sa", Namespace: "ns"}, {Kind: "Group", Name: "devs"}}}
	rb.Default(b)
	if b.RoleRef.APIGroup != rbacv1.GroupName || b.Subjects[0].APIGroup != rbacv1.GroupName || b.Subjects[1].APIGroup != "" {
		t.Fatalf("defaults wrong: %+v", b)
	}
	check(t, "valid", rb.Validate(b), "")
	bad := b.DeepCopy()
	bad.Subjects[0].Kind = "Robot"
	check(t, "bad subject kind", rb.Validate(bad), "FieldValueNotSupported subjects[0].kind")
	bad = b.DeepCopy()
	bad.RoleRef.Kind = "Other"
	check(t, "bad ref kind", rb.Validate(bad), "FieldValueNotSupported roleRef.kind")
	upd := b.DeepCopy()
	upd.RoleRef.Name = "other"
	check(t, "roleRef change", rb.ValidateUpdate(upd, b), "FieldValueInvalid roleRef")

	c := &rbacv1.ClusterRoleBinding{RoleRef: rbacv1.RoleRef{Kind: "Role", Name: "r"}, Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "sa"}}}
	crb.Default(c)
	errs := crb.Validate(c)
	if len(errs) != 2 || errs[0].Field != "roleRef.kind" || errs[1].Field != "subjects[0].namespace" {
		t.Errorf("clusterrolebinding errs %v", errs)
	}
	b.CreationTimestamp = metav1.NewTime(time.Now().Add(-5 * time.Hour))
	row := rb.TableRow(b)
	want := []interface{}{"", "Role/r", "5h", "alice", "devs", "ns/sa"}
	for i := range want {
		if row[i] != want[i] {
			t.Errorf("cell %d = %#v, want %#v", i, row[i], want[i])
		}
	}
}
