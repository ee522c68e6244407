// Package controller holds the pieces every skiff workload controller shares:
// the work-queue runner (handlers enqueue namespace/name keys, workers call a
// level-triggered sync function, failures are retried with rate limiting),
// ControllerExpectations (so a lagging informer never makes a controller act
// twice on the same intent), PodControl (creating and deleting pods on behalf
// of an owner and recording events), owner-reference claiming (adopt orphans,
// release objects that no longer match), slow-start batching, the
// scale-down ordering of pods and the pod-template hash used by Deployments.
//
// Contract: nothing here keeps references to objects it is handed; callers
// DeepCopy objects from informer caches before mutating them. The exported API
// is shared with other controller packages and is kept stable.
package controller
