// Package replicaset implements the ReplicaSet controller and the
// ReplicationController manager: keep spec.replicas active pods matching the
// selector, adopting orphans and releasing pods that stopped matching, and
// report replicas, fullyLabeledReplicas, readyReplicas, availableReplicas,
// observedGeneration and the ReplicaFailure condition in status.
//
// Both kinds share one Controller; a ReplicationController is converted to
// an apps/v1 ReplicaSet on read (its map selector becomes matchLabels) and
// its status converted back on write, so the logic exists once.
//
// Contract: Sync is level-triggered and idempotent. Creations and deletions
// are recorded in Expectations before they are issued, and replicas are only
// recomputed once the informer has observed all of them, so a lagging pod
// informer never causes over-creation. Creations go out in slow-start
// batches (1, 2, 4, ...) capped at BurstReplicas per sync; scale-down deletes
// pods in controller.ActivePods order.
//
// A sync's cost does not grow with the ReplicaSet's pods when it has
// nothing to adopt, release or delete: the pod event handlers keep
// per-controller counts and ready times (podTally) and the sync reads
// them; otherwise it walks the informer's pods as before. Unit tests run
// every tally-based sync against the walk as well.
package replicaset
