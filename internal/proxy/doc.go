// Package proxy is skiff's service proxy: it programs Services and their
// EndpointSlices into one nftables table of skiff's own (skiff-proxy,
// family ip) on every node.
//
// The pipeline, pure until the last step:
//
//	informers ─▶ Proxier (records objects, marks namespace/name dirty)
//	          ─▶ Rules.Service (pure: one Service + its slices → nftables.Unit)
//	          ─▶ nftables.Applier (diff against the last applied unit → one
//	             transaction) ─▶ netlink batch (nftables.Netlink: changes
//	             to ordinary services) or nft (full syncs, affinity sets,
//	             transactions over 256 operations)
//
// Table layout (names as upstream kube-proxy's nftables mode, whose design
// this follows; no upstream code is used):
//
//   - verdict maps service-ips (ip daddr . l4proto . dport → goto chain) and
//     service-nodeports (l4proto . dport, matched on `fib daddr type local`),
//     and their twins no-endpoint-services / no-endpoint-nodeports used by
//     filter chains to reject (TCP reset, ICMP port unreachable) or drop;
//   - svc-<ns>/<name>/<proto>/<port>: uniform random choice over the ready
//     endpoints as a cascade `numgen random mod N-i 0 dnat to ip:port`
//     (rule i takes 1/(N-i) of what reaches it), preceded by ClientIP
//     affinity lookups and the masquerade mark for clients outside the
//     cluster CIDRs; local-… the same over this node's endpoints (Local
//     traffic policies); ext-… the entry for NodePort and LoadBalancer
//     traffic. Upstream uses `numgen random mod N vmap {…}` and a chain per
//     endpoint; both were measured too slow at 10k services (anonymous
//     vmaps make the kernel quadratic, and 50k endpoint chains make every
//     nft call list and validate 60k chains): see bench/proxy/RESULTS.md;
//   - ep-<svc port id>__<ip>/<port>, only for ClientIP affinity: record the
//     client in affinity-<ep chain> (a dynamic set with the affinity
//     timeout), then DNAT;
//   - hairpin: a set of "ip . ip" pairs, one per endpoint IP, shared by
//     services and reference-counted by the applier; postrouting
//     masquerades a DNATed packet whose source and destination are the
//     same pod;
//   - base chains at prerouting/output (nat, dstnat), postrouting (nat,
//     srcnat: masquerade marked packets) and input/forward/output (filter).
//
// A second, small table (skiff-node, Node and NodeRules in node.go) holds
// what belongs to the node rather than to Services: masquerading of pod
// traffic that leaves the cluster CIDR, and hostPorts (containerPorts with
// hostPort, DNATed on every node address but loopback, plus hairpin for a
// pod reaching its own hostPort). It is rewritten whole, atomically, when
// the node's pods change.
//
// Stale UDP conntrack entries (a flow pinned to an endpoint that is gone,
// or rejected while a service had none) are deleted over netlink.
//
// Contract: a change to one Service or its EndpointSlices produces a
// transaction that touches only that service's chains, sets and map
// elements. The whole table is rewritten on start, after a failed
// transaction and every FullSyncPeriod. IPv6 is not handled yet (an ip6
// table built the same way would be).
package proxy
