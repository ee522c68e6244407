package apps

import "skiff.dev/skiff/internal/registry"

// Resources returns the apps/v1 resources.
func Resources() []*registry.Resource {
	return []*registry.Resource{deployments(), replicaSets(), statefulSets(), daemonSets(), controllerRevisions()}
}
