package printing

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestAgeAt(t *testing.T) {
	now := time.Date(2024, 1, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		created metav1.Time
		want    string
	}{
		{metav1.Time{}, "<unknown>"},
		{metav1.NewTime(now.Add(-30 * time.Second)), "30s"},
		{metav1.NewTime(now.Add(-5 * time.Minute)), "5m"},
		{metav1.NewTime(now.Add(-3 * time.Hour)), "3h"},
		{metav1.NewTime(now.Add(-72 * time.Hour)), "3d"},
	}
	for _, c := range cases {
		if got := AgeAt(c.created, now); got != c.want {
			t.Errorf("AgeAt(%v) = %q, want %q", c.created, got, c.want)
		}
	}
}

func TestCells(t *testing.T) {
	n, im := ContainerCells([]corev1.Container{{Name: "a", Image: "x"}, {Name: "b", Image: "y:1"}})
	if n != "a,b" || im != "x,y:1" {
		t.Errorf("ContainerCells = %q %q", n, im)
	}
	tr, fa := true, false
	if BoolPtr(nil) != "<unset>" || BoolPtr(&tr) != "True" || BoolPtr(&fa) != "False" {
		t.Errorf("BoolPtr wrong")
	}
	for _, c := range []struct {
		in   []string
		want string
	}{
		{nil, "<unset>"},
		{[]string{"a", "b"}, "a,b"},
		{[]string{"a", "b", "c", "d", "e"}, "a,b,c + 2 more..."},
	} {
		if got := ListWithMore(c.in, 3); got != c.want {
			t.Errorf("ListWithMore(%v) = %q, want %q", c.in, got, c.want)
		}
	}
}
