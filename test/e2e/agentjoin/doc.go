// Package agentjoin tests a node's identity, images and stats end to end:
// an agent that has only the server URL and the join token obtains its own
// client certificate (system:node:NAME) and keeps it across restarts; with
// real containerd (root only) images are pulled through an in-process
// registry with basic auth and imagePullSecrets, and `kubectl top` reads
// metrics.k8s.io served from the kubelet's /stats/summary.
//
// Network resources use the prefix skiffe2f and addresses in 10.89.0.0/16;
// kubelet ports are random free ports.
package agentjoin
