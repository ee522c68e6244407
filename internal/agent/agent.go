// Package agent wires a skiff node: it checks prerequisites, runs (or
// connects to) containerd, writes the CNI config, makes sure the built-in
// images are present and runs the kubelet against the API server.
//
// Credentials: with --server/--token the agent presents the join token
// (user system:node-join) once, to have a CertificateSigningRequest for
// system:node:NAME signed, and then works with that client certificate,
// kept under <data-dir>/agent and reused on restart (identity.go). A
// kubeconfig (the admin one on a server node) is used as given.
package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/utils/clock"

	"skiff.dev/skiff/internal/images"
	"skiff.dev/skiff/internal/kubelet"
	"skiff.dev/skiff/internal/kubelet/cri"
	kubeletserver "skiff.dev/skiff/internal/kubelet/server"
	"skiff.dev/skiff/internal/network/cni"
	"skiff.dev/skiff/internal/pki"
	"skiff.dev/skiff/internal/version"
)

// Config is the agent's configuration; the CLI flags map onto it.
type Config struct {
	// Server and Token authenticate with the join token; Kubeconfig is the
	// alternative. CAFile pins the API server's CA for the token path.
	Server, Token, CAFile, Kubeconfig string
	// DataDir holds everything the node keeps (default /var/lib/skiff);
	// the agent's state is under DataDir/agent.
	DataDir  string
	NodeName string // default: hostname
	NodeIP   string // default: the address of the default route
	// KubeletPort is where the kubelet API is served and what the Node
	// advertises.
	KubeletPort int
	// ContainerRuntimeEndpoint names an existing CRI socket; empty starts a
	// private containerd under DataDir/agent/containerd.
	ContainerRuntimeEndpoint string
	// PodCIDR is used when the Node has none yet. Empty: the node IPAM
	// controller's assignment, waited for up to PodCIDRWait (default 30 s),
	// then FallbackPodCIDR for clusters without one.
	PodCIDR     string
	PodCIDRWait time.Duration
	// CNIBinDir defaults to /usr/lib/cni; Bridge to "skiff0".
	CNIBinDir, Bridge string
	// CgroupRoot is the cgroupfs parent of the pods (default /skiff).
	CgroupRoot string
	// SkipImages skips building/importing the built-in images.
	SkipImages bool
	// InsecureRegistries (host:port) are pulled from over plain HTTP.
	InsecureRegistries []string
	// Ingress configures the built-in ingress controller (ingress.go).
	Ingress IngressConfig
	// ServiceNetwork configures the service proxy, node NAT and cluster
	// DNS (network.go).
	ServiceNetwork ServiceNetworkConfig
	// FlannelBackend carries pod traffic between nodes: vxlan (default),
	// host-gw or none. VXLANDevice, VXLANPort and VXLANVNI default to
	// skiff.1, 8472 and 1 (internal/network/overlay).
	FlannelBackend      string
	VXLANDevice         string
	VXLANPort, VXLANVNI int
}

// Deps are optional collaborators; zero values mean the real thing.
type Deps struct {
	// RestConfig overrides the credentials in Config (in-process agents).
	RestConfig *rest.Config
	Clock      clock.WithTicker
	Logger     *slog.Logger
}

// Agent is a configured node.
type Agent struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	// imagesReady is closed once the built-in images are prepared (or
	// when this node prepares none).
	imagesReady     chan struct{}
	imagesReadyOnce sync.Once
}

// ImagesReady is closed once the built-in images (pause, testapp) are in
// the node's containerd, or failed to be prepared, or right at start when
// the node does not prepare them. The node is Ready before that.
func (a *Agent) ImagesReady() <-chan struct{} { return a.imagesReady }

func (a *Agent) markImagesReady() { a.imagesReadyOnce.Do(func() { close(a.imagesReady) }) }

// New validates cfg and fills defaults.
func New(cfg Config, deps Deps) (*Agent, error) {
	if cfg.DataDir == "" {
		cfg.DataDir = "/var/lib/skiff"
	}
	if cfg.NodeName == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("getting hostname for node name: %w", err)
		}
		cfg.NodeName = h
	}
	if cfg.NodeIP == "" {
		cfg.NodeIP = defaultNodeIP()
	}
	if cfg.KubeletPort == 0 {
		cfg.KubeletPort = 10250
	}
	if cfg.PodCIDR != "" {
		if _, err := netip.ParsePrefix(cfg.PodCIDR); err != nil {
			return nil, fmt.Errorf("parsing pod cidr: %w", err)
		}
	}
	if cfg.CNIBinDir == "" {
		cfg.CNIBinDir = "/usr/lib/cni"
	}
	if cfg.Bridge == "" {
		cfg.Bridge = "skiff0"
	}
	if deps.RestConfig == nil && cfg.Kubeconfig == "" && (cfg.Server == "" || cfg.Token == "") {
		return nil, errors.New("creating agent: --server and --token (or --kubeconfig) are required")
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	if deps.Clock == nil {
		deps.Clock = clock.RealClock{}
	}
	return &Agent{cfg: cfg, deps: deps, log: deps.Logger.With("node", cfg.NodeName), imagesReady: make(chan struct{})}, nil
}

// Dir is the agent's state directory.
func (a *Agent) Dir() string { return filepath.Join(a.cfg.DataDir, "agent") }

// ContainerdDir is where the private containerd keeps its state.
func (a *Agent) ContainerdDir() string { return filepath.Join(a.Dir(), "containerd") }

// CNIConfDir holds the CNI network config containerd reads.
func (a *Agent) CNIConfDir() string { return filepath.Join(a.Dir(), "cni", "net.d") }

// ContainerdConfig is the configuration of the agent's private containerd.
func (a *Agent) ContainerdConfig() ContainerdConfig {
	return ContainerdConfig{
		Dir: a.ContainerdDir(), CNIBinDir: a.cfg.CNIBinDir, CNIConfDir: a.CNIConfDir(),
		SandboxImage: images.Pause, InsecureRegistries: a.cfg.InsecureRegistries, Logger: a.log,
	}
}

// CNIDataDir is host-local's allocation store.
func (a *Agent) CNIDataDir() string { return filepath.Join(a.Dir(), "cni", "ipam") }

// NetworkName is the CNI network name.
const NetworkName = "skiff"

// Run starts the node and blocks until ctx ends. Containerd is stopped on
// return; pod containers keep running in their shims and are adopted by the
// next Run.
func (a *Agent) Run(ctx context.Context) error {
	if ps := CheckPrereqs(PrereqOptions{CNIBinDir: a.cfg.CNIBinDir, ExternalRuntime: a.cfg.ContainerRuntimeEndpoint != ""}); len(ps) > 0 {
		return errors.New(FormatProblems(ps))
	}
	// The private containerd starts while the node gets its credentials
	// and pod network (a third of a second of cold start): it needs
	// neither, and picks up the CNI config written below from its conf
	// dir when it appears.
	var containerd *containerdStart
	if a.cfg.ContainerRuntimeEndpoint == "" {
		containerd = a.startContainerdAsync(ctx)
		defer containerd.stop()
	}
	rc, err := a.ClientConfig(ctx)
	if err != nil {
		return err
	}
	// Pod status writes are the startup latency: client-go's default
	// 5 QPS would queue a burst of pods behind each other.
	rc.QPS, rc.Burst = 100, 200
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("building client: %w", err)
	}
	podCIDR, err := a.podCIDR(ctx, client)
	if err != nil {
		return err
	}
	mtu, err := a.startPodNetwork(ctx, client, podCIDR)
	if err != nil {
		return err
	}
	if err := cni.Write(a.CNIConfDir(), cni.Config{Name: NetworkName, Bridge: a.cfg.Bridge, PodCIDR: podCIDR, DataDir: a.CNIDataDir(), MTU: mtu}); err != nil {
		return err
	}
	a.startNetworkPolicy(ctx, client)
	a.startIngress(ctx, client)
	clusterDNS, stopServiceNetwork, err := a.startServiceNetwork(ctx, client, podCIDR)
	if err != nil {
		return err
	}
	defer stopServiceNetwork()

	endpoint := a.cfg.ContainerRuntimeEndpoint
	socket := ""
	if containerd != nil {
		cd, err := containerd.wait()
		if err != nil {
			return err
		}
		endpoint, socket = cd.Endpoint(), a.ContainerdConfig().Socket()
	}
	dialCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	criClient, err := cri.Dial(dialCtx, endpoint)
	cancel()
	if err != nil {
		return err
	}
	defer criClient.Close()
	if containerd != nil {
		// It started before the CNI config existed: let it load the
		// config (an fsnotify away) before the first sandbox.
		waitNetworkReady(ctx, criClient.Runtime, 5*time.Second, a.log)
	}

	// The built-in images are prepared while the node registers: the node
	// is Ready at once and pod workers wait for the images (as for a pull)
	// through kubelet.Deps.RuntimeReady. Preparing them takes seconds (they
	// are built from source on a fresh node).
	var imagesReady chan struct{}
	if socket != "" && !a.cfg.SkipImages {
		imagesReady = make(chan struct{})
		imgCtx, imgCancel := context.WithCancel(ctx)
		imgDone := make(chan struct{})
		// Runs before the deferred runtime close and containerd stop.
		defer func() { imgCancel(); <-imgDone }()
		go func() {
			defer close(imgDone)
			defer a.markImagesReady()
			defer close(imagesReady)
			ctx := imgCtx
			start := time.Now()
			if err := images.ImportDir(ctx, socket, filepath.Join(a.Dir(), "images")); err != nil {
				a.log.Warn("importing image tarballs", "err", err)
			}
			// Without the pause image no sandbox starts; pods are then
			// released to fail visibly instead of waiting forever.
			if err := images.Ensure(ctx, criClient.Image, socket, filepath.Join(a.Dir(), "image-build")); err != nil {
				a.log.Error("preparing built-in images; pods cannot start until "+images.Pause+" is imported (drop it in "+filepath.Join(a.Dir(), "images")+")", "err", err)
			} else {
				a.log.Info("built-in images ready", "took", time.Since(start).Round(time.Millisecond))
			}
			// Importing the image tarballs peaks the heap at about 3x
			// what the agent keeps afterwards; hand those pages back now
			// rather than over minutes of background scavenging (idle
			// RssAnon 30 -> ~20 MiB).
			debug.FreeOSMemory()
		}()
	} else {
		a.markImagesReady()
	}

	k, err := kubelet.New(kubelet.Config{
		NodeName:      a.cfg.NodeName,
		NodeIP:        a.cfg.NodeIP,
		PodCIDR:       podCIDR,
		KubeletPort:   int32(a.cfg.KubeletPort),
		DataDir:       a.Dir(),
		CgroupRoot:    a.cfg.CgroupRoot,
		Version:       version.Get().GitVersion,
		ClusterDNS:    clusterDNS,
		ClusterDomain: a.cfg.ServiceNetwork.ClusterDomain,
	}, kubelet.Deps{Client: client, Runtime: criClient.Runtime, Image: criClient.Image, Clock: a.deps.Clock, Logger: a.deps.Logger, RuntimeReady: imagesReady})
	if err != nil {
		return err
	}
	if err := a.startKubeletAPI(ctx, rc, criClient); err != nil {
		return err
	}
	return k.Run(ctx)
}

// containerdStart is a private containerd being started in the
// background.
type containerdStart struct {
	done chan struct{}
	cd   *Containerd
	err  error
}

func (a *Agent) startContainerdAsync(ctx context.Context) *containerdStart {
	s := &containerdStart{done: make(chan struct{})}
	go func() {
		defer close(s.done)
		s.cd, s.err = StartContainerd(ctx, a.ContainerdConfig())
	}()
	return s
}

// wait returns the started containerd or why it did not start.
func (s *containerdStart) wait() (*Containerd, error) {
	<-s.done
	return s.cd, s.err
}

// stop waits for the start to end and stops containerd if it is running.
func (s *containerdStart) stop() {
	if cd, err := s.wait(); err == nil {
		_ = cd.Stop()
	}
}

// waitNetworkReady polls the runtime's NetworkReady condition for up to
// timeout; a runtime that stays not ready is logged and left to the
// kubelet's sandbox back-off.
func waitNetworkReady(ctx context.Context, rt runtimeapi.RuntimeServiceClient, timeout time.Duration, log *slog.Logger) {
	deadline := time.Now().Add(timeout)
	for {
		st, err := rt.Status(ctx, &runtimeapi.StatusRequest{})
		if err == nil {
			for _, c := range st.GetStatus().GetConditions() {
				if c.GetType() == runtimeapi.NetworkReady && c.GetStatus() {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			log.Warn("container runtime network not ready", "waited", timeout, "err", err)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// startKubeletAPI serves the kubelet API (logs, exec, attach,
// port-forward, /stats/summary) to the API server, whose client certificate is checked
// against the cluster CA the agent trusts.
func (a *Agent) startKubeletAPI(ctx context.Context, rc *rest.Config, criClient *cri.Client) error {
	caPEM := rc.TLSClientConfig.CAData
	if len(caPEM) == 0 && rc.TLSClientConfig.CAFile != "" {
		b, err := os.ReadFile(rc.TLSClientConfig.CAFile)
		if err != nil {
			return fmt.Errorf("reading the cluster ca: %w", err)
		}
		caPEM = b
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return errors.New("starting the kubelet api: the cluster ca is unknown")
	}
	imageFs := a.Dir()
	if a.cfg.ContainerRuntimeEndpoint == "" {
		imageFs = a.ContainerdDir()
	}
	stats := kubeletserver.NewStats(kubeletserver.StatsConfig{
		NodeName: a.cfg.NodeName, NodeIP: a.cfg.NodeIP, Runtime: criClient.Runtime, FsPath: a.Dir(), ImageFsPath: imageFs,
	})
	go stats.Run(ctx) // keeps CPU rates warm for metrics.k8s.io
	srv, err := kubeletserver.New(kubeletserver.Config{
		Addr: net.JoinHostPort("", strconv.Itoa(a.cfg.KubeletPort)), ClientCAs: pool,
		NodeName: a.cfg.NodeName, NodeIP: a.cfg.NodeIP, Runtime: criClient.Runtime, Logger: a.log,
		Stats: stats,
	})
	if err != nil {
		return err
	}
	go func() {
		if err := srv.Run(ctx); err != nil {
			a.log.Error("kubelet api stopped", "err", err)
		}
	}()
	return nil
}

// FallbackPodCIDR is the pod subnet of a node whose cluster assigns none.
const FallbackPodCIDR = "10.42.0.0/24"

// podCIDR is the registered Node's CIDR when it has one, else the
// configured one. With none configured the agent registers a bare Node
// (the kubelet fills it in later) and waits for the node IPAM controller
// to give it a subnet, so every joining node gets its own rather than all
// of them taking the same default.
func (a *Agent) podCIDR(ctx context.Context, client kubernetes.Interface) (netip.Prefix, error) {
	nodes := client.CoreV1().Nodes()
	node, err := nodes.Get(ctx, a.cfg.NodeName, metav1.GetOptions{})
	switch {
	case err == nil && node.Spec.PodCIDR != "":
		return parsePodCIDR(node.Spec.PodCIDR)
	case err != nil && !apierrors.IsNotFound(err):
		return netip.Prefix{}, fmt.Errorf("getting node %s: %w", a.cfg.NodeName, err)
	case a.cfg.PodCIDR != "":
		return parsePodCIDR(a.cfg.PodCIDR)
	}
	if apierrors.IsNotFound(err) {
		bare := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: a.cfg.NodeName, Labels: map[string]string{v1.LabelHostname: a.cfg.NodeName}}}
		if _, err := nodes.Create(ctx, bare, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return netip.Prefix{}, fmt.Errorf("registering node %s: %w", a.cfg.NodeName, err)
		}
	}
	wait := a.cfg.PodCIDRWait
	if wait == 0 {
		wait = 30 * time.Second
	}
	deadline := time.Now().Add(wait)
	for {
		node, err := nodes.Get(ctx, a.cfg.NodeName, metav1.GetOptions{})
		if err == nil && node.Spec.PodCIDR != "" {
			return parsePodCIDR(node.Spec.PodCIDR)
		}
		if time.Now().After(deadline) {
			a.log.Warn("no pod subnet assigned to the node (is the controller manager running?); using the default", "podCIDR", FallbackPodCIDR, "waited", wait)
			return parsePodCIDR(FallbackPodCIDR)
		}
		select {
		case <-ctx.Done():
			return netip.Prefix{}, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func parsePodCIDR(cidr string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("parsing pod cidr %q: %w", cidr, err)
	}
	return p, nil
}

func (a *Agent) restConfig() (*rest.Config, error) {
	if a.deps.RestConfig != nil {
		return rest.CopyConfig(a.deps.RestConfig), nil
	}
	if a.cfg.Kubeconfig != "" {
		rc, err := clientcmd.BuildConfigFromFlags("", a.cfg.Kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("loading kubeconfig: %w", err)
		}
		return rc, nil
	}
	tok, err := pki.ParseJoinToken(a.cfg.Token)
	if err != nil {
		return nil, err
	}
	rc := &rest.Config{Host: a.cfg.Server, BearerToken: tok.Secret, UserAgent: "skiff-agent/" + a.cfg.NodeName}
	switch {
	case a.cfg.CAFile != "":
		ca, err := os.ReadFile(a.cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("reading ca file: %w", err)
		}
		if err := tok.VerifyCA(ca); err != nil {
			return nil, err
		}
		rc.TLSClientConfig.CAData = ca
	case tok.CAHash != "":
		ca, err := pinnedCA(a.cfg.Server, tok)
		if err != nil {
			return nil, err
		}
		rc.TLSClientConfig.CAData = ca
	default:
		return nil, errors.New("the api server's ca is unknown: pass --ca-file or a K10 token that pins it")
	}
	return rc, nil
}

// pinnedCA finds, in the certificate chain the server presents, the
// certificate whose PEM matches the token's pin.
func pinnedCA(server string, tok pki.JoinToken) ([]byte, error) {
	u, err := urlHost(server)
	if err != nil {
		return nil, err
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", u, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // verified against the pin below
	if err != nil {
		return nil, fmt.Errorf("fetching the api server's certificates: %w", err)
	}
	defer conn.Close()
	for _, c := range conn.ConnectionState().PeerCertificates {
		p := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
		if tok.VerifyCA(p) == nil {
			return p, nil
		}
	}
	return nil, errors.New("the api server does not present the ca pinned by the join token: pass --ca-file")
}

func urlHost(server string) (string, error) {
	u, err := url.Parse(server)
	if err != nil {
		return "", fmt.Errorf("parsing server url: %w", err)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "6443")
	}
	return host, nil
}

// defaultNodeIP is the source address of the default route, found without
// sending a packet; loopback when there is no route.
func defaultNodeIP() string {
	c, err := net.Dial("udp4", "192.0.2.1:9")
	if err != nil {
		return "127.0.0.1"
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).IP.String()
}
