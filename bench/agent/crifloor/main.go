// Command crifloor measures the container runtime's own floor for pod
// start-up (issue 7), with no kubelet at all: it starts a private
// containerd as skiff's agent does (internal/agent.StartContainerd: own
// root, state and socket, restrict_oom_score_adj, cgroupfs, runc v2 shim),
// writes a CNI bridge + host-local network (internal/network/cni) and
// drives CRI itself, so no kubelet, skiff's or upstream's, can start pods
// faster on this runtime.
//
//	go build -o /tmp/crifloor ./bench/agent/crifloor
//	/tmp/crifloor -pods 30 -in-flight all,2,4,8 -single 5
//
// Per pod it sends what a kubelet must: RunPodSandbox, CreateContainer and
// StartContainer (busybox `sleep 3600`, the anchor's pod; images already
// imported, so no pull). A pod's time runs from the burst's start (all its
// pods are "created" at once, as in issue 7's burst) or from its own first
// call, to StartContainer returning, which is before any kubelet could
// even observe the container running. Bursts run with every pod in flight
// at once and with at most K pods between RunPodSandbox and
// StartContainer. CPU is read from cgroup v1 cpuacct: containerd is moved
// into the cpuacct cgroup /skifffloor-runtime, so it counts containerd,
// its shims (forked from it) and everything they run and wait for (runc,
// the CNI plugins); the pods' own cgroups (/skifffloor/...) count
// `runc init` and the pause and sleep processes.
//
// It needs root, containerd 1.6, runc, the CNI plugins and cgroup v1's
// cpuacct; it uses the bridge skifffloor0 and 10.86.0.0/24 (no test uses
// 10.86). Everything it makes is removed on return, on error and on
// SIGINT/SIGTERM. A program, not a test: CI never runs it; the numbers are
// in docs/PERFORMANCE.md ("The runtime's own floor").
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"skiff.dev/skiff/internal/agent"
	"skiff.dev/skiff/internal/images"
	"skiff.dev/skiff/internal/kubelet/cri"
	"skiff.dev/skiff/internal/network/cni"
	"skiff.dev/skiff/test/e2e/e2eutil"
)

const (
	bridge       = "skifffloor0"
	networkName  = "crifloor"
	podNamespace = "crifloor"
	// podCgroup is the cgroup parent of every pod; runtimeCgroup holds
	// containerd and its shims (cpuacct hierarchy only).
	podCgroup     = "/skifffloor"
	runtimeCgroup = "/skifffloor-runtime"
	cpuacctRoot   = "/sys/fs/cgroup/cpuacct"
	busyboxRef    = "localhost/busybox:feas"
	pauseRef      = "localhost/pause:feas"
)

var podCIDR = netip.MustParsePrefix("10.86.0.0/24")

func main() {
	o, err := parseOptions(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "crifloor:", err)
		os.Exit(2)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "crifloor:", err)
		os.Exit(1)
	}
}

// logf reports progress and clean-up on stderr (e2eutil.Logger).
var logf = e2eutil.LogFunc(func(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
})

func run(o options) (err error) {
	if os.Geteuid() != 0 {
		return errors.New("needs root (it runs containerd, runc and pod networking)")
	}
	if ps := agent.CheckPrereqs(agent.PrereqOptions{CNIBinDir: o.cniBin}); len(ps) > 0 {
		return errors.New(agent.FormatProblems(ps))
	}
	if _, err := os.Stat(filepath.Join(cpuacctRoot, "cpuacct.usage")); err != nil {
		return fmt.Errorf("cgroup v1 cpuacct is not mounted at %s: %w", cpuacctRoot, err)
	}
	if _, err := os.Stat("/sys/class/net/" + bridge); err == nil {
		return fmt.Errorf("bridge %s exists: another crifloor runs, or one was killed (ip link del %s)", bridge, bridge)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	if o.work == "" {
		d, err := os.MkdirTemp("", "crifloor-")
		if err != nil {
			return fmt.Errorf("creating work dir: %w", err)
		}
		o.work = d
		defer os.RemoveAll(d)
	} else if err := os.MkdirAll(o.work, 0o700); err != nil {
		return fmt.Errorf("creating work dir: %w", err)
	}
	work, err := filepath.Abs(o.work)
	if err != nil {
		return fmt.Errorf("resolving work dir: %w", err)
	}
	fmt.Printf("crifloor: load average at start: %s\n", loadAvg())

	if o.images == "" {
		o.images = filepath.Join(work, "images")
		if err := buildImages(ctx, o.images); err != nil {
			return err
		}
	}

	cdCfg := agent.ContainerdConfig{
		Dir:          filepath.Join(work, "containerd"),
		CNIBinDir:    o.cniBin,
		CNIConfDir:   filepath.Join(work, "cni", "net.d"),
		SandboxImage: pauseRef,
	}
	if err := cni.Write(cdCfg.CNIConfDir, cni.Config{Name: networkName, Bridge: bridge, PodCIDR: podCIDR, DataDir: filepath.Join(work, "cni", "ipam")}); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(cpuacctRoot, runtimeCgroup), 0o755); err != nil {
		return fmt.Errorf("creating cgroup %s: %w", runtimeCgroup, err)
	}
	var c *cri.Client
	var cd *agent.Containerd
	// Clean-up runs on every return, including an error or a signal; each
	// step is best effort and reports what it could not remove.
	defer func() {
		var netns []string
		if c != nil {
			netns = e2eutil.RemoveAllSandboxes(logf, c)
			c.Close()
		}
		if cd != nil {
			_ = cd.Stop()
		}
		e2eutil.KillShims(logf, work)
		e2eutil.RemoveNetns(logf, netns...)
		e2eutil.RemoveCgroupTree(logf, podCgroup)
		e2eutil.RemoveCgroupTree(logf, runtimeCgroup)
		e2eutil.DeleteLinks(logf, bridge)
		if err := agent.UnmountUnder(work); err != nil {
			logf.Logf("unmounting under %s: %v", work, err)
		}
	}()
	cd, err = agent.StartContainerd(ctx, cdCfg)
	if err != nil {
		return err
	}
	// Before any shim exists: every shim is forked by containerd and so
	// starts in its cgroup, wherever init later adopts it.
	if err := os.WriteFile(filepath.Join(cpuacctRoot, runtimeCgroup, "cgroup.procs"), []byte(strconv.Itoa(cd.Pid())), 0o644); err != nil {
		return fmt.Errorf("moving containerd into cgroup %s: %w", runtimeCgroup, err)
	}
	dialCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	c, err = cri.Dial(dialCtx, cd.Endpoint())
	cancel()
	if err != nil {
		return err
	}
	if err := waitNetworkReady(ctx, c); err != nil {
		return err
	}
	for _, f := range []string{"pause.tar", "busybox.tar"} {
		if _, err := images.ImportFile(ctx, cdCfg.Socket(), filepath.Join(o.images, f)); err != nil {
			return err
		}
	}

	b := &bench{c: c, logDir: filepath.Join(work, "logs"), cdPid: cd.Pid(), work: work}
	// The first pod pays one-time costs (the bridge, the runtime's caches):
	// not measured.
	if _, err := b.burst(ctx, "warm", 1, 1); err != nil {
		return fmt.Errorf("warm-up pod: %w", err)
	}
	if err := b.settle(ctx, o.gap); err != nil {
		return err
	}
	var single []result
	for i := 0; i < o.single; i++ {
		r, err := b.burst(ctx, fmt.Sprintf("single%d", i), 1, 1)
		if err != nil {
			return err
		}
		single = append(single, r)
		logf.Logf("single %d: %s", i, secs(r.fromBurst[0]))
		if err := b.settle(ctx, o.gap); err != nil {
			return err
		}
	}
	var bursts []result
	for round := 0; round < o.rounds; round++ {
		for _, k := range o.inFlight {
			r, err := b.burst(ctx, fmt.Sprintf("r%dk%d", round, k), o.pods, k)
			if err != nil {
				return err
			}
			bursts = append(bursts, r)
			logf.Logf("%d pods, %d in flight: p99 %s, all started %s", o.pods, k, secs(summarize(r.fromBurst).p99), secs(r.makespan))
			if err := b.settle(ctx, o.gap); err != nil {
				return err
			}
		}
	}
	report(single, bursts)
	return nil
}

// buildImages writes busybox.tar and pause.tar with bench/agent/sidebyside
// (the side-by-side benchmark's images, so both measure the same pods).
func buildImages(ctx context.Context, dir string) error {
	bin := filepath.Join(filepath.Dir(dir), "sidebyside")
	for _, args := range [][]string{
		{"go", "build", "-o", bin, "skiff.dev/skiff/bench/agent/sidebyside"},
		{bin, "images", "-out", dir},
	} {
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("building images (%s; run from inside the skiff module, or pass -images): %w", strings.Join(args, " "), err)
		}
	}
	return nil
}

// waitNetworkReady waits until the CRI plugin has loaded the CNI config.
func waitNetworkReady(ctx context.Context, c *cri.Client) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := c.Runtime.Status(ctx, &runtimeapi.StatusRequest{})
		if err == nil {
			for _, cond := range st.GetStatus().GetConditions() {
				if cond.Type == runtimeapi.NetworkReady && cond.Status {
					return nil
				}
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("containerd's network not ready after 30 s (status %v, err %v)", st.GetStatus(), err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

type bench struct {
	c      *cri.Client
	logDir string
	// containerd's PID and the work dir its shims' command lines name.
	cdPid int
	work  string
}

// result is one burst: per pod, the time from the burst's start and from
// its own first call to StartContainer returning, and the two phases.
type result struct {
	pods, inFlight int
	fromBurst      []time.Duration
	own            []time.Duration
	sandbox        []time.Duration // RunPodSandbox
	container      []time.Duration // CreateContainer + StartContainer
	makespan       time.Duration   // burst start to the last StartContainer
	// CPU during the burst: containerd with shims, runc and CNI plugins;
	// the pods' cgroups (runc init, pause, sleep).
	runtimeCPU, podCPU time.Duration
	// split is runtimeCPU by process, from /proc (10 ms ticks).
	split cpuSplit
	load  string
}

type pod struct {
	sandbox   *runtimeapi.PodSandboxConfig
	container *runtimeapi.ContainerConfig
}

// newPod is the pod a kubelet would send for one busybox container, with
// the fields skiff's kubelet sets (internal/kubelet/cri_adapter.go).
func (b *bench) newPod(name string) (pod, error) {
	uid := fmt.Sprintf("crifloor-%s-%d", name, time.Now().UnixNano())
	logDir := filepath.Join(b.logDir, uid)
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return pod{}, fmt.Errorf("creating pod log dir: %w", err)
	}
	ns := &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_POD, Pid: runtimeapi.NamespaceMode_CONTAINER, Ipc: runtimeapi.NamespaceMode_POD}
	labels := map[string]string{"io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": podNamespace, "io.kubernetes.pod.uid": uid}
	sb := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: podNamespace, Uid: uid},
		Hostname:     name,
		LogDirectory: logDir,
		Labels:       labels,
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent:    podCgroup + "/pod" + uid,
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: ns},
		},
	}
	ct := &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "app"},
		Image:    &runtimeapi.ImageSpec{Image: busyboxRef, UserSpecifiedImage: busyboxRef},
		Labels:   labels,
		LogPath:  "app/0.log",
		Linux: &runtimeapi.LinuxContainerConfig{
			Resources:       &runtimeapi.LinuxContainerResources{CpuShares: 2},
			SecurityContext: &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: ns},
		},
	}
	return pod{sandbox: sb, container: ct}, nil
}

// burst starts n pods, at most k between their first call and
// StartContainer returning at a time, and times each.
func (b *bench) burst(ctx context.Context, prefix string, n, k int) (result, error) {
	pods := make([]pod, n)
	for i := range pods {
		p, err := b.newPod(fmt.Sprintf("%s-%d", prefix, i))
		if err != nil {
			return result{}, err
		}
		pods[i] = p
	}
	r := result{pods: n, inFlight: k, fromBurst: make([]time.Duration, n), own: make([]time.Duration, n),
		sandbox: make([]time.Duration, n), container: make([]time.Duration, n)}
	rt0, err := cpuacctUsage(runtimeCgroup)
	if err != nil {
		return r, err
	}
	if err := os.MkdirAll(filepath.Join(cpuacctRoot, podCgroup), 0o755); err != nil {
		return r, fmt.Errorf("creating cgroup %s: %w", podCgroup, err)
	}
	pt0, err := cpuacctUsage(podCgroup)
	if err != nil {
		return r, err
	}
	split0 := procSplit(b.cdPid, b.work)
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan int, n)
	for i := range n {
		next <- i
	}
	close(next)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	t0 := time.Now()
	for range k {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := b.start(ctx, pods[i], t0, i, &r); err != nil {
					// The first failure stops the burst; the others
					// it causes are only "context canceled".
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					cancel()
					return
				}
			}
		}()
	}
	wg.Wait()
	r.makespan = time.Since(t0)
	rt1, err1 := cpuacctUsage(runtimeCgroup)
	pt1, err2 := cpuacctUsage(podCgroup)
	r.split = procSplit(b.cdPid, b.work).minus(split0)
	r.load = loadAvg()
	if parent.Err() != nil {
		return r, fmt.Errorf("interrupted: %w", parent.Err())
	}
	if err := errors.Join(firstErr, err1, err2); err != nil {
		return r, err
	}
	r.runtimeCPU, r.podCPU = rt1-rt0, pt1-pt0
	return r, nil
}

// start runs pod p and records its times at index i of r.
func (b *bench) start(ctx context.Context, p pod, t0 time.Time, i int, r *result) error {
	s := time.Now()
	sb, err := b.c.Runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: p.sandbox})
	if err != nil {
		return fmt.Errorf("running sandbox %s: %w", p.sandbox.Metadata.Name, err)
	}
	sbDone := time.Now()
	ct, err := b.c.Runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: sb.PodSandboxId, Config: p.container, SandboxConfig: p.sandbox})
	if err != nil {
		return fmt.Errorf("creating container of %s: %w", p.sandbox.Metadata.Name, err)
	}
	if _, err := b.c.Runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: ct.ContainerId}); err != nil {
		return fmt.Errorf("starting container of %s: %w", p.sandbox.Metadata.Name, err)
	}
	e := time.Now()
	// Each goroutine writes its own index only.
	r.fromBurst[i], r.own[i] = e.Sub(t0), e.Sub(s)
	r.sandbox[i], r.container[i] = sbDone.Sub(s), e.Sub(sbDone)
	return nil
}

// removeAll stops and removes every sandbox (untimed), their pod cgroups
// and logs.
func (b *bench) removeAll(ctx context.Context) error {
	l, err := b.c.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return fmt.Errorf("listing sandboxes: %w", err)
	}
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for _, sb := range l.Items {
		wg.Add(1)
		sem <- struct{}{}
		go func(id string) {
			defer func() { <-sem; wg.Done() }()
			if _, err := b.c.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("stopping sandbox %s: %w", id, err))
				mu.Unlock()
				return
			}
			if _, err := b.c.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("removing sandbox %s: %w", id, err))
				mu.Unlock()
			}
		}(sb.Id)
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	// runc removes a container's cgroup, not the pod's parent cgroup (a
	// kubelet's job).
	e2eutil.RemoveCgroupTree(logf, podCgroup)
	if err := os.RemoveAll(b.logDir); err != nil {
		return fmt.Errorf("removing pod logs: %w", err)
	}
	return nil
}

// settle removes the pods and waits gap, so the next measurement starts
// on an idle runtime.
func (b *bench) settle(ctx context.Context, gap time.Duration) error {
	if err := b.removeAll(ctx); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(gap):
		return nil
	}
}

// cpuacctUsage is the CPU time charged to a cpuacct cgroup and its
// descendants (cgroup v1 cpuacct.usage, nanoseconds).
func cpuacctUsage(cgroup string) (time.Duration, error) {
	p := filepath.Join(cpuacctRoot, cgroup, "cpuacct.usage")
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, fmt.Errorf("reading cpu usage: %w", err)
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parsing %s: %w", p, err)
	}
	return time.Duration(v), nil
}

// cpuSplit is the runtime's CPU by process: containerd itself; the
// children it ran and waited for (CNI plugins, `containerd-shim-runc-v2
// start`); the shims with the runc processes they waited for.
type cpuSplit struct{ containerd, children, shims time.Duration }

func (a cpuSplit) minus(b cpuSplit) cpuSplit {
	return cpuSplit{a.containerd - b.containerd, a.children - b.children, a.shims - b.shims}
}

// procSplit reads cpuSplit from /proc/PID/stat: containerd's by its PID,
// the shims' as the processes whose command line names a shim and work.
func procSplit(cdPid int, work string) cpuSplit {
	var s cpuSplit
	self, kids := procCPU(cdPid)
	s.containerd, s.children = self, kids
	paths, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(b), "containerd-shim") || !strings.Contains(string(b), work) {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if err != nil {
			continue
		}
		self, kids := procCPU(pid)
		s.shims += self + kids
	}
	return s
}

// procCPU is a process's utime+stime and its waited-for children's
// cutime+cstime (clock ticks, 100 per second on Linux).
func procCPU(pid int) (self, children time.Duration) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0
	}
	// After the command: state is field 3; utime..cstime are 14..17.
	f := strings.Fields(s[i+1:])
	if len(f) < 15 {
		return 0, 0
	}
	var t [4]int64
	for j := range t {
		t[j], _ = strconv.ParseInt(f[11+j], 10, 64)
	}
	tick := 10 * time.Millisecond
	return time.Duration(t[0]+t[1]) * tick, time.Duration(t[2]+t[3]) * tick
}

func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	fs := strings.Fields(string(b))
	if len(fs) < 3 {
		return "?"
	}
	return strings.Join(fs[:3], " ")
}

func report(single, bursts []result) {
	fmt.Printf("crifloor: load average at the end: %s; %d CPUs online\n\n", loadAvg(), runtime.NumCPU())
	fmt.Println(table(single, bursts, runtime.NumCPU()))
}
