package proxy

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
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

	// Shards splits the services over this many tables (Table-0 …
	// Table-N-1; 1, the default, is the single table Table). The kernel
	// validates a whole table on every commit that adds a DNAT or jump
	// rule, so a change costs in proportion to its table: at 10k services
	// one table spent ~40 ms CPU per change validating, an eighth of it
	// next to nothing (bench/proxy/RESULTS.md). Packets pay one map lookup
	// per shard on a connection's first packet only (NAT is decided once).
	Shards int
	// NFT drives the table when Shards is 1; NewNFT, if set, opens each
	// shard's table (tests); by default knftables.New does.
	NFT    knftables.Interface
	NewNFT func(table string) (knftables.Interface, error)
	// Netlink writes incremental changes straight to the kernel over
	// netlink instead of running nft for each (full syncs and changes
	// netlink cannot express, such as ClientIP affinity sets, still run
	// nft). nil means on when the proxier opens its tables itself (NFT and
	// NewNFT unset), off otherwise. The socket is opened in the network
	// namespace of the thread that runs the sync.
	Netlink *bool
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
	shards  []*shard
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
	stats nftables.Stats          // the shards' transaction counts already counted in metrics
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
	if cfg.Shards < 1 {
		cfg.Shards = 1
	}
	shards, err := openShards(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.Conntrack == nil {
		cfg.Conntrack = NetlinkConntrack{}
	}
	p := &Proxier{
		cfg:      cfg,
		rules:    &Rules{NodeName: nodeName, ClusterCIDRs: cfg.ClusterCIDRs, MasqueradeAll: cfg.MasqueradeAll},
		shards:   shards,
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
	// The registrations' HasSynced, not the informers': they turn true only
	// once the handlers have seen every object of the initial listing, so
	// the first full sync has all services rather than the ones delivered
	// so far (at 10k services it had about a third, and the rest followed
	// as a second, partial transaction of thousands of services).
	svcReg, err := svcInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { p.onService(o, false) },
		UpdateFunc: func(_, o any) { p.onService(o, false) },
		DeleteFunc: func(o any) { p.onService(o, true) },
	})
	if err != nil {
		return nil, fmt.Errorf("adding service handler: %w", err)
	}
	sliceReg, err := sliceInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { p.onSlice(o, false) },
		UpdateFunc: func(_, o any) { p.onSlice(o, false) },
		DeleteFunc: func(o any) { p.onSlice(o, true) },
	})
	if err != nil {
		return nil, fmt.Errorf("adding endpointslice handler: %w", err)
	}
	p.synced = []cache.InformerSynced{svcReg.HasSynced, sliceReg.HasSynced}
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
	if p.cfg.NFT == nil && p.cfg.NewNFT == nil {
		p.removeStaleShards(ctx)
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
			if err := p.sync(ctx, p.needsFullSync()); err != nil {
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
			if err := p.sync(ctx, p.needsFullSync()); err != nil {
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
		ops, err = p.fullSync(ctx, units)
	} else {
		ops, err = p.update(ctx, units)
	}
	p.countTransactions()
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

// countTransactions adds the shards' transactions since the last call to
// the metrics.
func (p *Proxier) countTransactions() {
	var now nftables.Stats
	for _, s := range p.shards {
		st := s.applier.Stats()
		now.Netlink += st.Netlink
		now.NFT += st.NFT
		now.Fallbacks += st.Fallbacks
	}
	p.metrics.transactions.WithLabelValues("netlink").Add(float64(now.Netlink - p.stats.Netlink))
	p.metrics.transactions.WithLabelValues("nft").Add(float64(now.NFT - p.stats.NFT))
	p.stats = now
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
	transactions *prometheus.CounterVec
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
		transactions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skiff_proxy_transactions_total",
			Help: "Transactions applied to the kernel, by writer (netlink, nft).",
		}, []string{"writer"}),
	}
	if reg != nil {
		reg.MustRegister(m.syncDuration, m.programming, m.errors, m.transactions)
	}
	return m
}

// shard is one of the tables the services are spread over.
type shard struct {
	table   string
	applier *nftables.Applier
}

// ShardTables returns the table names a proxier with cfg writes.
func ShardTables(table string, shards int) []string {
	if table == "" {
		table = DefaultTable
	}
	if shards <= 1 {
		return []string{table}
	}
	out := make([]string, shards)
	for i := range out {
		out[i] = table + "-" + strconv.Itoa(i)
	}
	return out
}

func openShards(cfg Config) ([]*shard, error) {
	var out []*shard
	useNetlink := cfg.NFT == nil && cfg.NewNFT == nil
	if cfg.Netlink != nil {
		useNetlink = *cfg.Netlink
	}
	for _, table := range ShardTables(cfg.Table, cfg.Shards) {
		nft := cfg.NFT
		var err error
		switch {
		case cfg.NewNFT != nil:
			nft, err = cfg.NewNFT(table)
		case nft == nil || cfg.Shards > 1:
			nft, err = knftables.New(knftables.IPv4Family, table)
		}
		if err != nil {
			return nil, fmt.Errorf("opening nftables table %s: %w", table, err)
		}
		a := nftables.New(nft, knftables.IPv4Family, table)
		if useNetlink {
			a.UseNetlink(nftables.NewNetlink(table, 0))
		}
		out = append(out, &shard{table: table, applier: a})
	}
	return out, nil
}

// shardOf places a service by a hash of its namespace/name.
func (p *Proxier) shardOf(key string) *shard {
	if len(p.shards) == 1 {
		return p.shards[0]
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return p.shards[h.Sum32()%uint32(len(p.shards))]
}

func (p *Proxier) needsFullSync() bool {
	for _, s := range p.shards {
		if s.applier.NeedsFullSync() {
			return true
		}
	}
	return false
}

// fullSync rewrites every shard's table from units (nil units are
// services the proxy does not handle).
func (p *Proxier) fullSync(ctx context.Context, units map[string]*nftables.Unit) (int, error) {
	per := make(map[*shard]map[string]*nftables.Unit, len(p.shards))
	for _, s := range p.shards {
		per[s] = map[string]*nftables.Unit{}
	}
	for k, u := range units {
		if u != nil {
			per[p.shardOf(k)][k] = u
		}
	}
	total := 0
	for _, s := range p.shards {
		n, err := s.applier.FullSync(ctx, p.rules.Base(), per[s])
		total += n
		if err != nil {
			return total, fmt.Errorf("table %s: %w", s.table, err)
		}
	}
	return total, nil
}

// update applies changed units, one transaction per touched shard.
func (p *Proxier) update(ctx context.Context, units map[string]*nftables.Unit) (int, error) {
	per := map[*shard]map[string]*nftables.Unit{}
	for k, u := range units {
		s := p.shardOf(k)
		if per[s] == nil {
			per[s] = map[string]*nftables.Unit{}
		}
		per[s][k] = u
	}
	total := 0
	for _, s := range p.shards {
		if per[s] == nil {
			continue
		}
		n, err := s.applier.Update(ctx, per[s])
		total += n
		if err != nil {
			return total, fmt.Errorf("table %s: %w", s.table, err)
		}
	}
	return total, nil
}

// removeStaleShards deletes tables of an earlier shard layout (Table, or
// Table-<n>, that this proxier does not write), which would otherwise
// keep DNATing stale services. Best effort: errors are logged.
func (p *Proxier) removeStaleShards(ctx context.Context) {
	out, err := exec.CommandContext(ctx, "nft", "list", "tables", "ip").Output()
	if err != nil {
		p.log.Warn("listing nftables tables for stale proxy shards", "err", err)
		return
	}
	for _, name := range StaleShardTables(string(out), p.cfg.Table, len(p.shards)) {
		if out, err := exec.CommandContext(ctx, "nft", "delete", "table", "ip", name).CombinedOutput(); err != nil {
			p.log.Warn("deleting stale proxy table", "table", name, "err", err, "output", string(out))
		} else {
			p.log.Info("deleted proxy table of an earlier shard layout", "table", name)
		}
	}
}

// StaleShardTables picks, from `nft list tables ip` output, the tables
// named like table's shards that a layout of shards does not use.
func StaleShardTables(listing, table string, shards int) []string {
	keep := map[string]bool{}
	for _, t := range ShardTables(table, shards) {
		keep[t] = true
	}
	var out []string
	for _, line := range strings.Split(listing, "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != "table" || f[1] != "ip" || keep[f[2]] {
			continue
		}
		name := f[2]
		if name == table {
			out = append(out, name)
			continue
		}
		if n, ok := strings.CutPrefix(name, table+"-"); ok {
			if _, err := strconv.Atoi(n); err == nil {
				out = append(out, name)
			}
		}
	}
	return out
}
