package storage

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestResourceVersionHelpers(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{{"", 0, true}, {"0", 0, true}, {"42", 42, true}, {"-1", 0, false}, {"x", 0, false}} {
		got, err := ParseResourceVersion(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseResourceVersion(%q) = %d, %v", tc.in, got, err)
		}
	}
	p := &corev1.Pod{}
	if err := SetResourceVersion(p, 7); err != nil || p.ResourceVersion != "7" {
		t.Fatalf("set: %v %q", err, p.ResourceVersion)
	}
	if rv, err := ObjectResourceVersion(p); err != nil || rv != 7 {
		t.Fatalf("get: %d %v", rv, err)
	}
	if err := SetResourceVersion(p, 0); err != nil || p.ResourceVersion != "" {
		t.Fatalf("clear: %v %q", err, p.ResourceVersion)
	}
}
