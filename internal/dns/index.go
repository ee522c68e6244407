package dns

import (
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync/atomic"

	mdns "github.com/miekg/dns"
	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
)

// IndexInput is everything an Index is built from: a consistent read of the
// informer caches (or hand-made objects in tests).
type IndexInput struct {
	Services []*v1.Service
	Slices   []*discovery.EndpointSlice
	Pods     []*v1.Pod
}

// IndexOptions are the parts of an Index that come from configuration.
type IndexOptions struct {
	Zone   string // "cluster.local."; must be fully qualified and lowercase
	TTL    uint32 // for every record, and the SOA minimum (negative caching)
	Serial uint32 // SOA serial
	// NameserverIPs are the glue for ns.dns.<zone>; when empty the ClusterIPs
	// of kube-system/kube-dns are used.
	NameserverIPs []netip.Addr
}

// packable lists the query types whose answers are packed once per
// snapshot. The list is small on purpose: it bounds the packed cache at
// len(packable) entries per existing name whatever clients ask.
var packable = [...]uint16{mdns.TypeA, mdns.TypeAAAA, mdns.TypeSRV, mdns.TypePTR, mdns.TypeCNAME}

func packSlot(qtype uint16) int {
	for i, t := range packable {
		if t == qtype {
			return i
		}
	}
	return -1
}

// node is one owner name. A node with no records is an empty non-terminal:
// it exists, so queries for it are NODATA rather than NXDOMAIN.
type node struct {
	rrs    map[uint16][]mdns.RR
	cname  *mdns.CNAME // ExternalName; excludes every other type
	packed [len(packable)]atomic.Pointer[[]byte]
}

// Index is an immutable snapshot of the cluster's DNS records. Lookups are
// safe for concurrent use; the only mutation is the lazy fill of packed
// answers, which is idempotent.
type Index struct {
	zone  string
	ttl   uint32
	soa   *mdns.SOA
	names map[string]*node // lowercase FQDN
}

// Zone returns the cluster domain, fully qualified.
func (ix *Index) Zone() string { return ix.zone }

// Len returns the number of owner names, including empty non-terminals.
func (ix *Index) Len() int { return len(ix.names) }

type builder struct {
	opts  IndexOptions
	names map[string]*node
	seen  map[string]bool // rrKey, to drop duplicates
}

// BuildIndex computes the records for in. It never fails: objects that
// cannot be expressed in DNS (bad IPs, missing fields) are skipped.
func BuildIndex(in IndexInput, opts IndexOptions) *Index {
	if opts.Zone == "" {
		opts.Zone = "cluster.local."
	}
	opts.Zone = strings.ToLower(mdns.Fqdn(opts.Zone))
	b := &builder{opts: opts, names: make(map[string]*node, 4*len(in.Services)+len(in.Pods)), seen: map[string]bool{}}
	zone := opts.Zone
	ns := "ns.dns." + zone
	soa := &mdns.SOA{
		Hdr:     b.hdr(zone, mdns.TypeSOA),
		Ns:      ns,
		Mbox:    "hostmaster." + zone,
		Serial:  opts.Serial,
		Refresh: 7200,
		Retry:   1800,
		Expire:  86400,
		Minttl:  opts.TTL,
	}
	b.add(soa)
	b.add(&mdns.NS{Hdr: b.hdr(zone, mdns.TypeNS), Ns: ns})
	nsIPs := opts.NameserverIPs

	slicesBySvc := map[string][]*discovery.EndpointSlice{}
	for _, s := range in.Slices {
		name := s.Labels[discovery.LabelServiceName]
		if name == "" {
			continue
		}
		k := s.Namespace + "/" + name
		slicesBySvc[k] = append(slicesBySvc[k], s)
	}
	for _, svc := range in.Services {
		if len(nsIPs) == 0 && svc.Namespace == "kube-system" && svc.Name == "kube-dns" {
			nsIPs = parseIPs(svc.Spec.ClusterIPs, svc.Spec.ClusterIP)
		}
		b.service(svc, slicesBySvc[svc.Namespace+"/"+svc.Name])
	}
	for _, ip := range nsIPs {
		b.addAddr(ns, ip)
	}
	for _, p := range in.Pods {
		b.pod(p)
	}
	return &Index{zone: zone, ttl: opts.TTL, soa: soa, names: b.names}
}

func (b *builder) hdr(name string, t uint16) mdns.RR_Header {
	return mdns.RR_Header{Name: name, Rrtype: t, Class: mdns.ClassINET, Ttl: b.opts.TTL}
}

// node returns the node for name, creating it and, for names in the zone,
// every ancestor up to the zone as empty non-terminals.
func (b *builder) node(name string) *node {
	if n := b.names[name]; n != nil {
		return n
	}
	n := &node{}
	b.names[name] = n
	if strings.HasSuffix(name, "."+b.opts.Zone) {
		for off, end := mdns.NextLabel(name, 0); !end; off, end = mdns.NextLabel(name, off) {
			parent := name[off:]
			if _, ok := b.names[parent]; ok {
				break
			}
			b.names[parent] = &node{}
			if parent == b.opts.Zone {
				break
			}
		}
	}
	return n
}

func (b *builder) add(rr mdns.RR) {
	key := rrKey(rr)
	if b.seen[key] {
		return
	}
	b.seen[key] = true
	n := b.node(rr.Header().Name)
	if n.rrs == nil {
		n.rrs = map[uint16][]mdns.RR{}
	}
	t := rr.Header().Rrtype
	n.rrs[t] = append(n.rrs[t], rr)
}

// rrKey identifies a record for de-duplication (the same address in two
// slices, two services on one IP) far more cheaply than rr.String().
func rrKey(rr mdns.RR) string {
	h := rr.Header()
	var data string
	switch rr := rr.(type) {
	case *mdns.A:
		data = string(rr.A)
	case *mdns.AAAA:
		data = string(rr.AAAA)
	case *mdns.PTR:
		data = rr.Ptr
	case *mdns.SRV:
		data = string(rune(rr.Port)) + rr.Target
	default:
		return rr.String()
	}
	return h.Name + string(rune(h.Rrtype)) + data
}

func (b *builder) addAddr(name string, ip netip.Addr) {
	if ip.Is4() || ip.Is4In6() {
		b.add(&mdns.A{Hdr: b.hdr(name, mdns.TypeA), A: net.IP(ip.Unmap().AsSlice())})
		return
	}
	b.add(&mdns.AAAA{Hdr: b.hdr(name, mdns.TypeAAAA), AAAA: net.IP(ip.AsSlice())})
}

func (b *builder) addPTR(ip netip.Addr, target string) {
	rev, err := mdns.ReverseAddr(ip.Unmap().String())
	if err != nil {
		return
	}
	b.add(&mdns.PTR{Hdr: b.hdr(rev, mdns.TypePTR), Ptr: target})
}

func (b *builder) service(svc *v1.Service, slices []*discovery.EndpointSlice) {
	base := strings.ToLower(svc.Name + "." + svc.Namespace + ".svc." + b.opts.Zone)
	switch {
	case svc.Spec.Type == v1.ServiceTypeExternalName:
		target := strings.ToLower(mdns.Fqdn(svc.Spec.ExternalName))
		if svc.Spec.ExternalName == "" {
			return
		}
		if _, ok := mdns.IsDomainName(target); !ok {
			return
		}
		n := b.node(base)
		n.cname = &mdns.CNAME{Hdr: b.hdr(base, mdns.TypeCNAME), Target: target}
	case svc.Spec.ClusterIP == v1.ClusterIPNone:
		b.headless(svc, base, slices)
	default:
		ips := parseIPs(svc.Spec.ClusterIPs, svc.Spec.ClusterIP)
		if len(ips) == 0 {
			return // not allocated yet: the name does not exist
		}
		for _, ip := range ips {
			b.addAddr(base, ip)
			b.addPTR(ip, base)
		}
		for _, p := range svc.Spec.Ports {
			if p.Name == "" {
				continue
			}
			b.add(&mdns.SRV{Hdr: b.hdr(srvName(p.Name, p.Protocol, base), mdns.TypeSRV), Priority: 0, Weight: 100, Port: uint16(p.Port), Target: base})
		}
	}
}

// headless publishes one record per ready endpoint address, a name per
// endpoint (its hostname, else its dashed address) and SRV per named port.
func (b *builder) headless(svc *v1.Service, base string, slices []*discovery.EndpointSlice) {
	b.node(base) // a headless service exists even with no endpoints: NODATA
	sort.Slice(slices, func(i, j int) bool { return slices[i].Name < slices[j].Name })
	for _, s := range slices {
		if s.AddressType == discovery.AddressTypeFQDN {
			continue
		}
		for _, ep := range s.Endpoints {
			ready := ep.Conditions.Ready == nil || *ep.Conditions.Ready
			if !ready && !svc.Spec.PublishNotReadyAddresses {
				continue
			}
			for _, a := range ep.Addresses {
				ip, err := netip.ParseAddr(a)
				if err != nil {
					continue
				}
				label := dashed(ip)
				if ep.Hostname != nil && *ep.Hostname != "" {
					label = strings.ToLower(*ep.Hostname)
				}
				host := label + "." + base
				b.addAddr(base, ip)
				b.addAddr(host, ip)
				b.addPTR(ip, host)
				for _, p := range s.Ports {
					if p.Name == nil || *p.Name == "" || p.Port == nil {
						continue
					}
					proto := v1.ProtocolTCP
					if p.Protocol != nil {
						proto = *p.Protocol
					}
					b.add(&mdns.SRV{Hdr: b.hdr(srvName(*p.Name, proto, base), mdns.TypeSRV), Priority: 0, Weight: 100, Port: uint16(*p.Port), Target: host})
				}
			}
		}
	}
}

func (b *builder) pod(p *v1.Pod) {
	if p.Status.Phase == v1.PodSucceeded || p.Status.Phase == v1.PodFailed || p.Spec.HostNetwork {
		return
	}
	ips := make([]string, 0, len(p.Status.PodIPs))
	for _, pip := range p.Status.PodIPs {
		ips = append(ips, pip.IP)
	}
	for _, ip := range parseIPs(ips, p.Status.PodIP) {
		b.addAddr(strings.ToLower(dashed(ip)+"."+p.Namespace+".pod."+b.opts.Zone), ip)
	}
}

func srvName(port string, proto v1.Protocol, base string) string {
	if proto == "" {
		proto = v1.ProtocolTCP
	}
	return strings.ToLower("_" + port + "._" + string(proto) + "." + base)
}

// dashed is the address as one DNS label: 10-0-0-1, or 2001-db8--1.
func dashed(ip netip.Addr) string {
	s := ip.Unmap().String()
	if ip.Is4() || ip.Is4In6() {
		return strings.ReplaceAll(s, ".", "-")
	}
	return strings.ReplaceAll(s, ":", "-")
}

func parseIPs(list []string, single string) []netip.Addr {
	if len(list) == 0 && single != "" {
		list = []string{single}
	}
	var out []netip.Addr
	for _, s := range list {
		if ip, err := netip.ParseAddr(s); err == nil {
			out = append(out, ip)
		}
	}
	return out
}

// Result is the index's answer to one question.
type Result struct {
	// Ours is false when the name is neither in the zone nor a reverse name
	// the index knows: the question is for the upstream resolvers.
	Ours   bool
	Rcode  int
	Answer []mdns.RR
	Ns     []mdns.RR
	Extra  []mdns.RR
	// Chase, when set, is a CNAME target outside the zone whose records of
	// the asked type should be appended from upstream.
	Chase string
}

// Lookup answers q. name must be lowercase and fully qualified.
func (ix *Index) Lookup(name string, qtype uint16) Result {
	return ix.lookup(name, qtype, 0)
}

func (ix *Index) lookup(name string, qtype uint16, depth int) Result {
	n := ix.names[name]
	inZone := name == ix.zone || mdns.IsSubDomain(ix.zone, name)
	if n == nil {
		if !inZone {
			return Result{}
		}
		return Result{Ours: true, Rcode: mdns.RcodeNameError, Ns: []mdns.RR{ix.soa}}
	}
	r := Result{Ours: true, Rcode: mdns.RcodeSuccess}
	if n.cname != nil {
		r.Answer = []mdns.RR{n.cname}
		if qtype == mdns.TypeCNAME || qtype == mdns.TypeANY {
			return r
		}
		// Follow the chain inside the zone; hand the rest to upstream.
		target := n.cname.Target
		if target != ix.zone && !mdns.IsSubDomain(ix.zone, target) {
			r.Chase = target
			return r
		}
		if depth >= 8 {
			r.Rcode = mdns.RcodeServerFailure // a loop of ExternalNames
			return r
		}
		tr := ix.lookup(target, qtype, depth+1)
		r.Answer = append(r.Answer, tr.Answer...)
		r.Rcode, r.Ns, r.Extra, r.Chase = tr.Rcode, tr.Ns, tr.Extra, tr.Chase
		return r
	}
	if qtype == mdns.TypeANY {
		for _, t := range []uint16{mdns.TypeSOA, mdns.TypeNS, mdns.TypeA, mdns.TypeAAAA, mdns.TypeSRV, mdns.TypePTR} {
			r.Answer = append(r.Answer, n.rrs[t]...)
		}
	} else {
		r.Answer = n.rrs[qtype]
	}
	if len(r.Answer) == 0 {
		if inZone {
			r.Ns = []mdns.RR{ix.soa}
		}
		return r
	}
	// Glue: addresses of SRV targets and of the NS.
	for _, rr := range r.Answer {
		var target string
		switch rr := rr.(type) {
		case *mdns.SRV:
			target = rr.Target
		case *mdns.NS:
			target = rr.Ns
		default:
			continue
		}
		if tn := ix.names[target]; tn != nil {
			r.Extra = append(r.Extra, tn.rrs[mdns.TypeA]...)
			r.Extra = append(r.Extra, tn.rrs[mdns.TypeAAAA]...)
		}
	}
	return r
}
