package ingress

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	networkinglisters "k8s.io/client-go/listers/networking/v1"
	"k8s.io/client-go/tools/cache"
)

// Config configures a Controller. Zero values take the defaults noted.
type Config struct {
	// ControllerName is the IngressClass spec.controller served
	// (DefaultControllerName).
	ControllerName string
	// HTTPAddr and HTTPSAddr are the listen addresses (":80", ":443").
	HTTPAddr, HTTPSAddr string
	// NodeName identifies this node in the status Lease.
	NodeName string
	Proxy    ProxyConfig
	Status   StatusConfig
	// ListenRetry is the wait between attempts to bind a port that is
	// taken (10s): the node keeps running and the ingress starts serving
	// once the port is free.
	ListenRetry time.Duration
	// OnBuild, if set, is called after each table swap (tests).
	OnBuild func(*Table)
}

// Deps are the controller's collaborators.
type Deps struct {
	Client kubernetes.Interface
	Logger *slog.Logger
}

// Controller watches the API and serves the Ingresses of its classes.
type Controller struct {
	cfg  Config
	deps Deps
	log  *slog.Logger

	factory, secretFactory informers.SharedInformerFactory
	synced                 []cache.InformerSynced
	classes                networkinglisters.IngressClassLister
	ingresses              networkinglisters.IngressLister
	services               corelisters.ServiceLister
	slices                 cache.Indexer
	secrets                corelisters.SecretLister
	status                 *statusWriter

	table       atomic.Pointer[Table]
	refs        atomic.Pointer[Refs]
	problems    map[string]bool // of the last build; rebuild's goroutine only
	certs       *CertCache
	defaultCert *tls.Certificate
	proxy       *Proxy
	dirty       chan struct{}

	mu                      sync.Mutex
	httpLn, httpsLn         net.Listener
	httpServer, httpsServer *http.Server
}

// sliceServiceIndex indexes EndpointSlices by namespace/service.
const sliceServiceIndex = "service"

// New builds a controller; nothing runs until Run.
func New(cfg Config, deps Deps) (*Controller, error) {
	if deps.Client == nil {
		return nil, errors.New("creating ingress controller: a client is required")
	}
	if cfg.ControllerName == "" {
		cfg.ControllerName = DefaultControllerName
	}
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = ":80"
	}
	if cfg.HTTPSAddr == "" {
		cfg.HTTPSAddr = ":443"
	}
	if cfg.ListenRetry <= 0 {
		cfg.ListenRetry = 10 * time.Second
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	log := deps.Logger.With("component", "ingress")
	cert, err := selfSigned(time.Now())
	if err != nil {
		return nil, err
	}
	c := &Controller{
		cfg: cfg, deps: deps, log: log,
		factory: informers.NewSharedInformerFactory(deps.Client, 0),
		secretFactory: informers.NewSharedInformerFactoryWithOptions(deps.Client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("type", string(corev1.SecretTypeTLS)).String()
		})),
		certs: NewCertCache(), defaultCert: cert,
		dirty: make(chan struct{}, 1),
	}
	c.table.Store(&Table{})
	c.proxy = NewProxy(cfg.Proxy, c.table.Load, log)

	classInf := c.factory.Networking().V1().IngressClasses()
	ingInf := c.factory.Networking().V1().Ingresses()
	svcInf := c.factory.Core().V1().Services()
	sliceInf := c.factory.Discovery().V1().EndpointSlices()
	secretInf := c.secretFactory.Core().V1().Secrets()
	if err := sliceInf.Informer().AddIndexers(cache.Indexers{sliceServiceIndex: func(obj any) ([]string, error) {
		s, ok := obj.(*discoveryv1.EndpointSlice)
		if !ok {
			return nil, nil
		}
		svc := s.Labels[discoveryv1.LabelServiceName]
		if svc == "" {
			return nil, nil
		}
		return []string{s.Namespace + "/" + svc}, nil
	}}); err != nil {
		return nil, fmt.Errorf("indexing endpointslices: %w", err)
	}
	// Classes and Ingresses always matter; Services, EndpointSlices and
	// Secrets only when the current Ingresses name them.
	always := func(any) bool { return true }
	for _, h := range []struct {
		inf      cache.SharedIndexInformer
		relevant func(any) bool
	}{
		{classInf.Informer(), always},
		{ingInf.Informer(), always},
		{svcInf.Informer(), func(o any) bool { return c.referenced(o, false) }},
		{sliceInf.Informer(), func(o any) bool { return c.referenced(o, false) }},
		{secretInf.Informer(), func(o any) bool { return c.referenced(o, true) }},
	} {
		relevant := h.relevant
		if _, err := h.inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: func(o any) {
				if relevant(o) {
					c.markDirty()
				}
			},
			UpdateFunc: func(_, o any) {
				if relevant(o) {
					c.markDirty()
				}
			},
			DeleteFunc: func(o any) {
				if relevant(o) {
					c.markDirty()
				}
			},
		}); err != nil {
			return nil, fmt.Errorf("adding ingress event handler: %w", err)
		}
		c.synced = append(c.synced, h.inf.HasSynced)
	}
	c.classes, c.ingresses, c.services, c.secrets = classInf.Lister(), ingInf.Lister(), svcInf.Lister(), secretInf.Lister()
	c.slices = sliceInf.Informer().GetIndexer()
	if !cfg.Status.Disable {
		st, err := newStatusWriter(cfg, deps.Client, c.factory, log)
		if err != nil {
			return nil, err
		}
		c.status = st
		c.synced = append(c.synced, st.synced...)
	}
	return c, nil
}

// referenced reports whether a Service, EndpointSlice (by its service)
// or Secret is named by the Ingresses of the table being served or built.
// rebuild publishes the references before it reads the listers, and an
// informer updates its cache before it calls the handlers, so a change
// this skips is one the next build cannot miss.
func (c *Controller) referenced(obj any, secret bool) bool {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	refs := c.refs.Load()
	if refs == nil {
		return true
	}
	var key string
	switch o := obj.(type) {
	case *corev1.Service:
		key = o.Namespace + "/" + o.Name
	case *discoveryv1.EndpointSlice:
		key = o.Namespace + "/" + o.Labels[discoveryv1.LabelServiceName]
	case *corev1.Secret:
		key = o.Namespace + "/" + o.Name
	default:
		return true
	}
	if secret {
		return refs.Secrets[key]
	}
	return refs.Services[key]
}

func (c *Controller) markDirty() {
	select {
	case c.dirty <- struct{}{}:
	default:
	}
}

// Table returns the current routing snapshot.
func (c *Controller) Table() *Table { return c.table.Load() }

// Handler is the proxy (what both listeners serve).
func (c *Controller) Handler() http.Handler { return c.proxy }

// Listen binds the ports now, so a caller learns the addresses (and a
// port conflict) before Run. Run calls it too, retrying while it fails.
func (c *Controller) Listen() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.httpLn == nil {
		ln, err := net.Listen("tcp", c.cfg.HTTPAddr)
		if err != nil {
			return fmt.Errorf("listening for ingress http on %s: %w", c.cfg.HTTPAddr, err)
		}
		c.httpLn = ln
	}
	if c.httpsLn == nil {
		ln, err := net.Listen("tcp", c.cfg.HTTPSAddr)
		if err != nil {
			return fmt.Errorf("listening for ingress https on %s: %w", c.cfg.HTTPSAddr, err)
		}
		c.httpsLn = ln
	}
	return nil
}

// HTTPAddr and HTTPSAddr are the bound addresses (nil before Listen).
func (c *Controller) HTTPAddr() net.Addr  { return c.addr(&c.httpLn) }
func (c *Controller) HTTPSAddr() net.Addr { return c.addr(&c.httpsLn) }

func (c *Controller) addr(ln *net.Listener) net.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	if *ln == nil {
		return nil
	}
	return (*ln).Addr()
}

// TLSConfig is what the HTTPS listener serves: SNI selection from the
// current table, the default certificate otherwise.
func (c *Controller) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1"},
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if cert := c.table.Load().Certificate(hello.ServerName); cert != nil {
				return cert, nil
			}
			return c.defaultCert, nil
		},
	}
}

// Run serves until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	c.factory.Start(ctx.Done())
	c.secretFactory.Start(ctx.Done())
	defer c.factory.Shutdown()
	defer c.secretFactory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		return nil // ctx ended first
	}
	c.rebuild()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.serve(ctx)
	}()
	if c.status != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.status.run(ctx)
		}()
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-c.dirty:
			c.rebuild()
		}
	}
}

// rebuild makes a new table from the informer caches and swaps it in.
func (c *Controller) rebuild() {
	classes, err := c.classes.List(labels.Everything())
	if err != nil {
		c.log.Error("listing ingress classes", "err", err)
		return
	}
	ours := ClassesOf(c.cfg.ControllerName, classes)
	all, err := c.ingresses.List(labels.Everything())
	if err != nil {
		c.log.Error("listing ingresses", "err", err)
		return
	}
	var ings []*networkingv1.Ingress
	for _, ing := range all {
		if ours.Handles(ing) {
			ings = append(ings, ing)
		}
	}
	refs := References(ings)
	c.refs.Store(&refs)
	start := time.Now()
	t := Build(ings, listerSource{c}, c.certs)
	c.table.Store(t)
	// Problems are logged when they appear, not on every rebuild.
	seen := make(map[string]bool, len(t.Problems))
	for _, p := range t.Problems {
		seen[p] = true
		if !c.problems[p] {
			c.log.Warn("ingress configuration", "problem", p)
		}
	}
	c.problems = seen
	c.log.Debug("ingress table built", "ingresses", len(t.Ingresses), "took", time.Since(start))
	if c.cfg.OnBuild != nil {
		c.cfg.OnBuild(t)
	}
}

// serve binds (retrying while the ports are taken) and serves both
// listeners until ctx ends.
func (c *Controller) serve(ctx context.Context) {
	for {
		err := c.Listen()
		if err == nil {
			break
		}
		c.log.Error("ingress cannot listen; retrying", "err", err, "retry", c.cfg.ListenRetry)
		select {
		case <-ctx.Done():
			c.closeListeners()
			return
		case <-time.After(c.cfg.ListenRetry):
		}
	}
	c.mu.Lock()
	httpLn, httpsLn := c.httpLn, tls.NewListener(c.httpsLn, c.TLSConfig())
	c.httpServer = c.newServer()
	c.httpsServer = c.newServer()
	c.mu.Unlock()
	c.log.Info("ingress serving", "http", httpLn.Addr().String(), "https", c.httpsLn.Addr().String())
	errc := make(chan error, 2)
	go func() { errc <- c.httpServer.Serve(httpLn) }()
	go func() { errc <- c.httpsServer.Serve(httpsLn) }()
	select {
	case <-ctx.Done():
	case err := <-errc:
		c.log.Error("ingress server stopped", "err", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = c.httpServer.Shutdown(sctx)
	_ = c.httpsServer.Shutdown(sctx)
}

func (c *Controller) newServer() *http.Server {
	return &http.Server{
		Handler:           c.proxy,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(c.log.Handler(), slog.LevelDebug),
	}
}

func (c *Controller) closeListeners() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ln := range []*net.Listener{&c.httpLn, &c.httpsLn} {
		if *ln != nil {
			(*ln).Close()
			*ln = nil
		}
	}
}

// listerSource reads Build's inputs from the informer caches.
type listerSource struct{ c *Controller }

var _ Source = listerSource{}

func (s listerSource) Service(ns, name string) *corev1.Service {
	svc, err := s.c.services.Services(ns).Get(name)
	if err != nil {
		return nil
	}
	return svc
}

func (s listerSource) Secret(ns, name string) *corev1.Secret {
	sec, err := s.c.secrets.Secrets(ns).Get(name)
	if err != nil {
		return nil
	}
	return sec
}

func (s listerSource) EndpointSlices(ns, svc string) []*discoveryv1.EndpointSlice {
	objs, err := s.c.slices.ByIndex(sliceServiceIndex, ns+"/"+svc)
	if err != nil {
		return nil
	}
	out := make([]*discoveryv1.EndpointSlice, 0, len(objs))
	for _, o := range objs {
		if es, ok := o.(*discoveryv1.EndpointSlice); ok {
			out = append(out, es)
		}
	}
	return out
}
