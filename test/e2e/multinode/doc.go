// Package multinode is skiff's multi-node end-to-end suite: a real
// three-node cluster on one machine. Each node is a network namespace
// (skiffmn-<pid>-nN) joined by a veth to the host bridge skiffmn0
// (10.92.0.1/24; nodes at 10.92.0.11-13) and runs its own `skiff agent`
// process with its own containerd, data dir and cgroup root, joined with the
// join token. The host side runs `skiff server --disable-agent` on
// 10.92.0.1 with cluster CIDR 10.93.0.0/16 (node N gets 10.93.N.0/24) and
// service CIDR 10.94.0.0/16. The skiff binary and the built-in images are
// built once in TestMain; the cluster is started by the first test that
// needs it and shared by all (each scenario is its own test function and
// namespace), then torn down in TestMain.
//
// Teardown removes, even after failures: the pods (through the API, then
// every shim and container process under the suite's data dir and cgroup
// roots by PID), the agents and the server (by PID), the node namespaces
// (and with them their bridges, vxlan devices, veths and nftables tables),
// the host bridge, the cgroups and the data dirs.
//
// The suite runs only as root with the node prerequisites installed and
// skips otherwise. SKIFF_MULTINODE_BACKEND=host-gw runs it on the host-gw
// backend instead of vxlan.
package multinode
