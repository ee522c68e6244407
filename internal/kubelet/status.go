package kubelet

import (
	"fmt"
	"sort"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// statusInput is everything generatePodStatus needs besides the pod.
type statusInput struct {
	State   PodState
	Actions Actions
	HostIP  string
	Now     time.Time
	// Ready holds readiness probe results by container ID; a container
	// without an entry is ready once running unless ProbedReady names it.
	Ready map[string]bool
	// NotStarted holds the IDs of running containers whose startup probe
	// has not succeeded yet: not started, not ready.
	NotStarted map[string]bool
	// StartErr holds the last error starting each container (by name) as
	// a waiting reason and message, e.g. ErrImagePull.
	StartErr map[string]waitReason
}

type waitReason struct{ Reason, Message string }

const containerIDPrefix = "containerd://"

// generatePodStatus derives the API status of pod from its runtime state.
// It is pure; transition times are kept from pod.Status when a condition
// does not change.
func generatePodStatus(pod *v1.Pod, in statusInput) v1.PodStatus {
	old := pod.Status
	s := v1.PodStatus{
		HostIP:    in.HostIP,
		StartTime: old.StartTime,
		QOSClass:  qosClass(pod),
	}
	if in.HostIP != "" {
		s.HostIPs = []v1.HostIP{{IP: in.HostIP}}
	}
	if s.StartTime == nil {
		t := apiTime(in.Now)
		s.StartTime = &t
	}
	var sb SandboxState
	if len(in.State.Sandboxes) > 0 {
		// A stopped sandbox keeps reporting its IP until it is removed, as
		// upstream does for terminated pods.
		for _, ip := range in.State.Sandboxes[0].IPs {
			s.PodIPs = append(s.PodIPs, v1.PodIP{IP: ip})
		}
		sb = in.State.Sandboxes[0]
		if pod.Spec.HostNetwork && len(s.PodIPs) == 0 && in.HostIP != "" {
			// A host-network pod has the node's address, as upstream.
			s.PodIPs = []v1.PodIP{{IP: in.HostIP}}
		}
		if len(s.PodIPs) > 0 {
			s.PodIP = s.PodIPs[0].IP
		}
	}
	sandboxID := sb.ID

	initDone := in.Actions.InitDone
	var unready []string
	for _, c := range pod.Spec.InitContainers {
		cs := containerStatus(pod, c, in, sandboxID, true)
		_, startErr := in.StartErr[c.Name]
		if !initDone && cs.State.Waiting != nil && in.Actions.StartInit < 0 && cs.LastTerminationState.Terminated == nil && !startErr {
			cs.State.Waiting.Reason = "PodInitializing"
		}
		if isSidecar(&c) && !cs.Ready {
			unready = append(unready, c.Name) // sidecars count towards ContainersReady, as upstream
		}
		s.InitContainerStatuses = append(s.InitContainerStatuses, cs)
	}
	for _, c := range pod.Spec.Containers {
		cs := containerStatus(pod, c, in, sandboxID, false)
		if !initDone && cs.State.Waiting != nil {
			cs.State.Waiting.Reason = "PodInitializing"
		}
		if !cs.Ready {
			unready = append(unready, c.Name)
		}
		s.ContainerStatuses = append(s.ContainerStatuses, cs)
	}

	s.Phase = podPhase(pod, s, in.Actions, initDone)
	if old.Phase == v1.PodSucceeded || old.Phase == v1.PodFailed {
		s.Phase = old.Phase // terminal phases are final
	}
	if s.Phase == v1.PodSucceeded || s.Phase == v1.PodFailed {
		for i := range s.ContainerStatuses {
			s.ContainerStatuses[i].Ready = false
		}
		for i := range s.InitContainerStatuses {
			if isSidecar(&pod.Spec.InitContainers[i]) {
				s.InitContainerStatuses[i].Ready = false
			}
		}
	}

	cond := func(t v1.PodConditionType, ok bool, reason, msg string) {
		c := v1.PodCondition{Type: t, Status: v1.ConditionFalse, Reason: reason, Message: msg}
		if ok {
			c.Status, c.Reason, c.Message = v1.ConditionTrue, "", ""
		}
		c.LastTransitionTime = apiTime(in.Now)
		for _, o := range old.Conditions {
			if o.Type == t && o.Status == c.Status {
				c.LastTransitionTime = o.LastTransitionTime
			}
		}
		s.Conditions = append(s.Conditions, c)
	}
	var notInit []string
	if !initDone {
		for i, c := range s.InitContainerStatuses {
			if isSidecar(&pod.Spec.InitContainers[i]) {
				if c.State.Running == nil || c.Started == nil || !*c.Started {
					notInit = append(notInit, c.Name)
				}
				continue
			}
			if c.State.Terminated == nil || c.State.Terminated.ExitCode != 0 {
				notInit = append(notInit, c.Name)
			}
		}
	}
	terminal := s.Phase == v1.PodSucceeded || s.Phase == v1.PodFailed
	switch {
	case terminal:
		cond(v1.PodInitialized, initDone || len(pod.Spec.InitContainers) == 0, "PodCompleted", "")
	default:
		cond(v1.PodInitialized, initDone, "ContainersNotInitialized", fmt.Sprintf("containers with incomplete status: [%s]", strings.Join(notInit, " ")))
	}
	ready := len(unready) == 0 && initDone && !terminal
	readyReason, readyMsg := "ContainersNotReady", fmt.Sprintf("containers with unready status: [%s]", strings.Join(unready, " "))
	if terminal {
		readyReason, readyMsg = "PodCompleted", ""
	}
	cond(v1.ContainersReady, ready, readyReason, readyMsg)
	podReady := ready
	for _, g := range pod.Spec.ReadinessGates {
		met := false
		for _, o := range old.Conditions {
			if o.Type == g.ConditionType && o.Status == v1.ConditionTrue {
				met = true
			}
		}
		podReady = podReady && met
	}
	cond(v1.PodReady, podReady, readyReason, readyMsg)
	scheduled := v1.PodCondition{Type: v1.PodScheduled, Status: v1.ConditionTrue, LastTransitionTime: apiTime(in.Now)}
	for _, o := range old.Conditions {
		if o.Type == v1.PodScheduled {
			scheduled.LastTransitionTime = o.LastTransitionTime
		}
	}
	s.Conditions = append(s.Conditions, scheduled)
	// Keep conditions other components own (readiness gates, DisruptionTarget).
	for _, o := range old.Conditions {
		switch o.Type {
		case v1.PodInitialized, v1.ContainersReady, v1.PodReady, v1.PodScheduled:
		default:
			s.Conditions = append(s.Conditions, o)
		}
	}
	sort.SliceStable(s.Conditions, func(i, j int) bool { return condOrder(s.Conditions[i].Type) < condOrder(s.Conditions[j].Type) })
	return s
}

func condOrder(t v1.PodConditionType) int {
	switch t {
	case v1.PodInitialized:
		return 0
	case v1.PodReady:
		return 1
	case v1.ContainersReady:
		return 2
	case v1.PodScheduled:
		return 3
	}
	return 4
}

func containerStatus(pod *v1.Pod, spec v1.Container, in statusInput, sandboxID string, isInit bool) v1.ContainerStatus {
	cs := v1.ContainerStatus{Name: spec.Name, Image: spec.Image}
	c, ok := in.State.Latest(spec.Name, sandboxID)
	if !ok {
		c, ok = in.State.Latest(spec.Name, "")
	}
	if !ok {
		w := waitReason{Reason: "ContainerCreating"}
		if e, bad := in.StartErr[spec.Name]; bad {
			w = e
		}
		cs.State.Waiting = &v1.ContainerStateWaiting{Reason: w.Reason, Message: w.Message}
		return cs
	}
	cs.ContainerID = containerIDPrefix + c.ID
	cs.ImageID = c.ImageRef
	cs.RestartCount = int32(c.Attempt)
	if prev, ok := in.State.Previous(c); ok {
		cs.LastTerminationState.Terminated = terminated(prev)
	}
	switch c.State {
	case ContainerRunning:
		cs.State.Running = &v1.ContainerStateRunning{StartedAt: apiTime(c.StartedAt)}
		started := !in.NotStarted[c.ID]
		cs.Started = &started
		cs.Ready = started
		if r, probed := in.Ready[c.ID]; probed {
			cs.Ready = started && r
		} else if spec.ReadinessProbe != nil {
			cs.Ready = false
		}
		if isInit && !isSidecar(&spec) {
			cs.Ready = false
		}
	case ContainerExited:
		started := false
		cs.Started = &started
		if d, waiting := in.Actions.Backoff[spec.Name]; waiting {
			cs.State.Waiting = &v1.ContainerStateWaiting{
				Reason:  "CrashLoopBackOff",
				Message: fmt.Sprintf("back-off %s restarting failed container=%s pod=%s_%s(%s)", d, spec.Name, pod.Name, pod.Namespace, pod.UID),
			}
			cs.LastTerminationState.Terminated = terminated(c)
		} else {
			cs.State.Terminated = terminated(c)
			cs.Ready = isInit && !isSidecar(&spec) && c.ExitCode == 0
		}
	default:
		started := false
		cs.Started = &started
		w := waitReason{Reason: "ContainerCreating"}
		if e, bad := in.StartErr[spec.Name]; bad {
			w = e
		}
		cs.State.Waiting = &v1.ContainerStateWaiting{Reason: w.Reason, Message: w.Message}
	}
	return cs
}

func terminated(c ContainerState) *v1.ContainerStateTerminated {
	reason := c.Reason
	if reason == "" {
		reason = "Error"
		if c.ExitCode == 0 {
			reason = "Completed"
		}
	}
	return &v1.ContainerStateTerminated{
		ExitCode:    c.ExitCode,
		Reason:      reason,
		Message:     c.Message,
		StartedAt:   apiTime(c.StartedAt),
		FinishedAt:  apiTime(c.FinishedAt),
		ContainerID: containerIDPrefix + c.ID,
	}
}

// podPhase follows upstream's rules: Pending until initialized and every
// container has started once; Running while any runs or will restart;
// Succeeded/Failed once all have terminated for good.
func podPhase(pod *v1.Pod, s v1.PodStatus, a Actions, initDone bool) v1.PodPhase {
	if a.InitFailed {
		return v1.PodFailed
	}
	if !initDone {
		return v1.PodPending
	}
	var running, waiting, restarting, succeeded, failed int
	for _, c := range s.ContainerStatuses {
		switch {
		case c.State.Running != nil:
			running++
		case c.State.Terminated != nil:
			if c.State.Terminated.ExitCode == 0 {
				succeeded++
			} else {
				failed++
			}
		case c.LastTerminationState.Terminated != nil:
			restarting++
		default:
			waiting++
		}
	}
	switch {
	case waiting > 0:
		return v1.PodPending
	case running > 0 || restarting > 0:
		return v1.PodRunning
	}
	switch pod.Spec.RestartPolicy {
	case v1.RestartPolicyNever:
		if failed > 0 {
			return v1.PodFailed
		}
		return v1.PodSucceeded
	case v1.RestartPolicyOnFailure:
		if failed > 0 {
			return v1.PodRunning
		}
		return v1.PodSucceeded
	default:
		return v1.PodRunning
	}
}

// qosClass is Guaranteed when every container limits cpu and memory with
// equal requests, BestEffort when none asks for anything, else Burstable.
func qosClass(pod *v1.Pod) v1.PodQOSClass {
	all := append(append([]v1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...)
	any, guaranteed := false, true
	for _, c := range all {
		for _, r := range []v1.ResourceName{v1.ResourceCPU, v1.ResourceMemory} {
			req, hasReq := c.Resources.Requests[r]
			lim, hasLim := c.Resources.Limits[r]
			if (hasReq && !req.IsZero()) || (hasLim && !lim.IsZero()) {
				any = true
			}
			if !hasLim {
				guaranteed = false
			} else if hasReq && req.Cmp(lim) != 0 {
				guaranteed = false
			}
		}
	}
	switch {
	case !any:
		return v1.PodQOSBestEffort
	case guaranteed:
		return v1.PodQOSGuaranteed
	}
	return v1.PodQOSBurstable
}

// statusEqual ignores nothing: every field the kubelet writes is derived.
func statusEqual(a, b v1.PodStatus) bool { return equality.Semantic.DeepEqual(a, b) }

// apiTime truncates to the second, as the API's RFC 3339 encoding does, so
// a status read back from the server compares equal to a freshly generated
// one and unchanged pods cause no writes.
func apiTime(t time.Time) metav1.Time { return metav1.NewTime(t.Truncate(time.Second)) }
