// Package job is skiff's Job controller and the TTL-after-finished
// controller for Jobs.
//
// The Job controller keeps up to spec.parallelism pods running until
// spec.completions pods (NonIndexed) or every index 0..completions-1
// (Indexed) have succeeded, and fails the Job on backoffLimit,
// backoffLimitPerIndex/maxFailedIndexes, a podFailurePolicy FailJob rule or
// activeDeadlineSeconds. Every pod carries the batch.kubernetes.io/job-tracking
// finalizer; a finished pod is counted in three steps, as upstream: its UID is
// first written to status.uncountedTerminatedPods, then its finalizer is
// removed, then the UID moves into status.succeeded/failed. A crash between
// any two steps neither loses nor double-counts a completion, and an
// in-memory record of pending finalizer removals stops a lagging informer
// from counting a pod twice. At most 500 UIDs are uncounted at a time (and
// as many finalizers removed per sync, as upstream); finished pods beyond
// that wait for the next sync but already count when deciding how many
// pods to create, so they are never replaced. A sync whose cached Job is a
// version the controller's own status write replaced waits for the
// informer instead of recounting from the old status into a 409 Conflict.
// A NonIndexed Job never counts more successes than spec.completions: a
// surplus pod (say, one deleted while running, which a node may report as
// exited 0, and replaced meanwhile) is released uncounted with a
// SurplusPods event.
//
// Failed pods are replaced after an exponential back-off (10 s doubling,
// capped at 6 min) computed from the finish times of the Job's pods, so the
// back-off survives a controller restart. The clock is injected.
//
// Sync reads only from listers and is level-triggered; the TTL controller
// deletes Jobs ttlSecondsAfterFinished after their Complete/Failed condition.
package job
