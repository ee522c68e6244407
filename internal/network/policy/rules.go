package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"

	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Names of the base objects of the table.
const (
	ForwardChain = "forward"
	IngressMap   = "ingress-pods"
	EgressMap    = "egress-pods"
)

// Input is everything Compute needs: the whole cluster's policies, pods and
// namespaces (peers may be anywhere) and the node whose pods are enforced.
type Input struct {
	NodeName   string
	Policies   []*networkingv1.NetworkPolicy
	Pods       []*v1.Pod
	Namespaces []*v1.Namespace
}

// Set is a named set: its type and its elements, each element's key parts
// joined by " . ".
type Set struct {
	Type     string
	Elements map[string]bool
}

// Ruleset is the desired content of the table beyond its fixed base.
type Ruleset struct {
	Chains  map[string][]string // per-pod chains → rules
	Sets    map[string]*Set
	Ingress map[string]string // local pod IP → its ingress chain
	Egress  map[string]string // local pod IP → its egress chain
	// Problems lists what was skipped (invalid selectors, CIDRs); for logs.
	Problems []string
}

// BaseRules are the rules of the forward chain, written on full syncs.
func BaseRules() []string {
	return []string{
		"ct state established,related accept",
		"ip saddr vmap @" + EgressMap,
		"ip daddr vmap @" + IngressMap,
	}
}

// podInfo is a pod that takes part in policy: it has an IPv4 address, is
// not on the host network and has not terminated.
type podInfo struct {
	pod *v1.Pod
	ips []string
}

// eligible returns the pod's IPv4 addresses, or nil when policy does not
// apply to it.
func eligible(p *v1.Pod) []string {
	if p.Spec.HostNetwork || p.Status.Phase == v1.PodSucceeded || p.Status.Phase == v1.PodFailed {
		return nil
	}
	var ips []string
	seen := map[string]bool{}
	add := func(s string) {
		// A parsed IPv4 address has one spelling (leading zeros are
		// refused), so s is already canonical.
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is4() || seen[s] {
			return
		}
		seen[s] = true
		ips = append(ips, s)
	}
	for _, ip := range p.Status.PodIPs {
		add(ip.IP)
	}
	if len(ips) == 0 && p.Status.PodIP != "" {
		add(p.Status.PodIP)
	}
	return ips
}

type computer struct {
	in       Input
	out      *Ruleset
	byNS     map[string][]*podInfo // eligible pods per namespace, sorted by name
	nsNames  []string
	nsLabels map[string]labels.Set
}

// Compute returns the rules that enforce in.Policies on in.NodeName's
// pods. It is pure and deterministic.
func Compute(in Input) *Ruleset {
	c := &computer{
		in:       in,
		out:      &Ruleset{Chains: map[string][]string{}, Sets: map[string]*Set{}, Ingress: map[string]string{}, Egress: map[string]string{}},
		byNS:     map[string][]*podInfo{},
		nsLabels: map[string]labels.Set{},
	}
	for _, ns := range in.Namespaces {
		l := labels.Set{}
		for k, v := range ns.Labels {
			l[k] = v
		}
		// The API server sets it; kept here so selectors on it work even if
		// an older object lacks it.
		l[v1.LabelMetadataName] = ns.Name
		c.nsLabels[ns.Name] = l
	}
	for _, p := range in.Pods {
		if ips := eligible(p); len(ips) > 0 {
			c.byNS[p.Namespace] = append(c.byNS[p.Namespace], &podInfo{pod: p, ips: ips})
		}
	}
	for ns, ps := range c.byNS {
		sort.Slice(ps, func(i, j int) bool { return ps[i].pod.Name < ps[j].pod.Name })
		c.nsNames = append(c.nsNames, ns)
		if c.nsLabels[ns] == nil {
			c.nsLabels[ns] = labels.Set{v1.LabelMetadataName: ns}
		}
	}
	sort.Strings(c.nsNames)

	pols := append([]*networkingv1.NetworkPolicy(nil), in.Policies...)
	sort.Slice(pols, func(i, j int) bool {
		if pols[i].Namespace != pols[j].Namespace {
			return pols[i].Namespace < pols[j].Namespace
		}
		return pols[i].Name < pols[j].Name
	})
	// Policies selecting each local pod, per direction, in order.
	type selected struct{ ingress, egress []*networkingv1.NetworkPolicy }
	sel := map[*podInfo]*selected{}
	var local []*podInfo
	for _, ns := range c.nsNames {
		for _, pi := range c.byNS[ns] {
			if pi.pod.Spec.NodeName == in.NodeName {
				local = append(local, pi)
			}
		}
	}
	for _, pol := range pols {
		s, err := metav1.LabelSelectorAsSelector(&pol.Spec.PodSelector)
		if err != nil {
			c.problem("policy %s/%s: pod selector: %v", pol.Namespace, pol.Name, err)
			continue
		}
		ing, eg := policyTypes(pol)
		for _, pi := range local {
			if pi.pod.Namespace != pol.Namespace || !s.Matches(labels.Set(pi.pod.Labels)) {
				continue
			}
			if sel[pi] == nil {
				sel[pi] = &selected{}
			}
			if ing {
				sel[pi].ingress = append(sel[pi].ingress, pol)
			}
			if eg {
				sel[pi].egress = append(sel[pi].egress, pol)
			}
		}
	}
	for _, pi := range local {
		s := sel[pi]
		if s == nil {
			continue
		}
		key := pi.pod.Namespace + "/" + pi.pod.Name
		// A pod cannot block itself (upstream's rule): its own traffic
		// reaches forward only hairpinned through a service address.
		self := pi.ips
		if len(s.ingress) > 0 {
			chain := objName("ingress-" + key)
			var rules []string
			for _, ip := range self {
				rules = append(rules, "ip saddr "+ip+" return")
			}
			for _, pol := range s.ingress {
				rules = append(rules, c.ingressRules(pol, pi)...)
			}
			c.out.Chains[chain] = append(rules, "drop")
			for _, ip := range pi.ips {
				if _, dup := c.out.Ingress[ip]; !dup {
					c.out.Ingress[ip] = chain
				}
			}
		}
		if len(s.egress) > 0 {
			chain := objName("egress-" + key)
			var rules []string
			for _, ip := range self {
				rules = append(rules, "ip daddr "+ip+" return")
			}
			for _, pol := range s.egress {
				rules = append(rules, c.egressRules(pol)...)
			}
			c.out.Chains[chain] = append(rules, "drop")
			for _, ip := range pi.ips {
				if _, dup := c.out.Egress[ip]; !dup {
					c.out.Egress[ip] = chain
				}
			}
		}
	}
	slices.Sort(c.out.Problems)
	c.out.Problems = slices.Compact(c.out.Problems)
	return c.out
}

func (c *computer) problem(format string, args ...any) {
	c.out.Problems = append(c.out.Problems, fmt.Sprintf(format, args...))
}

// policyTypes applies upstream's defaulting: every policy affects ingress
// unless policyTypes says otherwise; egress only if it has egress rules.
func policyTypes(p *networkingv1.NetworkPolicy) (ingress, egress bool) {
	if len(p.Spec.PolicyTypes) == 0 {
		return true, len(p.Spec.Egress) > 0
	}
	for _, t := range p.Spec.PolicyTypes {
		switch t {
		case networkingv1.PolicyTypeIngress:
			ingress = true
		case networkingv1.PolicyTypeEgress:
			egress = true
		}
	}
	return ingress, egress
}

// ingressRules renders pol's ingress rules for one selected pod, the
// destination: its named ports resolve against its own containers.
func (c *computer) ingressRules(pol *networkingv1.NetworkPolicy, dst *podInfo) []string {
	var out []string
	for i, r := range pol.Spec.Ingress {
		ports, ok := c.portMatches(r.Ports, func(name string, proto v1.Protocol) []int32 {
			return namedPort(dst.pod, name, proto)
		})
		if !ok {
			continue // only named ports this pod does not have: nothing allowed
		}
		peers := c.peerMatches(pol, "in", i, "saddr", r.From)
		for _, p := range peers {
			for _, pm := range ports {
				out = append(out, join(p, pm, "return"))
			}
		}
	}
	return out
}

// egressRules renders pol's egress rules; named ports resolve against
// each destination pod, through a set of ip . proto . port.
func (c *computer) egressRules(pol *networkingv1.NetworkPolicy) []string {
	var out []string
	for i, r := range pol.Spec.Egress {
		var numeric, named []networkingv1.NetworkPolicyPort
		for _, p := range r.Ports {
			if p.Port != nil && p.Port.Type == intstr.String {
				named = append(named, p)
			} else {
				numeric = append(numeric, p)
			}
		}
		if len(r.Ports) == 0 || len(numeric) > 0 {
			ports, _ := c.portMatches(numeric, nil)
			for _, p := range c.peerMatches(pol, "eg", i, "daddr", r.To) {
				for _, pm := range ports {
					out = append(out, join(p, pm, "return"))
				}
			}
		}
		if len(named) > 0 {
			name := objName(fmt.Sprintf("named-%s/%s/eg/%d", pol.Namespace, pol.Name, i))
			if c.out.Sets[name] == nil { // the same for every pod the policy selects
				c.out.Sets[name] = &Set{Type: "ipv4_addr . inet_proto . inet_service", Elements: c.namedElements(pol, r.To, named)}
			}
			out = append(out, "ip daddr . meta l4proto . th dport @"+name+" return")
		}
	}
	return out
}

// namedElements resolves named ports against every pod an egress rule's
// peers could reach (all pods when it has none; pods inside ipBlocks too).
func (c *computer) namedElements(pol *networkingv1.NetworkPolicy, peers []networkingv1.NetworkPolicyPeer, named []networkingv1.NetworkPolicyPort) map[string]bool {
	els := map[string]bool{}
	add := func(pi *podInfo) {
		for _, p := range named {
			proto := protocol(p.Protocol)
			for _, port := range namedPort(pi.pod, p.Port.StrVal, proto) {
				for _, ip := range pi.ips {
					els[ip+" . "+strings.ToLower(string(proto))+" . "+strconv.Itoa(int(port))] = true
				}
			}
		}
	}
	if len(peers) == 0 {
		for _, ns := range c.nsNames {
			for _, pi := range c.byNS[ns] {
				add(pi)
			}
		}
		return els
	}
	for _, peer := range peers {
		if peer.IPBlock != nil {
			b, ok := c.parseBlock(pol, peer.IPBlock)
			if !ok {
				continue
			}
			for _, ns := range c.nsNames {
				for _, pi := range c.byNS[ns] {
					for _, ip := range pi.ips {
						if b.contains(netip.MustParseAddr(ip)) {
							add(pi)
							break
						}
					}
				}
			}
			continue
		}
		for _, pi := range c.selectPeers(pol, peer) {
			add(pi)
		}
	}
	return els
}

// peerMatches returns one match expression per way a packet's addr
// (saddr or daddr) can satisfy peers: "" for any address, the rule's set
// of selected pod IPs, and one expression per ipBlock.
func (c *computer) peerMatches(pol *networkingv1.NetworkPolicy, dir string, rule int, addr string, peers []networkingv1.NetworkPolicyPeer) []string {
	if len(peers) == 0 {
		return []string{""}
	}
	var out []string
	var selectors []networkingv1.NetworkPolicyPeer
	for _, peer := range peers {
		if peer.IPBlock != nil {
			b, ok := c.parseBlock(pol, peer.IPBlock)
			if !ok {
				continue
			}
			m := "ip " + addr + " " + b.cidr.String()
			if len(b.except) > 0 {
				ex := make([]string, len(b.except))
				for i, e := range b.except {
					ex[i] = e.String()
				}
				m += " ip " + addr + " != { " + strings.Join(ex, ", ") + " }"
			}
			out = append(out, m)
			continue
		}
		if peer.PodSelector == nil && peer.NamespaceSelector == nil {
			continue
		}
		selectors = append(selectors, peer)
	}
	if len(selectors) > 0 {
		name := objName(fmt.Sprintf("peers-%s/%s/%s/%d", pol.Namespace, pol.Name, dir, rule))
		if c.out.Sets[name] == nil { // the same for every pod the policy selects
			set := &Set{Type: "ipv4_addr", Elements: map[string]bool{}}
			for _, peer := range selectors {
				for _, pi := range c.selectPeers(pol, peer) {
					for _, ip := range pi.ips {
						set.Elements[ip] = true
					}
				}
			}
			c.out.Sets[name] = set
		}
		out = append([]string{"ip " + addr + " @" + name}, out...)
	}
	return out
}

// selectPeers returns the pods a podSelector/namespaceSelector peer
// selects: podSelector alone means the policy's namespace, namespaceSelector
// alone all pods of the matching namespaces, both the intersection.
func (c *computer) selectPeers(pol *networkingv1.NetworkPolicy, peer networkingv1.NetworkPolicyPeer) []*podInfo {
	podSel := labels.Everything()
	if peer.PodSelector != nil {
		s, err := metav1.LabelSelectorAsSelector(peer.PodSelector)
		if err != nil {
			c.problem("policy %s/%s: peer pod selector: %v", pol.Namespace, pol.Name, err)
			return nil
		}
		podSel = s
	}
	namespaces := []string{pol.Namespace}
	if peer.NamespaceSelector != nil {
		s, err := metav1.LabelSelectorAsSelector(peer.NamespaceSelector)
		if err != nil {
			c.problem("policy %s/%s: peer namespace selector: %v", pol.Namespace, pol.Name, err)
			return nil
		}
		namespaces = nil
		for _, ns := range c.nsNames {
			if s.Matches(c.nsLabels[ns]) {
				namespaces = append(namespaces, ns)
			}
		}
	}
	var out []*podInfo
	for _, ns := range namespaces {
		for _, pi := range c.byNS[ns] {
			if podSel.Matches(labels.Set(pi.pod.Labels)) {
				out = append(out, pi)
			}
		}
	}
	return out
}

// portMatches renders a rule's ports: [""] for all ports; one expression
// per port otherwise. resolve maps a named port to numbers (nil: named
// ports are skipped). ok is false when ports were given but none
// resolved: the rule then allows nothing.
func (c *computer) portMatches(ports []networkingv1.NetworkPolicyPort, resolve func(string, v1.Protocol) []int32) (out []string, ok bool) {
	if len(ports) == 0 {
		return []string{""}, true
	}
	for _, p := range ports {
		proto := strings.ToLower(string(protocol(p.Protocol)))
		switch {
		case p.Port == nil:
			out = append(out, "meta l4proto "+proto)
		case p.Port.Type == intstr.String:
			if resolve == nil {
				continue
			}
			for _, n := range resolve(p.Port.StrVal, protocol(p.Protocol)) {
				out = append(out, fmt.Sprintf("meta l4proto %s th dport %d", proto, n))
			}
		default:
			port := p.Port.IntVal
			if p.EndPort != nil && *p.EndPort > port {
				out = append(out, fmt.Sprintf("meta l4proto %s th dport %d-%d", proto, port, *p.EndPort))
			} else {
				out = append(out, fmt.Sprintf("meta l4proto %s th dport %d", proto, port))
			}
		}
	}
	return out, len(out) > 0
}

func protocol(p *v1.Protocol) v1.Protocol {
	if p == nil || *p == "" {
		return v1.ProtocolTCP
	}
	return *p
}

// namedPort returns the container port numbers pod names name for proto.
func namedPort(pod *v1.Pod, name string, proto v1.Protocol) []int32 {
	var out []int32
	seen := map[int32]bool{}
	for _, cs := range [][]v1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, ctr := range cs {
			for _, cp := range ctr.Ports {
				p := cp.Protocol
				if p == "" {
					p = v1.ProtocolTCP
				}
				if cp.Name == name && p == proto && !seen[cp.ContainerPort] {
					seen[cp.ContainerPort] = true
					out = append(out, cp.ContainerPort)
				}
			}
		}
	}
	return out
}

type block struct {
	cidr   netip.Prefix
	except []netip.Prefix
}

func (b block) contains(a netip.Addr) bool {
	if !b.cidr.Contains(a) {
		return false
	}
	for _, e := range b.except {
		if e.Contains(a) {
			return false
		}
	}
	return true
}

// parseBlock parses an ipBlock; IPv6 blocks are skipped (the table is
// IPv4 only and no IPv4 packet can match them).
func (c *computer) parseBlock(pol *networkingv1.NetworkPolicy, ib *networkingv1.IPBlock) (block, bool) {
	p, err := netip.ParsePrefix(ib.CIDR)
	if err != nil {
		c.problem("policy %s/%s: ipBlock cidr %q: %v", pol.Namespace, pol.Name, ib.CIDR, err)
		return block{}, false
	}
	if !p.Addr().Is4() {
		return block{}, false
	}
	b := block{cidr: p.Masked()}
	for _, e := range ib.Except {
		ep, err := netip.ParsePrefix(e)
		if err != nil {
			// Without the except the block would allow more than asked:
			// drop the whole peer instead.
			c.problem("policy %s/%s: ipBlock except %q: %v", pol.Namespace, pol.Name, e, err)
			return block{}, false
		}
		if ep.Addr().Is4() {
			b.except = append(b.except, ep.Masked())
		}
	}
	return b, true
}

func join(parts ...string) string {
	var nonEmpty []string
	for _, p := range parts {
		if p != "" {
			nonEmpty = append(nonEmpty, p)
		}
	}
	return strings.Join(nonEmpty, " ")
}

// objName keeps chain and set names within nftables' 256-byte limit
// (namespace and object names together can exceed it): long names are cut
// and made unique with a hash.
func objName(s string) string {
	const max = 200
	if len(s) <= max {
		return s
	}
	h := sha256.Sum256([]byte(s))
	return s[:max-17] + "_" + hex.EncodeToString(h[:8])
}
