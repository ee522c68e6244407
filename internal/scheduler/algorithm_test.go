package scheduler

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"skiff.dev/skiff/internal/scheduler/framework"
)

// TestScheduleReusesBuffersCleanly: the Algorithm's reused per-cycle
// buffers carry nothing from one cycle to the next. Pods that fit nowhere
// (every node rejected), fit on some nodes, and fit everywhere alternate;
// every cycle must report exactly the nodes it evaluated (all of them, at
// 4 nodes) and a failure only this cycle's reasons.
func TestScheduleReusesBuffersCleanly(t *testing.T) {
	nodes := []*v1.Node{testNode("n1", "2"), testNode("n2", "2"), testNode("n3", "8"), testNode("n4", "2")}
	for _, workers := range []int{1, 2} {
		snap := framework.NewSnapshot(nil, nodes)
		h := &framework.BasicHandle{Snap: snap, Par: framework.Parallelizer{Workers: workers},
			Namespaces: func() map[string]labels.Set { return map[string]labels.Set{"default": {}} }}
		h.Fwk = framework.NewFramework(DefaultPlugins(h, PluginDeps{DisablePreemption: true}), DefaultScoreWeights, h.Par)
		algo := &Algorithm{Framework: h.Fwk, Parallelizer: h.Par, Rand: rand.New(rand.NewPCG(1, 2))}
		for i := 0; i < 12; i++ {
			var pod *v1.Pod
			switch i % 3 {
			case 0: // fits nowhere: too big for every node
				pod = testPod(fmt.Sprintf("huge-%d", i), "16")
			case 1: // fits on n3 only
				pod = testPod(fmt.Sprintf("big-%d", i), "4")
			default: // selects no node
				pod = testPod(fmt.Sprintf("picky-%d", i), "1")
				pod.Spec.NodeSelector = map[string]string{"disk": "ssd"}
			}
			res, err := algo.Schedule(context.Background(), framework.NewCycleState(), framework.NewPodInfo(pod), snap)
			switch i % 3 {
			case 0:
				want := "0/4 nodes are available: 4 Insufficient cpu."
				if err == nil || err.Error() != want {
					t.Fatalf("workers %d, %s: got %v, want %q", workers, pod.Name, err, want)
				}
			case 1:
				if err != nil || res.SuggestedHost != "n3" || res.EvaluatedNodes != 4 || res.FeasibleNodes != 1 {
					t.Fatalf("workers %d, %s: %+v, %v; want n3, 4 evaluated, 1 feasible", workers, pod.Name, res, err)
				}
			default:
				want := "0/4 nodes are available: 4 node(s) didn't match Pod's node affinity/selector."
				if err == nil || err.Error() != want {
					t.Fatalf("workers %d, %s: got %v, want %q", workers, pod.Name, err, want)
				}
			}
		}
	}
}
