package core

import (
	"skiff.dev/skiff/internal/registry"
)

// Resources returns the descriptors for every core/v1 resource skiff serves.
func Resources() []*registry.Resource {
	return nil
}
