package nodeunschedulable

import (
	"testing"

	v1 "k8s.io/api/core/v1"

	"skiff.dev/skiff/internal/scheduler/framework"
	"skiff.dev/skiff/internal/scheduler/schedtest"
)

func TestFilter(t *testing.T) {
	tests := []struct {
		name          string
		unschedulable bool
		tolerations   []v1.Toleration
		want          framework.Code
	}{
		{"schedulable node", false, nil, framework.Success},
		{"cordoned node", true, nil, framework.UnschedulableAndUnresolvable},
		{"cordoned node, pod tolerates the unschedulable taint", true,
			[]v1.Toleration{{Key: v1.TaintNodeUnschedulable, Operator: v1.TolerationOpExists, Effect: v1.TaintEffectNoSchedule}}, framework.Success},
		{"cordoned node, pod tolerates everything", true, []v1.Toleration{{Operator: v1.TolerationOpExists}}, framework.Success},
		{"cordoned node, toleration for another effect", true,
			[]v1.Toleration{{Key: v1.TaintNodeUnschedulable, Operator: v1.TolerationOpExists, Effect: v1.TaintEffectNoExecute}}, framework.UnschedulableAndUnresolvable},
		{"cordoned node, toleration for another key", true,
			[]v1.Toleration{{Key: "other", Operator: v1.TolerationOpExists}}, framework.UnschedulableAndUnresolvable},
	}
	p, _ := New(nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			node := schedtest.Node("a", "1", "1Gi", nil)
			node.Spec.Unschedulable = tt.unschedulable
			ni := &framework.NodeInfo{}
			ni.SetNode(node)
			pod := schedtest.Pod("p", "", "", nil)
			pod.Spec.Tolerations = tt.tolerations
			st := p.(*NodeUnschedulable).Filter(t.Context(), framework.NewCycleState(), framework.NewPodInfo(pod), ni)
			if st.Code() != tt.want {
				t.Fatalf("got %v, want %v", st, tt.want)
			}
			if !st.IsSuccess() && st.Message() != ErrReasonUnschedulable {
				t.Errorf("message %q, want %q", st.Message(), ErrReasonUnschedulable)
			}
		})
	}
}
