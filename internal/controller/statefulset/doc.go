// Package statefulset is skiff's StatefulSet controller.
//
// A StatefulSet of N replicas owns pods named <set>-<ordinal> for ordinals
// start..start+N-1, each with hostname <set>-<ordinal>, subdomain
// spec.serviceName, the statefulset.kubernetes.io/pod-name and
// apps.kubernetes.io/pod-index labels, and one PVC per volumeClaimTemplate
// named <claim>-<set>-<ordinal> that outlives the pod. With OrderedReady
// pod management pods are created lowest ordinal first, each waiting for the
// previous one to be Running and Ready, and removed highest first; Parallel
// does both at once. Every template is recorded as a ControllerRevision
// (package history); pods carry the controller-revision-hash of the
// revision they were built from, so a RollingUpdate replaces, from the
// highest ordinal down to spec.updateStrategy.rollingUpdate.partition, pods
// of an older revision, at most maxUnavailable at a time; OnDelete leaves
// that to the user. persistentVolumeClaimRetentionPolicy is implemented with
// owner references (to the set for whenDeleted=Delete, to the pod for a
// scaled-down ordinal with whenScaled=Delete) so the garbage collector
// removes the claims.
//
// Names are fixed, so the controller needs no expectations: a create that
// finds the pod already there, or a delete that finds it gone, is a no-op.
package statefulset
