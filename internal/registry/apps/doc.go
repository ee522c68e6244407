// Package apps holds the registry descriptors for the apps/v1 API group:
// deployments, replicasets, statefulsets, daemonsets and controllerrevisions.
//
// Contract: Resources returns one *registry.Resource per resource with
// upstream's names, short names, categories, subresources (status, scale) and
// pure hooks mirroring upstream's pkg/apis/apps/v1 defaulters,
// pkg/apis/apps/validation (field paths and messages users see) and
// pkg/registry/apps/*/strategy.go (status reset on create, status preserved on
// main-resource updates, spec preserved on status updates). Pod templates are
// defaulted and validated by the core registry (core.DefaultPodTemplateSpec,
// core.ValidatePodTemplateSpec); this package adds the workload-level rules
// (selector present, non-empty, matching the template labels and immutable,
// restartPolicy Always, rolling update parameters). Hooks never perform I/O,
// never retain their arguments, and ignore objects of an unexpected type.
package apps
