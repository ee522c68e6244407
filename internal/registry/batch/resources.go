package batch

import "skiff.dev/skiff/internal/registry"

// Resources returns the batch/v1 resources.
func Resources() []*registry.Resource {
	return []*registry.Resource{jobs(), cronJobs()}
}
