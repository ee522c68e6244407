package apiserver

import (
	"context"
	"fmt"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"skiff.dev/skiff/test/integration/framework"
)

// TestStaleUpdateNeverWins races a merge patch against a PUT carrying the
// resourceVersion from before the patch. Either the PUT is refused with
// 409 or it was applied first and the patch on top of it: both changes
// must then be stored. A PUT whose storage write is retried (its first
// compare-and-swap lost to the patch) once went through on the retry with
// its resourceVersion cleared, silently dropping the patch (node
// annotations written by the overlay vanished this way).
func TestStaleUpdateNeverWins(t *testing.T) {
	c := framework.Start(t, framework.Options{})
	ctx := context.Background()
	nodes := c.Client.CoreV1().Nodes()
	lost, conflicts := 0, 0
	const rounds = 150
	for i := 0; i < rounds; i++ {
		name := fmt.Sprintf("race-%d", i)
		n, err := nodes.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var perr, uerr error
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, perr = nodes.Patch(ctx, name, types.MergePatchType, []byte(`{"metadata":{"annotations":{"patched":"yes"}}}`), metav1.PatchOptions{})
		}()
		go func() {
			defer wg.Done()
			stale := n.DeepCopy()
			stale.Spec.Taints = []corev1.Taint{{Key: "put", Effect: corev1.TaintEffectNoSchedule}}
			_, uerr = nodes.Update(ctx, stale, metav1.UpdateOptions{})
		}()
		wg.Wait()
		if perr != nil {
			t.Fatalf("patch: %v", perr)
		}
		if uerr != nil {
			if !apierrors.IsConflict(uerr) {
				t.Fatalf("stale update: %v, want success or Conflict", uerr)
			}
			conflicts++
			continue
		}
		got, err := nodes.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got.Annotations["patched"] != "yes" || len(got.Spec.Taints) != 1 {
			lost++
			t.Errorf("%s: both writes succeeded but the node holds annotations %v, taints %v", name, got.Annotations, got.Spec.Taints)
		}
	}
	t.Logf("%d rounds: %d stale updates refused, %d lost writes", rounds, conflicts, lost)
}
