package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/vishvananda/netlink"
	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"skiff.dev/skiff/internal/dns"
	"skiff.dev/skiff/internal/proxy"
)

// ServiceNetworkConfig configures the node's service networking: the
// service proxy (internal/proxy), the node's own NAT (egress masquerade,
// hostPorts) and the cluster DNS server (internal/dns).
type ServiceNetworkConfig struct {
	// Disable runs none of it (a node whose services are handled by
	// something else, or tests of other parts).
	Disable bool
	// ClusterCIDR is every pod network of the cluster (default
	// 10.42.0.0/16): pod-to-pod traffic is never NATed, everything else
	// from this node's pods leaves masqueraded.
	ClusterCIDR string
	// ProxyTable and NodeTable name the nftables tables (default
	// skiff-proxy and skiff-node); tests running several nodes in one
	// network namespace give each its own.
	ProxyTable, NodeTable string
	// ProxyShards spreads services over this many tables (ProxyTable-0 …;
	// default DefaultProxyShards): see proxy.Config.Shards.
	ProxyShards int
	// DNSPort is where the node's DNS server listens on the pod bridge's
	// address (default 53; when taken, a free port is used: the
	// EndpointSlice carries the real one).
	DNSPort int
	// ClusterDomain defaults to cluster.local.
	ClusterDomain string
	// ResolvConf lists the upstream resolvers (default /etc/resolv.conf).
	ResolvConf string
	// KeepTablesOnStop leaves the nftables tables in place when the agent
	// stops, as kube-proxy does, so services keep working for pods that
	// outlive an agent restart. By default they are removed: a stopped
	// node leaves no NAT behind (new service connections fail until the
	// agent is back and has synced, about a second; established ones keep
	// their conntrack NAT).
	KeepTablesOnStop bool
}

// DefaultProxyShards keeps a one-service change at 10,000 services cheap
// for the kernel (bench/proxy/RESULTS.md) at the price of eight map
// lookups on a connection's first packet.
const DefaultProxyShards = 8

// DNSServiceNamespace and DNSServiceName name the cluster DNS service
// the API server creates at bootstrap (internal/server).
const (
	DNSServiceNamespace = "kube-system"
	DNSServiceName      = "kube-dns"
	dnsSliceManager     = "skiff-agent"
)

// DNSSliceName is the EndpointSlice of kube-dns that node's agent owns.
func DNSSliceName(node string) string { return DNSServiceName + "-" + node }

// startServiceNetwork starts the proxy, the node NAT and the DNS server
// and returns the cluster DNS address pods should use ("" when the
// cluster has no kube-dns service) and a stop function that ends them and
// removes their tables (see KeepTablesOnStop). Configuration errors are
// returned;
// a component failing at run time is logged, never fatal: the node's pods
// matter more.
//
// Cluster DNS is node-local: each agent serves DNS on its pod bridge's
// address and publishes it as an EndpointSlice of the selectorless
// kube-dns service, whose internalTrafficPolicy Local makes the proxy send
// a pod's queries to its own node. The DNS server listens on the bridge
// only, so it is no open resolver on the node's external addresses.
func (a *Agent) startServiceNetwork(parent context.Context, client kubernetes.Interface, podCIDR netip.Prefix) (string, func(), error) {
	sc := a.cfg.ServiceNetwork
	if sc.Disable {
		a.log.Info("service networking disabled on this node")
		return "", func() {}, nil
	}
	ctx, cancel := context.WithCancel(parent)
	var wg sync.WaitGroup
	stop := func() {
		cancel()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			a.log.Warn("service networking did not stop within 10s")
		}
		if !sc.KeepTablesOnStop {
			removeTables(a, append(proxy.ShardTables(sc.ProxyTable, sc.ProxyShards), orDefault(sc.NodeTable, proxy.DefaultNodeTable)))
		}
	}
	clusterDNS, err := a.startServiceNetworkIn(ctx, &wg, &sc, client, podCIDR)
	if err != nil {
		cancel()
		return "", nil, err
	}
	return clusterDNS, stop, nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// removeTables deletes the agent's nftables tables (best effort).
func removeTables(a *Agent, tables []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, t := range tables {
		out, err := exec.CommandContext(ctx, "nft", "delete", "table", "ip", t).CombinedOutput()
		if err != nil && !strings.Contains(string(out), "No such file or directory") {
			a.log.Warn("removing nftables table", "table", t, "err", err, "output", strings.TrimSpace(string(out)))
		}
	}
}

func (a *Agent) startServiceNetworkIn(ctx context.Context, wg *sync.WaitGroup, sc *ServiceNetworkConfig, client kubernetes.Interface, podCIDR netip.Prefix) (string, error) {
	if sc.ClusterCIDR == "" {
		sc.ClusterCIDR = "10.42.0.0/16"
	}
	clusterCIDR, err := netip.ParsePrefix(sc.ClusterCIDR)
	if err != nil {
		return "", fmt.Errorf("parsing cluster cidr: %w", err)
	}
	if sc.ProxyShards == 0 {
		sc.ProxyShards = DefaultProxyShards
	}
	if sc.DNSPort == 0 {
		sc.DNSPort = 53
	}
	if sc.ResolvConf == "" {
		sc.ResolvConf = "/etc/resolv.conf"
	}
	for _, s := range []struct{ path, value string }{
		{"/proc/sys/net/ipv4/ip_forward", "1"},
		// Pods on one bridge talk at layer 2: without this, a reply from
		// a service endpoint to a client on the same bridge would skip
		// the reverse NAT.
		{"/proc/sys/net/bridge/bridge-nf-call-iptables", "1"},
	} {
		if err := os.WriteFile(s.path, []byte(s.value), 0o644); err != nil {
			a.log.Warn("setting sysctl for service networking (load br_netfilter?)", "path", s.path, "err", err)
		}
	}

	factory := informers.NewSharedInformerFactory(client, 0)
	var nodeIPs []netip.Addr
	if ip, err := netip.ParseAddr(a.cfg.NodeIP); err == nil {
		nodeIPs = append(nodeIPs, ip)
	}
	prox, err := proxy.New(proxy.Config{Table: sc.ProxyTable, Shards: sc.ProxyShards, ClusterCIDRs: []netip.Prefix{clusterCIDR}}, client, factory, a.cfg.NodeName, nodeIPs, a.log)
	if err != nil {
		return "", fmt.Errorf("creating service proxy: %w", err)
	}
	nat, err := proxy.NewNode(proxy.NodeConfig{Table: sc.NodeTable, NodeName: a.cfg.NodeName,
		Rules: proxy.NodeRules{PodCIDR: podCIDR, ClusterCIDRs: []netip.Prefix{clusterCIDR}}}, factory, a.log)
	if err != nil {
		return "", fmt.Errorf("creating node nat: %w", err)
	}
	wg.Go(func() {
		if err := prox.Run(ctx); err != nil {
			a.log.Error("service proxy stopped", "err", err)
		}
	})
	wg.Go(func() {
		if err := nat.Run(ctx); err != nil {
			a.log.Error("node nat stopped", "err", err)
		}
	})

	svc, err := client.CoreV1().Services(DNSServiceNamespace).Get(ctx, DNSServiceName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		a.log.Warn("no kube-system/kube-dns service: cluster DNS is off on this node")
		return "", nil
	}
	if err != nil {
		a.log.Error("cluster DNS is off on this node: getting the kube-dns service", "err", err)
		return "", nil
	}
	clusterDNS := svc.Spec.ClusterIP

	gw := podCIDR.Masked().Addr().Next()
	if err := ensureBridge(a.cfg.Bridge, netip.PrefixFrom(gw, podCIDR.Bits())); err != nil {
		a.log.Error("cluster DNS is off on this node: preparing the pod bridge for it", "err", err)
		return clusterDNS, nil
	}
	addr := net.JoinHostPort(gw.String(), strconv.Itoa(sc.DNSPort))
	if !portFree(addr) {
		a.log.Warn("dns port taken on the pod bridge; using a free one", "addr", addr)
		addr = net.JoinHostPort(gw.String(), "0")
	}
	srv, err := dns.New(dns.Config{
		ListenAddrs: []string{addr},
		Domain:      sc.ClusterDomain,
		Upstreams:   upstreamResolvers(sc.ResolvConf),
		ResolvConf:  sc.ResolvConf,
	}, factory, a.log.With("component", "dns"))
	if err != nil {
		a.log.Error("cluster DNS is off on this node", "err", err)
		return clusterDNS, nil
	}
	wg.Go(func() {
		if err := srv.Run(ctx); err != nil {
			a.log.Error("dns server stopped", "err", err)
		}
	})
	wg.Go(func() { a.publishDNS(ctx, client, srv, gw) })
	return clusterDNS, nil
}

// ensureBridge creates the pod bridge with its gateway address if the CNI
// bridge plugin has not yet (it does on the first pod, and accepts the
// bridge and address found), so the DNS server can bind there at once.
func ensureBridge(name string, gw netip.Prefix) error {
	link, err := netlink.LinkByName(name)
	var notFound netlink.LinkNotFoundError
	if errors.As(err, &notFound) {
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("creating bridge %s: %w", name, err)
		}
		link, err = netlink.LinkByName(name)
	}
	if err != nil {
		return fmt.Errorf("finding bridge %s: %w", name, err)
	}
	ipn := &net.IPNet{IP: gw.Addr().AsSlice(), Mask: net.CIDRMask(gw.Bits(), 32)}
	if err := netlink.AddrReplace(link, &netlink.Addr{IPNet: ipn}); err != nil {
		return fmt.Errorf("adding %s to bridge %s: %w", gw, name, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("bringing bridge %s up: %w", name, err)
	}
	return nil
}

// portFree reports whether addr can be bound over UDP and TCP.
func portFree(addr string) bool {
	u, err := net.ListenPacket("udp", addr)
	if err != nil {
		return false
	}
	defer u.Close()
	t, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	t.Close()
	return true
}

// upstreamResolvers are the host's resolvers for names outside the
// cluster: those of resolvConf without loopback stubs (systemd-resolved's
// 127.0.0.53 names its real upstreams in /run/systemd/resolve/resolv.conf).
// When only loopback resolvers exist they are kept: the DNS server runs
// in the host's network namespace, where they answer. nil lets the DNS
// server read resolvConf itself (and log that it is unusable).
func upstreamResolvers(resolvConf string) []string {
	read := func(path string) (servers, loopback []string) {
		rc, err := mdns.ClientConfigFromFile(path)
		if err != nil {
			return nil, nil
		}
		for _, s := range rc.Servers {
			hp := net.JoinHostPort(s, rc.Port)
			if a, err := netip.ParseAddr(s); err == nil && a.IsLoopback() {
				loopback = append(loopback, hp)
				continue
			}
			servers = append(servers, hp)
		}
		return servers, loopback
	}
	servers, loopback := read(resolvConf)
	if len(servers) > 0 {
		return servers
	}
	if s, _ := read("/run/systemd/resolve/resolv.conf"); len(s) > 0 {
		return s
	}
	return loopback
}

// publishDNS keeps kube-system/kube-dns-<node> pointing at this node's
// DNS server: written once the server is ready, then checked every
// resync (someone may delete it), and retried quickly on failure. The
// slice is owned by the Node, so deleting the node removes it.
func (a *Agent) publishDNS(ctx context.Context, client kubernetes.Interface, srv *dns.Server, gw netip.Addr) {
	select {
	case <-ctx.Done():
		return
	case <-srv.Ready():
	}
	udp := srv.UDPAddrs()
	if len(udp) == 0 {
		return
	}
	port := int32(udp[0].(*net.UDPAddr).Port)
	wait := time.Second
	for {
		err := a.ensureDNSSlice(ctx, client, gw, port)
		if err != nil {
			if apierrors.IsNotFound(err) {
				a.log.Debug("waiting for the node to register before publishing its dns endpoint", "err", err)
			} else {
				a.log.Warn("publishing this node's dns endpoint", "err", err)
			}
			wait = min(2*wait, 5*time.Second)
		} else {
			wait = 30 * time.Second
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// DNSSlice is the EndpointSlice that publishes node's DNS server.
func DNSSlice(node *v1.Node, addr netip.Addr, port int32) *discovery.EndpointSlice {
	return &discovery.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name: DNSSliceName(node.Name), Namespace: DNSServiceNamespace,
			Labels: map[string]string{
				discovery.LabelServiceName: DNSServiceName,
				discovery.LabelManagedBy:   dnsSliceManager,
			},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID}},
		},
		AddressType: discovery.AddressTypeIPv4,
		Endpoints: []discovery.Endpoint{{
			Addresses:  []string{addr.String()},
			Conditions: discovery.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)},
			NodeName:   ptr.To(node.Name),
		}},
		Ports: []discovery.EndpointPort{
			{Name: ptr.To("dns"), Protocol: ptr.To(v1.ProtocolUDP), Port: ptr.To(port)},
			{Name: ptr.To("dns-tcp"), Protocol: ptr.To(v1.ProtocolTCP), Port: ptr.To(port)},
		},
	}
}

func (a *Agent) ensureDNSSlice(ctx context.Context, client kubernetes.Interface, gw netip.Addr, port int32) error {
	node, err := client.CoreV1().Nodes().Get(ctx, a.cfg.NodeName, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("getting node %s (registered by the kubelet): %w", a.cfg.NodeName, err)
	}
	want := DNSSlice(node, gw, port)
	slices := client.DiscoveryV1().EndpointSlices(DNSServiceNamespace)
	cur, err := slices.Get(ctx, want.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		if _, err := slices.Create(ctx, want, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating endpointslice %s: %w", want.Name, err)
		}
		a.log.Info("published this node's dns server", "addr", gw, "port", port)
		return nil
	}
	if err != nil {
		return fmt.Errorf("getting endpointslice %s: %w", want.Name, err)
	}
	if sameDNSSlice(cur, want) {
		return nil
	}
	upd := cur.DeepCopy()
	upd.Labels, upd.OwnerReferences = want.Labels, want.OwnerReferences
	upd.AddressType, upd.Endpoints, upd.Ports = want.AddressType, want.Endpoints, want.Ports
	if _, err := slices.Update(ctx, upd, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("updating endpointslice %s: %w", want.Name, err)
	}
	a.log.Info("updated this node's dns endpoint", "addr", gw, "port", port)
	return nil
}

func sameDNSSlice(a, b *discovery.EndpointSlice) bool {
	eq := equality.Semantic.DeepEqual
	return eq(a.Labels, b.Labels) && eq(a.OwnerReferences, b.OwnerReferences) && a.AddressType == b.AddressType &&
		eq(a.Endpoints, b.Endpoints) && eq(a.Ports, b.Ports)
}
