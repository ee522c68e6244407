// Package registry describes the resources the API server serves. Each API
// group has a subpackage (registry/core, registry/apps, ...) that returns
// []*Resource with the per-resource behaviour: defaulting, validation,
// status handling, table columns and selectable fields. The generic REST
// machinery in internal/apiserver uses these descriptors and never knows a
// concrete type, which keeps per-resource code pure and easy to test.
package registry

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Resource is everything the generic REST code needs to serve one resource
// in one group version.
type Resource struct {
	// GroupVersion served, e.g. {Group: "apps", Version: "v1"}.
	GroupVersion schema.GroupVersion
	// Resource is the plural lower-case name ("deployments").
	Resource string
	// Singular name ("deployment"), Kind ("Deployment"), ListKind ("DeploymentList").
	Singular, Kind, ListKind string
	Namespaced               bool
	ShortNames               []string
	Categories               []string // e.g. "all"
	// Verbs served; nil means the full set: create delete deletecollection
	// get list patch update watch.
	Verbs []string

	// New and NewList create empty typed objects of this GroupVersion.
	New     func() runtime.Object
	NewList func() runtime.Object

	// StorageResource names the storage this resource lives in when it
	// shares storage with another group version (e.g. autoscaling/v1
	// horizontalpodautoscalers are stored as autoscaling/v2, core/v1 events
	// and events.k8s.io/v1 events share one store). Zero means this
	// resource owns its storage.
	StorageResource schema.GroupVersionResource
	// ToStorage converts an object of this GroupVersion into the storage
	// version and FromStorage back. Both nil when GroupVersion is the
	// storage version.
	ToStorage   func(obj runtime.Object) (runtime.Object, error)
	FromStorage func(obj runtime.Object) (runtime.Object, error)

	// Default fills in defaults exactly as upstream's defaulters do for
	// this type. Called on every decoded create/update/patch body (writes
	// only; stored objects are already defaulted).
	Default func(obj runtime.Object)

	// PrepareForCreate resets fields a client may not set on create
	// (typically status) and sets server-owned initial values (e.g. pod
	// phase Pending, qosClass). The generic code already handles metadata
	// (uid, creationTimestamp, generation, resourceVersion).
	PrepareForCreate func(obj runtime.Object)
	// PrepareForUpdate is called for updates of the main resource with the
	// new object and the stored old one (a private copy). Typical: copy
	// status from old so the main resource cannot change status. When nil
	// and the type has a Status field, the generic code copies Status.
	PrepareForUpdate func(obj, old runtime.Object)
	// PrepareForStatusUpdate is the reverse for the status subresource:
	// keep everything but status (and some metadata) from old. When nil
	// the generic code copies everything but Status from old.
	PrepareForStatusUpdate func(obj, old runtime.Object)
	// StatusUpdateSharesCurrent declares that a status subresource write
	// never modifies the stored object it starts from, not even through
	// the maps and slices the new object takes over from it: Default runs
	// on the client's object before PrepareForStatusUpdate, which only
	// assigns old's fields to the new object, and ValidateStatusUpdate
	// only reads. The generic store then lets the update start from the
	// watch cache's own object (storage.WithSharedCurrent) instead of a
	// deep copy.
	StatusUpdateSharesCurrent bool

	// Validate checks a new object (after defaulting). Errors use the
	// upstream field paths and messages (field.Required, field.Invalid,
	// field.NotSupported ...). ObjectMeta is validated generically; this
	// validates the rest.
	Validate func(obj runtime.Object) field.ErrorList
	// ValidateUpdate checks an update, including immutable fields. The
	// generic code re-runs Validate first; this adds update-only rules.
	ValidateUpdate func(obj, old runtime.Object) field.ErrorList
	// ValidateStatusUpdate checks a status subresource write.
	ValidateStatusUpdate func(obj, old runtime.Object) field.ErrorList

	// Subresources this resource serves besides the main one, e.g.
	// "status", "scale", "binding", "eviction", "token". Handlers for the
	// special ones live in internal/apiserver.
	Subresources []string
	// Scale describes the scale subresource (nil: none).
	Scale *ScaleInfo

	// TableColumns and TableRow give `kubectl get` output. NAME and AGE
	// are NOT added automatically: list every column, in order, as
	// upstream prints them (TableRow returns one cell per column).
	TableColumns []metav1.TableColumnDefinition
	TableRow     func(obj runtime.Object) []interface{}

	// SelectableFields returns the field set field selectors match
	// against. metadata.name and metadata.namespace are always present
	// (added generically); return the extra ones (pods: spec.nodeName,
	// status.phase, ...). nil means only the generic ones.
	SelectableFields func(obj runtime.Object) fields.Set

	// Cluster-scoped or namespaced objects that must exist at start
	// (e.g. default namespaces, the default StorageClass) are not declared
	// here; the server bootstraps them.
}

// ScaleInfo says where a resource keeps its replica counts.
type ScaleInfo struct {
	// GetReplicas returns spec.replicas (defaulted), status.replicas and
	// the label selector string (status.selector form: "app=x,tier in (a)").
	Get func(obj runtime.Object) (specReplicas, statusReplicas int32, selector string)
	// SetReplicas sets spec.replicas.
	SetReplicas func(obj runtime.Object, replicas int32)
}

// GroupResource is a shorthand.
func (r *Resource) GroupResource() schema.GroupResource {
	return schema.GroupResource{Group: r.GroupVersion.Group, Resource: r.Resource}
}

// GroupVersionKind of the single object.
func (r *Resource) GroupVersionKind() schema.GroupVersionKind {
	return r.GroupVersion.WithKind(r.Kind)
}

// StorageGVR is where this resource is stored.
func (r *Resource) StorageGVR() schema.GroupVersionResource {
	if !r.StorageResource.Empty() {
		return r.StorageResource
	}
	return r.GroupVersion.WithResource(r.Resource)
}
