package kubelet

import (
	"time"

	v1 "k8s.io/api/core/v1"
)

// Back-off between restarts of a failing container: 10 s doubling to 5 min,
// reset when the last attempt ran for backoffReset.
const (
	backoffInitial = 10 * time.Second
	backoffMax     = 5 * time.Minute
	backoffReset   = 10 * time.Minute
)

// Actions is what one sync should do to a pod's runtime state.
type Actions struct {
	// KillPod stops every container and the sandboxes (all of them when
	// CreateSandbox is set, else only the stale ones).
	KillPod bool
	// CreateSandbox asks for a new sandbox with SandboxAttempt.
	CreateSandbox  bool
	SandboxAttempt uint32
	// StartInit is the index of the init container to start, or -1.
	StartInit int
	// Start are indices of app containers to start.
	Start []int
	// StartSidecars are indices of sidecar init containers to (re)start
	// once the pod is initialized.
	StartSidecars []int
	// Attempts is the attempt (restart count) of each container to start.
	Attempts map[string]uint32
	// Backoff maps a container waiting to be restarted to the back-off it
	// is serving; RequeueAfter is when the next restart is due.
	Backoff      map[string]time.Duration
	RequeueAfter time.Duration
	// InitFailed: an init container failed and restartPolicy is Never; the
	// pod is Failed and nothing more starts.
	InitFailed bool
	// InitDone: every init container has succeeded in the current sandbox.
	InitDone bool
}

// Changes reports whether applying a would touch the runtime.
func (a Actions) Changes() bool {
	return a.KillPod || a.CreateSandbox || a.StartsContainers()
}

// StartsContainers reports whether a starts any container.
func (a Actions) StartsContainers() bool {
	return a.StartInit >= 0 || len(a.Start) > 0 || len(a.StartSidecars) > 0
}

// restartDelay is the back-off before restarting a container whose last
// attempt was c: none after the first exit, then 10 s doubling to 5 min.
func restartDelay(c ContainerState) time.Duration {
	if c.Attempt == 0 || (!c.StartedAt.IsZero() && c.FinishedAt.Sub(c.StartedAt) >= backoffReset) {
		return 0
	}
	d := backoffInitial
	for i := uint32(1); i < c.Attempt && d < backoffMax; i++ {
		d *= 2
	}
	return min(d, backoffMax)
}

// shouldRestart applies restartPolicy to an exited container.
func shouldRestart(policy v1.RestartPolicy, c ContainerState) bool {
	switch policy {
	case v1.RestartPolicyNever:
		return false
	case v1.RestartPolicyOnFailure:
		return c.ExitCode != 0
	default:
		return true
	}
}

// isSidecar reports whether c is a sidecar: an init container with
// restartPolicy Always, started in order with the other init containers
// but not waited for, restarted whenever it exits, and stopped after the
// app containers.
func isSidecar(c *v1.Container) bool {
	return c.RestartPolicy != nil && *c.RestartPolicy == v1.ContainerRestartPolicyAlways
}

// computePodActions decides, from the pod spec and its runtime state alone,
// what to change next. notStarted holds the IDs of running containers whose
// startup probe has not succeeded yet (a sidecar blocks the next init
// container until it has). It is pure: syncPod applies the result.
func computePodActions(pod *v1.Pod, st PodState, now time.Time, notStarted map[string]bool) Actions {
	a := Actions{StartInit: -1, Attempts: map[string]uint32{}, Backoff: map[string]time.Duration{}}
	next := func(name string) uint32 { return uint32(st.MaxAttempt(name) + 1) }

	sb, ready := st.ReadySandbox()
	if !ready {
		// A pod that never restarts and already ran keeps its dead sandbox:
		// a new one would rerun its containers.
		if pod.Spec.RestartPolicy == v1.RestartPolicyNever && len(st.Containers) > 0 {
			a.KillPod = hasLive(st)
			a.InitDone, a.InitFailed = initOutcome(pod, st)
			return a
		}
		a.KillPod = !st.Empty()
		a.CreateSandbox = true
		if len(st.Sandboxes) > 0 {
			a.SandboxAttempt = st.Sandboxes[0].Attempt + 1
		}
		if len(pod.Spec.InitContainers) > 0 {
			a.StartInit = 0
			a.Attempts[pod.Spec.InitContainers[0].Name] = next(pod.Spec.InitContainers[0].Name)
			return a
		}
		a.InitDone = true
		for i, c := range pod.Spec.Containers {
			a.Start = append(a.Start, i)
			a.Attempts[c.Name] = next(c.Name)
		}
		return a
	}
	a.KillPod = len(st.Sandboxes) > 1 && hasLiveOutside(st, sb.ID)

	restartAfter := func(c ContainerState) bool {
		d := restartDelay(c)
		if left := c.FinishedAt.Add(d).Sub(now); left > 0 {
			a.Backoff[c.Name] = d
			if a.RequeueAfter == 0 || left < a.RequeueAfter {
				a.RequeueAfter = left
			}
			return false
		}
		return true
	}

	// Once an app container has been created in this sandbox the pod is
	// initialized for good: a sidecar crashing later is restarted without
	// holding anything back.
	initialized := false
	for _, c := range pod.Spec.Containers {
		if _, ok := st.Latest(c.Name, sb.ID); ok {
			initialized = true
			break
		}
	}
	for i := range pod.Spec.InitContainers {
		if initialized {
			break
		}
		ic := &pod.Spec.InitContainers[i]
		c, ok := st.Latest(ic.Name, sb.ID)
		if isSidecar(ic) {
			switch {
			case !ok:
				a.StartInit = i
				a.Attempts[ic.Name] = next(ic.Name)
				return a
			case c.State == ContainerExited:
				if restartAfter(c) {
					a.StartInit = i
					a.Attempts[ic.Name] = next(ic.Name)
				}
				return a
			case c.State == ContainerRunning && !notStarted[c.ID]:
				continue
			default:
				return a // still starting
			}
		}
		switch {
		case !ok:
			a.StartInit = i
			a.Attempts[ic.Name] = next(ic.Name)
			return a
		case c.State != ContainerExited:
			return a
		case c.ExitCode == 0:
			continue
		case pod.Spec.RestartPolicy == v1.RestartPolicyNever:
			a.InitFailed = true
			return a
		default:
			if restartAfter(c) {
				a.StartInit = i
				a.Attempts[ic.Name] = next(ic.Name)
			}
			return a
		}
	}
	a.InitDone = true
	appsDone := len(pod.Spec.Containers) > 0
	for i, cs := range pod.Spec.Containers {
		c, ok := st.Latest(cs.Name, sb.ID)
		switch {
		case !ok:
		case c.State != ContainerExited:
			appsDone = false
			continue
		case !shouldRestart(pod.Spec.RestartPolicy, c):
			continue
		case !restartAfter(c):
			appsDone = false
			continue
		}
		appsDone = false
		a.Start = append(a.Start, i)
		a.Attempts[cs.Name] = next(cs.Name)
	}
	if appsDone {
		return a // the pod is finishing: its sidecars are stopped, not restarted
	}
	for i := range pod.Spec.InitContainers {
		ic := &pod.Spec.InitContainers[i]
		if !isSidecar(ic) {
			continue
		}
		c, ok := st.Latest(ic.Name, sb.ID)
		if !ok || (c.State == ContainerExited && restartAfter(c)) {
			a.StartSidecars = append(a.StartSidecars, i)
			a.Attempts[ic.Name] = next(ic.Name)
		}
	}
	return a
}

// initOutcome reports, for a pod whose sandbox is gone, whether its init
// containers all succeeded or one failed, looking at their last attempts.
// Sidecars never complete and are not waited for.
func initOutcome(pod *v1.Pod, st PodState) (done, failed bool) {
	for i := range pod.Spec.InitContainers {
		ic := &pod.Spec.InitContainers[i]
		if isSidecar(ic) {
			continue
		}
		c, ok := st.Latest(ic.Name, "")
		if !ok || c.State != ContainerExited {
			return false, false
		}
		if c.ExitCode != 0 {
			return false, true
		}
	}
	return true, false
}

func hasLive(st PodState) bool {
	for _, s := range st.Sandboxes {
		if s.Ready {
			return true
		}
	}
	for _, c := range st.Containers {
		if c.State == ContainerRunning || c.State == ContainerCreated {
			return true
		}
	}
	return false
}

func hasLiveOutside(st PodState, sandboxID string) bool {
	for _, s := range st.Sandboxes {
		if s.ID != sandboxID && s.Ready {
			return true
		}
	}
	for _, c := range st.Containers {
		if c.SandboxID != sandboxID && (c.State == ContainerRunning || c.State == ContainerCreated) {
			return true
		}
	}
	return false
}
