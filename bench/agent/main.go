// Command agent benchmarks skiff's node agent (issue 7) against the real
// skiff binary: `skiff server --disable-agent` and `skiff agent` run as two
// subprocesses on fresh data dirs, so the agent's memory is its own, and
// the agent supervises its private containerd as in production.
//
//	go build -o /tmp/skiff ./cmd/skiff
//	go run ./bench/agent -skiff /tmp/skiff
//
// It measures, through the API (client create call → a watch shows the pod
// Running with every container ready, bench.py's predicate in
// ../shared/anchors/upstream-kubelet; the image is already on the node):
//
//	cold start   server launch → Node Ready (agent launched as soon as the
//	             join token exists), and agent launch → Node Ready
//	single       one pod alone, -single times: p50/p99
//	burst        -burst pods created back to back by one client: p50/p90/p99
//	rss          agent VmRSS/RssAnon, containerd, shims: idle and with the
//	             burst's pods running
//
// It needs root, containerd, runc and the CNI plugins; it uses the bridge
// skiffbench0 and the pod range 10.98.0.0/24. It is a program, not a test,
// so CI never runs it. docs/PERFORMANCE.md (agent section) has the results.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"skiff.dev/skiff/internal/kubelet/cri"
)

const (
	nodeName  = "skiffbench-node"
	bridge    = "skiffbench0"
	podCIDR   = "10.98.0.0/24"
	clusterNS = "skiffbench"
	image     = "localhost/skiff/testapp:v1"
)

type options struct {
	bin, work  string
	single     int
	singleGap  time.Duration
	burst      int
	idle       time.Duration
	serviceNet bool
	agentEnv   []string
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench/agent:", err)
		os.Exit(1)
	}
}

func run() error {
	var o options
	var env string
	flag.StringVar(&o.bin, "skiff", "", "skiff binary (default: build ./cmd/skiff into the work dir)")
	flag.StringVar(&o.work, "work", "", "work directory for data dirs and logs (default: a new temp dir, removed afterwards)")
	flag.IntVar(&o.single, "single", 10, "single-pod starts (one pod at a time)")
	flag.DurationVar(&o.singleGap, "single-gap", 2*time.Second, "pause after each single pod is deleted (bench.py sleeps 2 s)")
	flag.IntVar(&o.burst, "burst", 30, "pods created back to back")
	flag.DurationVar(&o.idle, "idle", 10*time.Second, "idle time before reading RSS")
	flag.BoolVar(&o.serviceNet, "service-network", false, "run the agent's service proxy, node NAT and DNS (their nftables tables have fixed names: only on a machine where no other skiff agent runs)")
	flag.StringVar(&env, "agent-env", "", "extra environment for the agent, comma-separated (e.g. GOGC=50)")
	cleanup := flag.String("cleanup", "", "remove every sandbox left under this work dir of an earlier run (starts its containerd), then exit")
	flag.Parse()
	if *cleanup != "" {
		return cleanupDir(*cleanup)
	}
	if env != "" {
		o.agentEnv = strings.Split(env, ",")
	}
	if os.Geteuid() != 0 {
		return errors.New("needs root (the agent runs containerd and pod networking)")
	}
	if o.work == "" {
		d, err := os.MkdirTemp("", "skiffbench-agent-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		o.work = d
	}
	if o.bin == "" {
		o.bin = filepath.Join(o.work, "skiff")
		fmt.Fprintln(os.Stderr, "building ./cmd/skiff")
		b := exec.Command("go", "build", "-o", o.bin, "./cmd/skiff")
		b.Stdout, b.Stderr = os.Stderr, os.Stderr
		if err := b.Run(); err != nil {
			return fmt.Errorf("building skiff: %w", err)
		}
	}
	if err := os.MkdirAll(o.work, 0o700); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	return bench(ctx, o)
}

type proc struct {
	cmd  *exec.Cmd
	done chan error
	log  string
}

func start(bin string, args []string, env []string, logPath string) (*proc, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s %s: %w", bin, args[0], err)
	}
	p := &proc{cmd: cmd, done: make(chan error, 1), log: logPath}
	go func() { p.done <- cmd.Wait(); f.Close() }()
	return p, nil
}

// stop sends SIGTERM and waits (SIGKILL after 30 s).
func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type result struct {
	serverReady, stackReady, agentReady time.Duration
	warm                                time.Duration
	// burstCPU is the CPU used during the burst by the agent, its
	// containerd and the shims (including exited children they waited for:
	// runc, CNI plugins).
	burstCPU      [3]time.Duration
	single, burst []time.Duration
	idle, loaded  memory
}

type memory struct {
	agentRSS, agentAnon, agentFile, containerd, shims int64 // KiB
	shimCount                                         int
}

func bench(ctx context.Context, o options) error {
	serverDir := filepath.Join(o.work, "server")
	agentDir := filepath.Join(o.work, "agent")
	port := freePort()
	t0 := time.Now()
	srv, err := start(o.bin, []string{"server", "--data-dir", serverDir, "--bind-address", "127.0.0.1",
		"--https-port", strconv.Itoa(port), "--etcd-client-port", strconv.Itoa(freePort()),
		"--etcd-peer-port", strconv.Itoa(freePort()), "--advertise-address", "127.0.0.1",
		"--cluster-cidr", "10.98.0.0/16", "--disable-agent"}, nil, filepath.Join(o.work, "server.log"))
	if err != nil {
		return err
	}
	defer srv.stop()
	var res result
	url := fmt.Sprintf("https://127.0.0.1:%d", port)
	if err := waitReadyz(ctx, url, srv); err != nil {
		return fmt.Errorf("server (log %s): %w", srv.log, err)
	}
	res.serverReady = time.Since(t0)
	token, err := os.ReadFile(filepath.Join(serverDir, "token"))
	if err != nil {
		return fmt.Errorf("reading join token: %w", err)
	}
	args := []string{"agent", "--server", url, "--token", strings.TrimSpace(string(token)),
		"--data-dir", agentDir, "--node-name", nodeName, "--kubelet-port", strconv.Itoa(freePort()),
		"--pod-cidr", podCIDR, "--cluster-cidr", "10.98.0.0/16", "--bridge", bridge,
		"--disable-ingress", "--flannel-backend", "none", "--vxlan-device", "skiffbench.1",
		"--cgroup-root", "/skiffbench"}
	if !o.serviceNet {
		args = append(args, "--disable-service-network")
	}
	// The agent runs from its own copy of the binary, as on a node of its
	// own: two processes mapping one file share its page-cache pages, which
	// count in both VmRSS figures and which the kernel will not page out
	// for either (internal/memtrim skips shared pages).
	agentBin := filepath.Join(o.work, "skiff-agent")
	if err := copyFile(o.bin, agentBin); err != nil {
		return fmt.Errorf("copying the binary for the agent: %w", err)
	}
	ta := time.Now()
	ag, err := start(agentBin, args, o.agentEnv, filepath.Join(o.work, "agent.log"))
	if err != nil {
		return err
	}
	socket := filepath.Join(agentDir, "agent", "containerd", "containerd.sock")
	defer func() {
		// A stopped agent leaves its containers running (a restart adopts
		// them): remove every sandbox first, through its containerd.
		if err := removeSandboxes(socket); err != nil {
			fmt.Fprintln(os.Stderr, "cleaning up sandboxes:", err)
		}
		ag.stop()
		_ = exec.Command("ip", "link", "del", bridge).Run()
		removeCgroups()
	}()
	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(serverDir, "admin.kubeconfig"))
	if err != nil {
		return fmt.Errorf("loading admin kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = -1, 0
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	if err := waitNode(ctx, cs, ag, false); err != nil {
		return fmt.Errorf("node Ready (agent log %s): %w", ag.log, err)
	}
	res.agentReady = time.Since(ta)
	res.stackReady = time.Since(t0)
	fmt.Fprintf(os.Stderr, "node Ready: %v after server launch (%v after agent launch)\n", res.stackReady, res.agentReady)
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: clusterNS}}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating namespace: %w", err)
	}
	// The default service account must exist before pods are admitted.
	for {
		if _, err := cs.CoreV1().ServiceAccounts(clusterNS).Get(ctx, "default", metav1.GetOptions{}); err == nil {
			break
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Warm-up pod: it waits for the agent's built-in images (the agent
	// does not list images in the Node status) and pays the one-time costs
	// (bridge creation), so measured pods find the image present.
	if d, err := startPods(ctx, cs, "warm", 1); err != nil {
		return err
	} else {
		res.warm = d[0]
		fmt.Fprintf(os.Stderr, "warm-up pod Ready in %v\n", d[0])
	}
	if err := deleteAll(ctx, cs); err != nil {
		return err
	}
	time.Sleep(o.idle)
	if res.idle, err = measure(ag.cmd.Process.Pid, agentDir); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "idle: %+v\n", res.idle)
	for i := 0; i < o.single; i++ {
		mf := majorFaults(ag.cmd.Process.Pid)
		d, err := startPods(ctx, cs, fmt.Sprintf("single-%d", i), 1)
		if err != nil {
			return err
		}
		res.single = append(res.single, d...)
		fmt.Fprintf(os.Stderr, "single %d: %v (agent major faults %d)\n", i, d[0], majorFaults(ag.cmd.Process.Pid)-mf)
		if err := deleteAll(ctx, cs); err != nil {
			return err
		}
		time.Sleep(o.singleGap)
	}
	cpu0 := cpuOf(ag.cmd.Process.Pid, agentDir)
	if res.burst, err = startPods(ctx, cs, "burst", o.burst); err != nil {
		return err
	}
	cpu1 := cpuOf(ag.cmd.Process.Pid, agentDir)
	res.burstCPU = [3]time.Duration{cpu1[0] - cpu0[0], cpu1[1] - cpu0[1], cpu1[2] - cpu0[2]}
	time.Sleep(o.idle)
	if res.loaded, err = measure(ag.cmd.Process.Pid, agentDir); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "loaded: %+v\n", res.loaded)
	if err := deleteAll(ctx, cs); err != nil {
		return err
	}
	report(res, o)
	return nil
}

func waitReadyz(ctx context.Context, url string, p *proc) error {
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	defer c.CloseIdleConnections()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-p.done:
			return fmt.Errorf("exited: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if resp, err := c.Get(url + "/readyz"); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	return errors.New("not ready in 60 s")
}

// waitNode polls the Node every 5 ms until it is Ready (and, with
// wantImage, lists the test image; the agent does not report images yet).
func waitNode(ctx context.Context, cs kubernetes.Interface, p *proc, wantImage bool) error {
	deadline := time.Now().Add(120 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-p.done:
			return fmt.Errorf("agent exited: %v", err)
		default:
		}
		n, err := cs.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
		if err == nil && nodeReady(n) && (!wantImage || hasImage(n)) {
			return nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return errors.New("timed out")
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func hasImage(n *corev1.Node) bool {
	for _, im := range n.Status.Images {
		for _, name := range im.Names {
			if name == image {
				return true
			}
		}
	}
	return false
}

// podReady is the predicate of upstream-kubelet/bench.py, which measured
// the upstream kubelet: phase Running and every container status ready
// (not the Ready condition, which the kubelet writes in the same update).
func podReady(p *corev1.Pod) bool {
	if p.Status.Phase != corev1.PodRunning || len(p.Status.ContainerStatuses) == 0 {
		return false
	}
	for _, c := range p.Status.ContainerStatuses {
		if !c.Ready {
			return false
		}
	}
	return true
}

// startPods opens a watch on the namespace, creates n pods back to back and
// returns, for each, the time from just before its create call to the watch
// event showing it Running and Ready.
func startPods(ctx context.Context, cs kubernetes.Interface, prefix string, n int) ([]time.Duration, error) {
	w, err := cs.CoreV1().Pods(clusterNS).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("watching pods: %w", err)
	}
	defer w.Stop()
	sent := make(map[string]time.Time, n)
	zero := int64(0)
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("%s-%d", prefix, i)
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.PodSpec{
				TerminationGracePeriodSeconds: &zero,
				Containers:                    []corev1.Container{{Name: "app", Image: image, ImagePullPolicy: corev1.PullIfNotPresent}},
			},
		}
		sent[name] = time.Now()
		if _, err := cs.CoreV1().Pods(clusterNS).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			return nil, fmt.Errorf("creating pod %s: %w", name, err)
		}
	}
	got := make(map[string]time.Duration, n)
	timeout := time.After(120 * time.Second)
	for len(got) < n {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				return nil, errors.New("watch closed")
			}
			if ev.Type == watch.Error {
				return nil, fmt.Errorf("watch error: %v", ev.Object)
			}
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			t, mine := sent[p.Name]
			if _, done := got[p.Name]; mine && !done && podReady(p) {
				got[p.Name] = time.Since(t)
			}
		case <-timeout:
			return nil, fmt.Errorf("%d of %d pods Ready after 120 s", len(got), n)
		}
	}
	out := make([]time.Duration, 0, n)
	for _, d := range got {
		out = append(out, d)
	}
	return out, nil
}

// deleteAll deletes every pod in the namespace and waits until none is left.
func deleteAll(ctx context.Context, cs kubernetes.Interface) error {
	zero := int64(0)
	if err := cs.CoreV1().Pods(clusterNS).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{}); err != nil {
		return fmt.Errorf("deleting pods: %w", err)
	}
	deadline := time.Now().Add(120 * time.Second)
	for time.Now().Before(deadline) {
		l, err := cs.CoreV1().Pods(clusterNS).List(ctx, metav1.ListOptions{FieldSelector: fields.Everything().String()})
		if err == nil && len(l.Items) == 0 {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("pods not gone after 120 s")
}

// measure reads the agent's memory, its containerd's (the agent's child
// whose command line names its data dir) and the shims' (processes whose
// command line names that containerd's address).
func measure(agentPID int, agentDir string) (memory, error) {
	var m memory
	var err error
	if m.agentRSS, err = statusKB(agentPID, "VmRSS:"); err != nil {
		return m, err
	}
	if m.agentAnon, err = statusKB(agentPID, "RssAnon:"); err != nil {
		return m, err
	}
	if m.agentFile, err = statusKB(agentPID, "RssFile:"); err != nil {
		return m, err
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return m, err
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == agentPID {
			continue
		}
		cl, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !strings.Contains(string(cl), agentDir) {
			continue
		}
		args := strings.Split(string(cl), "\x00")
		rss, err := statusKB(pid, "VmRSS:")
		if err != nil {
			continue
		}
		switch base := filepath.Base(args[0]); {
		case strings.HasPrefix(base, "containerd-shim"):
			m.shims += rss
			m.shimCount++
		case base == "containerd":
			m.containerd += rss
		}
	}
	return m, nil
}

// copyFile copies an executable.
func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func statusKB(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("reading process status: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := sc.Text(); strings.HasPrefix(l, field) {
			fs := strings.Fields(strings.TrimPrefix(l, field))
			if len(fs) > 0 {
				return strconv.ParseInt(fs[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(p*float64(len(s))+0.999999) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(s) {
		i = len(s) - 1
	}
	return s[i]
}

func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	fs := strings.Fields(string(b))
	if len(fs) < 3 {
		return "?"
	}
	return strings.Join(fs[:3], " ")
}

func mib(kb int64) string { return fmt.Sprintf("%.1f MiB", float64(kb)/1024) }

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func sec(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

func report(r result, o options) {
	fmt.Printf("load average at the end: %s; service network: %v; agent env: %v\n\n", loadAvg(), o.serviceNet, o.agentEnv)
	fmt.Println("| measurement | result |")
	fmt.Println("|---|---|")
	fmt.Printf("| cold start: server launch → /readyz | %s |\n", sec(r.serverReady))
	fmt.Printf("| cold start: server launch → Node Ready | %s |\n", sec(r.stackReady))
	fmt.Printf("| agent launch → Node Ready | %s |\n", sec(r.agentReady))
	fmt.Printf("| first pod after node Ready (waits for the built-in images) | %s |\n", sec(r.warm))
	fmt.Printf("| one pod alone (n=%d) p50 / p99 / min / max | %s / %s / %s / %s |\n", len(r.single),
		sec(pct(r.single, 0.5)), sec(pct(r.single, 0.99)), sec(pct(r.single, 0)), sec(pct(r.single, 1)))
	fmt.Printf("| %d pods back to back p50 / p90 / p99 | %s / %s / %s |\n", len(r.burst),
		sec(pct(r.burst, 0.5)), sec(pct(r.burst, 0.9)), sec(pct(r.burst, 0.99)))
	fmt.Printf("| CPU during the burst: agent / containerd (+runc, CNI) / shims | %s / %s / %s |\n", sec(r.burstCPU[0]), sec(r.burstCPU[1]), sec(r.burstCPU[2]))
	if n := time.Duration(len(r.burst)); n > 0 {
		fmt.Printf("| CPU per pod in the burst: agent / containerd / shims | %.1f / %.1f / %.1f ms |\n",
			ms(r.burstCPU[0]/n), ms(r.burstCPU[1]/n), ms(r.burstCPU[2]/n))
	}
	for _, x := range []struct {
		name string
		m    memory
	}{{"idle", r.idle}, {fmt.Sprintf("%d pods", len(r.burst)), r.loaded}} {
		fmt.Printf("| agent VmRSS / RssAnon / RssFile, %s | %s / %s / %s |\n", x.name, mib(x.m.agentRSS), mib(x.m.agentAnon), mib(x.m.agentFile))
		fmt.Printf("| containerd VmRSS, %s | %s |\n", x.name, mib(x.m.containerd))
		if x.m.shimCount > 0 {
			fmt.Printf("| shims, %s: count, total VmRSS, each | %d, %s, %s |\n", x.name, x.m.shimCount, mib(x.m.shims), mib(x.m.shims/int64(x.m.shimCount)))
		}
	}
}

// cpuOf returns the CPU (user+system, with waited-for children) of the
// agent, its containerd and the shims.
func cpuOf(agentPID int, agentDir string) [3]time.Duration {
	var out [3]time.Duration
	out[0] = procCPU(agentPID)
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == agentPID {
			continue
		}
		cl, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !strings.Contains(string(cl), agentDir) {
			continue
		}
		switch base := filepath.Base(strings.Split(string(cl), "\x00")[0]); {
		case strings.HasPrefix(base, "containerd-shim"):
			out[2] += procCPU(pid)
		case base == "containerd":
			out[1] += procCPU(pid)
		}
	}
	return out
}

// statFields are the fields of /proc/PID/stat after the command name
// (field 3, the state, first); nil when the process is gone.
func statFields(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(s[i+1:])
}

// majorFaults is the process's major page faults so far (reads from disk:
// with memtrim's exact mode, first touches of the binary's pages).
func majorFaults(pid int) int64 {
	fs := statFields(pid)
	if len(fs) < 10 {
		return 0
	}
	v, _ := strconv.ParseInt(fs[9], 10, 64)
	return v
}

// procCPU is utime+stime+cutime+cstime from /proc/PID/stat (clock ticks
// of 10 ms).
func procCPU(pid int) time.Duration {
	fs := statFields(pid)
	if len(fs) < 15 {
		return 0
	}
	var t int64
	for _, f := range fs[11:15] {
		v, _ := strconv.ParseInt(f, 10, 64)
		t += v
	}
	return time.Duration(t) * 10 * time.Millisecond
}

// removeSandboxes stops and removes every pod sandbox (containers, network
// namespace, IP) of the containerd at socket.
func removeSandboxes(socket string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := cri.Dial(ctx, "unix://"+socket)
	if err != nil {
		return err
	}
	defer c.Close()
	l, err := c.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return fmt.Errorf("listing sandboxes: %w", err)
	}
	var errs []error
	for _, sb := range l.Items {
		// NotFound: the agent removed it meanwhile.
		if _, err := c.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sb.Id}); status.Code(err) == codes.NotFound {
			continue
		} else if err != nil {
			errs = append(errs, fmt.Errorf("stopping sandbox %s: %w", sb.Id, err))
			continue
		}
		if _, err := c.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sb.Id}); err != nil && status.Code(err) != codes.NotFound {
			errs = append(errs, fmt.Errorf("removing sandbox %s: %w", sb.Id, err))
		}
	}
	return errors.Join(errs...)
}

// cleanupDir starts the containerd of an earlier run's work dir and
// removes its sandboxes.
func cleanupDir(work string) error {
	dir := filepath.Join(work, "agent", "agent", "containerd")
	cmd := exec.Command("containerd", "--config", filepath.Join(dir, "config.toml"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting containerd: %w", err)
	}
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	return removeSandboxes(filepath.Join(dir, "containerd.sock"))
}

// removeCgroups removes the (now empty) pod cgroups under /skiffbench in
// every cgroup v1 hierarchy, deepest first.
func removeCgroups() {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/skiffbench")
	for _, root := range roots {
		var dirs []string
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			_ = syscall.Rmdir(dirs[i])
		}
	}
}
