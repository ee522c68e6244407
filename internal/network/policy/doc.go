// Package policy enforces networking.k8s.io/v1 NetworkPolicies for the
// pods of one node on nftables, in one table of skiff's own
// (skiff-policy, family ip).
//
// The pipeline, pure until the last step:
//
//	informers (pods, namespaces, network policies of the whole cluster)
//	    ─▶ Controller (coalesces events, lists the caches)
//	    ─▶ Compute (pure: policies, pods, namespaces, node → Ruleset)
//	    ─▶ Applier (diff against the last applied Ruleset → one knftables
//	       transaction that touches only what changed) ─▶ nft
//
// Where the rules hook: pods hang off the node's Linux bridge
// (internal/network/cni), and the bridge passes bridged IPv4 traffic
// through the IP hooks (br_netfilter, net.bridge.bridge-nf-call-iptables=1,
// which the agent turns on), so one filter chain at the forward hook sees
// pod-to-pod traffic on the node, traffic routed to and from other nodes
// and traffic from outside. It runs after the service proxy's DNAT at
// prerouting, so policies apply to the post-DNAT pod addresses, as
// upstream. Traffic from the node itself (kubelet probes) leaves through
// the output hook and traffic to the node arrives at input: neither passes
// forward, so both are always allowed, as upstream documents.
//
// Table layout:
//
//   - forward (filter hook forward): `ct state established,related accept`
//     first, so replies and connections already allowed survive any policy
//     change; then `ip saddr vmap @egress-pods` and `ip daddr vmap
//     @ingress-pods`;
//   - egress-pods / ingress-pods: pod IP → `jump` to the pod's chain, one
//     element per local pod isolated in that direction (selected by a
//     policy of that type); other pods are not in the maps, so traffic not
//     selected by any policy is allowed;
//   - ingress-<ns>/<pod>, egress-<ns>/<pod>: first the pod's own address
//     (a pod cannot block itself; its own traffic reaches forward only
//     hairpinned through a service), then the rules of every policy
//     selecting the pod (policies are additive), each ending in `return`
//     (allowed: go on to the other direction's check), then `drop`; a
//     policy without rules in that direction adds nothing, which is default
//     deny;
//   - peers-<ns>/<policy>/<in|eg>/<rule>: the IPs of the pods a rule's
//     podSelector/namespaceSelector peers select, cluster-wide; ipBlock
//     peers are written into the rules (`ip saddr 10.0.0.0/8 ip saddr !=
//     { except }`); named-<ns>/<policy>/eg/<rule>: `ip . proto . port` of
//     the destination pods whose containers name a rule's named port
//     (egress resolves named ports per destination pod; ingress resolves
//     them per selected pod straight into that pod's chain).
//
// Contract: a pod starting or stopping anywhere in the cluster changes
// only set elements (and, for a pod of this node, its chain and map
// element); a policy change rewrites only the chains of the pods it
// selects. The table is rebuilt in one atomic transaction (delete and
// re-add) on start, after a failed transaction and every FullSyncPeriod;
// conntrack entries outlive that, so established connections survive it
// too. When the controller stops, the table stays if it isolates any pod
// (they stay isolated across an agent restart) and is removed otherwise.
// IPv6 is not enforced (the pod network is IPv4 only).
package policy
