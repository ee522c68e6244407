// Package servicenet is the end-to-end test of a node's service
// networking on real containerd: the service proxy, the node NAT
// (hostPorts, egress masquerade), node-local cluster DNS and the load
// balancer controller, as the agent wires them (internal/agent/network.go).
//
// It runs as root with the node prerequisites and skips otherwise. It
// uses 10.90.0.0/16 for pods, 10.91.0.0/20 for services and 10.91.200.0/29
// for load balancer addresses, a bridge and nftables tables named skiffg*,
// and removes every sandbox, link, table, mount and cgroup it created,
// even when it fails.
package servicenet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"golang.org/x/sys/unix"
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
	"skiff.dev/skiff/internal/proxy"
	"skiff.dev/skiff/internal/server"
	"skiff.dev/skiff/test/e2e/e2eutil"
)

const (
	clusterCIDR = "10.90.0.0/16"
	podCIDR     = "10.90.0.0/24" // what nodeipam gives the first node
	serviceCIDR = "10.91.0.0/20"
	lbPool      = "10.91.200.0/29"
	kubeDNSIP   = "10.91.0.10"
	nodeName    = "skiffg-node"
	bridge      = "skiffg0"
)

func requireNode(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (containerd, nftables, network namespaces)")
	}
	if ps := agent.CheckPrereqs(agent.PrereqOptions{}); len(ps) > 0 {
		t.Skip("needs the node prerequisites: " + agent.FormatProblems(ps))
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("builds the built-in images with the go tool")
	}
}

func randomSuffix() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// startServer runs a control plane with the controller manager (for
// EndpointSlices and load balancer addresses) on this test's ranges.
func startServer(t *testing.T) (*server.Server, kubernetes.Interface, string) {
	dir := t.TempDir()
	s, err := server.New(server.Config{
		DataDir: dir, BindAddress: "127.0.0.1", AdvertiseAddress: "127.0.0.1",
		HTTPSPort: freePort(t), EtcdClientPort: freePort(t), EtcdPeerPort: freePort(t),
		ClusterCIDR: clusterCIDR, ServiceCIDR: serviceCIDR, LoadBalancerAddressPool: lbPool,
		DisableAgent: true, DisableScheduler: true, UnsafeNoFsync: true,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	cli.AddComponents(s)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Errorf("server did not stop")
		}
	})
	waitFor(t, 30*time.Second, "server ready", s.Ready)
	client, err := kubernetes.NewForConfig(s.LoopbackConfig())
	if err != nil {
		t.Fatal(err)
	}
	return s, client, dir
}

// startAgent runs a node agent with its private containerd. Cleanup stops
// it, removes every sandbox through CRI, kills leftover shims and
// container processes and deletes the bridge, tables, mounts and cgroups.
func startAgent(t *testing.T, s *server.Server, client kubernetes.Interface, serverDir string) *agent.Agent {
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, s.PKI().CA.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	token, err := os.ReadFile(filepath.Join(serverDir, "token"))
	if err != nil {
		t.Fatal(err)
	}
	sfx := randomSuffix()
	cgroupRoot := "/skiffg-" + sfx
	proxyTable, nodeTable := "skiffg-proxy-"+sfx, "skiffg-node-"+sfx
	cfg := agent.Config{
		Server: s.URL(), Token: strings.TrimSpace(string(token)), CAFile: caFile, DataDir: dir,
		NodeName: nodeName, PodCIDR: podCIDR, Bridge: bridge, CgroupRoot: cgroupRoot,
		ServiceNetwork: agent.ServiceNetworkConfig{ClusterCIDR: clusterCIDR, ProxyTable: proxyTable, NodeTable: nodeTable},
		// One node: no overlay device on the host, and no ingress on the
		// host's ports 80/443 (other test packages run at the same time).
		FlannelBackend: "none", Ingress: agent.IngressConfig{Disable: true},
	}
	cfg.Ingress.Disable = true
	logger := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	a, err := agent.New(cfg, agent.Deps{Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e2eutil.DeleteNftTables(t, "ip", append(proxy.ShardTables(proxyTable, agent.DefaultProxyShards), nodeTable)...)
		e2eutil.DeleteLinks(t, bridge)
		e2eutil.KillShims(t, dir)
		e2eutil.RemoveCgroupTree(t, cgroupRoot)
		if err := agent.UnmountUnder(dir); err != nil {
			t.Logf("unmounting: %v", err)
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		e2eutil.RemoveSandboxesAt(t, "unix://"+filepath.Join(a.ContainerdDir(), "containerd.sock"))
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Logf("agent exited: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("agent did not stop within 30s")
		}
		// A stopped agent removes its tables (ServiceNetworkConfig.KeepTablesOnStop).
		out, _ := exec.Command("nft", "list", "tables", "ip").CombinedOutput()
		for _, tbl := range append(proxy.ShardTables(proxyTable, agent.DefaultProxyShards), nodeTable) {
			if strings.Contains(string(out), "table ip "+tbl+"\n") {
				t.Errorf("table %s left after the agent stopped", tbl)
			}
		}
	})
	waitFor(t, 10*time.Minute, "node Ready", func() bool {
		select {
		case err := <-done:
			t.Fatalf("agent exited during start: %v", err)
		default:
		}
		n, err := client.CoreV1().Nodes().Get(context.Background(), nodeName, metav1.GetOptions{})
		if err != nil {
			return false
		}
		for _, c := range n.Status.Conditions {
			if c.Type == v1.NodeReady && c.Status == v1.ConditionTrue {
				return true
			}
		}
		return false
	})
	return a
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func testappPod(name string, labels map[string]string, hostPort int32) *v1.Pod {
	grace := int64(1)
	p := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: labels},
		Spec: v1.PodSpec{
			NodeName: nodeName, TerminationGracePeriodSeconds: &grace,
			Containers: []v1.Container{{
				Name: "app", Image: images.Testapp,
				Ports: []v1.ContainerPort{{Name: "http", ContainerPort: 8080, HostPort: hostPort}},
				ReadinessProbe: &v1.Probe{ProbeHandler: v1.ProbeHandler{HTTPGet: &v1.HTTPGetAction{Path: "/readyz", Port: intstr.FromString("http")}},
					PeriodSeconds: 1},
			}},
		},
	}
	return p
}

// inPodNetns runs fn on a thread inside the network namespace of the
// pod's sandbox (found through CRI), so its traffic leaves through the
// pod's own interface exactly as the pod's would.
func inPodNetns(t *testing.T, a *agent.Agent, pod *v1.Pod, fn func() error) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := cri.Dial(ctx, "unix://"+filepath.Join(a.ContainerdDir(), "containerd.sock"))
	if err != nil {
		return err
	}
	defer c.Close()
	resp, err := c.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{
		State:         &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY},
		LabelSelector: map[string]string{"io.kubernetes.pod.uid": string(pod.UID)},
	}})
	if err != nil || len(resp.GetItems()) == 0 {
		return fmt.Errorf("finding the sandbox of %s: %v (%d found)", pod.Name, err, len(resp.GetItems()))
	}
	st, err := c.Runtime.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: resp.GetItems()[0].GetId(), Verbose: true})
	if err != nil {
		return err
	}
	var info struct {
		Pid int `json:"pid"`
	}
	if err := json.Unmarshal([]byte(st.GetInfo()["info"]), &info); err != nil || info.Pid == 0 {
		return fmt.Errorf("sandbox pid of %s: %v (info %q)", pod.Name, err, st.GetInfo()["info"])
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: Go drops the thread
		f, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", info.Pid))
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("joining the pod's netns: %w", err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// get fetches url with retries (rules and endpoints settle
// asynchronously) and returns the body.
func get(url string) (string, error) {
	client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var lastErr error
	for i := 0; i < 40; i++ {
		resp, err := client.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return string(b), nil
		}
		lastErr = err
		time.Sleep(250 * time.Millisecond)
	}
	return "", fmt.Errorf("GET %s: %w", url, lastErr)
}

func TestServiceNetworking(t *testing.T) {
	requireNode(t)
	s, client, serverDir := startServer(t)
	a := startAgent(t, s, client, serverDir)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	hostPort := int32(20000 + freePort(t)%10000)
	pods := client.CoreV1().Pods("default")
	for _, p := range []*v1.Pod{
		testappPod("web", map[string]string{"app": "web"}, 0),
		testappPod("hp", nil, hostPort),
		testappPod("client", nil, 0),
	} {
		if _, err := pods.Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	running := map[string]*v1.Pod{}
	waitFor(t, 3*time.Minute, "pods running and ready", func() bool {
		for _, name := range []string{"web", "hp", "client"} {
			p, err := pods.Get(ctx, name, metav1.GetOptions{})
			if err != nil || p.Status.PodIP == "" || !ready(p) {
				return false
			}
			running[name] = p
		}
		return true
	})

	svcs := client.CoreV1().Services("default")
	mk := func(name string, typ v1.ServiceType) *v1.Service {
		svc, err := svcs.Create(ctx, &v1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: v1.ServiceSpec{Type: typ, Selector: map[string]string{"app": "web"},
				Ports: []v1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return svc
	}
	web := mk("web", v1.ServiceTypeClusterIP)
	np := mk("web-np", v1.ServiceTypeNodePort)
	mk("web-lb", v1.ServiceTypeLoadBalancer)
	var lbIP string
	waitFor(t, time.Minute, "load balancer address from the pool", func() bool {
		lb, err := svcs.Get(ctx, "web-lb", metav1.GetOptions{})
		if err == nil && len(lb.Status.LoadBalancer.Ingress) == 1 {
			lbIP = lb.Status.LoadBalancer.Ingress[0].IP
		}
		return lbIP != ""
	})
	if !strings.HasPrefix(lbIP, "10.91.200.") {
		t.Errorf("load balancer address %s not from the pool %s", lbIP, lbPool)
	}
	waitFor(t, time.Minute, "this node's DNS endpoint in kube-dns", func() bool {
		sl, err := client.DiscoveryV1().EndpointSlices("kube-system").Get(ctx, agent.DNSSliceName(nodeName), metav1.GetOptions{})
		return err == nil && len(sl.Endpoints) == 1 && sl.Endpoints[0].Addresses[0] == "10.90.0.1"
	})
	if dns, err := client.CoreV1().Services("kube-system").Get(ctx, "kube-dns", metav1.GetOptions{}); err != nil || dns.Spec.ClusterIP != kubeDNSIP {
		t.Fatalf("kube-dns service: %v %v", dns, err)
	}
	waitFor(t, time.Minute, "web endpoints", func() bool {
		sls, err := client.DiscoveryV1().EndpointSlices("default").List(ctx, metav1.ListOptions{LabelSelector: discovery.LabelServiceName + "=web"})
		return err == nil && len(sls.Items) > 0 && len(sls.Items[0].Endpoints) == 1
	})

	// The kubelet hands pods the node-local cluster DNS.
	if rc := execIn(t, a, running["client"], "cat", "/etc/resolv.conf"); !strings.Contains(rc, "nameserver "+kubeDNSIP) {
		t.Errorf("client pod's resolv.conf does not name %s:\n%s", kubeDNSIP, rc)
	}

	// From the client pod: the service by DNS name, then over its ClusterIP.
	name := "web.default.svc.cluster.local."
	err := inPodNetns(t, a, running["client"], func() error {
		var addr string
		var lastErr error
		for i := 0; i < 40 && addr == ""; i++ {
			m := new(mdns.Msg)
			m.SetQuestion(name, mdns.TypeA)
			r, err := mdns.Exchange(m, net.JoinHostPort(kubeDNSIP, "53"))
			switch {
			case err != nil:
				lastErr = err
			case len(r.Answer) != 1:
				lastErr = fmt.Errorf("answer %v", r)
			default:
				addr = r.Answer[0].(*mdns.A).A.String()
			}
			if addr == "" {
				time.Sleep(250 * time.Millisecond)
			}
		}
		if addr == "" {
			return fmt.Errorf("resolving %s at %s from the pod: %v", name, kubeDNSIP, lastErr)
		}
		if addr != web.Spec.ClusterIP {
			return fmt.Errorf("%s resolved to %s, want the ClusterIP %s", name, addr, web.Spec.ClusterIP)
		}
		// Names outside the cluster are forwarded, not refused.
		m := new(mdns.Msg)
		m.SetQuestion("skiff-test.invalid.", mdns.TypeA)
		if r, err := mdns.Exchange(m, net.JoinHostPort(kubeDNSIP, "53")); err != nil || r.Rcode == mdns.RcodeRefused {
			t.Logf("forwarded query: %v %v (upstreams may be unreachable here)", r, err)
		}
		body, err := get("http://" + addr + "/hostname")
		if err != nil {
			return fmt.Errorf("from the pod through the ClusterIP: %w", err)
		}
		if body != "web" {
			return fmt.Errorf("ClusterIP answered %q, want web", body)
		}
		// Another pod's hostPort on the node's address.
		body, err = get(fmt.Sprintf("http://%s:%d/hostname", running["hp"].Status.HostIP, hostPort))
		if err != nil {
			return fmt.Errorf("from the pod to the other pod's hostPort: %w", err)
		}
		if body != "hp" {
			return fmt.Errorf("hostPort answered %q, want hp", body)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}

	// From the host: the ClusterIP, the NodePort on the node's address and
	// the load balancer address.
	if body, err := get("http://" + web.Spec.ClusterIP + "/hostname"); err != nil || body != "web" {
		t.Errorf("host to ClusterIP %s: %q %v", web.Spec.ClusterIP, body, err)
	}
	nodeIP := running["web"].Status.HostIP
	if body, err := get(fmt.Sprintf("http://%s:%d/hostname", nodeIP, np.Spec.Ports[0].NodePort)); err != nil || body != "web" {
		t.Errorf("host to NodePort %s:%d: %q %v", nodeIP, np.Spec.Ports[0].NodePort, body, err)
	}
	if body, err := get("http://" + lbIP + "/hostname"); err != nil || body != "web" {
		t.Errorf("host to the load balancer address %s: %q %v", lbIP, body, err)
	}

	// Changing the LoadBalancer to ClusterIP releases its address.
	lb, err := svcs.Get(ctx, "web-lb", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	lb.Spec.Type = v1.ServiceTypeClusterIP
	lb.Spec.ExternalTrafficPolicy, lb.Spec.AllocateLoadBalancerNodePorts = "", nil
	for i := range lb.Spec.Ports {
		lb.Spec.Ports[i].NodePort = 0
	}
	if _, err := svcs.Update(ctx, lb, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "load balancer status cleared", func() bool {
		lb, err := svcs.Get(ctx, "web-lb", metav1.GetOptions{})
		return err == nil && len(lb.Status.LoadBalancer.Ingress) == 0
	})
}

func ready(p *v1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == v1.PodReady {
			return c.Status == v1.ConditionTrue
		}
	}
	return false
}

// execIn runs a command in the pod's container through CRI.
func execIn(t *testing.T, a *agent.Agent, pod *v1.Pod, cmd ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := cri.Dial(ctx, "unix://"+filepath.Join(a.ContainerdDir(), "containerd.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if len(pod.Status.ContainerStatuses) == 0 {
		t.Fatalf("pod %s has no container status", pod.Name)
	}
	id := strings.TrimPrefix(pod.Status.ContainerStatuses[0].ContainerID, "containerd://")
	resp, err := c.Runtime.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: cmd, Timeout: 10})
	if err != nil {
		t.Fatalf("exec %v in %s: %v", cmd, pod.Name, err)
	}
	return string(resp.GetStdout())
}
