package daemonset

import (
	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	v1helper "k8s.io/component-helpers/scheduling/corev1"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
	"k8s.io/klog/v2"
)

// Well-known taints (k8s.io/api/core/v1 names them).
var autoTolerations = []v1.Toleration{
	{Key: v1.TaintNodeNotReady, Operator: v1.TolerationOpExists, Effect: v1.TaintEffectNoExecute},
	{Key: v1.TaintNodeUnreachable, Operator: v1.TolerationOpExists, Effect: v1.TaintEffectNoExecute},
	{Key: v1.TaintNodeDiskPressure, Operator: v1.TolerationOpExists, Effect: v1.TaintEffectNoSchedule},
	{Key: v1.TaintNodeMemoryPressure, Operator: v1.TolerationOpExists, Effect: v1.TaintEffectNoSchedule},
	{Key: v1.TaintNodePIDPressure, Operator: v1.TolerationOpExists, Effect: v1.TaintEffectNoSchedule},
	{Key: v1.TaintNodeUnschedulable, Operator: v1.TolerationOpExists, Effect: v1.TaintEffectNoSchedule},
}

var networkUnavailable = v1.Toleration{Key: v1.TaintNodeNetworkUnavailable, Operator: v1.TolerationOpExists, Effect: v1.TaintEffectNoSchedule}

// addTolerations adds the tolerations upstream gives every daemon pod,
// unless the template already has one for the same key and effect.
func addTolerations(spec *v1.PodSpec) {
	want := autoTolerations
	if spec.HostNetwork {
		want = append(want[:len(want):len(want)], networkUnavailable)
	}
	for _, t := range want {
		found := false
		for _, have := range spec.Tolerations {
			if have.Key == t.Key && (have.Effect == t.Effect || have.Effect == "") {
				found = true
				break
			}
		}
		if !found {
			spec.Tolerations = append(spec.Tolerations, t)
		}
	}
}

// placement is where a DaemonSet's pod belongs relative to one node.
type placement struct {
	// shouldRun: a pod should be created on the node.
	shouldRun bool
	// shouldContinue: an existing pod may stay.
	shouldContinue bool
}

// placementOn decides whether ds's pod runs on node, as upstream's
// NodeShouldRunDaemonPod.
func placementOn(ds *appsv1.DaemonSet, node *v1.Node) placement {
	pod := &v1.Pod{Spec: *ds.Spec.Template.Spec.DeepCopy()}
	addTolerations(&pod.Spec)
	pod.Spec.NodeName = ""
	if ok, err := nodeaffinity.GetRequiredNodeAffinity(pod).Match(node); err != nil || !ok {
		return placement{}
	}
	logger := klog.Background()
	for i := range node.Spec.Taints {
		t := &node.Spec.Taints[i]
		if t.Effect != v1.TaintEffectNoSchedule && t.Effect != v1.TaintEffectNoExecute {
			continue
		}
		if !v1helper.TolerationsTolerateTaint(logger, pod.Spec.Tolerations, t, false) {
			if t.Effect == v1.TaintEffectNoExecute {
				return placement{}
			}
			return placement{shouldContinue: shouldContinue(pod, node, logger)}
		}
	}
	return placement{shouldRun: true, shouldContinue: true}
}

func shouldContinue(pod *v1.Pod, node *v1.Node, logger klog.Logger) bool {
	for i := range node.Spec.Taints {
		t := &node.Spec.Taints[i]
		if t.Effect == v1.TaintEffectNoExecute && !v1helper.TolerationsTolerateTaint(logger, pod.Spec.Tolerations, t, false) {
			return false
		}
	}
	return true
}

// pinToNode replaces the pod's required node affinity with one term that
// selects exactly node by name (the node already satisfied the template's
// terms), as upstream.
func pinToNode(spec *v1.PodSpec, node string) {
	if spec.Affinity == nil {
		spec.Affinity = &v1.Affinity{}
	}
	if spec.Affinity.NodeAffinity == nil {
		spec.Affinity.NodeAffinity = &v1.NodeAffinity{}
	}
	spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution = &v1.NodeSelector{
		NodeSelectorTerms: []v1.NodeSelectorTerm{{MatchFields: []v1.NodeSelectorRequirement{{
			Key: "metadata.name", Operator: v1.NodeSelectorOpIn, Values: []string{node},
		}}}},
	}
}

// targetNode is the node a pod runs on or is pinned to.
func targetNode(p *v1.Pod) string {
	if p.Spec.NodeName != "" {
		return p.Spec.NodeName
	}
	a := p.Spec.Affinity
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return ""
	}
	for _, t := range a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
		for _, r := range t.MatchFields {
			if r.Key == "metadata.name" && r.Operator == v1.NodeSelectorOpIn && len(r.Values) == 1 {
				return r.Values[0]
			}
		}
	}
	return ""
}
