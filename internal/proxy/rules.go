package proxy

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	"sigs.k8s.io/knftables"

	"skiff.dev/skiff/internal/proxy/nftables"
)

// Names of the shared objects in skiff's table.
const (
	mapServiceIPs          = "service-ips"
	mapServiceNodePorts    = "service-nodeports"
	mapNoEndpointServices  = "no-endpoint-services"
	mapNoEndpointNodePorts = "no-endpoint-nodeports"
	setHairpin             = "hairpin"

	chainServices         = "services"
	chainMarkMasq         = "mark-for-masquerade"
	chainMasquerading     = "masquerading"
	chainReject           = "reject-chain"
	chainEndpointsCheck   = "service-endpoints-check"
	chainNodePortsCheck   = "nodeport-endpoints-check"
	defaultMasqueradeMark = 0x4000
)

// Rules renders Kubernetes Services and EndpointSlices as nftables objects
// for one node. It is pure: the same inputs always give the same output.
type Rules struct {
	// NodeName selects local endpoints for the Local traffic policies.
	NodeName string
	// ClusterCIDRs are the pod networks; traffic to a ClusterIP from outside
	// them is masqueraded so replies come back through this node. Empty
	// means no such masquerading (as upstream without a local detector).
	ClusterCIDRs []netip.Prefix
	// MasqueradeAll masquerades all traffic to ClusterIPs.
	MasqueradeAll bool
	// MasqueradeMark is the packet mark bit that asks for masquerade.
	MasqueradeMark uint32
}

func (r *Rules) mark() string {
	m := r.MasqueradeMark
	if m == 0 {
		m = defaultMasqueradeMark
	}
	return fmt.Sprintf("0x%08x", m)
}

// Base returns the table skeleton: verdict maps, the hooked base chains
// and the helper chains every service refers to.
func (r *Rules) Base() *nftables.Base {
	key := "ipv4_addr . inet_proto . inet_service : verdict"
	npKey := "inet_proto . inet_service : verdict"
	b := &nftables.Base{
		Sets: []nftables.Set{
			{Name: mapServiceIPs, Map: true, Type: key},
			{Name: mapServiceNodePorts, Map: true, Type: npKey},
			{Name: mapNoEndpointServices, Map: true, Type: key},
			{Name: mapNoEndpointNodePorts, Map: true, Type: npKey},
			{Name: setHairpin, Type: "ipv4_addr . ipv4_addr"},
		},
	}
	base := func(name string, typ knftables.BaseChainType, hook knftables.BaseChainHook, prio knftables.BaseChainPriority, rules ...string) {
		b.Chains = append(b.Chains, nftables.Chain{Name: name, Type: typ, Hook: hook, Priority: prio, Rules: rules})
	}
	chain := func(name string, rules ...string) {
		b.Chains = append(b.Chains, nftables.Chain{Name: name, Rules: rules})
	}
	base("nat-prerouting", knftables.NATType, knftables.PreroutingHook, knftables.DNATPriority, "jump "+chainServices)
	base("nat-output", knftables.NATType, knftables.OutputHook, knftables.DNATPriority, "jump "+chainServices)
	base("nat-postrouting", knftables.NATType, knftables.PostroutingHook, knftables.SNATPriority, "jump "+chainMasquerading)
	// Filter hooks run after dstnat, so a packet still addressed to a
	// service here had no endpoint to go to.
	base("filter-input", knftables.FilterType, knftables.InputHook, knftables.FilterPriority,
		"ct state new jump "+chainNodePortsCheck, "ct state new jump "+chainEndpointsCheck)
	base("filter-forward", knftables.FilterType, knftables.ForwardHook, knftables.FilterPriority,
		"ct state new jump "+chainEndpointsCheck)
	base("filter-output", knftables.FilterType, knftables.OutputHook, knftables.FilterPriority,
		"ct state new jump "+chainNodePortsCheck, "ct state new jump "+chainEndpointsCheck)

	chain(chainServices,
		"ip daddr . meta l4proto . th dport vmap @"+mapServiceIPs,
		"fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @"+mapServiceNodePorts)
	chain(chainMarkMasq, "meta mark set meta mark | "+r.mark())
	chain(chainMasquerading,
		// A pod reaching itself through a service must see the node as
		// the client, or its reply would skip the reverse NAT.
		"ct status dnat ip saddr . ip daddr @"+setHairpin+" masquerade fully-random",
		"meta mark & "+r.mark()+" == 0 return",
		"meta mark set meta mark ^ "+r.mark(),
		"masquerade fully-random")
	chain(chainReject, "meta l4proto tcp reject with tcp reset", "reject with icmp type port-unreachable")
	chain(chainEndpointsCheck, "ip daddr . meta l4proto . th dport vmap @"+mapNoEndpointServices)
	chain(chainNodePortsCheck,
		"fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @"+mapNoEndpointNodePorts)
	return b
}

// endpoint is one usable backend of one service port.
type endpoint struct {
	IP    string
	Port  int32
	Local bool
	// Remote: the endpoint names another node. Only endpoints that may be
	// on this node (local, or without a node name) can be a hairpin
	// client: a remote pod's traffic to a service is DNATed on its own
	// node.
	Remote bool
	// ready, serving, terminating as the EndpointSlice conditions, nil
	// ready meaning ready and nil serving meaning "same as ready".
	Ready, Serving, Terminating bool
}

func (e endpoint) String() string { return e.IP + "/" + strconv.Itoa(int(e.Port)) }

// portInfo is what the proxy knows about one service port after rendering;
// the proxier keeps it to find stale conntrack entries.
type portInfo struct {
	Protocol v1.Protocol
	Port     int32
	NodePort int32
	IPs      []string // ClusterIP and load balancer IPs
	// Endpoints are the endpoints traffic may be sent to ("ip/port").
	Endpoints map[string]bool
}

// ServiceInfo summarises a rendered service.
type ServiceInfo struct {
	Ports map[string]*portInfo // by port id
}

// usable reports whether a service is handled by the proxy at all.
func usable(svc *v1.Service) bool {
	if svc == nil || svc.Spec.Type == v1.ServiceTypeExternalName {
		return false
	}
	ip := svc.Spec.ClusterIP
	if ip == "" || ip == v1.ClusterIPNone {
		return false
	}
	a, err := netip.ParseAddr(ip)
	return err == nil && a.Is4()
}

// Service renders one service and its EndpointSlices. A nil unit means
// the proxy has nothing to do for it (nil service, ExternalName,
// headless, or not IPv4).
func (r *Rules) Service(svc *v1.Service, slices []*discovery.EndpointSlice) (*nftables.Unit, *ServiceInfo) {
	if !usable(svc) {
		return nil, nil
	}
	u := &nftables.Unit{}
	info := &ServiceInfo{Ports: map[string]*portInfo{}}
	var lbIPs []string
	for _, ing := range svc.Status.LoadBalancer.Ingress {
		if a, err := netip.ParseAddr(ing.IP); err == nil && a.Is4() {
			lbIPs = append(lbIPs, a.String())
		}
	}
	external := svc.Spec.Type == v1.ServiceTypeNodePort || svc.Spec.Type == v1.ServiceTypeLoadBalancer
	if svc.Spec.Type != v1.ServiceTypeLoadBalancer {
		lbIPs = nil
	}
	etpLocal := external && svc.Spec.ExternalTrafficPolicy == v1.ServiceExternalTrafficPolicyLocal
	itpLocal := svc.Spec.InternalTrafficPolicy != nil && *svc.Spec.InternalTrafficPolicy == v1.ServiceInternalTrafficPolicyLocal
	var affinity time.Duration
	if svc.Spec.SessionAffinity == v1.ServiceAffinityClientIP {
		affinity = 10800 * time.Second
		if c := svc.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
			affinity = time.Duration(*c.ClientIP.TimeoutSeconds) * time.Second
		}
	}

	for _, sp := range svc.Spec.Ports {
		proto := strings.ToLower(string(protocolOf(sp.Protocol)))
		pname := sp.Name
		if pname == "" {
			pname = strconv.Itoa(int(sp.Port))
		}
		id := svc.Namespace + "/" + svc.Name + "/" + proto + "/" + pname
		eps := r.endpointsFor(sp, slices)
		cluster := pick(eps, false)
		local := pick(eps, true)
		pi := &portInfo{Protocol: protocolOf(sp.Protocol), Port: sp.Port, Endpoints: map[string]bool{}}
		if external {
			pi.NodePort = sp.NodePort
		}
		info.Ports[id] = pi

		svcChain := "svc-" + id
		localChain := "local-" + id
		extChain := "ext-" + id
		epChain := func(e endpoint) string { return "ep-" + id + "__" + e.String() }
		affSet := func(e endpoint) string { return "affinity-" + epChain(e) }

		// Endpoint chains, shared by the cluster and local policy chains.
		needed := map[string]endpoint{}
		for _, e := range cluster {
			needed[e.String()] = e
		}
		usesLocal := itpLocal || etpLocal
		if usesLocal {
			for _, e := range local {
				needed[e.String()] = e
			}
		}
		for _, k := range sortedKeys(needed) {
			e := needed[k]
			pi.Endpoints[k] = true
			// Hairpin pairs only for endpoints that can be on this node:
			// at 10k services that is 50k set elements fewer to write.
			if !e.Remote {
				u.Shared = append(u.Shared, nftables.SharedElement{Set: setHairpin, Key: []string{e.IP, e.IP}})
			}
			if affinity == 0 {
				continue
			}
			// Affinity needs a chain per endpoint to record the client;
			// otherwise DNAT sits in the balancing rule itself and a
			// service costs one chain, not one per endpoint.
			u.Sets = append(u.Sets, nftables.Set{
				Name: affSet(e), Type: "ipv4_addr",
				Flags: []knftables.SetFlag{knftables.DynamicFlag, knftables.TimeoutFlag}, Timeout: affinity,
			})
			u.Chains = append(u.Chains, nftables.Chain{Name: epChain(e), Rules: []string{
				"update @" + affSet(e) + " { ip saddr }",
				dnat(proto, e),
			}})
		}

		balance := func(eps []endpoint) []string {
			var rules []string
			to := func(e endpoint) string { return dnat(proto, e) }
			if affinity > 0 {
				for _, e := range eps {
					rules = append(rules, "ip saddr @"+affSet(e)+" goto "+epChain(e))
				}
				to = func(e endpoint) string { return "goto " + epChain(e) }
			}
			// A cascade of rules, rule i taking 1/(N-i) of what reaches it, is
			// uniform like `numgen random mod N vmap {...}` but creates no
			// anonymous map: the kernel names each anonymous set by scanning
			// all sets of the table, so one vmap per service made a 10k
			// service sync quadratic (see bench/proxy/RESULTS.md).
			for i, e := range eps {
				if left := len(eps) - i; left > 1 {
					rules = append(rules, fmt.Sprintf("numgen random mod %d 0 %s", left, to(e)))
				} else {
					rules = append(rules, to(e))
				}
			}
			return rules
		}
		if len(cluster) > 0 {
			var rules []string
			switch {
			case r.MasqueradeAll:
				rules = append(rules, "jump "+chainMarkMasq)
			case len(r.ClusterCIDRs) > 0:
				rules = append(rules, fmt.Sprintf("ip daddr %s %s dport %d ip saddr != %s jump %s",
					svc.Spec.ClusterIP, proto, sp.Port, cidrSet(r.ClusterCIDRs), chainMarkMasq))
			}
			u.Chains = append(u.Chains, nftables.Chain{Name: svcChain, Rules: append(rules, balance(cluster)...)})
		}
		if usesLocal && len(local) > 0 {
			u.Chains = append(u.Chains, nftables.Chain{Name: localChain, Rules: balance(local)})
		}

		port := strconv.Itoa(int(sp.Port))
		reject := []string{"goto " + chainReject}
		// verdict for a policy with (clusterEPs, policyEPs, chain)
		target := func(policyLocal bool) (verdict []string, noEndpoints bool) {
			switch {
			case len(cluster) == 0:
				return reject, true
			case !policyLocal:
				return []string{"goto " + svcChain}, false
			case len(local) == 0:
				// Endpoints exist elsewhere but policy says local only.
				return []string{"drop"}, true
			default:
				return []string{"goto " + localChain}, false
			}
		}
		add := func(noEP bool, m, noEPMap string, key, verdict []string) {
			if noEP {
				m = noEPMap
			}
			u.Elements = append(u.Elements, nftables.Element{Map: m, Key: key, Value: verdict})
		}
		v, noEP := target(itpLocal)
		add(noEP, mapServiceIPs, mapNoEndpointServices, []string{svc.Spec.ClusterIP, proto, port}, v)
		pi.IPs = append(pi.IPs, svc.Spec.ClusterIP)

		if !external || (sp.NodePort == 0 && len(lbIPs) == 0) {
			continue
		}
		ev, extNoEP := target(etpLocal)
		if !extNoEP {
			var rules []string
			if etpLocal {
				// Pods and the node itself may use the service cluster-wide;
				// only truly external clients keep their source and go local.
				if len(r.ClusterCIDRs) > 0 {
					rules = append(rules, "ip saddr "+cidrSet(r.ClusterCIDRs)+" goto "+svcChain)
				}
				rules = append(rules,
					"fib saddr type local jump "+chainMarkMasq,
					"fib saddr type local goto "+svcChain,
					"goto "+localChain)
			} else {
				rules = append(rules, "jump "+chainMarkMasq, "goto "+svcChain)
			}
			u.Chains = append(u.Chains, nftables.Chain{Name: extChain, Rules: rules})
			ev = []string{"goto " + extChain}
		}
		for _, ip := range lbIPs {
			add(extNoEP, mapServiceIPs, mapNoEndpointServices, []string{ip, proto, port}, ev)
			pi.IPs = append(pi.IPs, ip)
		}
		if sp.NodePort != 0 {
			add(extNoEP, mapServiceNodePorts, mapNoEndpointNodePorts, []string{proto, strconv.Itoa(int(sp.NodePort))}, ev)
		}
	}
	sort.Slice(u.Chains, func(i, j int) bool { return u.Chains[i].Name < u.Chains[j].Name })
	sort.Slice(u.Sets, func(i, j int) bool { return u.Sets[i].Name < u.Sets[j].Name })
	return u, info
}

func dnat(proto string, e endpoint) string {
	return "meta l4proto " + proto + " dnat to " + e.IP + ":" + strconv.Itoa(int(e.Port))
}

func protocolOf(p v1.Protocol) v1.Protocol {
	if p == "" {
		return v1.ProtocolTCP
	}
	return p
}

func cidrSet(cidrs []netip.Prefix) string {
	if len(cidrs) == 1 {
		return cidrs[0].String()
	}
	s := make([]string, len(cidrs))
	for i, c := range cidrs {
		s[i] = c.String()
	}
	return "{ " + strings.Join(s, ", ") + " }"
}

// endpointsFor collects the endpoints of one service port from all slices,
// using each slice's port of the same name (the slice holds the named
// targetPort already resolved per pod) and dropping duplicates.
func (r *Rules) endpointsFor(sp v1.ServicePort, slices []*discovery.EndpointSlice) []endpoint {
	seen := map[string]bool{}
	var out []endpoint
	for _, sl := range slices {
		if sl.AddressType != discovery.AddressTypeIPv4 {
			continue
		}
		var port int32 = -1
		for _, p := range sl.Ports {
			name := ""
			if p.Name != nil {
				name = *p.Name
			}
			proto := v1.ProtocolTCP
			if p.Protocol != nil {
				proto = *p.Protocol
			}
			if name == sp.Name && proto == protocolOf(sp.Protocol) && p.Port != nil {
				port = *p.Port
				break
			}
		}
		if port <= 0 {
			continue
		}
		for _, ep := range sl.Endpoints {
			c := ep.Conditions
			ready := c.Ready == nil || *c.Ready
			serving := ready
			if c.Serving != nil {
				serving = *c.Serving
			}
			terminating := c.Terminating != nil && *c.Terminating
			local := ep.NodeName != nil && *ep.NodeName == r.NodeName
			remote := ep.NodeName != nil && *ep.NodeName != "" && !local
			for _, a := range ep.Addresses {
				ip, err := netip.ParseAddr(a)
				if err != nil || !ip.Is4() {
					continue
				}
				e := endpoint{IP: ip.String(), Port: port, Local: local, Remote: remote, Ready: ready, Serving: serving, Terminating: terminating}
				if seen[e.String()] {
					continue
				}
				seen[e.String()] = true
				out = append(out, e)
				break // only the first address of an endpoint is used
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, _ := netip.ParseAddr(out[i].IP)
		b, _ := netip.ParseAddr(out[j].IP)
		if c := a.Compare(b); c != 0 {
			return c < 0
		}
		return out[i].Port < out[j].Port
	})
	return out
}

// pick returns the ready endpoints (local ones only if localOnly) or, when
// none is ready, the serving terminating ones: a service whose pods are
// all shutting down keeps working until they stop serving.
func pick(eps []endpoint, localOnly bool) []endpoint {
	var ready, terminating []endpoint
	for _, e := range eps {
		if localOnly && !e.Local {
			continue
		}
		if e.Ready {
			ready = append(ready, e)
		} else if e.Serving && e.Terminating {
			terminating = append(terminating, e)
		}
	}
	if len(ready) > 0 {
		return ready
	}
	return terminating
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
