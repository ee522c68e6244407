package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
	"sigs.k8s.io/knftables"

	"skiff.dev/skiff/internal/proxy/nftables"
)

// DefaultTable is the nftables table skiff owns.
const DefaultTable = "skiff-proxy"

// Config configures a Proxier. Zero values take the defaults noted.
type Config struct {
	Table          string         // DefaultTable
	ClusterCIDRs   []netip.Prefix // see Rules.ClusterCIDRs
	MasqueradeAll  bool
	MinSyncPeriod  time.Duration // 10ms: changes arriving within it share a transaction
	FullSyncPeriod time.Duration // 1h: rewrites the table to clean drift
	RetryPeriod    time.Duration // 1s: after a failed sync

	// NFT drives the table; nil creates a real one with knftables.New.
	NFT knftables.Interface
	// Conntrack deletes stale UDP flows; nil means NetlinkConntrack.
	Conntrack Conntrack
	Clock     clock.WithTicker // clock.RealClock{}
	// Metrics, if set, receives the proxy's collectors.
	Metrics prometheus.Registerer
	// OnSync, if set, is called after each applied sync (tests, benchmarks).
	OnSync func(full bool, services []string)
}

// Proxier programs Services into nftables on one node.
type Proxier struct {
	cfg     Config
	rules   *Rules
	applier *nftables.Applier
	nodeIPs []netip.Addr
	log     *slog.Logger
	clock   clock.WithTicker
	metrics *metrics
	synced  []cache.InformerSynced
	factory informers.SharedInformerFactory

	mu       sync.Mutex
	services map[string]*v1.Service                         // by namespace/name
	slices   map[string]map[string]*discovery.EndpointSlice // service key → slice name
	dirty    map[string]bool
	triggers map[string][]time.Time // service key → EndpointSlice trigger times
	signal   chan struct{}

	infos map[string]*ServiceInfo // last applied, for conntrack
}

// New builds a proxier for nodeName. The informer factory must not have
// been started yet, or Run must start it (Run calls Start, which is
// idempotent). nodeIPs are kept for a future nodePortAddresses option;
// NodePorts are served on every local address through `fib daddr type local`.
func New(cfg Config, client kubernetes.Interface, factory informers.SharedInformerFactory, nodeName string, nodeIPs []netip.Addr, logger *slog.Logger) (*Proxier, error) {
	_ = client // the proxy only reads, through the informers
	if cfg.Table == "" {
		cfg.Table = DefaultTable
	}
	if cfg.MinSyncPeriod == 0 {
		cfg.MinSyncPeriod = 10 * time.Millisecond
	}
	if cfg.FullSyncPeriod == 0 {
		cfg.FullSyncPeriod = time.Hour
	}
	if cfg.RetryPeriod == 0 {
		cfg.RetryPeriod = time.Second
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if logger == nil {
		logger = slog.Default()
	}
	if cfg.NFT == nil {
		nft, err := knftables.New(knftables.IPv4Family, cfg.Table)
		if err != nil {
			return nil, fmt.Errorf("opening nftables table %s: %w", cfg.Table, err)
		}
		cfg.NFT = nft
	}
	if cfg.Conntrack == nil {
		cfg.Conntrack = NetlinkConntrack{}
	}
	p := &Proxier{
		cfg:      cfg,
		rules:    &Rules{NodeName: nodeName, ClusterCIDRs: cfg.ClusterCIDRs, MasqueradeAll: cfg.MasqueradeAll},
		applier:  nftables.New(cfg.NFT, knftables.IPv4Family, cfg.Table),
		nodeIPs:  nodeIPs,
		log:      logger.With("component", "proxy", "node", nodeName),
		clock:    cfg.Clock,
		metrics:  newMetrics(cfg.Metrics),
		factory:  factory,
		services: map[string]*v1.Service{},
		slices:   map[string]map[string]*discovery.EndpointSlice{},
		dirty:    map[string]bool{},
		triggers: map[string][]time.Time{},
		signal:   make(chan struct{}, 1),
		infos:    map[string]*ServiceInfo{},
	}
	svcInf := factory.Core().V1().Services().Informer()
	sliceInf := factory.Discovery().V1().EndpointSlices().Informer()
	if _, err := svcInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { p.onService(o, false) },
		UpdateFunc: func(_, o any) { p.onService(o, false) },
		DeleteFunc: func(o any) { p.onService(o, true) },
	}); err != nil {
		return nil, fmt.Errorf("adding service handler: %w", err)
	}
	if _, err := sliceInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { p.onSlice(o, false) },
		UpdateFunc: func(_, o any) { p.onSlice(o, false) },
		DeleteFunc: func(o any) { p.onSlice(o, true) },
	}); err != nil {
		return nil, fmt.Errorf("adding endpointslice handler: %w", err)
	}
	p.synced = []cache.InformerSynced{svcInf.HasSynced, sliceInf.HasSynced}
	return p, nil
}

func tombstone(o any) any {
	if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
		return t.Obj
	}
	return o
}

// Handlers only record the object and mark its service dirty; objects
// from the cache are never mutated.
func (p *Proxier) onService(o any, deleted bool) {
	svc, ok := tombstone(o).(*v1.Service)
	if !ok {
		return
	}
	key := svc.Namespace + "/" + svc.Name
	p.mu.Lock()
	if deleted {
		delete(p.services, key)
	} else {
		p.services[key] = svc
	}
	p.dirty[key] = true
	p.mu.Unlock()
	p.poke()
}

func (p *Proxier) onSlice(o any, deleted bool) {
	sl, ok := tombstone(o).(*discovery.EndpointSlice)
	if !ok {
		return
	}
	name := sl.Labels[discovery.LabelServiceName]
	if name == "" {
		return
	}
	key := sl.Namespace + "/" + name
	p.mu.Lock()
	if deleted {
		delete(p.slices[key], sl.Name)
		if len(p.slices[key]) == 0 {
			delete(p.slices, key)
		}
	} else {
		if p.slices[key] == nil {
			p.slices[key] = map[string]*discovery.EndpointSlice{}
		}
		p.slices[key][sl.Name] = sl
		if ts, ok := sl.Annotations[v1.EndpointsLastChangeTriggerTime]; ok {
			if t, err := time.Parse(time.RFC3339Nano, ts); err == nil {
				p.triggers[key] = append(p.triggers[key], t)
			}
		}
	}
	p.dirty[key] = true
	p.mu.Unlock()
	p.poke()
}

func (p *Proxier) poke() {
	select {
	case p.signal <- struct{}{}:
	default:
	}
}

// Run starts the informers, programs the whole table, then applies changes
// as they come until ctx ends. The table is left in place on exit so
// traffic keeps flowing across an agent restart.
func (p *Proxier) Run(ctx context.Context) error {
	p.factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), p.synced...) {
		return fmt.Errorf("waiting for service and endpointslice caches: %w", ctx.Err())
	}
	full := p.clock.NewTicker(p.cfg.FullSyncPeriod)
	defer full.Stop()
	var retry <-chan time.Time
	if err := p.sync(ctx, true); err != nil {
		p.log.Error("initial full sync failed", "err", err)
		retry = p.clock.After(p.cfg.RetryPeriod)
	}
	last := p.clock.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-full.C():
			if err := p.sync(ctx, true); err != nil {
				p.log.Error("full sync failed", "err", err)
				retry = p.clock.After(p.cfg.RetryPeriod)
			}
			last = p.clock.Now()
		case <-retry:
			retry = nil
			if err := p.sync(ctx, p.applier.NeedsFullSync()); err != nil {
				p.log.Error("retried sync failed", "err", err)
				retry = p.clock.After(p.cfg.RetryPeriod)
			}
			last = p.clock.Now()
		case <-p.signal:
			// Coalesce: wait out the rest of the min-sync period so a burst
			// of events becomes one transaction.
			if wait := p.cfg.MinSyncPeriod - p.clock.Since(last); wait > 0 {
				select {
				case <-ctx.Done():
					return nil
				case <-p.clock.After(wait):
				}
			}
			if err := p.sync(ctx, p.applier.NeedsFullSync()); err != nil {
				p.log.Error("sync failed", "err", err)
				retry = p.clock.After(p.cfg.RetryPeriod)
			}
			last = p.clock.Now()
		}
	}
}

// sync applies pending changes; with full it rewrites the whole table.
func (p *Proxier) sync(ctx context.Context, full bool) error {
	start := p.clock.Now()
	p.mu.Lock()
	var keys []string
	if full {
		keys = make([]string, 0, len(p.services))
		for k := range p.services {
			keys = append(keys, k)
		}
		for k := range p.dirty {
			if p.services[k] == nil {
				keys = append(keys, k)
			}
		}
	} else {
		keys = make([]string, 0, len(p.dirty))
		for k := range p.dirty {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		p.mu.Unlock()
		return nil
	}
	type input struct {
		svc    *v1.Service
		slices []*discovery.EndpointSlice
	}
	inputs := make(map[string]input, len(keys))
	for _, k := range keys {
		in := input{svc: p.services[k]}
		for _, sl := range p.slices[k] {
			in.slices = append(in.slices, sl)
		}
		inputs[k] = in
	}
	triggers := p.triggers
	p.dirty = map[string]bool{}
	p.triggers = map[string][]time.Time{}
	p.mu.Unlock()

	units := make(map[string]*nftables.Unit, len(inputs))
	infos := make(map[string]*ServiceInfo, len(inputs))
	for k, in := range inputs {
		// Slices come from a map: order them so rendering is stable.
		sortSlices(in.slices)
		u, info := p.rules.Service(in.svc, in.slices)
		units[k], infos[k] = u, info
	}

	var err error
	var ops int
	if full {
		present := map[string]*nftables.Unit{}
		for k, u := range units {
			if u != nil {
				present[k] = u
			}
		}
		ops, err = p.applier.FullSync(ctx, p.rules.Base(), present)
	} else {
		ops, err = p.applier.Update(ctx, units)
	}
	if err != nil {
		// Put the work back so a retry covers it.
		p.mu.Lock()
		for _, k := range keys {
			p.dirty[k] = true
		}
		for k, ts := range triggers {
			p.triggers[k] = append(p.triggers[k], ts...)
		}
		p.mu.Unlock()
		p.metrics.errors.Inc()
		if errors.Is(err, nftables.ErrNeedFullSync) {
			return p.sync(ctx, true)
		}
		return fmt.Errorf("applying %d services: %w", len(keys), err)
	}
	end := p.clock.Now()
	kind := "partial"
	if full {
		kind = "full"
	}
	p.metrics.syncDuration.WithLabelValues(kind).Observe(end.Sub(start).Seconds())
	for _, ts := range triggers {
		for _, t := range ts {
			p.metrics.programming.Observe(end.Sub(t).Seconds())
		}
	}

	var flows []Flow
	for k, info := range infos {
		flows = append(flows, staleFlows(p.infos[k], info)...)
		if info == nil {
			delete(p.infos, k)
		} else {
			p.infos[k] = info
		}
	}
	if len(flows) > 0 && p.cfg.Conntrack != nil {
		if err := p.cfg.Conntrack.Delete(ctx, flows); err != nil {
			p.log.Warn("clearing stale conntrack entries", "err", err)
		}
	}
	p.log.Debug("synced", "full", full, "services", len(keys), "operations", ops, "duration", end.Sub(start))
	if p.cfg.OnSync != nil {
		p.cfg.OnSync(full, keys)
	}
	return nil
}

func sortSlices(s []*discovery.EndpointSlice) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j].Name < s[j-1].Name; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

type metrics struct {
	syncDuration *prometheus.HistogramVec
	programming  prometheus.Histogram
	errors       prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		syncDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "skiff_proxy_sync_duration_seconds",
			Help:    "Time to render and apply a proxy sync, by kind (full, partial).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}, []string{"kind"}),
		programming: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "skiff_proxy_network_programming_duration_seconds",
			Help:    "Time from an EndpointSlice's last-change-trigger-time to its rules being applied.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 18),
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "skiff_proxy_sync_errors_total",
			Help: "Proxy syncs that failed to apply.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.syncDuration, m.programming, m.errors)
	}
	return m
}
