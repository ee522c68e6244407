package kubelet

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// runtimeAdapter applies actions through CRI. It holds no pod state.
type runtimeAdapter struct {
	rt      runtimeapi.RuntimeServiceClient
	img     runtimeapi.ImageServiceClient
	puller  *imagePuller // pull.go
	logRoot string       // per-pod container log directories
	// cgroupRoot is the cgroupfs parent of every pod ("/skiff"), so a pod's
	// cgroups are found and removed together.
	cgroupRoot string
	// podRoot holds the per-pod directories of the volume manager, where
	// termination message files live too.
	podRoot string
	// sandboxStarts and containerStarts hold a slot per sandbox, and per
	// container, being created and started (Config.ParallelStarts); nil
	// means no bound. Two pools, so a pod whose sandbox is up never waits
	// behind other pods' sandboxes for its containers.
	sandboxStarts, containerStarts chan struct{}
}

// startSlotWait is how long a start waits for a slot before going ahead
// anyway: a runtime call that hangs (a stuck CNI plugin) holds its slot
// until it returns, and must not stop the node's other pods for long.
var startSlotWait = 10 * time.Second

// acquire takes a slot of pool and returns its release.
func acquire(ctx context.Context, pool chan struct{}) (func(), error) {
	if pool == nil {
		return func() {}, nil
	}
	select {
	case pool <- struct{}{}:
		return func() { <-pool }, nil
	default:
	}
	t := time.NewTimer(startSlotWait)
	defer t.Stop()
	select {
	case pool <- struct{}{}:
		return func() { <-pool }, nil
	case <-t.C:
		return func() {}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// podState reads one pod's sandboxes and containers from CRI.
func (r *runtimeAdapter) podState(ctx context.Context, uid types.UID) (PodState, error) {
	sel := map[string]string{labelPodUID: string(uid)}
	sbs, err := r.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{LabelSelector: sel}})
	if err != nil {
		return PodState{}, fmt.Errorf("listing sandboxes of pod %s: %w", uid, err)
	}
	cs, err := r.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{LabelSelector: sel}})
	if err != nil {
		return PodState{}, fmt.Errorf("listing containers of pod %s: %w", uid, err)
	}
	st := PodState{UID: uid}
	for _, sb := range sbs.GetItems() {
		st.Name, st.Namespace = sb.GetMetadata().GetName(), sb.GetMetadata().GetNamespace()
		var status *runtimeapi.PodSandboxStatus
		if sb.GetState() == runtimeapi.PodSandboxState_SANDBOX_READY {
			resp, err := r.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: sb.GetId()})
			if err != nil {
				return PodState{}, fmt.Errorf("getting status of sandbox %s: %w", sb.GetId(), err)
			}
			status = resp.GetStatus()
		}
		st.Sandboxes = append(st.Sandboxes, sandboxState(sb, status))
	}
	for _, c := range cs.GetContainers() {
		resp, err := r.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: c.GetId()})
		if err != nil {
			return PodState{}, fmt.Errorf("getting status of container %s: %w", c.GetId(), err)
		}
		cs := containerState(c, resp.GetStatus())
		if cs.State == ContainerExited && cs.Message == "" && r.podRoot != "" {
			cs.Message = readTerminationMessage(terminationLogPath(r.podRoot, uid, cs.Name, cs.Attempt), "", false, cs.ExitCode)
		}
		st.Containers = append(st.Containers, cs)
	}
	sortState(&st)
	return st, nil
}

// snapshot is the relist view: a fingerprint of every pod's runtime state.
func (r *runtimeAdapter) snapshot(ctx context.Context) (map[types.UID]string, error) {
	sbs, err := r.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return nil, fmt.Errorf("listing sandboxes: %w", err)
	}
	cs, err := r.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		return nil, fmt.Errorf("listing containers: %w", err)
	}
	out := map[types.UID]string{}
	for _, sb := range sbs.GetItems() {
		uid := types.UID(sb.GetLabels()[labelPodUID])
		if uid != "" {
			out[uid] += shortID(sb.GetId()) + ":" + strconv.Itoa(int(sb.GetState())) + ";"
		}
	}
	for _, c := range cs.GetContainers() {
		uid := types.UID(c.GetLabels()[labelPodUID])
		if uid != "" {
			out[uid] += shortID(c.GetId()) + ":" + strconv.Itoa(int(c.GetState())) + ";"
		}
	}
	return out, nil
}

func (r *runtimeAdapter) podLogDir(pod *v1.Pod) string {
	return r.logDir(pod.Namespace, pod.Name, pod.UID)
}

// logDir is a pod's container log directory, named as upstream's
// /var/log/pods/<namespace>_<name>_<uid>.
func (r *runtimeAdapter) logDir(namespace, name string, uid types.UID) string {
	return filepath.Join(r.logRoot, namespace+"_"+name+"_"+string(uid))
}

// removePodFiles deletes what the kubelet itself keeps for a removed pod:
// its cgroup directories and its container logs.
func (r *runtimeAdapter) removePodFiles(namespace, name string, uid types.UID) {
	r.removeCgroups(uid)
	if namespace != "" && name != "" {
		_ = os.RemoveAll(r.logDir(namespace, name, uid))
	}
}

func (r *runtimeAdapter) cgroupParent(uid types.UID) string {
	return r.cgroupRoot + "/pod" + string(uid)
}

func podLabels(pod *v1.Pod) map[string]string {
	return map[string]string{labelPodUID: string(pod.UID), labelPodName: pod.Name, labelPodNamespace: pod.Namespace}
}

func (r *runtimeAdapter) sandboxConfig(pod *v1.Pod, attempt uint32) *runtimeapi.PodSandboxConfig {
	hostname, _ := podHostname(pod, "")
	grace := int64(v1.DefaultTerminationGracePeriodSeconds)
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		grace = *pod.Spec.TerminationGracePeriodSeconds
	}
	annotations := map[string]string{annotationGrace: strconv.FormatInt(grace, 10)}
	for k, v := range pod.Annotations {
		annotations[k] = v
	}
	cfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: pod.Name, Namespace: pod.Namespace, Uid: string(pod.UID), Attempt: attempt},
		Hostname:     hostname,
		LogDirectory: r.podLogDir(pod),
		Labels:       podLabels(pod),
		Annotations:  annotations,
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent: r.cgroupParent(pod.UID),
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{
					Network: runtimeapi.NamespaceMode_POD,
					Pid:     runtimeapi.NamespaceMode_CONTAINER,
					Ipc:     runtimeapi.NamespaceMode_POD,
				},
			},
		},
	}
	sandboxSecurity(pod, cfg)
	if pod.Spec.HostNetwork {
		cfg.Hostname = ""
	}
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.HostPort == 0 {
				continue
			}
			proto := runtimeapi.Protocol_TCP
			switch p.Protocol {
			case v1.ProtocolUDP:
				proto = runtimeapi.Protocol_UDP
			case v1.ProtocolSCTP:
				proto = runtimeapi.Protocol_SCTP
			}
			cfg.PortMappings = append(cfg.PortMappings, &runtimeapi.PortMapping{Protocol: proto, ContainerPort: p.ContainerPort, HostPort: p.HostPort, HostIp: p.HostIP})
		}
	}
	return cfg
}

// runSandbox creates and starts a pod sandbox.
func (r *runtimeAdapter) runSandbox(ctx context.Context, cfg *runtimeapi.PodSandboxConfig) (string, error) {
	if err := os.MkdirAll(cfg.LogDirectory, 0o755); err != nil {
		return "", fmt.Errorf("creating pod log dir: %w", err)
	}
	release, err := acquire(ctx, r.sandboxStarts)
	if err != nil {
		return "", fmt.Errorf("running sandbox: %w", err)
	}
	resp, err := r.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
	release()
	if err != nil {
		return "", fmt.Errorf("running sandbox: %w", err)
	}
	return resp.GetPodSandboxId(), nil
}

// startContainer creates and starts container c in sandboxID; a container
// that was created but failed to start is removed so the next sync retries
// cleanly.
func (r *runtimeAdapter) startContainer(ctx context.Context, pod *v1.Pod, c *v1.Container, attempt uint32, sandboxID string, sandbox *runtimeapi.PodSandboxConfig, env []string, mounts []*runtimeapi.Mount) (string, error) {
	imageRef, err := r.puller.ensure(ctx, pod, c, sandbox)
	if err != nil {
		return "", err
	}
	if sc := effectiveSecurity(pod, c); sc.RunAsNonRoot != nil && *sc.RunAsNonRoot && sc.RunAsUser == nil {
		st, err := r.img.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: imageRef}})
		if err != nil {
			return "", fmt.Errorf("getting status of image %s: %w", c.Image, err)
		}
		var uid *int64
		if u := st.GetImage().GetUid(); u != nil {
			uid = &u.Value
		}
		if err := checkNonRoot(pod, c, uid, st.GetImage().GetUsername()); err != nil {
			return "", err
		}
	} else if err := checkNonRoot(pod, c, nil, ""); err != nil {
		return "", err
	}
	labels := podLabels(pod)
	labels[labelContainerName] = c.Name
	cfg := &runtimeapi.ContainerConfig{
		Metadata:   &runtimeapi.ContainerMetadata{Name: c.Name, Attempt: attempt},
		Image:      &runtimeapi.ImageSpec{Image: imageRef, UserSpecifiedImage: c.Image},
		Command:    expandAll(c.Command, env),
		Args:       expandAll(c.Args, env),
		WorkingDir: c.WorkingDir,
		Labels:     labels,
		Annotations: map[string]string{
			"io.kubernetes.container.terminationMessagePath": c.TerminationMessagePath,
		},
		LogPath: filepath.Join(c.Name, strconv.Itoa(int(attempt))+".log"),
		Stdin:   c.Stdin, StdinOnce: c.StdinOnce, Tty: c.TTY,
		Mounts: mounts,
		Linux: &runtimeapi.LinuxContainerConfig{
			Resources:       containerResources(c),
			SecurityContext: containerSecurity(pod, c, sandbox.GetLinux().GetSecurityContext().GetNamespaceOptions()),
		},
	}
	for _, kv := range env {
		k, v, _ := cutEnv(kv)
		cfg.Envs = append(cfg.Envs, &runtimeapi.KeyValue{Key: k, Value: []byte(v)})
	}
	release, err := acquire(ctx, r.containerStarts)
	if err != nil {
		return "", fmt.Errorf("creating container %s: %w", c.Name, err)
	}
	defer release()
	created, err := r.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: sandboxID, Config: cfg, SandboxConfig: sandbox})
	if err != nil {
		return "", fmt.Errorf("creating container %s: %w", c.Name, err)
	}
	if _, err := r.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: created.GetContainerId()}); err != nil {
		_, _ = r.rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: created.GetContainerId()})
		return "", fmt.Errorf("starting container %s: %w", c.Name, err)
	}
	return created.GetContainerId(), nil
}

func cutEnv(kv string) (string, string, bool) {
	for i := 0; i < len(kv); i++ {
		if kv[i] == '=' {
			return kv[:i], kv[i+1:], true
		}
	}
	return kv, "", false
}

func expandAll(ss []string, env []string) []string {
	if len(ss) == 0 {
		return nil
	}
	vars := map[string]string{}
	for _, kv := range env {
		k, v, _ := cutEnv(kv)
		vars[k] = v
	}
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = expand(s, vars)
	}
	return out
}

// containerResources maps limits to cgroup settings (cgroup v1 units).
func containerResources(c *v1.Container) *runtimeapi.LinuxContainerResources {
	res := &runtimeapi.LinuxContainerResources{CpuShares: 2}
	if req, ok := c.Resources.Requests[v1.ResourceCPU]; ok {
		res.CpuShares = max(2, req.MilliValue()*1024/1000)
	} else if lim, ok := c.Resources.Limits[v1.ResourceCPU]; ok {
		res.CpuShares = max(2, lim.MilliValue()*1024/1000)
	}
	if lim, ok := c.Resources.Limits[v1.ResourceCPU]; ok && !lim.IsZero() {
		res.CpuPeriod = 100000
		res.CpuQuota = max(1000, lim.MilliValue()*100000/1000)
	}
	if lim, ok := c.Resources.Limits[v1.ResourceMemory]; ok {
		res.MemoryLimitInBytes = lim.Value()
	}
	return res
}

// stopContainer stops one container with a grace period in seconds.
func (r *runtimeAdapter) stopContainer(ctx context.Context, id string, grace int64) error {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(grace)*time.Second+30*time.Second)
	defer cancel()
	if _, err := r.rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: grace}); err != nil {
		return fmt.Errorf("stopping container %s: %w", id, err)
	}
	return nil
}

// killPod stops the pod's live containers (in parallel, each with the grace
// period) and then the sandboxes except keep; remove also deletes them.
func (r *runtimeAdapter) killPod(ctx context.Context, st PodState, grace int64, keep string, remove bool) error {
	errs := make(chan error, len(st.Containers))
	n := 0
	for _, c := range st.Containers {
		if keep != "" && c.SandboxID == keep {
			continue
		}
		if c.State == ContainerRunning || c.State == ContainerCreated || c.State == ContainerUnknown {
			n++
			go func(id string) { errs <- r.stopContainer(ctx, id, grace) }(c.ID)
		}
	}
	var first error
	for ; n > 0; n-- {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	if first != nil {
		return first
	}
	if remove {
		for _, c := range st.Containers {
			if keep != "" && c.SandboxID == keep {
				continue
			}
			if _, err := r.rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: c.ID}); err != nil {
				return fmt.Errorf("removing container %s: %w", c.ID, err)
			}
		}
	}
	for _, sb := range st.Sandboxes {
		if sb.ID == keep {
			continue
		}
		if _, err := r.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sb.ID}); err != nil {
			return fmt.Errorf("stopping sandbox %s: %w", sb.ID, err)
		}
		if remove {
			if _, err := r.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sb.ID}); err != nil {
				return fmt.Errorf("removing sandbox %s: %w", sb.ID, err)
			}
		}
	}
	return nil
}

// removeOldAttempts deletes exited containers older than the previous
// attempt of each name: status needs the latest and the one before it.
func (r *runtimeAdapter) removeOldAttempts(ctx context.Context, st PodState) error {
	seen := map[string]int{}
	for _, c := range st.Containers {
		seen[c.Name]++
		if seen[c.Name] > 2 && c.State == ContainerExited {
			if _, err := r.rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: c.ID}); err != nil {
				return fmt.Errorf("removing old container %s: %w", c.ID, err)
			}
		}
	}
	return nil
}

// removeCgroups deletes the pod's cgroup directories once its containers
// are gone; runc removes the containers' own.
func (r *runtimeAdapter) removeCgroups(uid types.UID) {
	dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", r.cgroupParent(uid)))
	if d := filepath.Join("/sys/fs/cgroup", r.cgroupParent(uid)); fileExists(d) {
		dirs = append(dirs, d)
	}
	for _, d := range dirs {
		_ = os.Remove(d)
	}
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }
