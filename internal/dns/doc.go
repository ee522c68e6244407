// Package dns is skiff's cluster DNS server: the kube-dns service answered
// by skiff itself.
//
// Names inside the cluster domain (cluster.local by default) are answered
// from an in-memory Index built from the Service, EndpointSlice and Pod
// informers, following the Kubernetes DNS-based service discovery
// specification (kubernetes/dns docs/specification.md):
//
//	svc.ns.svc.zone.               A/AAAA  ClusterIPs, or ready endpoints when headless
//	_port._proto.svc.ns.svc.zone.  SRV     named ports (per endpoint when headless)
//	host.svc.ns.svc.zone.          A/AAAA  headless endpoint by hostname (StatefulSet pods)
//	1-2-3-4.svc.ns.svc.zone.       A       headless endpoint without hostname
//	1-2-3-4.ns.pod.zone.           A       pods (verified: a pod with that IP exists in ns)
//	svc.ns.svc.zone.               CNAME   ExternalName services, chased for the target
//	4.3.2.1.in-addr.arpa.          PTR     ClusterIPs and headless endpoint addresses
//	zone.                          SOA, NS
//
// A name that exists (including empty non-terminals such as ns.svc.zone.)
// but has no record of the asked type is NODATA: NOERROR, empty answer, SOA
// in authority. A name under the zone that does not exist is NXDOMAIN.
// Every other name, and reverse names the index does not know, is forwarded
// to the upstream resolvers (from /etc/resolv.conf by default) through a
// bounded cache that honours TTLs.
//
// The contract that makes it fast: the Index is an immutable snapshot,
// rebuilt off the query path whenever the informers change and swapped in
// atomically. Each (name, type) answer is packed to wire format once per
// snapshot; a UDP query for it is answered by parsing the question in
// place, copying the packed bytes and patching the ID, flags and the
// question's letter case — no dns.Msg, no allocation. Everything else
// (NXDOMAIN, forwarding, truncation, TCP) takes the ordinary miekg/dns path.
package dns
