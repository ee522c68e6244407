// Package kubelet runs the pods bound to one node on a CRI runtime.
//
// The shape follows the design notes: every pod has a worker goroutine
// (podWorkers) that runs syncPod, level-triggered, whenever the pod's API
// object or its runtime state changes. syncPod reads the runtime state of
// the pod from CRI (never from local memory, so a restarted agent adopts
// running containers from their labels), asks the pure computePodActions
// what to do, applies that through CRI, and writes the status that the pure
// generatePodStatus derives from the new runtime state.
//
// containerd 1.6 has no evented PLEG, so relist polls ListPodSandbox and
// ListContainers once a second and kicks the workers of pods whose runtime
// state changed.
//
// Runtime identity lives in CRI labels: io.kubernetes.pod.{uid,name,namespace}
// on sandboxes and containers, io.kubernetes.container.name on containers;
// the restart count is the CRI metadata attempt. Back-off is derived from
// the last attempt's exit time and its attempt number, so it survives agent
// restarts too.
//
// Authentication is, for now, the join token (user system:node-join) or an
// admin kubeconfig; per-node client certificates (system:node:NAME) come
// with the node authorizer.
package kubelet
