// Package ingress is skiff's built-in Ingress controller: an HTTP(S)
// reverse proxy that every node runs (`skiff agent`, ports 80 and 443 by
// default) for the Ingresses of class skiff (controller skiff.dev/ingress,
// the cluster's default IngressClass, created at bootstrap).
//
// The pipeline, pure in the middle:
//
//	informers (IngressClasses, Ingresses, Services, EndpointSlices,
//	kubernetes.io/tls Secrets) ─▶ Build (pure: objects → immutable *Table)
//	─▶ atomic swap ─▶ Proxy (per request: Table.Match → ready endpoint
//	addresses → net/http/httputil.ReverseProxy)
//
// A change to an IngressClass or Ingress, or to a Service, EndpointSlice
// or Secret that the served Ingresses name (References), marks the table
// dirty; the controller rebuilds the whole table (changes arriving during
// a build share the next one) and swaps the pointer, so a request always
// sees one consistent snapshot and never takes a lock. A build costs
// O(Ingresses + the Services they name), not O(cluster).
//
// Routing contract (networking.k8s.io/v1):
//   - hosts: an exact host, a wildcard "*.foo.com" (matches exactly one
//     more label: "bar.foo.com", not "foo.com" nor "a.bar.foo.com"), or
//     empty (every host). A request is tried against its exact host's
//     rules, then the wildcard's, then the host-less rules, then the
//     oldest Ingress's defaultBackend; the first that has a matching path
//     wins. The Host header is compared lower-cased without port.
//   - paths: Exact (string equality), Prefix (element-wise: "/foo" matches
//     "/foo", "/foo/" and "/foo/bar", never "/foobar"; a trailing slash in
//     the rule is ignored), ImplementationSpecific (as Prefix). The longest
//     matching path wins, Exact before Prefix at equal length; Ingresses
//     are merged, and on an identical host+path+type the oldest Ingress
//     (creationTimestamp, then namespace/name) wins.
//   - backends: a Service port by number or name, resolved to the ready
//     endpoint addresses of the Service's EndpointSlices (the proxy dials
//     pods directly, not the ClusterIP); an ExternalName Service is dialled
//     by name. No ready endpoint: 503. No rule: 404. A connection failure
//     is retried on the next endpoint (up to MaxAttempts); when every
//     attempt fails: 502.
//   - TLS: spec.tls secrets (type kubernetes.io/tls, same namespace) are
//     chosen by SNI (exact host, then wildcard); an entry without hosts is
//     the fallback; with no match a self-signed default certificate is
//     served, as ingress-nginx does.
//   - WebSocket and other Upgrade requests pass through (ReverseProxy
//     switches protocols and copies bytes both ways).
//
// Status: one writer for status.loadBalancer.ingress, elected among the
// agents with a Lease (kube-system/skiff-ingress-status): the leader sets
// every Ingress of class skiff to the InternalIP (else ExternalIP) of every
// Ready node not labelled node.kubernetes.io/exclude-from-external-load-
// balancers, since every node's agent serves the ingress. One writer keeps
// the list exact when nodes leave, which per-agent writers racing on the
// same object could not do without each one guessing which peers died.
package ingress
