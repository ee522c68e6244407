// Package e2e holds skiff's end-to-end tests: an in-process control plane
// plus a real agent with its own containerd, runc and CNI bridge. They run
// only as root on a machine with the node prerequisites installed
// (apt-get install -y containerd runc containernetworking-plugins nftables
// iproute2) and skip with the missing list otherwise.
//
// Tests use the 10.88.0.0/16 range and bridges named skiffe2e*; every
// sandbox, veth, mount and process they create is removed even when they
// fail.
package e2e
