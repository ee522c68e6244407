// Package openapi builds and serves skiff's OpenAPI documents: the v2
// document at /openapi/v2 (JSON, and the protobuf form kubectl asks for)
// and the v3 discovery document at /openapi/v3 with one document per
// group version at /openapi/v3/api/v1 and /openapi/v3/apis/<group>/<version>.
//
// Definitions are generated at run time by reflection over the Go types
// in the scheme, named as upstream names them
// (io.k8s.api.apps.v1.Deployment). Descriptions come from the types'
// SwaggerDoc methods; patch strategy and merge key from the
// patchStrategy/patchMergeKey struct tags; list types, list map keys and
// map types from the structured-merge-diff schema client-go ships for
// server-side apply (the markers behind them are comments that reflection
// cannot see). Paths and operations are derived from the
// registry.Resource descriptors, with the operation ids, the
// x-kubernetes-action and x-kubernetes-group-version-kind extensions, the
// patch content types and the query parameters (fieldValidation among
// them) kubectl looks for.
//
// Contract: New is cheap; nothing is built until the first request (or a
// call to Warm). Then every document is serialized once, to JSON and to
// kube-openapi's protobuf form, and kept only gzip-compressed (about 1 MB
// instead of the ~30 MB the spec objects and their encodings take);
// clients accepting gzip (client-go, kubectl) get those bytes as they are,
// others get them inflated on the fly. Content negotiation, ETags (SHA-512
// of the JSON), 304s, the v3 discovery hashes, the redirect of a stale
// hash and Cache-Control follow kube-openapi's handler and handler3.
// The v3 documents are converted from the v2 one (refs with siblings are
// wrapped in allOf, Quantity and IntOrString use oneOf, as upstream).
//
// Not described: connect-style subresources (log, exec, attach,
// portforward, proxy), default values and enum lists.
package openapi
