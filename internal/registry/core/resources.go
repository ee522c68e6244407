package core

import (
	"skiff.dev/skiff/internal/registry"
)

// Resources returns the descriptors for every core/v1 resource skiff
// serves (componentstatuses and bindings excepted), in a stable order.
func Resources() []*registry.Resource {
	return []*registry.Resource{
		namespaceResource(),
		podResource(),
		serviceResource(),
		endpointsResource(),
		configMapResource(),
		secretResource(),
		serviceAccountResource(),
		nodeResource(),
		eventResource(),
		persistentVolumeResource(),
		persistentVolumeClaimResource(),
		limitRangeResource(),
		resourceQuotaResource(),
		replicationControllerResource(),
		podTemplateResource(),
	}
}
