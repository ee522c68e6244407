package policy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"time"

	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	netlisters "k8s.io/client-go/listers/networking/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
	"sigs.k8s.io/knftables"
)

// Config configures a Controller. Zero values take the defaults noted.
type Config struct {
	NodeName       string        // required: whose pods are enforced
	Table          string        // DefaultTable
	MinSyncPeriod  time.Duration // 50ms: events within it share a transaction
	FullSyncPeriod time.Duration // 1h: rebuilds the table to clean drift
	RetryPeriod    time.Duration // 1s: after a failed sync
}

// Deps are the controller's collaborators.
type Deps struct {
	Client kubernetes.Interface // required
	// NFT drives the table; nil opens the real one (family ip).
	NFT    knftables.Interface
	Clock  clock.WithTicker // clock.RealClock{}
	Logger *slog.Logger     // slog.Default()
	// OnSync, if set, is called after each applied sync (tests).
	OnSync func(full bool, rs *Ruleset)
}

// Controller keeps the node's policy table in step with the cluster's
// NetworkPolicies, pods and namespaces. Every sync recomputes the whole
// desired Ruleset (cheap: pure and in memory) and writes only its
// difference to the kernel.
type Controller struct {
	cfg     Config
	deps    Deps
	log     *slog.Logger
	applier *Applier
	factory informers.SharedInformerFactory
	pods    corelisters.PodLister
	nss     corelisters.NamespaceLister
	pols    netlisters.NetworkPolicyLister
	synced  []cache.InformerSynced
	signal  chan struct{}

	problems map[string]bool // logged already
}

// New builds a controller with its own informers (all pods, namespaces
// and network policies: peers can be anywhere in the cluster).
func New(cfg Config, deps Deps) (*Controller, error) {
	if cfg.NodeName == "" {
		return nil, errors.New("creating network policy controller: node name is required")
	}
	if deps.Client == nil {
		return nil, errors.New("creating network policy controller: a client is required")
	}
	if cfg.Table == "" {
		cfg.Table = DefaultTable
	}
	if cfg.MinSyncPeriod == 0 {
		cfg.MinSyncPeriod = 50 * time.Millisecond
	}
	if cfg.FullSyncPeriod == 0 {
		cfg.FullSyncPeriod = time.Hour
	}
	if cfg.RetryPeriod == 0 {
		cfg.RetryPeriod = time.Second
	}
	if deps.Clock == nil {
		deps.Clock = clock.RealClock{}
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	if deps.NFT == nil {
		nft, err := knftables.New(knftables.IPv4Family, cfg.Table)
		if err != nil {
			return nil, fmt.Errorf("opening nftables table %s: %w", cfg.Table, err)
		}
		deps.NFT = nft
	}
	c := &Controller{
		cfg:     cfg,
		deps:    deps,
		log:     deps.Logger.With("component", "network-policy", "node", cfg.NodeName),
		applier: NewApplier(deps.NFT, cfg.Table),
		factory: informers.NewSharedInformerFactoryWithOptions(deps.Client, 0, informers.WithTransform(slimPod)),
		signal:  make(chan struct{}, 1),
	}
	podInf := c.factory.Core().V1().Pods()
	nsInf := c.factory.Core().V1().Namespaces()
	polInf := c.factory.Networking().V1().NetworkPolicies()
	poke := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { c.poke() },
		UpdateFunc: func(any, any) { c.poke() },
		DeleteFunc: func(any) { c.poke() },
	}
	// Pods change status often; only what policy reads is worth a sync.
	podHandler := cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { c.poke() },
		UpdateFunc: func(o, n any) {
			op, ok1 := o.(*v1.Pod)
			np, ok2 := n.(*v1.Pod)
			if !ok1 || !ok2 || podChanged(op, np) {
				c.poke()
			}
		},
		DeleteFunc: func(any) { c.poke() },
	}
	for _, h := range []struct {
		inf     cache.SharedIndexInformer
		handler cache.ResourceEventHandler
	}{{podInf.Informer(), podHandler}, {nsInf.Informer(), poke}, {polInf.Informer(), poke}} {
		if _, err := h.inf.AddEventHandler(h.handler); err != nil {
			return nil, fmt.Errorf("adding event handler: %w", err)
		}
		c.synced = append(c.synced, h.inf.HasSynced)
	}
	c.pods, c.nss, c.pols = podInf.Lister(), nsInf.Lister(), polInf.Lister()
	return c, nil
}

// slimPod keeps of a pod only what Compute and podChanged read: every
// agent caches every pod of the cluster, so the rest (managed fields,
// statuses, volumes, env) would cost memory for nothing.
func slimPod(obj any) (any, error) {
	p, ok := obj.(*v1.Pod)
	if !ok {
		return obj, nil
	}
	slim := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: p.Name, Namespace: p.Namespace, UID: p.UID, Labels: p.Labels,
			ResourceVersion: p.ResourceVersion, DeletionTimestamp: p.DeletionTimestamp,
		},
		Spec:   v1.PodSpec{NodeName: p.Spec.NodeName, HostNetwork: p.Spec.HostNetwork},
		Status: v1.PodStatus{Phase: p.Status.Phase, PodIP: p.Status.PodIP, PodIPs: p.Status.PodIPs},
	}
	ports := func(cs []v1.Container) []v1.Container {
		var out []v1.Container
		for _, c := range cs {
			if len(c.Ports) > 0 {
				out = append(out, v1.Container{Name: c.Name, Ports: c.Ports})
			}
		}
		return out
	}
	slim.Spec.Containers, slim.Spec.InitContainers = ports(p.Spec.Containers), ports(p.Spec.InitContainers)
	return slim, nil
}

// podChanged reports whether an update changes anything Compute reads.
func podChanged(o, n *v1.Pod) bool {
	return o.Spec.NodeName != n.Spec.NodeName || o.Spec.HostNetwork != n.Spec.HostNetwork ||
		o.Status.Phase != n.Status.Phase || o.Status.PodIP != n.Status.PodIP ||
		!reflect.DeepEqual(o.Status.PodIPs, n.Status.PodIPs) || !reflect.DeepEqual(o.Labels, n.Labels) ||
		!reflect.DeepEqual(o.Spec.Containers, n.Spec.Containers) // only ports are kept (slimPod)
}

func (c *Controller) poke() {
	select {
	case c.signal <- struct{}{}:
	default:
	}
}

// Run starts the informers, rebuilds the table, then applies changes as
// they come until ctx ends. On exit the table stays while it isolates any
// pod, so pods stay isolated across an agent restart (the next Run
// rebuilds it); a table that isolates nothing is removed, leaving the host
// as it was.
func (c *Controller) Run(ctx context.Context) error {
	c.factory.Start(ctx.Done())
	defer c.factory.Shutdown()
	defer c.cleanup()
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		return nil // stopped before the caches filled: nothing was changed
	}
	clk := c.deps.Clock
	full := clk.NewTicker(c.cfg.FullSyncPeriod)
	defer full.Stop()
	var retry <-chan time.Time
	try := func(full bool, what string) {
		if err := c.sync(ctx, full); err != nil {
			c.log.Error(what+" failed", "err", err)
			retry = clk.After(c.cfg.RetryPeriod)
		}
	}
	try(true, "initial sync")
	if retry == nil {
		c.log.Info("enforcing network policies", "table", c.cfg.Table)
	}
	last := clk.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-full.C():
			try(true, "full sync")
		case <-retry:
			retry = nil
			try(false, "retried sync")
		case <-c.signal:
			// Coalesce a burst of events into one transaction.
			if wait := c.cfg.MinSyncPeriod - clk.Since(last); wait > 0 {
				select {
				case <-ctx.Done():
					return nil
				case <-clk.After(wait):
				}
			}
			try(false, "sync")
		}
		last = clk.Now()
	}
}

func (c *Controller) cleanup() {
	rs := c.applier.applied
	if rs == nil || len(rs.Ingress) > 0 || len(rs.Egress) > 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.applier.Delete(ctx); err != nil {
		c.log.Warn("removing the unused policy table", "err", err)
	}
}

// sync computes the desired rules from the caches and applies them.
func (c *Controller) sync(ctx context.Context, full bool) error {
	start := c.deps.Clock.Now()
	in := Input{NodeName: c.cfg.NodeName}
	var err error
	if in.Pods, err = c.pods.List(labels.Everything()); err != nil {
		return fmt.Errorf("listing pods: %w", err)
	}
	if in.Namespaces, err = c.nss.List(labels.Everything()); err != nil {
		return fmt.Errorf("listing namespaces: %w", err)
	}
	var pols []*networkingv1.NetworkPolicy
	if pols, err = c.pols.List(labels.Everything()); err != nil {
		return fmt.Errorf("listing network policies: %w", err)
	}
	in.Policies = pols
	rs := Compute(in)
	seen := map[string]bool{}
	for _, p := range rs.Problems {
		if !c.problems[p] {
			c.log.Warn("network policy partly ignored", "problem", p)
		}
		seen[p] = true
	}
	c.problems = seen
	ops, wasFull, err := c.applier.Apply(ctx, rs, full)
	if err != nil {
		return err
	}
	if ops > 0 {
		c.log.Debug("network policy synced", "full", wasFull, "operations", ops,
			"isolatedIngress", len(rs.Ingress), "isolatedEgress", len(rs.Egress), "took", c.deps.Clock.Since(start))
	}
	if c.deps.OnSync != nil {
		c.deps.OnSync(wasFull, rs)
	}
	return nil
}
