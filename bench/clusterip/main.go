// Command clusterip measures what a ClusterIP costs (issue 6: "throughput
// and latency through a ClusterIP vs direct to the pod (wrk), target < 10%
// overhead").
//
//	go run ./bench/clusterip -duration 10s -connections 64 -rounds 3
//
// It starts a real single-node skiff in this process (control plane on
// free loopback ports and an agent with its private containerd and the
// service proxy), deploys skiff-testapp (localhost/skiff/testapp:v1) as a
// one-replica Deployment behind a ClusterIP Service (port 80 → 8080), and
// runs wrk alternately against
//
//	direct     http://POD-IP:8080/healthz
//	clusterip  http://CLUSTER-IP:80/healthz
//
// from two places: the host's network namespace (the proxy serves
// ClusterIPs to the node itself: DNAT in the output hook, then a second
// route lookup for every packet) and a client pod's (wrk from the host,
// entered into the pod's network namespace with nsenter: the path pods
// take, DNAT in the host's prerouting hook before routing, as a bridged
// packet with bridge-nf-call-iptables).
//
// in two modes: keep-alive (the NAT rules see only each connection's first
// packet; the rest follows conntrack) and a new connection per request
// (`Connection: close`, every request passes the rules). Each round runs
// both targets back to back, in alternating order; the report gives the
// median over rounds of requests/s, p50/p99 latency (wrk's, from writing
// the request to reading the response) and CPU per request (wrk plus the
// pod's cgroup), and the ClusterIP's overhead on each.
//
// It needs root, containerd, runc, the CNI plugins, nft and the go tool
// (the agent builds the test image); wrk is installed with apt-get when
// missing. It uses pods in 10.99.0.0/17, services in 10.99.128.0/20, the
// bridge skiffcip0, nftables tables and a cgroup root named skiffcip-*, and
// removes every sandbox, link, table, mount and cgroup it made, also when
// it fails or is interrupted. It is a program, not a test: CI never runs
// it. docs/PERFORMANCE.md (issue 6, ClusterIP) has the method and results.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"skiff.dev/skiff/internal/agent"
	"skiff.dev/skiff/internal/cli"
	"skiff.dev/skiff/internal/images"
	"skiff.dev/skiff/internal/kubelet/cri"
	"skiff.dev/skiff/internal/server"
)

const (
	clusterCIDR = "10.99.0.0/17"
	podCIDR     = "10.99.0.0/24" // what node IPAM gives the only node
	serviceCIDR = "10.99.128.0/20"
	nodeName    = "skiffcip-node"
	bridge      = "skiffcip0"
	namespace   = "default"
	app         = "cipbench"
	clientPod   = "cipbench-client"
)

type options struct {
	duration, warmup time.Duration
	conns, threads   int
	rounds           int
	path             string
	work             string
	keep             bool
	modes            string
	from             string
}

func main() {
	var o options
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "length of each measured wrk run (whole seconds)")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured wrk run per target and mode before the rounds")
	flag.IntVar(&o.conns, "connections", 64, "wrk connections (-c)")
	flag.IntVar(&o.threads, "threads", 2, "wrk threads (-t)")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds; each runs both targets back to back, in alternating order")
	flag.StringVar(&o.path, "path", "/healthz", "HTTP path requested from skiff-testapp")
	flag.StringVar(&o.modes, "modes", "keepalive,close", "comma-separated: keepalive (reused connections), close (a new connection per request)")
	flag.StringVar(&o.from, "from", "host,pod", "comma-separated: where wrk runs: host (the node's network namespace), pod (a client pod's)")
	flag.StringVar(&o.work, "work", "", "work directory for data dirs and logs (default: a new temp dir, removed afterwards)")
	flag.BoolVar(&o.keep, "keep-work", false, "keep the temporary work directory (data dirs, server.log, agent.log) after the run")
	flag.Parse()
	if err := validate(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench/clusterip:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := runBench(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/clusterip:", err)
		os.Exit(1)
	}
}

func validate(o options) error {
	switch {
	case o.duration < time.Second:
		return errors.New("-duration must be at least 1s")
	case o.conns < 1 || o.threads < 1 || o.conns < o.threads:
		return errors.New("-connections and -threads must be positive, with at least one connection per thread")
	case o.rounds < 1:
		return errors.New("-rounds must be at least 1")
	case !strings.HasPrefix(o.path, "/"):
		return fmt.Errorf("-path %q must start with /", o.path)
	}
	for _, m := range strings.Split(o.modes, ",") {
		if m != "keepalive" && m != "close" {
			return fmt.Errorf("-modes: unknown mode %q (want keepalive and/or close)", m)
		}
	}
	for _, f := range strings.Split(o.from, ",") {
		if f != "host" && f != "pod" {
			return fmt.Errorf("-from: unknown place %q (want host and/or pod)", f)
		}
	}
	return nil
}

func runBench(ctx context.Context, o options) (err error) {
	if os.Geteuid() != 0 {
		return errors.New("needs root (containerd, nftables, pod networking)")
	}
	if ps := agent.CheckPrereqs(agent.PrereqOptions{}); len(ps) > 0 {
		return errors.New(agent.FormatProblems(ps))
	}
	if _, err := exec.LookPath("go"); err != nil {
		return errors.New("needs the go tool (the agent builds the test image)")
	}
	wrk, err := ensureWrk(ctx)
	if err != nil {
		return err
	}
	if o.work == "" {
		d, err := os.MkdirTemp("", "skiffcip-")
		if err != nil {
			return err
		}
		o.work = d
		defer func() {
			if o.keep {
				fmt.Fprintf(os.Stderr, "logs kept in %s\n", d)
				return
			}
			if rerr := os.RemoveAll(d); rerr != nil {
				fmt.Fprintf(os.Stderr, "removing %s: %v\n", d, rerr)
			}
		}()
	}
	script := filepath.Join(o.work, "report.lua")
	if err := os.WriteFile(script, []byte(reportScript), 0o644); err != nil {
		return err
	}

	srv, client, stopServer, err := startServer(ctx, o.work)
	if err != nil {
		return err
	}
	defer stopServer()
	sfx := randomSuffix()
	cgroupRoot := "/skiffcip-" + sfx
	criSocket, stopAgent, err := startAgent(ctx, o.work, srv, client, sfx, cgroupRoot)
	if err != nil {
		return err
	}
	defer stopAgent()

	podIP, clusterIP, err := deploy(ctx, client)
	if err != nil {
		return err
	}
	// Where wrk runs: a command prefix (nothing for the host).
	places := map[string][]string{"host": nil}
	if strings.Contains(o.from, "pod") {
		pid, err := clientPodPID(ctx, client, criSocket)
		if err != nil {
			return err
		}
		nsenter, err := findOnPath("nsenter")
		if err != nil {
			return fmt.Errorf("-from pod needs nsenter (util-linux): %w", err)
		}
		places["pod"] = []string{nsenter, "--net=/proc/" + strconv.Itoa(pid) + "/ns/net", "--"}
	}
	targets := []target{
		{"direct", "http://" + net.JoinHostPort(podIP, "8080") + o.path},
		{"clusterip", "http://" + net.JoinHostPort(clusterIP, "80") + o.path},
	}
	for _, t := range targets {
		if err := waitHTTP(ctx, t.url); err != nil {
			return err
		}
	}
	if places["pod"] != nil {
		// The host reaching both says nothing about the pod's path: one
		// short wrk run from the pod against each.
		for _, t := range targets {
			if err := waitUntil(ctx, time.Minute, t.name+" from the client pod", func() (bool, error) {
				r, err := runWrk(ctx, places["pod"], wrk, wrkArgs(script, t.url, 1, 1, time.Second, false), cgroupRoot)
				return err == nil && r.Requests > 0 && r.Errors == 0, nil
			}); err != nil {
				return err
			}
		}
	}
	fmt.Fprintf(os.Stderr, "pod %s, ClusterIP %s: both answer; %s; load average %s\n", podIP, clusterIP, wrkVersion(wrk), loadAvg())

	// results[from/mode][target]
	results := map[string]map[string][]run{}
	for _, from := range strings.Split(o.from, ",") {
		prefix := places[from]
		for _, mode := range strings.Split(o.modes, ",") {
			closeConns := mode == "close"
			key := from + "/" + mode
			results[key] = map[string][]run{}
			if o.warmup >= time.Second {
				for _, t := range targets {
					if _, err := runWrk(ctx, prefix, wrk, wrkArgs(script, t.url, o.threads, o.conns, o.warmup, closeConns), cgroupRoot); err != nil {
						return fmt.Errorf("warm-up from %s against %s: %w", from, t.name, err)
					}
				}
			}
			for round := 0; round < o.rounds; round++ {
				order := targets
				if round%2 == 1 {
					order = []target{targets[1], targets[0]}
				}
				for _, t := range order {
					r, err := runWrk(ctx, prefix, wrk, wrkArgs(script, t.url, o.threads, o.conns, o.duration, closeConns), cgroupRoot)
					if err != nil {
						return fmt.Errorf("%s round %d against %s: %w", key, round+1, t.name, err)
					}
					if r.Requests == 0 {
						return fmt.Errorf("%s round %d against %s: wrk completed no request", key, round+1, t.name)
					}
					fmt.Fprintf(os.Stderr, "%-14s round %d %-9s %9.0f req/s  p50 %-9v p99 %-9v cpu/req %-8v errors %d\n",
						key, round+1, t.name, r.RPS(), r.P50, r.P99, r.CPUPerRequest(), r.Errors)
					results[key][t.name] = append(results[key][t.name], r)
				}
			}
		}
	}
	report(os.Stdout, o, results)
	return nil
}

type target struct{ name, url string }

func report(w io.Writer, o options, results map[string]map[string][]run) {
	fmt.Fprintf(w, "wrk -t %d -c %d, %d rounds of %v per target, path %s; medians over rounds; load average at the end %s\n\n",
		o.threads, o.conns, o.rounds, o.duration, o.path, loadAvg())
	fmt.Fprintln(w, "| from / mode | target | req/s | p50 | p99 | CPU/req (wrk + pods) | wrk CPU/req | errors |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|")
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }
	us := func(d time.Duration) string { return fmt.Sprintf("%.1f µs", float64(d)/float64(time.Microsecond)) }
	var keys []string
	for _, from := range strings.Split(o.from, ",") {
		for _, mode := range strings.Split(o.modes, ",") {
			keys = append(keys, from+"/"+mode)
		}
	}
	for _, mode := range keys {
		d, c := summarize(results[mode]["direct"]), summarize(results[mode]["clusterip"])
		for _, x := range []struct {
			name string
			s    summary
		}{{"direct", d}, {"clusterip", c}} {
			fmt.Fprintf(w, "| %s | %s | %.0f | %s | %s | %s | %s | %d |\n", mode, x.name, x.s.RPS,
				ms(x.s.P50), ms(x.s.P99), us(x.s.CPUPerRequest), us(x.s.ClientCPUPerRequest), x.s.Errors)
		}
		// Positive is worse through the ClusterIP: fewer requests/s, more
		// latency or CPU.
		fmt.Fprintf(w, "| %s | **ClusterIP overhead** | %+.1f%% | %+.1f%% | %+.1f%% | %+.1f%% | %+.1f%% | |\n", mode,
			rpsOverhead(d.RPS, c.RPS), durOverhead(d.P50, c.P50), durOverhead(d.P99, c.P99),
			durOverhead(d.CPUPerRequest, c.CPUPerRequest), durOverhead(d.ClientCPUPerRequest, c.ClientCPUPerRequest))
	}
}

// startServer runs the control plane (API server, controller manager,
// scheduler) in this process on free loopback ports.
func startServer(ctx context.Context, work string) (*server.Server, kubernetes.Interface, func(), error) {
	logf, err := os.Create(filepath.Join(work, "server.log"))
	if err != nil {
		return nil, nil, nil, err
	}
	ports, err := freePorts(3)
	if err != nil {
		logf.Close()
		return nil, nil, nil, err
	}
	s, err := server.New(server.Config{
		DataDir: filepath.Join(work, "server"), BindAddress: "127.0.0.1", AdvertiseAddress: "127.0.0.1",
		HTTPSPort: ports[0], EtcdClientPort: ports[1], EtcdPeerPort: ports[2],
		ClusterCIDR: clusterCIDR, ServiceCIDR: serviceCIDR, DisableAgent: true,
		// Nothing here needs to survive a crash.
		UnsafeNoFsync: true,
		Logger:        slog.New(slog.NewTextHandler(logf, nil)),
	})
	if err != nil {
		logf.Close()
		return nil, nil, nil, fmt.Errorf("configuring the server: %w", err)
	}
	cli.AddComponents(s)
	sctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(sctx) }()
	stop := func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				fmt.Fprintf(os.Stderr, "server stopped: %v\n", err)
			}
		case <-time.After(30 * time.Second):
			fmt.Fprintln(os.Stderr, "server did not stop within 30 s")
		}
		logf.Close()
	}
	if err := waitUntil(ctx, time.Minute, "server ready", func() (bool, error) {
		select {
		case err := <-done:
			done <- err
			return false, fmt.Errorf("server exited (log %s): %v", logf.Name(), err)
		default:
		}
		return s.Ready(), nil
	}); err != nil {
		stop()
		return nil, nil, nil, err
	}
	cs, err := kubernetes.NewForConfig(s.LoopbackConfig())
	if err != nil {
		stop()
		return nil, nil, nil, err
	}
	return s, cs, stop, nil
}

// startAgent runs the node in this process with its private containerd
// and service network (tables named skiffcip-*-SFX). The returned stop
// removes every sandbox through CRI, stops the agent and then sweeps what
// a crash could leave: tables, the bridge, shims, container processes,
// cgroups and mounts.
func startAgent(ctx context.Context, work string, s *server.Server, client kubernetes.Interface, sfx, cgroupRoot string) (string, func(), error) {
	dir := filepath.Join(work, "agent")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", nil, err
	}
	caFile := filepath.Join(work, "ca.crt")
	if err := os.WriteFile(caFile, s.PKI().CA.CertPEM, 0o600); err != nil {
		return "", nil, err
	}
	token, err := os.ReadFile(filepath.Join(work, "server", "token"))
	if err != nil {
		return "", nil, fmt.Errorf("reading the join token: %w", err)
	}
	kubeletPort, err := freePorts(1)
	if err != nil {
		return "", nil, err
	}
	logf, err := os.Create(filepath.Join(work, "agent.log"))
	if err != nil {
		return "", nil, err
	}
	tablePrefix := "skiffcip-"
	cfg := agent.Config{
		Server: s.URL(), Token: strings.TrimSpace(string(token)), CAFile: caFile, DataDir: dir,
		NodeName: nodeName, KubeletPort: kubeletPort[0], PodCIDR: podCIDR, Bridge: bridge, CgroupRoot: cgroupRoot,
		ServiceNetwork: agent.ServiceNetworkConfig{ClusterCIDR: clusterCIDR,
			ProxyTable: tablePrefix + "proxy-" + sfx, NodeTable: tablePrefix + "node-" + sfx},
		// One node: no overlay device, and no ingress on the host's
		// ports 80/443.
		FlannelBackend: "none", Ingress: agent.IngressConfig{Disable: true},
	}
	a, err := agent.New(cfg, agent.Deps{Logger: slog.New(slog.NewTextHandler(logf, nil))})
	if err != nil {
		logf.Close()
		return "", nil, fmt.Errorf("configuring the agent: %w", err)
	}
	actx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(actx) }()
	socket := filepath.Join(a.ContainerdDir(), "containerd.sock")
	stop := func() {
		fmt.Fprintln(os.Stderr, "cleaning up the node")
		if err := removeSandboxes(socket); err != nil {
			fmt.Fprintf(os.Stderr, "removing sandboxes: %v\n", err)
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				fmt.Fprintf(os.Stderr, "agent stopped: %v\n", err)
			}
		case <-time.After(60 * time.Second):
			fmt.Fprintln(os.Stderr, "agent did not stop within 60 s")
		}
		logf.Close()
		deleteTables(tablePrefix, sfx)
		_ = exec.Command("ip", "link", "del", bridge).Run()
		killShims(dir)
		removeCgroups(cgroupRoot)
		if err := agent.UnmountUnder(dir); err != nil {
			fmt.Fprintf(os.Stderr, "unmounting: %v\n", err)
		}
	}
	err = waitUntil(ctx, 10*time.Minute, "node Ready", func() (bool, error) {
		select {
		case err := <-done:
			done <- err
			return false, fmt.Errorf("agent exited during start (log %s): %v", logf.Name(), err)
		default:
		}
		n, err := client.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, c := range n.Status.Conditions {
			if c.Type == v1.NodeReady {
				return c.Status == v1.ConditionTrue, nil
			}
		}
		return false, nil
	})
	if err != nil {
		stop()
		return "", nil, err
	}
	return socket, stop, nil
}

// deploy creates the Deployment and its ClusterIP Service and waits until
// the pod is ready and is the Service's only ready endpoint.
func deploy(ctx context.Context, client kubernetes.Interface) (podIP, clusterIP string, err error) {
	labels := map[string]string{"app": app}
	one, grace := int32(1), int64(1)
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: app, Namespace: namespace},
		Spec: appsv1.DeploymentSpec{
			Replicas: &one,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: v1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: v1.PodSpec{
					TerminationGracePeriodSeconds: &grace,
					Containers: []v1.Container{{
						Name: "app", Image: images.Testapp, ImagePullPolicy: v1.PullIfNotPresent,
						Ports: []v1.ContainerPort{{Name: "http", ContainerPort: 8080}},
						ReadinessProbe: &v1.Probe{PeriodSeconds: 1, ProbeHandler: v1.ProbeHandler{
							HTTPGet: &v1.HTTPGetAction{Path: "/readyz", Port: intstr.FromString("http")}}},
					}},
				},
			},
		},
	}
	if _, err := client.AppsV1().Deployments(namespace).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		return "", "", fmt.Errorf("creating the Deployment: %w", err)
	}
	svc, err := client.CoreV1().Services(namespace).Create(ctx, &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: app},
		Spec: v1.ServiceSpec{Selector: labels,
			Ports: []v1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", "", fmt.Errorf("creating the Service: %w", err)
	}
	clusterIP = svc.Spec.ClusterIP
	// The client pod wrk runs in with -from pod: the same image, not
	// selected by the Service.
	cp := d.Spec.Template.DeepCopy()
	cp.Labels = map[string]string{"app": clientPod}
	if _, err := client.CoreV1().Pods(namespace).Create(ctx, &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: clientPod, Labels: cp.Labels}, Spec: cp.Spec},
		metav1.CreateOptions{}); err != nil {
		return "", "", fmt.Errorf("creating the client pod: %w", err)
	}
	err = waitUntil(ctx, 5*time.Minute, "the pod ready and the Service's only endpoint", func() (bool, error) {
		pods, err := client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
		if err != nil || len(pods.Items) != 1 || !podReady(&pods.Items[0]) || pods.Items[0].Status.PodIP == "" {
			return false, nil
		}
		podIP = pods.Items[0].Status.PodIP
		sls, err := client.DiscoveryV1().EndpointSlices(namespace).List(ctx, metav1.ListOptions{LabelSelector: discovery.LabelServiceName + "=" + app})
		if err != nil {
			return false, nil
		}
		var ready []string
		for _, sl := range sls.Items {
			for _, ep := range sl.Endpoints {
				if ep.Conditions.Ready == nil || *ep.Conditions.Ready {
					ready = append(ready, ep.Addresses...)
				}
			}
		}
		if len(ready) != 1 || ready[0] != podIP {
			return false, nil
		}
		c, err := client.CoreV1().Pods(namespace).Get(ctx, clientPod, metav1.GetOptions{})
		return err == nil && podReady(c), nil
	})
	return podIP, clusterIP, err
}

// clientPodPID finds, through CRI, the pid of the client pod's sandbox,
// whose network namespace wrk enters.
func clientPodPID(ctx context.Context, client kubernetes.Interface, socket string) (int, error) {
	pod, err := client.CoreV1().Pods(namespace).Get(ctx, clientPod, metav1.GetOptions{})
	if err != nil {
		return 0, fmt.Errorf("reading the client pod: %w", err)
	}
	c, err := cri.Dial(ctx, "unix://"+socket)
	if err != nil {
		return 0, fmt.Errorf("dialing containerd: %w", err)
	}
	defer c.Close()
	resp, err := c.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{
		State:         &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY},
		LabelSelector: map[string]string{"io.kubernetes.pod.uid": string(pod.UID)},
	}})
	if err != nil || len(resp.GetItems()) != 1 {
		return 0, fmt.Errorf("finding the client pod's sandbox: %v (%d found)", err, len(resp.GetItems()))
	}
	st, err := c.Runtime.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: resp.GetItems()[0].GetId(), Verbose: true})
	if err != nil {
		return 0, fmt.Errorf("reading the client pod's sandbox status: %w", err)
	}
	var info struct {
		Pid int `json:"pid"`
	}
	if err := json.Unmarshal([]byte(st.GetInfo()["info"]), &info); err != nil || info.Pid == 0 {
		return 0, fmt.Errorf("client pod sandbox pid: %v (info %q)", err, st.GetInfo()["info"])
	}
	return info.Pid, nil
}

func podReady(p *v1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == v1.PodReady {
			return c.Status == v1.ConditionTrue
		}
	}
	return false
}

// waitHTTP waits until url answers 200 (the proxy's rules follow the
// EndpointSlice asynchronously).
func waitHTTP(ctx context.Context, url string) error {
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var last error
	err := waitUntil(ctx, time.Minute, "GET "+url, func() (bool, error) {
		resp, err := c.Get(url)
		if err != nil {
			last = err
			return false, nil
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		last = fmt.Errorf("status %s", resp.Status)
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil && last != nil {
		return fmt.Errorf("%w (last: %v)", err, last)
	}
	return err
}

func waitUntil(ctx context.Context, d time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(d)
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v waiting for %s", d, what)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// removeSandboxes stops and removes every pod sandbox of the containerd at
// socket (releasing their network namespaces, veths and IPs through CNI).
func removeSandboxes(socket string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := cri.Dial(ctx, "unix://"+socket)
	if err != nil {
		return fmt.Errorf("dialing containerd: %w", err)
	}
	defer c.Close()
	resp, err := c.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return fmt.Errorf("listing sandboxes: %w", err)
	}
	var errs []error
	for _, sb := range resp.GetItems() {
		if _, err := c.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sb.GetId()}); err != nil {
			errs = append(errs, fmt.Errorf("stopping sandbox %s: %w", sb.GetId(), err))
		}
		if _, err := c.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sb.GetId()}); err != nil {
			errs = append(errs, fmt.Errorf("removing sandbox %s: %w", sb.GetId(), err))
		}
	}
	return errors.Join(errs...)
}

// deleteTables deletes any nftables table of this run (the agent removes
// its own on a clean stop).
func deleteTables(prefix, sfx string) {
	out, err := exec.Command("nft", "list", "tables").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "listing nftables tables: %v\n", err)
		return
	}
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) == 3 && f[0] == "table" && strings.HasPrefix(f[2], prefix) && strings.Contains(f[2], sfx) {
			if out, err := exec.Command("nft", "delete", "table", f[1], f[2]).CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "deleting table %s %s: %v %s\n", f[1], f[2], err, out)
			}
		}
	}
}

// killShims kills containerd shims serving the containerd under dir.
func killShims(dir string) {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(b), "containerd-shim") || !strings.Contains(string(b), dir) {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil {
			fmt.Fprintf(os.Stderr, "killing leftover shim %d\n", pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// removeCgroups kills processes left in the node's cgroups and removes
// the cgroup directories under root in every hierarchy, deepest first.
func removeCgroups(root string) {
	var dirs []string
	tops, _ := filepath.Glob("/sys/fs/cgroup/*" + root)
	for _, top := range tops {
		_ = filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
	}
	for _, d := range dirs {
		b, _ := os.ReadFile(filepath.Join(d, "cgroup.procs"))
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	time.Sleep(100 * time.Millisecond)
	for i := len(dirs) - 1; i >= 0; i-- {
		_ = os.Remove(dirs[i])
	}
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func randomSuffix() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
