// Package servicealloc allocates Service ClusterIPs from the service CIDR
// and NodePorts (and health check node ports) from the node port range, in
// the API server, as upstream's ipallocator/portallocator and the service
// REST storage do.
//
// # Contract
//
//   - A service gets its requested ClusterIP or node ports if free and in
//     range, else the request is refused with upstream's field errors
//     ("spec.clusterIPs: Invalid value: []string{"10.43.0.5"}: failed to
//     allocate IP 10.43.0.5: provided IP is already allocated",
//     "spec.ports[0].nodePort: Invalid value: 30080: provided port is
//     already allocated", "... is not in the valid range ..."). Without a
//     request it gets a free one: IPs from a random point of the upper part
//     of the range first (the low band is left for static requests such as
//     the kubernetes service's .1, as in upstream's KEP-3070), ports from a
//     random point of the range.
//   - ExternalName and headless (clusterIP None) services get no IP.
//     NodePort and LoadBalancer services get node ports (LoadBalancer unless
//     allocateLoadBalancerNodePorts is false); ports sharing a port number
//     (TCP and UDP) share a node port; LoadBalancers with
//     externalTrafficPolicy Local get a healthCheckNodePort.
//   - On update, node ports the client left out are kept by port name; a
//     type change allocates what the new type needs and drops what it does
//     not (NodePort→ClusterIP clears and releases the node ports).
//   - No value is ever held by two stored services, and every value is
//     free again once no stored service holds it.
//
// # Design
//
// Each range is a Bitmap (a pure type) plus bookkeeping of who holds each
// entry (namespace/name and UID) and in which state:
//
//	committed       a stored service holds it (as last seen by repair)
//	pendingAlloc    Admit handed it out; the write may still fail
//	pendingRelease  an update dropped it; the update may still fail
//
// Allocation happens in the mutating admission hook (Admit), which runs
// before the storage write, possibly several times for one update (the
// store's compare-and-swap retries) and possibly for a create that then
// fails (AlreadyExists, validation, etcd). So Admit never assumes its
// write happens: values it hands out are pendingAlloc, and a retry of the
// same service reuses what that namespace/name already holds instead of
// allocating again. Values an update drops are only marked pendingRelease.
// Deletion is certain (the AfterDelete hook runs after the key is gone),
// so it frees at once — only entries whose owner UID matches the deleted
// object, so a late delete never frees a re-created namesake's values.
//
// The stored services are the truth. Repair lists them consistently (a
// quorum read), then under the lock: values a stored service holds become
// committed to it; values no stored service holds are freed, except
// pendingAlloc ones younger than Grace (their create may be in flight).
// Each entry carries the generation of its last change by a request, and
// repair skips entries changed after its listing began, so a stale listing
// can never free a value handed out meanwhile. Repair runs on first use
// (before the first allocation, so a restarted or crashed server rebuilds
// its state from etcd), then every Interval from Run. A failed create thus
// leaks its values for at most Grace plus Interval; a dropped value is
// freed by the first repair after the update committed.
//
// Dry-run requests allocate like real ones (so the response shows the
// value); repair frees those values after Grace.
package servicealloc
