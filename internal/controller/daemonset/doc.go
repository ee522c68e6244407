// Package daemonset is skiff's DaemonSet controller.
//
// For every node the controller decides whether the DaemonSet's pod should
// run there (nodeSelector, required node affinity, NoSchedule/NoExecute
// taints against the pod's tolerations plus the tolerations upstream adds to
// every daemon pod) and whether an existing pod may keep running (NoExecute
// taints only). Pods are not bound by the controller: each new pod carries a
// required node affinity `matchFields metadata.name In [<node>]` and the
// scheduler places it, as upstream. Each template is a ControllerRevision
// (package history) whose hash labels the pods; RollingUpdate replaces old
// pods at most maxUnavailable nodes at a time, or with maxSurge > 0 starts
// the new pod beside the old one and deletes the old one once the new one is
// available. OnDelete leaves replacement to the user.
//
// Creations are tracked with controller.Expectations (pods use
// generateName), so a lagging informer never doubles a node's pod.
package daemonset
