// Package deployment implements the Deployment controller: one ReplicaSet
// per pod-template version, named <deployment>-<pod-template-hash>, rolled
// with the RollingUpdate (maxSurge/maxUnavailable) or Recreate strategy.
//
// It follows upstream's observable behaviour so real kubectl works: the
// deployment.kubernetes.io/revision annotation on the Deployment and its
// ReplicaSets (a ReplicaSet brought back by a rollback is given the next
// revision and remembers older ones in revision-history), desired-replicas
// and max-replicas annotations (used for proportional scaling when a
// Deployment is scaled mid-rollout), annotations such as change-cause copied
// to the new ReplicaSet, revisionHistoryLimit cleanup, paused Deployments
// (scaling only), and the Progressing/Available conditions with upstream's
// reasons and messages so `kubectl rollout status` behaves identically.
//
// Contract: Sync is level-triggered; every decision is computed from the
// Deployment and the ReplicaSets' spec and status in the informer caches;
// pods are only read by the Recreate strategy (to wait for old pods to be
// gone). Time comes from the injected clock.
package deployment
