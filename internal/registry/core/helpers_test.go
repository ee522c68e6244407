package core

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// objectMetaLabels builds an ObjectMeta with labels, for terse fixtures.
func objectMetaLabels(l map[string]string) metav1.ObjectMeta { return metav1.ObjectMeta{Labels: l} }

var testNow = time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)

// fixClock pins the package clock for the duration of a test.
func fixClock(t *testing.T) {
	t.Helper()
	old := now
	now = func() time.Time { return testNow }
	t.Cleanup(func() { now = old })
}

func ago(d time.Duration) metav1.Time { return metav1.NewTime(testNow.Add(-d)) }

// wantErr is the expected (type, path) of one validation error.
type wantErr struct {
	typ  field.ErrorType
	path string
}

// checkErrs asserts errs contains exactly the wanted (type, path) pairs,
// or is empty when want is empty.
func checkErrs(t *testing.T, name string, errs field.ErrorList, want ...wantErr) {
	t.Helper()
	if len(want) == 0 {
		if len(errs) != 0 {
			t.Errorf("%s: unexpected errors: %v", name, errs)
		}
		return
	}
	for _, w := range want {
		found := false
		for _, e := range errs {
			if e.Type == w.typ && e.Field == w.path {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: want %s at %s, got %v", name, w.typ, w.path, errs)
		}
	}
	if len(errs) != len(want) {
		t.Errorf("%s: want %d errors, got %d: %v", name, len(want), len(errs), errs)
	}
}

func TestAge(t *testing.T) {
	fixClock(t)
	if got := age(ago(5 * time.Minute)); got != "5m" {
		t.Errorf("age = %q, want 5m", got)
	}
	if got := age(metav1.Time{}); got != "<unknown>" {
		t.Errorf("zero age = %q", got)
	}
}
