package nodename

import (
	"testing"

	"skiff.dev/skiff/internal/scheduler/framework"
	"skiff.dev/skiff/internal/scheduler/schedtest"
)

func TestFilter(t *testing.T) {
	nodes := []*framework.NodeInfo{}
	for _, n := range []string{"a", "b"} {
		ni := &framework.NodeInfo{}
		ni.SetNode(schedtest.Node(n, "1", "1Gi", nil))
		nodes = append(nodes, ni)
	}
	no := "UnschedulableAndUnresolvable: " + ErrReason
	tests := []struct {
		name     string
		nodeName string
		want     map[string]string
	}{
		{"no node name fits everywhere", "", map[string]string{"a": "", "b": ""}},
		{"named node only", "b", map[string]string{"a": no, "b": ""}},
		{"unknown node fits nowhere", "c", map[string]string{"a": no, "b": no}},
	}
	p, _ := New(nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := schedtest.Pod("p", "", "", nil)
			pod.Spec.NodeName = tt.nodeName
			for _, ni := range nodes {
				st := p.(*NodeName).Filter(t.Context(), framework.NewCycleState(), framework.NewPodInfo(pod), ni)
				got := ""
				if !st.IsSuccess() {
					got = st.Code().String() + ": " + st.Message()
				}
				if got != tt.want[ni.Node().Name] {
					t.Errorf("node %s: got %q, want %q", ni.Node().Name, got, tt.want[ni.Node().Name])
				}
			}
		})
	}
}
