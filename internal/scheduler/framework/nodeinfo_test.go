package framework

import (
	"reflect"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestNodeInfoCopiesSpecFilterFields: the name, unschedulable flag and
// taints that filters and scoring read from the NodeInfo follow the node through SetNode (cordon,
// taint, uncordon), copies (Clone, the snapshot's SetNodeInfo) and
// RemoveNode.
func TestNodeInfoCopiesSpecFilterFields(t *testing.T) {
	check := func(what string, ni *NodeInfo) {
		t.Helper()
		var wantU bool
		var wantT []v1.Taint
		var wantName string
		if n := ni.Node(); n != nil {
			wantU, wantT, wantName = n.Spec.Unschedulable, n.Spec.Taints, n.Name
		}
		if ni.Unschedulable() != wantU || !reflect.DeepEqual(ni.Taints(), wantT) || ni.Name() != wantName {
			t.Fatalf("%s: Name %q Unschedulable %v Taints %v, node says %q %v %v", what, ni.Name(), ni.Unschedulable(), ni.Taints(), wantName, wantU, wantT)
		}
	}
	plain := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}
	cordoned := plain.DeepCopy()
	cordoned.Spec.Unschedulable = true
	cordoned.Spec.Taints = []v1.Taint{{Key: v1.TaintNodeUnschedulable, Effect: v1.TaintEffectNoSchedule}, {Key: "k", Value: "v", Effect: v1.TaintEffectPreferNoSchedule}}

	ni := &NodeInfo{}
	check("empty", ni)
	ni.SetNode(plain)
	check("plain", ni)
	ni.SetNode(cordoned)
	check("cordoned", ni)
	if !ni.Unschedulable() || len(ni.Taints()) != 2 {
		t.Fatalf("cordoned node: Unschedulable %v, %d taints", ni.Unschedulable(), len(ni.Taints()))
	}
	c := ni.Clone()
	check("clone", c)
	snap := NewSnapshot(nil, []*v1.Node{plain})
	snap.SetNodeInfo("n1", c)
	check("snapshot copy", snap.NodeInfoMap["n1"])
	if !snap.NodeInfoMap["n1"].Unschedulable() {
		t.Fatal("snapshot copy of a cordoned node is schedulable")
	}
	ni.SetNode(plain)
	check("uncordoned", ni)
	if ni.Unschedulable() || ni.Taints() != nil {
		t.Fatalf("uncordoned node: Unschedulable %v, taints %v", ni.Unschedulable(), ni.Taints())
	}
	c.RemoveNode()
	check("removed", c)
	if c.Name() != "" {
		t.Fatalf("removed node: Name %q", c.Name())
	}
	if c.Unschedulable() || c.Taints() != nil {
		t.Fatalf("removed node: Unschedulable %v, taints %v", c.Unschedulable(), c.Taints())
	}
}
