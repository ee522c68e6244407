package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/knftables"

	"skiff.dev/skiff/internal/proxy/nftables"
)

// DefaultNodeTable is the nftables table of the node's own NAT.
const DefaultNodeTable = "skiff-node"

// HostPort is one container port published on the node (a containerPort
// with hostPort): traffic to HostIP:HostPort, or to any node address
// when HostIP is empty, goes to PodIP:PodPort.
type HostPort struct {
	Protocol v1.Protocol
	HostIP   string
	HostPort int32
	PodIP    string
	PodPort  int32
	Pod      string // namespace/name, for logs and conflicts
}

// HostPortsOf lists the hostPorts of the pods bound to nodeName that have
// an IPv4 address and have not finished. hostNetwork pods bind the node's
// ports themselves and need no NAT. Two pods claiming the same protocol,
// host IP and port (the scheduler should prevent it) keep the older
// claim. The result is sorted, so rendering is stable.
func HostPortsOf(nodeName string, pods []*v1.Pod) []HostPort {
	sorted := make([]*v1.Pod, 0, len(pods))
	for _, p := range pods {
		if p.Spec.NodeName != nodeName || p.Spec.HostNetwork ||
			p.Status.Phase == v1.PodSucceeded || p.Status.Phase == v1.PodFailed {
			continue
		}
		if a, err := netip.ParseAddr(p.Status.PodIP); err != nil || !a.Is4() {
			continue
		}
		sorted = append(sorted, p)
	}
	sort.Slice(sorted, func(i, j int) bool {
		a, b := sorted[i].CreationTimestamp, sorted[j].CreationTimestamp
		if !a.Equal(&b) {
			return a.Before(&b)
		}
		return sorted[i].Namespace+"/"+sorted[i].Name < sorted[j].Namespace+"/"+sorted[j].Name
	})
	claimed := map[string]bool{}
	var out []HostPort
	for _, p := range sorted {
		for _, c := range p.Spec.Containers {
			for _, cp := range c.Ports {
				if cp.HostPort <= 0 {
					continue
				}
				hostIP := cp.HostIP
				if hostIP == "0.0.0.0" {
					hostIP = ""
				}
				if hostIP != "" {
					if a, err := netip.ParseAddr(hostIP); err != nil || !a.Is4() {
						continue
					}
				}
				hp := HostPort{Protocol: protocolOf(cp.Protocol), HostIP: hostIP, HostPort: cp.HostPort,
					PodIP: p.Status.PodIP, PodPort: cp.ContainerPort, Pod: p.Namespace + "/" + p.Name}
				id := string(hp.Protocol) + "/" + hostIP + "/" + strconv.Itoa(int(hp.HostPort))
				wild := string(hp.Protocol) + "//" + strconv.Itoa(int(hp.HostPort))
				if claimed[id] || claimed[wild] {
					continue
				}
				claimed[id] = true
				out = append(out, hp)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.HostPort != b.HostPort {
			return a.HostPort < b.HostPort
		}
		if a.Protocol != b.Protocol {
			return a.Protocol < b.Protocol
		}
		return a.HostIP < b.HostIP
	})
	return out
}

// NodeRules renders the node's own NAT table: masquerading of pod traffic
// leaving the cluster network, and hostPorts. It is pure.
type NodeRules struct {
	// PodCIDR is this node's pod network: its pods' traffic to anything
	// outside ClusterCIDRs leaves with the node's address.
	PodCIDR netip.Prefix
	// ClusterCIDRs are every pod network of the cluster: traffic between
	// pods is never NATed. Empty means PodCIDR alone.
	ClusterCIDRs []netip.Prefix
}

// Table returns the whole node table for the given hostPorts.
//
// HostPorts are DNATed in prerouting (from pods and other machines) and
// output (from the node itself to one of its addresses), never for
// 127.0.0.0/8: a packet from loopback cannot be routed to a pod, which is
// upstream's portmap behaviour too. A pod reaching its own hostPort is
// masqueraded, or its reply would skip the reverse NAT.
func (r *NodeRules) Table(hostPorts []HostPort) *nftables.Base {
	b := &nftables.Base{}
	base := func(name string, typ knftables.BaseChainType, hook knftables.BaseChainHook, prio knftables.BaseChainPriority, rules ...string) {
		b.Chains = append(b.Chains, nftables.Chain{Name: name, Type: typ, Hook: hook, Priority: prio, Rules: rules})
	}
	cluster := r.ClusterCIDRs
	if len(cluster) == 0 && r.PodCIDR.IsValid() {
		cluster = []netip.Prefix{r.PodCIDR.Masked()}
	}
	var dnat, snat []string
	hairpin := map[string]bool{}
	for _, hp := range hostPorts {
		proto := strings.ToLower(string(hp.Protocol))
		match := "fib daddr type local ip daddr != 127.0.0.0/8"
		if hp.HostIP != "" {
			match = "ip daddr " + hp.HostIP
		}
		dnat = append(dnat, fmt.Sprintf("%s %s dport %d dnat to %s:%d", match, proto, hp.HostPort, hp.PodIP, hp.PodPort))
		if !hairpin[hp.PodIP] {
			hairpin[hp.PodIP] = true
			snat = append(snat, fmt.Sprintf("ct status dnat ip saddr %s ip daddr %s masquerade", hp.PodIP, hp.PodIP))
		}
	}
	if r.PodCIDR.IsValid() && len(cluster) > 0 {
		snat = append(snat, fmt.Sprintf("ip saddr %s ip daddr != %s masquerade fully-random", r.PodCIDR.Masked(), cidrSet(cluster)))
	}
	b.Chains = append(b.Chains, nftables.Chain{Name: "hostports", Rules: dnat})
	base("nat-prerouting", knftables.NATType, knftables.PreroutingHook, knftables.DNATPriority, "jump hostports")
	base("nat-output", knftables.NATType, knftables.OutputHook, knftables.DNATPriority, "jump hostports")
	base("nat-postrouting", knftables.NATType, knftables.PostroutingHook, knftables.SNATPriority, snat...)
	return b
}

// NodeConfig configures a Node.
type NodeConfig struct {
	Table    string // DefaultNodeTable
	NodeName string
	Rules    NodeRules
	// NFT drives the table; nil creates a real one with knftables.New.
	NFT           knftables.Interface
	MinSyncPeriod time.Duration // 50ms: pod changes within it share a rewrite
	RetryPeriod   time.Duration // 1s: after a failed rewrite
	// OnSync, if set, is called after each applied rewrite (tests).
	OnSync func(hostPorts []HostPort)
}

// Node keeps the node table in step with the pods bound to the node. The
// table is tiny (a few rules per hostPort), so every change rewrites it
// whole in one atomic transaction; established flows keep their NAT in
// conntrack.
type Node struct {
	cfg     NodeConfig
	applier *nftables.Applier
	pods    corelisters.PodLister
	synced  cache.InformerSynced
	factory informers.SharedInformerFactory
	log     *slog.Logger
	signal  chan struct{}
	last    string
}

// NewNode builds the node NAT for cfg.NodeName from factory's pod
// informer (all pods, or only this node's: both work). Run starts the
// factory.
func NewNode(cfg NodeConfig, factory informers.SharedInformerFactory, logger *slog.Logger) (*Node, error) {
	if cfg.Table == "" {
		cfg.Table = DefaultNodeTable
	}
	if cfg.MinSyncPeriod == 0 {
		cfg.MinSyncPeriod = 50 * time.Millisecond
	}
	if cfg.RetryPeriod == 0 {
		cfg.RetryPeriod = time.Second
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
	n := &Node{
		cfg:     cfg,
		applier: nftables.New(cfg.NFT, knftables.IPv4Family, cfg.Table),
		factory: factory,
		log:     logger.With("component", "node-nat", "node", cfg.NodeName),
		signal:  make(chan struct{}, 1),
	}
	inf := factory.Core().V1().Pods()
	n.pods = inf.Lister()
	relevant := func(o any) bool {
		p, ok := tombstone(o).(*v1.Pod)
		return !ok || p.Spec.NodeName == cfg.NodeName
	}
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { n.pokeIf(relevant(o)) },
		UpdateFunc: func(_, o any) { n.pokeIf(relevant(o)) },
		DeleteFunc: func(o any) { n.pokeIf(relevant(o)) },
	}); err != nil {
		return nil, fmt.Errorf("adding pod handler: %w", err)
	}
	n.synced = inf.Informer().HasSynced
	return n, nil
}

func (n *Node) pokeIf(ok bool) {
	if !ok {
		return
	}
	select {
	case n.signal <- struct{}{}:
	default:
	}
}

// Run writes the table, then rewrites it when the node's pods change,
// until ctx ends. The table stays on exit: pods keep their egress and
// hostPorts across an agent restart.
func (n *Node) Run(ctx context.Context) error {
	n.factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), n.synced) {
		return fmt.Errorf("waiting for the pod cache: %w", ctx.Err())
	}
	var retry <-chan time.Time
	sync := func() {
		if err := n.sync(ctx); err != nil {
			n.log.Error("writing node nat table", "err", err)
			retry = time.After(n.cfg.RetryPeriod)
		}
	}
	sync()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-retry:
			retry = nil
			sync()
		case <-n.signal:
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(n.cfg.MinSyncPeriod):
			}
			sync()
		}
	}
}

func (n *Node) sync(ctx context.Context) error {
	pods, err := n.pods.List(labels.Everything())
	if err != nil {
		return fmt.Errorf("listing pods: %w", err)
	}
	hps := HostPortsOf(n.cfg.NodeName, pods)
	table := n.cfg.Rules.Table(hps)
	// Pod churn without hostPort changes leaves the table as it is.
	key := fmt.Sprint(*table)
	if key == n.last && !n.applier.NeedsFullSync() {
		return nil
	}
	if _, err := n.applier.FullSync(ctx, table, nil); err != nil {
		return err
	}
	n.last = key
	n.log.Debug("node nat table written", "hostPorts", len(hps))
	if n.cfg.OnSync != nil {
		n.cfg.OnSync(hps)
	}
	return nil
}
