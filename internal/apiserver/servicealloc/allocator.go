package servicealloc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"skiff.dev/skiff/internal/registry"
	"skiff.dev/skiff/internal/registry/generic"
)

// Defaults for Config.
const (
	DefaultServiceCIDR   = "10.43.0.0/16"
	DefaultNodePortRange = "30000-32767"
	// DefaultGrace is how long an allocation handed out by Admit survives
	// without a stored service holding it. It must exceed the time a
	// create or update can spend between admission and its etcd write.
	DefaultGrace = 30 * time.Second
	// DefaultInterval is the period of the repair loop.
	DefaultInterval = 3 * time.Second
)

// The allocators' errors, with upstream's wording: clients and tests match
// on these strings.
var (
	errFull          = errors.New("range is full")
	errIPAllocated   = errors.New("provided IP is already allocated")
	errPortAllocated = errors.New("provided port is already allocated")
)

// Config configures an Allocator.
type Config struct {
	// ServiceCIDR is the ClusterIP range (default 10.43.0.0/16).
	ServiceCIDR string
	// NodePortRange is "min-max" (default 30000-32767).
	NodePortRange string
	// List returns every stored service, read consistently (not from a
	// possibly stale cache): it is the truth repair converges to.
	List func(ctx context.Context) ([]corev1.Service, error)
	// Now and Rand are injected for tests; Rand(n) returns [0, n).
	Now  func() time.Time
	Rand func(n int) int
	// Grace and Interval: see DefaultGrace and DefaultInterval.
	Grace    time.Duration
	Interval time.Duration
	Logger   *slog.Logger
}

// Allocator hands out ClusterIPs and NodePorts to services. See the
// package documentation for its contract.
type Allocator struct {
	cfg   Config
	ips   IPRange
	ports PortRange
	log   *slog.Logger

	repairMu sync.Mutex // serialises repair passes, including the first load
	synced   atomic.Bool

	mu  sync.Mutex // guards everything below
	ip  *pool
	np  *pool
	gen uint64
}

// New validates cfg and returns an Allocator that has not yet loaded the
// stored services: the first Admit, or Run, does that.
func New(cfg Config) (*Allocator, error) {
	if cfg.ServiceCIDR == "" {
		cfg.ServiceCIDR = DefaultServiceCIDR
	}
	if cfg.NodePortRange == "" {
		cfg.NodePortRange = DefaultNodePortRange
	}
	if cfg.List == nil {
		return nil, errors.New("service allocator needs a service lister")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.IntN
	}
	if cfg.Grace <= 0 {
		cfg.Grace = DefaultGrace
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ips, err := ParseIPRange(cfg.ServiceCIDR)
	if err != nil {
		return nil, err
	}
	ports, err := ParsePortRange(cfg.NodePortRange)
	if err != nil {
		return nil, err
	}
	return &Allocator{cfg: cfg, ips: ips, ports: ports, log: cfg.Logger, ip: newPool(ips.Size()), np: newPool(ports.Size)}, nil
}

// Run repairs now and then every Interval until ctx ends.
func (a *Allocator) Run(ctx context.Context) error {
	t := time.NewTicker(a.cfg.Interval)
	defer t.Stop()
	for {
		if err := a.Repair(ctx); err != nil && ctx.Err() == nil {
			a.log.Warn("repairing service ip and node port allocations", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Wrap returns hooks that run inner and, for core/v1 services, allocate
// on admission and release after deletion.
func (a *Allocator) Wrap(inner generic.Hooks) generic.Hooks {
	return generic.Hooks{
		Admit: func(ctx context.Context, r *registry.Resource, op generic.Operation, obj, old runtime.Object) error {
			if inner.Admit != nil {
				if err := inner.Admit(ctx, r, op, obj, old); err != nil {
					return err
				}
			}
			svc, ok := obj.(*corev1.Service)
			if !ok || !isServices(r) || (op != generic.OpCreate && op != generic.OpUpdate) {
				return nil
			}
			oldSvc, _ := old.(*corev1.Service)
			return a.Admit(ctx, svc, oldSvc)
		},
		Validate: inner.Validate,
		AfterDelete: func(ctx context.Context, r *registry.Resource, obj runtime.Object) {
			if inner.AfterDelete != nil {
				inner.AfterDelete(ctx, r, obj)
			}
			if svc, ok := obj.(*corev1.Service); ok && isServices(r) {
				a.Release(svc)
			}
		},
	}
}

func isServices(r *registry.Resource) bool {
	return r.GroupVersion.Group == "" && r.Resource == "services"
}

// Admit fills in and reserves svc's ClusterIP, node ports and health check
// node port. old is the stored service on update, nil on create. It may
// run several times for one update (storage retries): what this service
// (by namespace/name) already holds is reused, never allocated twice.
func (a *Allocator) Admit(ctx context.Context, svc, old *corev1.Service) error {
	if err := a.ensureSynced(ctx); err != nil {
		return apierrors.NewInternalError(fmt.Errorf("loading allocated service ips and node ports: %w", err))
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	t := &txn{a: a, svc: svc, o: ownerOf(svc), now: a.cfg.Now()}
	if err := t.admitIP(old); err != nil {
		t.rollback()
		return err
	}
	if err := t.admitNodePorts(old); err != nil {
		t.rollback()
		return err
	}
	if old != nil {
		t.markDropped(old)
	}
	return nil
}

// Release frees what a deleted service held, if it still holds it.
func (a *Allocator) Release(svc *corev1.Service) {
	if !a.synced.Load() {
		return // the first load reads the store, which no longer has svc
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	o := ownerOf(svc)
	release := func(p *pool, offs []int) {
		for _, off := range offs {
			if cur, ok := p.ownerOf(off); ok && cur == o {
				p.free(off)
				a.touch(p, off)
			}
		}
	}
	release(a.ip, a.ipOffsets(svc))
	release(a.np, a.portOffsets(svc))
}

// Repair makes the allocation state agree with the stored services: what
// a stored service holds is allocated to it; what none holds is freed,
// unless Admit handed it out less than Grace ago (its write may still be
// in flight). Entries a request changed after the listing began are left
// for the next pass.
func (a *Allocator) Repair(ctx context.Context) error {
	a.repairMu.Lock()
	defer a.repairMu.Unlock()
	a.mu.Lock()
	snap := a.gen
	a.mu.Unlock()
	svcs, err := a.cfg.List(ctx)
	if err != nil {
		return fmt.Errorf("listing services: %w", err)
	}
	heldIP, heldNP := map[int]owner{}, map[int]owner{}
	for i := range svcs {
		svc := &svcs[i]
		o := ownerOf(svc)
		a.hold(heldIP, a.ipOffsets(svc), o, "ip")
		a.hold(heldNP, a.portOffsets(svc), o, "node port")
	}
	now := a.cfg.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.reconcile(a.ip, heldIP, snap, now)
	a.reconcile(a.np, heldNP, snap, now)
	a.synced.Store(true)
	return nil
}

func (a *Allocator) hold(held map[int]owner, offs []int, o owner, what string) {
	for _, off := range offs {
		if prev, dup := held[off]; dup && prev.key != o.key {
			a.log.Error("service "+what+" held by two services", "service", o.key, "other", prev.key)
		}
		held[off] = o
	}
}

func (a *Allocator) reconcile(p *pool, held map[int]owner, snap uint64, now time.Time) {
	for off, o := range held {
		if p.gen[off] > snap {
			continue
		}
		if s := p.slots[off]; s != nil && s.owner == o && s.state == committed {
			continue
		}
		p.set(off, o, committed, now)
	}
	for off, s := range p.slots {
		if p.gen[off] > snap {
			continue
		}
		if _, ok := held[off]; ok {
			continue
		}
		if s.state == pendingAlloc && now.Sub(s.since) < a.cfg.Grace {
			continue
		}
		p.free(off)
	}
	for off, g := range p.gen {
		if g <= snap {
			delete(p.gen, off)
		}
	}
}

func (a *Allocator) ensureSynced(ctx context.Context) error {
	if a.synced.Load() {
		return nil
	}
	if err := a.Repair(ctx); err != nil {
		return err
	}
	return nil
}

func (a *Allocator) touch(p *pool, off int) {
	a.gen++
	p.gen[off] = a.gen
}

// ipOffsets are the in-range ClusterIPs svc holds.
func (a *Allocator) ipOffsets(svc *corev1.Service) []int {
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return nil
	}
	ips := svc.Spec.ClusterIPs
	if len(ips) == 0 && svc.Spec.ClusterIP != "" {
		ips = []string{svc.Spec.ClusterIP}
	}
	var out []int
	for _, s := range ips {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			continue // "None"
		}
		if off, ok := a.ips.Offset(ip); ok {
			out = append(out, off)
		}
	}
	return out
}

// portOffsets are the in-range node ports (and health check port) svc holds.
func (a *Allocator) portOffsets(svc *corev1.Service) []int {
	var out []int
	add := func(port int32) {
		if port != 0 && a.ports.Contains(int(port)) {
			out = append(out, int(port)-a.ports.Base)
		}
	}
	for _, p := range svc.Spec.Ports {
		add(p.NodePort)
	}
	add(svc.Spec.HealthCheckNodePort)
	return out
}

func ownerOf(svc *corev1.Service) owner {
	return owner{key: svc.Namespace + "/" + svc.Name, uid: svc.UID}
}

// Usage reports how many ClusterIPs and node ports are allocated.
func (a *Allocator) Usage() (ips, nodePorts int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.ip.bm.Used(), a.np.bm.Used()
}

// IPAllocated reports whether ip is allocated.
func (a *Allocator) IPAllocated(ip string) bool {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	off, ok := a.ips.Offset(addr)
	if !ok {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.ip.bm.Has(off)
}

// PortAllocated reports whether node port port is allocated.
func (a *Allocator) PortAllocated(port int) bool {
	if !a.ports.Contains(port) {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.np.bm.Has(port - a.ports.Base)
}

var serviceKind = schema.GroupKind{Kind: "Service"}

func invalid(svc *corev1.Service, path *field.Path, value any, msg string) error {
	return apierrors.NewInvalid(serviceKind, svc.Name, field.ErrorList{field.Invalid(path, value, msg)})
}
