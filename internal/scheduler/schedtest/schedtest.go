// Package schedtest builds nodes, pods and one-cycle runs for the
// scheduler's plugin tests. It is test support only.
package schedtest

import (
	"context"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"skiff.dev/skiff/internal/scheduler/framework"
)

// Node builds a node with cpu/memory/pods allocatable and labels
// (hostname added).
func Node(name, cpu, mem string, lbls map[string]string) *v1.Node {
	l := map[string]string{v1.LabelHostname: name}
	for k, v := range lbls {
		l[k] = v
	}
	rl := v1.ResourceList{v1.ResourceCPU: resource.MustParse(cpu), v1.ResourceMemory: resource.MustParse(mem), v1.ResourcePods: resource.MustParse("110")}
	return &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}, Status: v1.NodeStatus{Capacity: rl, Allocatable: rl}}
}

// Pod builds a pod in namespace "default" with labels, requesting cpu
// (empty: nothing), placed on node (empty: pending).
func Pod(name, node, cpu string, lbls map[string]string) *v1.Pod {
	p := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID(name), Labels: lbls},
		Spec: v1.PodSpec{NodeName: node, Containers: []v1.Container{{Name: "c"}}}}
	if cpu != "" {
		p.Spec.Containers[0].Resources.Requests = v1.ResourceList{v1.ResourceCPU: resource.MustParse(cpu)}
	}
	return p
}

// Handle returns a BasicHandle over snap with the given namespaces' labels.
func Handle(snap *framework.Snapshot, ns map[string]labels.Set, plugins ...framework.Plugin) *framework.BasicHandle {
	h := &framework.BasicHandle{Snap: snap, Par: framework.Parallelizer{Workers: 1}, Namespaces: func() map[string]labels.Set { return ns }}
	h.Fwk = framework.NewFramework(plugins, nil, h.Par)
	return h
}

// FilterAll runs PreFilter then Filter of fwk on every node and returns
// each node's status code and message ("" on success).
func FilterAll(fwk *framework.Framework, snap *framework.Snapshot, pod *v1.Pod) map[string]string {
	ctx := context.Background()
	pi := framework.NewPodInfo(pod)
	cs := framework.NewCycleState()
	out := map[string]string{}
	if _, st := fwk.RunPreFilterPlugins(ctx, cs, pi, snap); !st.IsSuccess() {
		for _, ni := range snap.List() {
			out[ni.Node().Name] = st.Code().String() + ": " + st.Message()
		}
		return out
	}
	for _, ni := range snap.List() {
		if st := fwk.RunFilterPlugins(ctx, cs, pi, ni); !st.IsSuccess() {
			out[ni.Node().Name] = st.Code().String() + ": " + st.Message()
		} else {
			out[ni.Node().Name] = ""
		}
	}
	return out
}

// ScoreAll runs PreScore and Score (normalized, weight 1) on every node.
func ScoreAll(fwk *framework.Framework, snap *framework.Snapshot, pod *v1.Pod) map[string]int64 {
	ctx := context.Background()
	pi := framework.NewPodInfo(pod)
	cs := framework.NewCycleState()
	fwk.RunPreScorePlugins(ctx, cs, pi, snap.List())
	scores, st := fwk.RunScorePlugins(ctx, cs, pi, snap.List())
	if !st.IsSuccess() {
		panic(st.Message())
	}
	out := map[string]int64{}
	for _, s := range scores {
		out[s.Name] = s.Score
	}
	return out
}
