// Package server wires skiff's control plane: PKI, etcd (embedded or
// external), the storage layer with its watch caches, the API server with
// every registry, admission, and the in-process components that talk to it
// through client-go: the controller manager and scheduler in memory
// (InProcessConfig), the agent over HTTPS (LoopbackConfig).
//
// New validates the configuration and prepares; Run starts everything and
// blocks until the context ends.
package server

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	goruntime "runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/applyconfigurations"
	"k8s.io/client-go/rest"

	"skiff.dev/skiff/internal/apiserver"
	"skiff.dev/skiff/internal/apiserver/admission"
	"skiff.dev/skiff/internal/apiserver/authn"
	"skiff.dev/skiff/internal/apiserver/nodeproxy"
	"skiff.dev/skiff/internal/apiserver/openapi"
	"skiff.dev/skiff/internal/apiserver/servicealloc"
	"skiff.dev/skiff/internal/controller/loadbalancer"
	"skiff.dev/skiff/internal/etcd"
	"skiff.dev/skiff/internal/kubeconfig"
	kubeletserver "skiff.dev/skiff/internal/kubelet/server"
	"skiff.dev/skiff/internal/memtrim"
	"skiff.dev/skiff/internal/pki"
	"skiff.dev/skiff/internal/registry"
	"skiff.dev/skiff/internal/registry/generic"
	"skiff.dev/skiff/internal/serviceaccount"
	"skiff.dev/skiff/internal/storage"
	"skiff.dev/skiff/internal/storage/cacher"
	"skiff.dev/skiff/internal/storage/etcd3"
	"skiff.dev/skiff/internal/version"
)

// Config is `skiff server`'s configuration.
type Config struct {
	DataDir        string
	BindAddress    string
	HTTPSPort      int
	EtcdClientPort int
	EtcdPeerPort   int
	// EtcdServers, when set, use an external etcd cluster.
	EtcdServers []string
	// AdvertiseAddress is the address written into kubeconfigs and the
	// kubernetes Endpoints; default: the first non-loopback address.
	AdvertiseAddress string
	ClusterCIDR      string
	ServiceCIDR      string
	// ServiceNodePortRange is the NodePort range, "min-max".
	ServiceNodePortRange string
	// LoadBalancerAddressPool is where LoadBalancer services' addresses
	// come from (CIDRs or first-last ranges, comma-separated); empty means
	// the nodes' InternalIPs.
	LoadBalancerAddressPool string
	// Components.
	DisableAgent             bool
	DisableScheduler         bool
	DisableControllerManager bool
	// Controllers selects the in-process controller manager's controllers
	// like `skiff controller-manager --controllers`: "*" for every one
	// enabled by default, "name" to enable, "-name" to disable; empty
	// means "*".
	Controllers []string
	// UnsafeNoFsync makes embedded etcd skip fsync (tests only).
	UnsafeNoFsync bool
	// NodeCertValidity is the lifetime of the node client certificates
	// the node-CSR signer issues (nodecsr.go); default one year. Tests
	// shorten it to watch agents rotate theirs.
	NodeCertValidity time.Duration
	Logger           *slog.Logger
}

// Component is something that runs beside the API server in the process,
// talking to it through a client: controller manager, scheduler, agent.
type Component interface {
	Run(ctx context.Context) error
}

// componentMinUptime separates a component that cannot start (bad
// configuration, missing prerequisites: the server fails with its error)
// from one that stopped after working for a while, such as a controller
// manager or scheduler that lost its Lease under load: that one is built
// afresh and run again, as a kubelet would restart upstream's static pod.
const componentMinUptime = 10 * time.Second

// supervise runs c until ctx ends. A component that returns (with or
// without an error) after running at least minUptime is rebuilt with
// rebuild and run again, a second apart; one that fails sooner, or whose
// rebuild fails, ends supervision with that error.
func supervise(ctx context.Context, c Component, rebuild func() (Component, error), minUptime time.Duration, log *slog.Logger) error {
	for {
		start := time.Now()
		err := c.Run(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(start) < minUptime {
			if err == nil {
				err = errors.New("component stopped right after starting")
			}
			return err
		}
		log.Error("component stopped; starting it again", "err", err, "ran", time.Since(start).Round(time.Second))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
		if c, err = rebuild(); err != nil {
			return fmt.Errorf("restarting component: %w", err)
		}
	}
}

// componentStopTimeout bounds how long Run waits for its components to
// return once it is stopping.
const componentStopTimeout = 15 * time.Second

// waitTimeout waits for wg, at most d.
func waitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// ComponentFactory builds a component once the API server is up.
type ComponentFactory func(ctx context.Context, s *Server) (Component, error)

// Server is a running control plane.
type Server struct {
	cfg  Config
	log  *slog.Logger
	pki  *pki.Bundle
	api  *apiserver.Server
	etcd *etcd.Server
	cli  *clientv3.Client

	stores   []*generic.Store
	storages map[schema.GroupVersionResource]storage.Interface
	cachers  []*cacher.Cacher

	// URL clients in the process use (https://127.0.0.1:port).
	loopbackURL string
	listener    net.Listener
	openapi     *openapi.Service
	services    *servicealloc.Allocator
	ready       atomic.Bool
	// inproc is the transport of InProcessConfig (inprocess.go).
	inproc inProcess

	// Components are started after the API server is ready.
	Components []ComponentFactory
}

// New checks cfg and fills defaults.
func New(cfg Config) (*Server, error) {
	if cfg.DataDir == "" {
		cfg.DataDir = "/var/lib/skiff"
	}
	if cfg.BindAddress == "" {
		cfg.BindAddress = "0.0.0.0"
	}
	if cfg.HTTPSPort == 0 {
		cfg.HTTPSPort = 6443
	}
	if cfg.EtcdClientPort == 0 {
		cfg.EtcdClientPort = 2379
	}
	if cfg.EtcdPeerPort == 0 {
		cfg.EtcdPeerPort = 2380
	}
	if cfg.ClusterCIDR == "" {
		cfg.ClusterCIDR = "10.42.0.0/16"
	}
	if cfg.ServiceCIDR == "" {
		cfg.ServiceCIDR = "10.43.0.0/16"
	}
	if cfg.ServiceNodePortRange == "" {
		cfg.ServiceNodePortRange = servicealloc.DefaultNodePortRange
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	if net.ParseIP(cfg.BindAddress) == nil {
		return nil, fmt.Errorf("--bind-address %q is not an IP address", cfg.BindAddress)
	}
	for _, p := range []int{cfg.HTTPSPort, cfg.EtcdClientPort, cfg.EtcdPeerPort} {
		if p < 0 || p > 65535 {
			return nil, fmt.Errorf("port %d out of range", p)
		}
	}
	if cfg.LoadBalancerAddressPool != "" {
		if _, err := loadbalancer.ParsePool(cfg.LoadBalancerAddressPool); err != nil {
			return nil, fmt.Errorf("--lb-address-pool: %w", err)
		}
	}
	if cfg.AdvertiseAddress == "" {
		cfg.AdvertiseAddress = firstHostIP()
	}
	return &Server{cfg: cfg, log: cfg.Logger, storages: map[schema.GroupVersionResource]storage.Interface{}}, nil
}

func firstHostIP() string {
	addrs, err := net.InterfaceAddrs()
	if err == nil {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && ipn.IP.To4() != nil {
				return ipn.IP.String()
			}
		}
	}
	return "127.0.0.1"
}

// AdminKubeconfigPath is where the admin kubeconfig is written.
func AdminKubeconfigPath(dataDir string) string { return filepath.Join(dataDir, "admin.kubeconfig") }

// LoopbackConfig is an admin client config over HTTPS to the loopback
// address, for in-process code that needs a real connection or the
// certificates (the agent); see InProcessConfig for the others.
func (s *Server) LoopbackConfig() *rest.Config {
	return &rest.Config{
		Host: s.loopbackURL,
		TLSClientConfig: rest.TLSClientConfig{
			CAData: s.pki.CA.CertPEM, CertData: s.pki.AdminCertPEM, KeyData: s.pki.AdminKeyPEM,
		},
		QPS: -1, Burst: 1000,
		UserAgent: "skiff",
	}
}

// Logger is the server's logger.
func (s *Server) Logger() *slog.Logger { return s.log }

// Config returns the effective configuration.
func (s *Server) Config() Config { return s.cfg }

// PKI returns the certificates.
func (s *Server) PKI() *pki.Bundle { return s.pki }

// URL is the loopback API URL.
func (s *Server) URL() string { return s.loopbackURL }

// Run starts the control plane and blocks until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	start := time.Now()
	if os.Getenv("GOGC") == "" {
		// The API server allocates per request and keeps little: half as
		// many collections cost ~13% less CPU per pod create at 100
		// clients and leave idle RSS unchanged (docs/PERFORMANCE.md).
		// GOGC in the environment still wins.
		debug.SetGCPercent(200)
	}
	if err := os.MkdirAll(s.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("creating data dir: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// PKI and etcd are independent: start both at once.
	var wg sync.WaitGroup
	var pkiErr, etcdErr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		s.pki, pkiErr = pki.Bootstrap(pki.BootstrapOptions{DataDir: s.cfg.DataDir, ExtraSANs: []string{s.cfg.AdvertiseAddress}})
	}()
	go func() {
		defer wg.Done()
		etcdErr = s.startEtcd(ctx)
	}()
	wg.Wait()
	if pkiErr != nil {
		return fmt.Errorf("setting up certificates: %w", pkiErr)
	}
	if etcdErr != nil {
		return etcdErr
	}
	defer s.closeStorage()

	if err := s.buildAPI(); err != nil {
		return err
	}
	go s.services.Run(ctx)
	tlsCfg, err := s.pki.ServingTLSConfig()
	if err != nil {
		return fmt.Errorf("building serving tls config: %w", err)
	}
	addr := net.JoinHostPort(s.cfg.BindAddress, strconv.Itoa(s.cfg.HTTPSPort))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", addr, err)
	}
	s.listener = l
	port := l.Addr().(*net.TCPAddr).Port
	s.loopbackURL = "https://" + net.JoinHostPort(loopbackHost(s.cfg.BindAddress), strconv.Itoa(port))
	errc := make(chan error, 4)
	go func() { errc <- s.api.Serve(ctx, l, tlsCfg) }()

	if err := s.bootstrap(ctx); err != nil {
		return fmt.Errorf("bootstrapping default objects: %w", err)
	}
	if err := s.writeKubeconfig(port); err != nil {
		return err
	}
	s.ready.Store(true)
	go s.runNodeCSRSigner(ctx) // agents joining with the token (nodecsr.go)
	// Build the OpenAPI documents in the background so the first
	// kubectl apply/explain does not pay for it. Building them leaves tens
	// of MB of garbage; hand it back to the OS now rather than over minutes
	// of scavenging (idle VmRSS 144 -> 131 MB, RssAnon 80 -> 55 MB, see
	// docs/PERFORMANCE.md).
	warmed := make(chan struct{})
	go func() {
		s.openapi.Warm()
		debug.FreeOSMemory()
		close(warmed)
	}()
	// Then release the binary's pages that only start-up needed
	// (internal/memtrim; idle VmRSS, docs/PERFORMANCE.md).
	go memtrim.After(ctx, warmed, 2*time.Second, s.log)
	s.log.Info("skiff server ready", "url", s.loopbackURL, "startup", time.Since(start).Round(time.Millisecond), "kubeconfig", AdminKubeconfigPath(s.cfg.DataDir))

	// Components get a bounded time to stop before storage closes (the
	// agent stops its containerd, for one); they are cancelled first.
	var comps sync.WaitGroup
	defer func() {
		cancel()
		waitTimeout(&comps, componentStopTimeout)
		// Then cut what in-process clients still have in flight, as the
		// HTTPS server's shutdown cut the network's (inprocess.go).
		s.inproc.close()
	}()
	for _, f := range s.Components {
		c, err := f(ctx, s)
		if err != nil {
			return fmt.Errorf("starting component: %w", err)
		}
		if c == nil {
			continue
		}
		comps.Add(1)
		go func() {
			defer comps.Done()
			if err := supervise(ctx, c, func() (Component, error) { return f(ctx, s) }, componentMinUptime, s.log); err != nil {
				select {
				case errc <- err:
				default: // Run is already returning another error
				}
			}
		}()
	}
	var etcdErrc <-chan error
	if s.etcd != nil {
		etcdErrc = s.etcd.Err()
	}
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		return err
	case err := <-etcdErrc:
		return fmt.Errorf("embedded etcd failed: %w", err)
	}
}

// Ready reports whether the server finished starting.
func (s *Server) Ready() bool { return s.ready.Load() }

// Addr is the address the API server listens on (after Run started).
func (s *Server) Addr() net.Addr {
	if s.listener == nil {
		return nil
	}
	return s.listener.Addr()
}

func loopbackHost(bind string) string {
	ip := net.ParseIP(bind)
	if ip == nil || ip.IsUnspecified() {
		return "127.0.0.1"
	}
	return bind
}

func (s *Server) startEtcd(ctx context.Context) error {
	endpoints := s.cfg.EtcdServers
	if len(endpoints) == 0 {
		e, err := etcd.Start(ctx, etcd.Config{
			DataDir:          filepath.Join(s.cfg.DataDir, "etcd"),
			ListenClientURLs: []string{fmt.Sprintf("http://127.0.0.1:%d", s.cfg.EtcdClientPort)},
			ListenPeerURLs:   []string{fmt.Sprintf("http://127.0.0.1:%d", s.cfg.EtcdPeerPort)},
			UnsafeNoFsync:    s.cfg.UnsafeNoFsync,
		})
		if err != nil {
			return fmt.Errorf("starting embedded etcd: %w", err)
		}
		s.etcd = e
		// The API server's own storage calls skip the loopback gRPC
		// round trip (client and server side were ~12% of the CPU of a
		// pod create).
		s.cli = e.InProcessClient()
		return nil
	}
	cli, err := etcd.NewClient(endpoints, nil)
	if err != nil {
		return fmt.Errorf("connecting to etcd %v: %w", endpoints, err)
	}
	s.cli = cli
	return nil
}

func (s *Server) closeStorage() {
	for _, c := range s.cachers {
		c.Stop()
	}
	if s.cli != nil {
		_ = s.cli.Close()
	}
	if s.etcd != nil {
		s.etcd.Close()
	}
}

// keyRoot is the etcd prefix of a resource's storage.
func keyRoot(gvr schema.GroupVersionResource) string {
	if gvr.Group == "" {
		return "/registry/" + gvr.Resource
	}
	return "/registry/" + gvr.Group + "/" + gvr.Resource
}

// buildAPI creates storages, stores and the API server.
func (s *Server) buildAPI() error {
	scheme := registry.NewScheme()
	codec := storageCodec(scheme)
	resources := AllResources()
	tc := applyconfigurations.NewTypeConverter(scheme)
	fms := generic.NewFieldManagers(scheme, tc)

	// Storage owners first, so shared storages exist for the others.
	byGVR := map[schema.GroupVersionResource]*registry.Resource{}
	for _, r := range resources {
		byGVR[r.GroupVersion.WithResource(r.Resource)] = r
	}
	for _, r := range resources {
		gvr := r.StorageGVR()
		if _, ok := s.storages[gvr]; ok {
			continue
		}
		owner := byGVR[gvr]
		if owner == nil {
			return fmt.Errorf("resource %s is stored as %s, which is not served", r.GroupResource(), gvr)
		}
		newFunc := owner.New
		ec := etcd3.Config{Client: s.cli, Codec: codec, NewFunc: newFunc}
		if s.etcd != nil {
			ec.KV = s.etcd.InProcessKV() // writes skip clientv3's request building
		}
		under := etcd3.New(ec)
		c, err := cacher.New(cacher.Config{Storage: under, Prefix: keyRoot(gvr) + "/", NewFunc: newFunc, Logger: s.log})
		if err != nil {
			return fmt.Errorf("starting watch cache for %s: %w", gvr, err)
		}
		s.cachers = append(s.cachers, c)
		s.storages[gvr] = c
	}
	chain := admission.New(&getter{s: s})
	services, err := servicealloc.New(servicealloc.Config{
		ServiceCIDR: s.cfg.ServiceCIDR, NodePortRange: s.cfg.ServiceNodePortRange, List: s.listServices, Logger: s.log,
	})
	if err != nil {
		return fmt.Errorf("creating the service ip and node port allocator: %w", err)
	}
	s.services = services
	for _, r := range resources {
		st := generic.NewStore(r, s.storages[r.StorageGVR()], keyRoot(r.StorageGVR()))
		st.FieldManagers = fms
		st.Hooks = services.Wrap(chain.Hooks())
		s.stores = append(s.stores, st)
	}
	// The kubelet API admits only this client certificate; it is issued
	// afresh at each start (kubelets check the CA and the name, not the
	// serial).
	kcCert, kcKey, err := s.pki.CA.IssueClient(kubeletserver.DefaultAllowedClient, []string{"system:masters"}, 365*24*time.Hour)
	if err != nil {
		return fmt.Errorf("issuing the kubelet client certificate: %w", err)
	}
	nodeProxy, err := nodeproxy.New(nodeproxy.Config{ClientCert: kcCert, ClientKey: kcKey, Logger: s.log})
	if err != nil {
		return err
	}
	metrics, err := s.metricsAPI(nodeProxy)
	if err != nil {
		return err
	}
	key := s.pki.ServiceAccountKey
	issuer, err := serviceaccount.NewIssuer(key, serviceaccount.IssuerOptions{})
	if err != nil {
		return fmt.Errorf("creating service account token issuer: %w", err)
	}
	verifier, err := serviceaccount.NewVerifier([]*ecdsa.PublicKey{&key.PublicKey}, serviceaccount.VerifierOptions{Validator: s.tokenValidator()})
	if err != nil {
		return fmt.Errorf("creating service account token verifier: %w", err)
	}
	static, err := authn.NewStaticTokens(map[string]authn.User{
		s.pki.JoinToken.Secret: {Name: "system:node-join", Groups: []string{"system:nodes", "system:bootstrappers"}},
	})
	if err != nil {
		return fmt.Errorf("loading join token: %w", err)
	}
	authenticator := authn.NewUnion(
		authn.NewX509(s.pki.CA.Pool(), authn.X509Options{}),
		authn.NewBearer(static, authn.NewServiceAccountTokens(verifier, authn.ServiceAccountOptions{})),
	)
	v := version.Get()
	s.openapi = openapi.New(scheme, resources, v.GitVersion)
	oamux := http.NewServeMux()
	s.openapi.Install(oamux)
	api, err := apiserver.New(apiserver.Config{
		Scheme:        scheme,
		Stores:        s.stores,
		TypeConverter: tc,
		Authenticator: authenticator,
		Extra:         &apiserver.PodSubresources{Tokens: &tokenIssuer{issuer: issuer, nodeUID: s.nodeUID}, NodeProxy: nodeProxy.Handle},
		OpenAPI:       oamux,
		Delegated:     []apiserver.DelegatedGroup{metrics.Group()},
		Ready: func() error {
			if !s.ready.Load() {
				return errors.New("starting")
			}
			return nil
		},
		Version: apiserver.VersionInfo{
			Major: v.Major, Minor: v.Minor, GitVersion: v.GitVersion, GitCommit: v.GitCommit,
			BuildDate: v.BuildDate, GoVersion: goruntime.Version(), Platform: goruntime.GOOS + "/" + goruntime.GOARCH,
		},
		ExternalAddress: net.JoinHostPort(s.cfg.AdvertiseAddress, strconv.Itoa(s.cfg.HTTPSPort)),
		Logger:          s.log,
	})
	if err != nil {
		return fmt.Errorf("creating api server: %w", err)
	}
	s.api = api
	return nil
}

// API returns the API server (for tests in the process).
func (s *Server) API() *apiserver.Server { return s.api }

// ServiceAllocator returns the ClusterIP and NodePort allocator (for tests
// in the process).
func (s *Server) ServiceAllocator() *servicealloc.Allocator { return s.services }

// listServices reads every service with a consistent read, for the
// allocator's repair.
func (s *Server) listServices(ctx context.Context) ([]corev1.Service, error) {
	o, err := s.store("", "services").List(ctx, "", generic.ListOptions{})
	if err != nil {
		return nil, err
	}
	return o.(*corev1.ServiceList).Items, nil
}

// writeKubeconfig writes the admin kubeconfig for the loopback URL.
func (s *Server) writeKubeconfig(port int) error {
	path := AdminKubeconfigPath(s.cfg.DataDir)
	if err := kubeconfig.WriteAdmin(path, s.loopbackURL, s.pki.CA.CertPEM, s.pki.AdminCertPEM, s.pki.AdminKeyPEM); err != nil {
		return fmt.Errorf("writing admin kubeconfig: %w", err)
	}
	return nil
}

// tokenValidator checks that a service-account token's account (and bound
// pod) still exist with the same UIDs.
func (s *Server) tokenValidator() serviceaccount.Validator {
	return serviceaccount.ValidatorFunc(func(ctx context.Context, c *serviceaccount.Claims) error {
		k := c.Kubernetes
		sa, err := s.store("", "serviceaccounts").Get(ctx, k.Namespace, k.ServiceAccount.Name, metav1.GetOptions{ResourceVersion: "0"})
		if err != nil {
			return fmt.Errorf("service account %s/%s: %w", k.Namespace, k.ServiceAccount.Name, err)
		}
		if string(sa.(*corev1.ServiceAccount).UID) != k.ServiceAccount.UID {
			return fmt.Errorf("service account %s/%s was recreated", k.Namespace, k.ServiceAccount.Name)
		}
		if k.Pod != nil {
			p, err := s.store("", "pods").Get(ctx, k.Namespace, k.Pod.Name, metav1.GetOptions{ResourceVersion: "0"})
			if err != nil {
				return fmt.Errorf("bound pod %s/%s: %w", k.Namespace, k.Pod.Name, err)
			}
			if string(p.(*corev1.Pod).UID) != k.Pod.UID {
				return fmt.Errorf("bound pod %s/%s was recreated", k.Namespace, k.Pod.Name)
			}
		}
		return nil
	})
}

// nodeUID is the UID of node name, from the watch cache.
func (s *Server) nodeUID(ctx context.Context, name string) (string, error) {
	o, err := s.store("", "nodes").Get(ctx, "", name, metav1.GetOptions{ResourceVersion: "0"})
	if err != nil {
		return "", err
	}
	return string(o.(*corev1.Node).UID), nil
}

func (s *Server) store(group, resource string) *generic.Store {
	for _, st := range s.stores {
		if st.R.GroupVersion.Group == group && st.R.Resource == resource && st.R.StorageResource.Empty() {
			return st
		}
	}
	return nil
}

// tokenIssuer adapts serviceaccount.Issuer to apiserver.TokenIssuer.
type tokenIssuer struct {
	issuer *serviceaccount.Issuer
	// nodeUID finds the UID of the node a pod is bound to; a pod-bound
	// token also names its node (name and uid) when the node exists, as
	// upstream's does, so it dies with the node too.
	nodeUID func(ctx context.Context, name string) (string, error)
}

func (t *tokenIssuer) IssueFor(ctx context.Context, sa *corev1.ServiceAccount, req *authenticationv1.TokenRequest, pod *corev1.Pod) (string, time.Time, error) {
	r := serviceaccount.Request{
		Namespace:      sa.Namespace,
		ServiceAccount: serviceaccount.Ref{Name: sa.Name, UID: string(sa.UID)},
		Audiences:      req.Spec.Audiences,
	}
	if req.Spec.ExpirationSeconds != nil {
		r.Expiration = time.Duration(*req.Spec.ExpirationSeconds) * time.Second
	}
	if pod != nil {
		r.Pod = &serviceaccount.Ref{Name: pod.Name, UID: string(pod.UID)}
		if pod.Spec.NodeName != "" && t.nodeUID != nil {
			uid, err := t.nodeUID(ctx, pod.Spec.NodeName)
			switch {
			case err == nil:
				r.Node = &serviceaccount.Ref{Name: pod.Spec.NodeName, UID: uid}
			case !apierrors.IsNotFound(err):
				return "", time.Time{}, fmt.Errorf("looking up node %s of pod %s/%s: %w", pod.Spec.NodeName, pod.Namespace, pod.Name, err)
			}
		}
	}
	return t.issuer.Issue(r)
}

// getter gives admission read access to the stores.
type getter struct {
	s *Server
	// noQuota remembers namespaces a live read found without quotas, until
	// when (see ListResourceQuotas).
	noQuota sync.Map
}

func (g *getter) GetNamespace(ctx context.Context, name string) (*corev1.Namespace, error) {
	st := g.s.store("", "namespaces")
	o, err := st.Get(ctx, "", name, metav1.GetOptions{ResourceVersion: "0"})
	if apierrors.IsNotFound(err) {
		// The watch cache may not have seen a namespace created a moment
		// ago; as upstream's NamespaceLifecycle, confirm with a live read.
		o, err = st.Get(ctx, "", name, metav1.GetOptions{})
	}
	if err != nil {
		return nil, err
	}
	return o.(*corev1.Namespace), nil
}

func (g *getter) ListPriorityClasses(ctx context.Context) ([]schedulingv1.PriorityClass, error) {
	return g.listPriorityClasses(ctx, "0")
}

// ListPriorityClassesFresh is a consistent read, for a class the cache
// has not seen yet.
func (g *getter) ListPriorityClassesFresh(ctx context.Context) ([]schedulingv1.PriorityClass, error) {
	return g.listPriorityClasses(ctx, "")
}

func (g *getter) listPriorityClasses(ctx context.Context, rv string) ([]schedulingv1.PriorityClass, error) {
	st := g.s.store("scheduling.k8s.io", "priorityclasses")
	if st == nil {
		return nil, nil
	}
	o, err := st.List(ctx, "", generic.ListOptions{ResourceVersion: rv})
	if err != nil {
		return nil, err
	}
	return o.(*schedulingv1.PriorityClassList).Items, nil
}
