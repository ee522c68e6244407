package nodelifecycle

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Taint keys this controller owns. Anything else on a node is left alone.
var (
	unreachableNoExecute = corev1.Taint{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoExecute}
	notReadyNoExecute    = corev1.Taint{Key: corev1.TaintNodeNotReady, Effect: corev1.TaintEffectNoExecute}

	managedTaints = []corev1.Taint{
		unreachableNoExecute,
		notReadyNoExecute,
		{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoSchedule},
		{Key: corev1.TaintNodeNotReady, Effect: corev1.TaintEffectNoSchedule},
		{Key: corev1.TaintNodeUnschedulable, Effect: corev1.TaintEffectNoSchedule},
		{Key: corev1.TaintNodeMemoryPressure, Effect: corev1.TaintEffectNoSchedule},
		{Key: corev1.TaintNodeDiskPressure, Effect: corev1.TaintEffectNoSchedule},
		{Key: corev1.TaintNodePIDPressure, Effect: corev1.TaintEffectNoSchedule},
		{Key: corev1.TaintNodeNetworkUnavailable, Effect: corev1.TaintEffectNoSchedule},
	}
)

func condition(node *corev1.Node, t corev1.NodeConditionType) *corev1.NodeCondition {
	for i := range node.Status.Conditions {
		if node.Status.Conditions[i].Type == t {
			return &node.Status.Conditions[i]
		}
	}
	return nil
}

// desiredTaints lists the managed taints the node's status calls for.
func desiredTaints(node *corev1.Node) []corev1.Taint {
	var out []corev1.Taint
	ready := condition(node, corev1.NodeReady)
	switch {
	case ready == nil || ready.Status == corev1.ConditionUnknown:
		out = append(out, managedTaints[0], managedTaints[2])
	case ready.Status == corev1.ConditionFalse:
		out = append(out, managedTaints[1], managedTaints[3])
	}
	if node.Spec.Unschedulable {
		out = append(out, managedTaints[4])
	}
	for i, t := range []corev1.NodeConditionType{corev1.NodeMemoryPressure, corev1.NodeDiskPressure, corev1.NodePIDPressure, corev1.NodeNetworkUnavailable} {
		if c := condition(node, t); c != nil && c.Status == corev1.ConditionTrue {
			out = append(out, managedTaints[5+i])
		}
	}
	return out
}

func isManaged(t corev1.Taint) bool {
	for _, m := range managedTaints {
		if m.MatchTaint(&t) {
			return true
		}
	}
	return false
}

// reconcileTaints returns the node's taint list with managed taints brought
// in line with want; NoExecute taints get TimeAdded=now when added, which is
// what eviction deadlines are measured from. changed is false when nothing
// differs.
func reconcileTaints(current, want []corev1.Taint, now time.Time) ([]corev1.Taint, bool) {
	var out []corev1.Taint
	changed := false
	for _, t := range current {
		if !isManaged(t) {
			out = append(out, t)
			continue
		}
		keep := false
		for _, w := range want {
			if w.MatchTaint(&t) {
				keep = true
			}
		}
		if keep {
			out = append(out, t)
		} else {
			changed = true
		}
	}
	for _, w := range want {
		found := false
		for _, t := range current {
			if w.MatchTaint(&t) {
				found = true
			}
		}
		if !found {
			if w.Effect == corev1.TaintEffectNoExecute {
				ts := metav1.NewTime(now)
				w.TimeAdded = &ts
			}
			out = append(out, w)
			changed = true
		}
	}
	return out, changed
}

// tolerates reports whether tol matches taint: same effect (or any), same
// key (or any with Exists), and equal value for the Equal operator.
func tolerates(tol corev1.Toleration, taint corev1.Taint) bool {
	if tol.Effect != "" && tol.Effect != taint.Effect {
		return false
	}
	if tol.Key != "" && tol.Key != taint.Key {
		return false
	}
	switch tol.Operator {
	case corev1.TolerationOpExists:
		return true
	case corev1.TolerationOpEqual, "":
		return tol.Key != "" && tol.Value == taint.Value
	default:
		return false
	}
}

// evictionDeadline says when a pod must leave a node carrying taints. For
// each NoExecute taint the pod may stay as long as its most generous matching
// toleration allows, counted from the taint's TimeAdded; the pod's deadline is
// the earliest over all taints. evict is false when every taint is tolerated
// forever.
func evictionDeadline(tolerations []corev1.Toleration, taints []corev1.Taint, now time.Time) (deadline time.Time, evict bool) {
	for _, taint := range taints {
		if taint.Effect != corev1.TaintEffectNoExecute {
			continue
		}
		matched, forever := false, false
		var longest time.Duration
		for _, tol := range tolerations {
			if !tolerates(tol, taint) {
				continue
			}
			matched = true
			if tol.TolerationSeconds == nil {
				forever = true
				break
			}
			if d := time.Duration(max(*tol.TolerationSeconds, 0)) * time.Second; d > longest {
				longest = d
			}
		}
		if forever {
			continue
		}
		start := now
		if taint.TimeAdded != nil {
			start = taint.TimeAdded.Time
		}
		at := start
		if matched {
			at = start.Add(longest)
		}
		if !evict || at.Before(deadline) {
			deadline, evict = at, true
		}
	}
	return deadline, evict
}
