package daemonset

import (
	"fmt"
	"math/rand/v2"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// TestRolloutNeverExceedsLimits drives random rollouts (node count,
// maxUnavailable or maxSurge, which pending pods start) and checks after
// every sync that no more than maxUnavailable nodes lack an available pod
// and no more than maxSurge nodes run two pods, and that the rollout ends
// with every node on the new template.
func TestRolloutNeverExceedsLimits(t *testing.T) {
	for seed := uint64(1); seed <= 8; seed++ {
		r := rand.New(rand.NewPCG(seed, 7))
		nodes := 2 + r.IntN(5)
		unavail, surge := 1+r.IntN(3), 0
		if seed%2 == 0 {
			unavail, surge = 0, 1+r.IntN(3)
		}
		t.Run(fmt.Sprintf("seed%d-nodes%d-unavail%d-surge%d", seed, nodes, unavail, surge), func(t *testing.T) {
			objs := []runtime.Object{newDS(func(d *appsv1.DaemonSet) {
				d.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateDaemonSet{
					MaxUnavailable: ptr.To(intstr.FromInt(unavail)), MaxSurge: ptr.To(intstr.FromInt(surge))}
			})}
			for i := 0; i < nodes; i++ {
				objs = append(objs, node(fmt.Sprintf("n%d", i)))
			}
			f := newFixture(t, objs...)
			f.sync()
			f.bindAndRun()
			f.changeImage("agent:2")
			for step := 0; ; step++ {
				if step > 200 {
					t.Fatal("rollout did not finish in 200 steps")
				}
				f.sync()
				f.refresh()
				perNode := map[string][]v1.Pod{}
				for _, p := range f.pods() {
					perNode[targetNode(&p)] = append(perNode[targetNode(&p)], p)
				}
				missing, doubled, updated := 0, 0, 0
				for i := 0; i < nodes; i++ {
					ps := perNode[fmt.Sprintf("n%d", i)]
					ok := false
					for _, p := range ps {
						if p.Status.Phase == v1.PodRunning {
							ok = true
						}
						if p.Spec.Containers[0].Image == "agent:2" && p.Status.Phase == v1.PodRunning && len(ps) == 1 {
							updated++
						}
					}
					if !ok {
						missing++
					}
					if len(ps) > 1 {
						doubled++
					}
				}
				if missing > unavail {
					t.Fatalf("step %d: %d nodes without an available pod, maxUnavailable %d", step, missing, unavail)
				}
				if doubled > surge {
					t.Fatalf("step %d: %d nodes with two pods, maxSurge %d", step, doubled, surge)
				}
				if updated == nodes {
					return
				}
				// Start a random subset of the pending pods.
				for _, p := range f.pods() {
					if p.Spec.NodeName == "" && r.IntN(2) == 0 {
						p.Spec.NodeName = targetNode(&p)
						p.Status.Phase = v1.PodRunning
						p.Status.Conditions = []v1.PodCondition{{Type: v1.PodReady, Status: v1.ConditionTrue}}
						must(t, f.client.Tracker().Update(v1.SchemeGroupVersion.WithResource("pods"), &p, "default"))
					}
				}
				f.refresh()
			}
		})
	}
}
