package multinode

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"skiff.dev/skiff/internal/agent"
	"skiff.dev/skiff/internal/images"
	"skiff.dev/skiff/internal/network/overlay"
	"skiff.dev/skiff/internal/server"
	"skiff.dev/skiff/test/e2e/e2eutil"
)

const (
	hostBridge  = "skiffmn0"
	hostIP      = "10.92.0.1"
	clusterCIDR = "10.93.0.0/16"
	serviceCIDR = "10.94.0.0/16"
	numNodes    = 3
)

// suite is the state TestMain prepares and tears down.
var suite struct {
	skip     string // non-empty: why the suite cannot run here
	setupErr error
	work     string // every file the suite writes
	bin      string // the skiff binary
	images   string // built-in image tarballs
	backend  overlay.Backend
	failed   bool // print the process logs at teardown

	once    sync.Once
	cluster *cluster
	err     error
}

// node is one agent process in its own network namespace.
type node struct {
	name, netns, ip string
	podCIDR         string
	dir, cgroupRoot string
	cmd             *exec.Cmd
	done            chan struct{}
}

// cluster is the running server plus nodes.
type cluster struct {
	server     *exec.Cmd
	serverDone chan struct{}
	serverDir  string
	client     kubernetes.Interface
	nodes      []*node
	netnsSeen  map[string]bool // /var/run/netns before the suite
	podNetns   map[string]bool // netns paths of the suite's sandboxes
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if suite.skip = prerequisites(); suite.skip != "" {
		return m.Run()
	}
	suite.backend = overlay.VXLAN
	if b := os.Getenv("SKIFF_MULTINODE_BACKEND"); b != "" {
		be, err := overlay.ParseBackend(b)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		suite.backend = be
	}
	work, err := os.MkdirTemp("", "skiffmn-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	suite.work = work
	defer func() {
		teardown()
		if err := agent.UnmountUnder(work); err != nil {
			fmt.Fprintln(os.Stderr, "multinode teardown:", err)
		}
		_ = os.RemoveAll(work)
	}()
	start := time.Now()
	suite.setupErr = build(work)
	fmt.Fprintf(os.Stderr, "multinode: built skiff and the images in %s\n", time.Since(start).Round(time.Millisecond))
	code := m.Run()
	suite.failed = code != 0
	return code
}

func prerequisites() string {
	if os.Geteuid() != 0 {
		return "the multi-node suite needs root (network namespaces, containerd)"
	}
	if ps := agent.CheckPrereqs(agent.PrereqOptions{}); len(ps) > 0 {
		return "the multi-node suite needs the node prerequisites: " + agent.FormatProblems(ps)
	}
	for _, tool := range []string{"go", "ip", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			return "the multi-node suite needs " + tool
		}
	}
	return ""
}

// build compiles skiff once and the built-in images once; each node gets
// the tarballs in its offline image drop instead of building them again.
func build(work string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	src, err := images.SourceDir(ctx)
	if err != nil {
		return err
	}
	suite.bin = filepath.Join(work, "skiff")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", suite.bin, "./cmd/skiff")
	cmd.Dir = src
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building skiff: %w\n%s", err, out)
	}
	suite.images = filepath.Join(work, "images")
	if err := os.MkdirAll(suite.images, 0o755); err != nil {
		return err
	}
	for _, spec := range images.Specs() {
		if _, err := images.Build(ctx, src, suite.images, spec); err != nil {
			return err
		}
	}
	return nil
}

// getCluster starts the cluster on first use; every test shares it.
func getCluster(t *testing.T) *cluster {
	t.Helper()
	if suite.skip != "" {
		t.Skip(suite.skip)
	}
	if suite.setupErr != nil {
		t.Fatalf("suite setup: %v", suite.setupErr)
	}
	suite.once.Do(func() {
		start := time.Now()
		suite.cluster = &cluster{}
		suite.err = suite.cluster.start()
		t.Logf("cluster of %d nodes up (server, agents Ready, pod network announced) in %s", numNodes, time.Since(start).Round(time.Millisecond))
	})
	if suite.err != nil {
		t.Fatalf("starting the cluster: %v", suite.err)
	}
	c := suite.cluster
	select {
	case <-c.serverDone:
		t.Fatalf("skiff server has exited:\n%s", tail(filepath.Join(suite.work, "server.log")))
	default:
	}
	for _, n := range c.nodes {
		select {
		case <-n.done:
			t.Fatalf("agent %s has exited:\n%s", n.name, tail(filepath.Join(suite.work, n.name+".log")))
		default:
		}
	}
	return c
}

func sh(args ...string) error {
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (c *cluster) start() error {
	c.netnsSeen, c.podNetns = map[string]bool{}, map[string]bool{}
	ents, _ := os.ReadDir("/var/run/netns")
	for _, e := range ents {
		c.netnsSeen[e.Name()] = true
	}
	// Leftovers of a killed earlier run would make every step below fail.
	quiet := e2eutil.LogFunc(func(string, ...any) {})
	e2eutil.DeleteLinks(quiet, hostBridge)
	for i := 1; i <= numNodes; i++ {
		e2eutil.RemoveNetns(quiet, fmt.Sprintf("/var/run/netns/skiffmn-n%d", i))
	}
	steps := [][]string{
		{"ip", "link", "add", hostBridge, "type", "bridge"},
		{"ip", "addr", "add", hostIP + "/24", "dev", hostBridge},
		{"ip", "link", "set", hostBridge, "up"},
	}
	for _, s := range steps {
		if err := sh(s...); err != nil {
			return err
		}
	}
	for i := 1; i <= numNodes; i++ {
		n := &node{
			name: fmt.Sprintf("skiffmn-n%d", i), netns: fmt.Sprintf("skiffmn-n%d", i),
			ip: fmt.Sprintf("10.92.0.%d", 10+i), podCIDR: fmt.Sprintf("10.93.%d.0/24", i),
			dir: filepath.Join(suite.work, fmt.Sprintf("n%d", i)), cgroupRoot: fmt.Sprintf("/skiffmn-n%d", i),
		}
		c.nodes = append(c.nodes, n)
		veth := fmt.Sprintf("skiffmnv%d", i)
		for _, s := range [][]string{
			{"ip", "netns", "add", n.netns},
			{"ip", "link", "add", veth, "type", "veth", "peer", "name", "skiffmneth0", "netns", n.netns},
			{"ip", "link", "set", veth, "master", hostBridge, "up"},
			{"ip", "-n", n.netns, "link", "set", "lo", "up"},
			{"ip", "-n", n.netns, "addr", "add", n.ip + "/24", "dev", "skiffmneth0"},
			{"ip", "-n", n.netns, "link", "set", "skiffmneth0", "up"},
			{"ip", "-n", n.netns, "route", "add", "default", "via", hostIP},
		} {
			if err := sh(s...); err != nil {
				return err
			}
		}
	}
	if err := c.startServer(); err != nil {
		return err
	}
	token, err := os.ReadFile(filepath.Join(c.serverDir, "token"))
	if err != nil {
		return fmt.Errorf("reading join token: %w", err)
	}
	help, _ := exec.Command(suite.bin, "agent", "--help").CombinedOutput()
	for _, n := range c.nodes {
		if err := c.startAgent(n, strings.TrimSpace(string(token)), string(help)); err != nil {
			return err
		}
	}
	return c.waitNodes(4 * time.Minute)
}

func (c *cluster) startServer() error {
	c.serverDir = filepath.Join(suite.work, "server")
	if err := os.MkdirAll(c.serverDir, 0o700); err != nil {
		return err
	}
	var ports [3]int
	for i := range ports {
		p, err := freePort()
		if err != nil {
			return err
		}
		ports[i] = p
	}
	log, err := os.Create(filepath.Join(suite.work, "server.log"))
	if err != nil {
		return err
	}
	defer log.Close()
	c.server = exec.Command(suite.bin, "server", "--disable-agent",
		"--data-dir", c.serverDir, "--bind-address", hostIP, "--advertise-address", hostIP,
		"--https-port", strconv.Itoa(ports[0]), "--etcd-client-port", strconv.Itoa(ports[1]), "--etcd-peer-port", strconv.Itoa(ports[2]),
		"--cluster-cidr", clusterCIDR, "--service-cidr", serviceCIDR)
	c.server.Stdout, c.server.Stderr = log, log
	c.server.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.server.Start(); err != nil {
		return fmt.Errorf("starting skiff server: %w", err)
	}
	c.serverDone = make(chan struct{})
	go func() { _ = c.server.Wait(); close(c.serverDone) }()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		select {
		case <-c.serverDone:
			return fmt.Errorf("skiff server exited during start:\n%s", tail(filepath.Join(suite.work, "server.log")))
		default:
		}
		if c.client == nil {
			if rc, err := clientcmd.BuildConfigFromFlags("", server.AdminKubeconfigPath(c.serverDir)); err == nil {
				rc.QPS, rc.Burst = 50, 100
				c.client, _ = kubernetes.NewForConfig(rc)
			}
		}
		if c.client != nil {
			if _, err := c.client.CoreV1().ServiceAccounts("default").Get(context.Background(), "default", metav1.GetOptions{}); err == nil {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("skiff server not serving after 2m:\n%s", tail(filepath.Join(suite.work, "server.log")))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (c *cluster) startAgent(n *node, token, help string) error {
	drop := filepath.Join(n.dir, "agent", "images")
	if err := os.MkdirAll(drop, 0o700); err != nil {
		return err
	}
	tars, _ := filepath.Glob(filepath.Join(suite.images, "*.tar"))
	for _, t := range tars {
		if err := os.Link(t, filepath.Join(drop, filepath.Base(t))); err != nil {
			return fmt.Errorf("dropping images for %s: %w", n.name, err)
		}
	}
	// nsenter --net rather than ip netns exec: the latter also gives the
	// agent a private mount namespace with a fresh /sys, which hides the
	// cgroup v1 hierarchies mounted below /sys/fs/cgroup.
	args := []string{"--net=" + n.nodeNetns(), suite.bin, "agent",
		"--server", "https://" + net.JoinHostPort(hostIP, serverPort(c.server.Args)), "--token", token,
		"--data-dir", n.dir, "--node-name", n.name, "--node-ip", n.ip, "--pod-cidr", n.podCIDR,
		"--bridge", "skiffmnbr0", "--vxlan-device", "skiffmnvx0", "--cgroup-root", n.cgroupRoot,
		"--flannel-backend", string(suite.backend),
	}
	// Flags of parts other engineers wire into the agent, passed once
	// they exist.
	if strings.Contains(help, "--cluster-cidr") {
		args = append(args, "--cluster-cidr", clusterCIDR)
	}
	log, err := os.Create(filepath.Join(suite.work, n.name+".log"))
	if err != nil {
		return err
	}
	defer log.Close()
	fmt.Fprintf(log, "nsenter %s\n", strings.Join(args, " "))
	n.cmd = exec.Command("nsenter", args...)
	n.cmd.Stdout, n.cmd.Stderr = log, log
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if src, err := images.SourceDir(context.Background()); err == nil {
		n.cmd.Env = append(os.Environ(), "SKIFF_SOURCE_DIR="+src)
	}
	if err := n.cmd.Start(); err != nil {
		return fmt.Errorf("starting agent %s: %w", n.name, err)
	}
	n.done = make(chan struct{})
	go func() { _ = n.cmd.Wait(); close(n.done) }()
	return nil
}

func serverPort(args []string) string {
	for i, a := range args {
		if a == "--https-port" {
			return args[i+1]
		}
	}
	return ""
}

// waitNodes waits until every node is Ready and has announced its end of
// the pod network.
func (c *cluster) waitNodes(d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		var missing []string
		for _, n := range c.nodes {
			select {
			case <-n.done:
				return fmt.Errorf("agent %s exited during start:\n%s", n.name, tail(filepath.Join(suite.work, n.name+".log")))
			default:
			}
			nd, err := c.client.CoreV1().Nodes().Get(context.Background(), n.name, metav1.GetOptions{})
			switch {
			case err != nil:
				missing = append(missing, n.name+": "+err.Error())
			case !nodeReady(nd):
				missing = append(missing, n.name+": not Ready")
			case nd.Annotations[overlay.AnnotationBackend] != string(suite.backend):
				missing = append(missing, n.name+": pod network not announced")
			}
		}
		if len(missing) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nodes not ready after %s: %s", d, strings.Join(missing, "; "))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func nodeReady(n *v1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == v1.NodeReady {
			return c.Status == v1.ConditionTrue
		}
	}
	return false
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// teardown undoes start in reverse, whatever state it got to.
func teardown() {
	c := suite.cluster
	if c == nil {
		return
	}
	logf := e2eutil.LogFunc(func(format string, args ...any) { fmt.Fprintf(os.Stderr, "multinode teardown: "+format+"\n", args...) })
	if suite.failed || os.Getenv("SKIFF_MULTINODE_LOGS") != "" {
		logf("--- server log tail ---\n%s", tail(filepath.Join(suite.work, "server.log")))
		for _, n := range c.nodes {
			logf("--- %s log tail ---\n%s", n.name, tail(filepath.Join(suite.work, n.name+".log")))
		}
	}
	// Remove every sandbox through each node's containerd while it runs:
	// that stops the containers, deletes the pods' netns, veths and IPs.
	for _, n := range c.nodes {
		if n.cmd == nil {
			continue
		}
		for _, p := range e2eutil.RemoveSandboxesAt(logf, "unix://"+filepath.Join(n.dir, "agent", "containerd", "containerd.sock")) {
			c.podNetns[p] = true
		}
	}
	for _, n := range c.nodes {
		if n.cmd != nil {
			stopProcess(n.cmd, n.done, 20*time.Second)
		}
	}
	if c.server != nil {
		stopProcess(c.server, c.serverDone, 20*time.Second)
	}
	// Shims (and their containers) outlive a killed containerd.
	e2eutil.KillProcessesUnder(logf, suite.work)
	for _, n := range c.nodes {
		e2eutil.RemoveCgroupTree(logf, n.cgroupRoot)
	}
	for _, n := range c.nodes {
		e2eutil.RemoveNetns(logf, n.nodeNetns())
	}
	e2eutil.DeleteLinks(logf, hostBridge)
	// A pod netns containerd could not clean up (its agent died first)
	// stays mounted on /var/run/netns/cni-*: unmount and remove the ones
	// that appeared during the run and belong to no live process of ours.
	ents, _ := os.ReadDir("/var/run/netns")
	for _, e := range ents {
		p := filepath.Join("/var/run/netns", e.Name())
		if c.netnsSeen[e.Name()] || !strings.HasPrefix(e.Name(), "cni-") || !c.ownsNetns(p) {
			continue
		}
		e2eutil.RemoveNetns(logf, p)
	}
}

// stopProcess sends SIGTERM by PID, then SIGKILL after grace.
func stopProcess(cmd *exec.Cmd, done chan struct{}, grace time.Duration) {
	if cmd.Process == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-done
	}
}

// ownsNetns reports whether p is the netns of one of the suite's sandboxes
// (recorded while removing them).
func (c *cluster) ownsNetns(p string) bool { return c.podNetns[p] }

// --- helpers the scenarios share ---

// inNetns runs f on an OS thread switched into the network namespace at
// path; sockets f creates stay in that namespace.
func inNetns(path string, f func() error) error {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("opening netns %s: %w", path, err)
	}
	defer ns.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			errc <- fmt.Errorf("entering netns %s: %w", path, err)
			return
		}
		err = f()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// httpClientIn is an HTTP client whose connections are made from inside
// the network namespace at nsPath ("" = the host's).
func httpClientIn(nsPath string, timeout time.Duration) *http.Client {
	tr := &http.Transport{DisableKeepAlives: true}
	if nsPath != "" {
		tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := inNetns(nsPath, func() error {
				var err error
				c, err = (&net.Dialer{Timeout: timeout}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		}
	}
	return &http.Client{Transport: tr, Timeout: timeout}
}

// get fetches url from inside nsPath and returns the body.
func get(nsPath, url string) (string, error) {
	resp, err := httpClientIn(nsPath, 3*time.Second).Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(b), nil
}

// eventually retries get until it returns want or d passes.
func eventually(t *testing.T, d time.Duration, nsPath, url, want string) {
	t.Helper()
	deadline := time.Now().Add(d)
	var got string
	var err error
	for time.Now().Before(deadline) {
		got, err = get(nsPath, url)
		if err == nil && got == want {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("GET %s from %s: got %q, %v; want %q", url, nsLabel(nsPath), got, err, want)
}

func nsLabel(p string) string {
	if p == "" {
		return "the host"
	}
	return p
}

// nodeNetns is the path of a node's network namespace.
func (n *node) nodeNetns() string { return "/var/run/netns/" + n.netns }
