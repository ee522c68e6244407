package core

import (
	"math/rand"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// TestTolerationValidMatchesChecks: the fast path says valid exactly when
// the full checks (tolerationErrors) find no error, over random
// tolerations.
func TestTolerationValidMatchesChecks(t *testing.T) {
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewSource(seed))
	strs := []string{"", "a", "node.kubernetes.io/not-ready", "example.com/gpu", "-a", "a b", "A/b", "a/b/c", "x_y", "ü",
		"0123456789012345678901234567890123456789012345678901234567890123"}
	ops := []corev1.TolerationOperator{"", corev1.TolerationOpEqual, corev1.TolerationOpExists, "Gt"}
	effects := []corev1.TaintEffect{"", corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute, "Other"}
	secs := int64(300)
	valid := 0
	for i := range 20000 {
		tol := corev1.Toleration{Key: strs[rng.Intn(len(strs))], Operator: ops[rng.Intn(len(ops))],
			Value: strs[rng.Intn(len(strs))], Effect: effects[rng.Intn(len(effects))]}
		if rng.Intn(3) == 0 {
			tol.Value = ""
		}
		if rng.Intn(3) == 0 {
			tol.TolerationSeconds = &secs
		}
		want := len(tolerationErrors(tol, field.NewPath("tolerations").Index(0))) == 0
		if got := tolerationValid(&tol); got != want {
			t.Fatalf("seed %d case %d: %+v: fast path %v, checks %v", seed, i, tol, got, want)
		}
		if want {
			valid++
		}
	}
	if valid < 500 {
		t.Errorf("seed %d: only %d valid tolerations generated", seed, valid)
	}
}
