package server

import (
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/apimachinery/pkg/runtime/serializer/versioning"

	"skiff.dev/skiff/internal/registry"
	"skiff.dev/skiff/internal/registry/apps"
	"skiff.dev/skiff/internal/registry/autoscaling"
	"skiff.dev/skiff/internal/registry/batch"
	"skiff.dev/skiff/internal/registry/certificates"
	"skiff.dev/skiff/internal/registry/coordination"
	"skiff.dev/skiff/internal/registry/core"
	"skiff.dev/skiff/internal/registry/discovery"
	"skiff.dev/skiff/internal/registry/events"
	"skiff.dev/skiff/internal/registry/networking"
	"skiff.dev/skiff/internal/registry/policy"
	"skiff.dev/skiff/internal/registry/rbac"
	"skiff.dev/skiff/internal/registry/scheduling"
	storagereg "skiff.dev/skiff/internal/registry/storage"
)

// AllResources lists every resource skiff serves, from each group's
// registry package.
func AllResources() []*registry.Resource {
	var out []*registry.Resource
	for _, f := range []func() []*registry.Resource{
		core.Resources, apps.Resources, batch.Resources, autoscaling.Resources,
		policy.Resources, coordination.Resources, discovery.Resources,
		networking.Resources, storagereg.Resources, rbac.Resources,
		scheduling.Resources, events.Resources, certificates.Resources,
	} {
		out = append(out, f()...)
	}
	return out
}

// storageCodec encodes objects for etcd as protobuf (smaller and faster
// than JSON), decoding into the stored version.
func storageCodec(scheme *runtime.Scheme) runtime.Codec {
	pb := protobuf.NewSerializer(scheme, scheme)
	return versioning.NewDefaultingCodecForScheme(scheme, pb, pb, nil, nil)
}
