package controllermanager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"

	"skiff.dev/skiff/internal/controller"
)

// Config configures a ControllerManager; zero values get defaults.
type Config struct {
	// LeaderElect makes only the holder of the Lease run controllers.
	LeaderElect bool
	// LeaseNamespace and LeaseName name the Lease (kube-system /
	// kube-controller-manager).
	LeaseNamespace, LeaseName string
	// Identity is this process's holder identity (default hostname_uuid).
	Identity string
	// LeaseDuration, RenewDeadline, RetryPeriod as upstream (15s, 10s, 2s).
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// Controllers selects controllers as kube-controller-manager's
	// --controllers: "*" (the default) is every controller not disabled by
	// default, "name" enables one, "-name" disables one.
	Controllers []string
	// Workers overrides the worker count per controller name.
	Workers map[string]int
	// ResyncPeriod of the shared informers (default 0: no resync).
	ResyncPeriod time.Duration
	// ClusterCIDR is handed to the node IPAM controller.
	ClusterCIDR string
	// LoadBalancerAddressPool is handed to the load balancer controller
	// (empty: LoadBalancer services get the nodes' addresses).
	LoadBalancerAddressPool string
	// Registry replaces DefaultRegistry (tests, embedders).
	Registry map[string]Registration
	// Clock is handed to controllers (default: real clock).
	Clock clock.WithTicker
}

// Clients are the API clients the controllers use.
type Clients struct {
	Kube      kubernetes.Interface
	Metadata  metadata.Interface
	Discovery discovery.DiscoveryInterface
	// Informers, when set, is an informer factory shared with other
	// components of the process (skiff server's scheduler): the controllers
	// register on it instead of a factory of their own, so the process
	// keeps one watch and one cache per resource. Its owner decides how long
	// its informers run and shuts it down; Config.ResyncPeriod does not
	// apply to it.
	Informers informers.SharedInformerFactory
}

// ControllerManager runs the selected controllers.
type ControllerManager struct {
	cfg     Config
	clients Clients
	logger  *slog.Logger
	enabled []string
}

// New builds a ControllerManager talking to the API server of clientConfig.
// Controllers use a client with a higher rate limit than client-go's default
// (they are the cluster's main writers).
func New(cfg Config, clientConfig *rest.Config, logger *slog.Logger) (*ControllerManager, error) {
	rc := rest.CopyConfig(clientConfig)
	if rc.QPS == 0 {
		rc.QPS = 1000
		rc.Burst = 2000
	}
	rest.AddUserAgent(rc, "skiff-controller-manager")
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("building kubernetes client: %w", err)
	}
	meta, err := metadata.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("building metadata client: %w", err)
	}
	return NewForClients(cfg, Clients{Kube: kube, Metadata: meta, Discovery: kube.Discovery()}, logger)
}

// NewForClients builds a ControllerManager over existing clients (fake
// clientsets in tests, loopback clients when embedded in skiff server).
func NewForClients(cfg Config, clients Clients, logger *slog.Logger) (*ControllerManager, error) {
	if logger == nil {
		logger = slog.Default()
	}
	if clients.Kube == nil {
		return nil, errors.New("building controller manager: no kubernetes client")
	}
	if clients.Discovery == nil {
		clients.Discovery = clients.Kube.Discovery()
	}
	if cfg.Registry == nil {
		cfg.Registry = DefaultRegistry()
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.LeaseNamespace == "" {
		cfg.LeaseNamespace = metav1.NamespaceSystem
	}
	if cfg.LeaseName == "" {
		cfg.LeaseName = "kube-controller-manager"
	}
	if cfg.LeaseDuration == 0 {
		cfg.LeaseDuration = 15 * time.Second
	}
	if cfg.RenewDeadline == 0 {
		cfg.RenewDeadline = 10 * time.Second
	}
	if cfg.RetryPeriod == 0 {
		cfg.RetryPeriod = 2 * time.Second
	}
	if cfg.Identity == "" {
		host, _ := os.Hostname()
		cfg.Identity = host + "_" + string(uuid.NewUUID())
	}
	enabled, err := selectControllers(cfg.Registry, cfg.Controllers)
	if err != nil {
		return nil, err
	}
	return &ControllerManager{cfg: cfg, clients: clients, logger: logger.With("component", "controller-manager"), enabled: enabled}, nil
}

// Enabled returns the names of the controllers Run will start, sorted.
func (m *ControllerManager) Enabled() []string { return slices.Clone(m.enabled) }

// SharedInformers is the factory handed in as Clients.Informers (nil when
// the controllers build their own).
func (m *ControllerManager) SharedInformers() informers.SharedInformerFactory {
	return m.clients.Informers
}

func selectControllers(reg map[string]Registration, sel []string) ([]string, error) {
	if len(sel) == 0 {
		sel = []string{"*"}
	}
	on := map[string]bool{}
	star := false
	for _, s := range sel {
		name := strings.TrimPrefix(s, "-")
		switch {
		case s == "*":
			star = true
		case reg[name].New == nil:
			return nil, fmt.Errorf("selecting controllers: unknown controller %q", name)
		case strings.HasPrefix(s, "-"):
			on[name] = false
		default:
			on[name] = true
		}
	}
	var out []string
	for name, r := range reg {
		v, explicit := on[name]
		if (explicit && v) || (!explicit && star && !r.DisabledByDefault) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out, nil
}

// Run runs the controllers until ctx ends; with leader election, only while
// this process holds the Lease. Losing the Lease ends Run with an error, as
// a controller manager that lost leadership must not keep acting.
func (m *ControllerManager) Run(ctx context.Context) error {
	if !m.cfg.LeaderElect {
		return m.runControllers(ctx)
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: m.cfg.LeaseNamespace, Name: m.cfg.LeaseName},
		Client:     m.clients.Kube.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: m.cfg.Identity},
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var runErr error
	lost := false
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   m.cfg.LeaseDuration,
		RenewDeadline:   m.cfg.RenewDeadline,
		RetryPeriod:     m.cfg.RetryPeriod,
		ReleaseOnCancel: true,
		Name:            m.cfg.LeaseName,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				m.logger.Info("acquired leadership", "identity", m.cfg.Identity)
				runErr = m.runControllers(ctx)
			},
			OnStoppedLeading: func() {
				if ctx.Err() == nil {
					lost = true
				}
				cancel()
			},
		},
	})
	if err != nil {
		return fmt.Errorf("configuring leader election: %w", err)
	}
	le.Run(ctx)
	if lost {
		return fmt.Errorf("lost leadership of lease %s/%s", m.cfg.LeaseNamespace, m.cfg.LeaseName)
	}
	return runErr
}

func (m *ControllerManager) runControllers(ctx context.Context) error {
	factory := m.clients.Informers
	if factory == nil {
		factory = informers.NewSharedInformerFactory(m.clients.Kube, m.cfg.ResyncPeriod)
		defer factory.Shutdown()
	}
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	// Sends what broadcaster.StartRecordingToSink would, deciding spam
	// drops before building the repeat patch upstream builds for them.
	controller.StartRecordingToSink(ctx, broadcaster, &typedcorev1.EventSinkImpl{Interface: m.clients.Kube.CoreV1().Events("")}, m.logger)
	defer broadcaster.Shutdown()
	// The pod handlers the constructors add become one registration.
	mux := newMuxFactory(factory)
	cctx := Context{
		Client:    m.clients.Kube,
		Metadata:  m.clients.Metadata,
		Discovery: m.clients.Discovery,
		Informers: mux,
		Clock:     m.cfg.Clock,
		Logger:    m.logger,
		Config:    m.cfg,
		Recorder: func(component string) record.EventRecorder {
			return controller.NewEventRecorder(broadcaster, scheme.Scheme, v1.EventSource{Component: component}, m.logger)
		},
	}
	type started struct {
		name    string
		r       Runner
		workers int
	}
	var runners []started
	for _, name := range m.enabled {
		reg := m.cfg.Registry[name]
		r, err := reg.New(cctx)
		if err != nil {
			return fmt.Errorf("starting controller %s: %w", name, err)
		}
		workers := reg.Workers
		if w, ok := m.cfg.Workers[name]; ok {
			workers = w
		}
		runners = append(runners, started{name, r, max(workers, 1)})
	}
	if err := mux.pods.seal(); err != nil {
		return fmt.Errorf("registering the controllers' pod handlers: %w", err)
	}
	// Informers requested by the constructors start together: one watch
	// per resource for the whole process.
	factory.Start(ctx.Done())

	var wg sync.WaitGroup
	errs := make([]error, len(runners))
	for i, s := range runners {
		m.logger.Info("starting controller", "name", s.name, "workers", s.workers)
		wg.Go(func() {
			if err := s.r.Run(ctx, s.workers); err != nil && ctx.Err() == nil {
				m.logger.Error("controller stopped", "name", s.name, "err", err)
				errs[i] = fmt.Errorf("running controller %s: %w", s.name, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
