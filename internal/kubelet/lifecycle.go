package kubelet

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"skiff.dev/skiff/internal/kubelet/prober"
)

// postStartTimeout bounds a postStart hook, which blocks the pod's worker
// (upstream has no bound; a hung hook there blocks the pod forever).
const postStartTimeout = 2 * time.Minute

// minStopGrace is what a container is given after its preStop hook has
// used up the grace period, as upstream.
const minStopGrace = 2

// runHook runs a lifecycle handler against a running container.
func (k *Kubelet) runHook(ctx context.Context, h *v1.LifecycleHandler, spec *v1.Container, containerID, podIP string) error {
	switch {
	case h.Exec != nil:
		timeout := int64(0)
		if d, ok := ctx.Deadline(); ok {
			timeout = max(1, int64(time.Until(d).Seconds()))
		}
		resp, err := k.rt.rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: containerID, Cmd: h.Exec.Command, Timeout: timeout})
		if err != nil {
			return fmt.Errorf("exec hook: %w", err)
		}
		if resp.GetExitCode() != 0 {
			return fmt.Errorf("exec hook %v exited %d: %s", h.Exec.Command, resp.GetExitCode(), resp.GetStderr())
		}
		return nil
	case h.HTTPGet != nil:
		if err := prober.HTTPGet(ctx, h.HTTPGet, podIP, spec); err != nil {
			return fmt.Errorf("http hook: %w", err)
		}
		return nil
	case h.Sleep != nil:
		t := k.clock.NewTimer(time.Duration(h.Sleep.Seconds) * time.Second)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C():
			return nil
		}
	}
	return errors.New("lifecycle hook has no handler")
}

// containerSpec finds the spec of a container (app, init or sidecar).
func containerSpec(pod *v1.Pod, name string) (*v1.Container, bool) {
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == name {
			return &pod.Spec.Containers[i], true
		}
	}
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Name == name {
			return &pod.Spec.InitContainers[i], true
		}
	}
	return nil, false
}

// stopContainer stops c, running its preStop hook first when the pod
// still has a spec for it. The hook and the stop share the grace period
// that ends at deadline; a hook that uses it all leaves minStopGrace.
func (k *Kubelet) stopContainer(ctx context.Context, pod *v1.Pod, c ContainerState, podIP string, deadline time.Time) error {
	ranHook := false
	if pod != nil && c.State == ContainerRunning {
		if spec, ok := containerSpec(pod, c.Name); ok && spec.Lifecycle != nil && spec.Lifecycle.PreStop != nil {
			ranHook = true
			hctx, cancel := context.WithTimeout(ctx, deadline.Sub(k.clock.Now()))
			begin := k.clock.Now()
			err := k.runHook(hctx, spec.Lifecycle.PreStop, spec, c.ID, podIP)
			cancel()
			if err != nil {
				k.log.Info("preStop hook failed", "pod", pod.Namespace+"/"+pod.Name, "container", c.Name, "err", err)
			} else {
				k.log.Info("ran preStop hook", "pod", pod.Namespace+"/"+pod.Name, "container", c.Name, "took", k.clock.Since(begin).Round(time.Millisecond))
			}
		}
	}
	grace := max(0, int64(deadline.Sub(k.clock.Now()).Round(time.Second)/time.Second))
	if ranHook && grace < minStopGrace {
		grace = minStopGrace
	}
	return k.rt.stopContainer(ctx, c.ID, grace)
}

// killPod stops the pod's live containers outside sandbox keep within the
// grace period: app (and regular init) containers together, each after its
// preStop hook, then sidecars one by one in reverse order, as upstream; then
// it stops (and with remove, deletes) the sandboxes and containers. pod is
// nil for an orphan, which gets no hooks.
func (k *Kubelet) killPod(ctx context.Context, pod *v1.Pod, st PodState, keep string, remove bool) error {
	grace := int64(2)
	if pod != nil {
		grace = podGrace(pod)
	} else if len(st.Sandboxes) > 0 && st.Sandboxes[0].Grace >= 0 {
		grace = st.Sandboxes[0].Grace
	}
	deadline := k.clock.Now().Add(time.Duration(grace) * time.Second)
	podIP := ""
	if len(st.Sandboxes) > 0 && len(st.Sandboxes[0].IPs) > 0 {
		podIP = st.Sandboxes[0].IPs[0]
	} else if pod != nil && pod.Spec.HostNetwork {
		podIP = k.cfg.NodeIP
	}
	live := func(c ContainerState) bool {
		return (keep == "" || c.SandboxID != keep) && (c.State == ContainerRunning || c.State == ContainerCreated || c.State == ContainerUnknown)
	}
	sidecarRank := map[string]int{}
	if pod != nil {
		for i := range pod.Spec.InitContainers {
			if isSidecar(&pod.Spec.InitContainers[i]) {
				sidecarRank[pod.Spec.InitContainers[i].Name] = i
			}
		}
	}
	var apps, sidecars []int
	for i, c := range st.Containers {
		if !live(c) {
			continue
		}
		if _, ok := sidecarRank[c.Name]; ok {
			sidecars = append(sidecars, i)
		} else {
			apps = append(apps, i)
		}
	}
	stopped := append([]ContainerState{}, st.Containers...)
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for _, i := range apps {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			err := k.stopContainer(ctx, pod, st.Containers[i], podIP, deadline)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			stopped[i].State = ContainerExited
		}(i)
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	// Sidecars last, the last-declared first.
	for len(sidecars) > 0 {
		best := 0
		for j, i := range sidecars {
			if sidecarRank[st.Containers[i].Name] > sidecarRank[st.Containers[sidecars[best]].Name] {
				best = j
			}
		}
		i := sidecars[best]
		sidecars = append(sidecars[:best], sidecars[best+1:]...)
		if err := k.stopContainer(ctx, pod, st.Containers[i], podIP, deadline); err != nil {
			return err
		}
		stopped[i].State = ContainerExited
	}
	rest := st
	rest.Containers = stopped
	return k.rt.killPod(ctx, rest, grace, keep, remove)
}
