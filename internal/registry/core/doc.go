// Package core holds the registry descriptors for the core ("" v1) API
// group: namespaces, pods, services, endpoints, configmaps, secrets,
// serviceaccounts, nodes, events, persistentvolumes, persistentvolumeclaims,
// limitranges, resourcequotas, replicationcontrollers and podtemplates.
//
// Contract: Resources returns one *registry.Resource per resource with
// upstream-compatible names, short names and categories, and pure hooks for
// defaulting (mirroring pkg/apis/core/v1 defaulters), create/update/status
// preparation, validation (upstream field paths and messages), `kubectl get`
// table rendering and field-selector sets. Hooks never perform I/O and never
// keep references to their arguments. The pod defaulting and validation are
// exported (DefaultPodSpec, DefaultPodTemplateSpec, ValidatePodSpec,
// ValidatePodTemplateSpec) so workload groups (apps, batch) share them.
package core
