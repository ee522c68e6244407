// Package overlay connects the pod networks of skiff's nodes so that a pod
// reaches a pod on another node by its own IP, without NAT.
//
// Two backends, both modelled on Flannel's:
//
//   - vxlan: every node owns one VXLAN device (VNI 1, UDP port 8472) whose
//     address is the .0 of its pod CIDR. A node publishes the device's MAC
//     and its public IP as Node annotations; every other node then programs,
//     for each peer, a route "peer podCIDR via peer.0 dev vxlan onlink", a
//     permanent neighbour (ARP) entry "peer.0 -> peer VTEP MAC" and a
//     forwarding-database entry "peer VTEP MAC -> peer public IP". The
//     kernel then encapsulates pod traffic in UDP to the right node.
//   - host-gw: a route "peer podCIDR via peer public IP" per peer; needs the
//     nodes on one L2 segment, costs no encapsulation.
//
// The package is split as the rest of skiff: Desired is a pure function
// from the Node objects to the routes, neighbours and FDB entries this node
// should have; Applier makes one network namespace match such a State with
// netlink (adding what is missing, replacing what differs and deleting what
// it owns but is no longer wanted); Controller watches Nodes, publishes this
// node's annotations and runs Desired+Apply level-triggered.
//
// Ownership: routes are tagged with route protocol RouteProtocol, so a
// removed peer's route is found and deleted even after a restart; neighbour
// and FDB entries are owned by living on the VXLAN device, which has
// learning off.
package overlay

import (
	"fmt"
	"net"
	"net/netip"
	"sort"

	corev1 "k8s.io/api/core/v1"
)

// Backend selects how pod traffic crosses nodes.
type Backend string

const (
	// VXLAN encapsulates pod traffic in UDP (Flannel's vxlan backend).
	VXLAN Backend = "vxlan"
	// HostGW routes pod CIDRs via the peers' node IPs (Flannel's host-gw).
	HostGW Backend = "host-gw"
	// None programs nothing: a single node, or a network run by others.
	None Backend = "none"
)

// ParseBackend accepts "vxlan", "host-gw" and "none".
func ParseBackend(s string) (Backend, error) {
	switch b := Backend(s); b {
	case VXLAN, HostGW, None:
		return b, nil
	}
	return "", fmt.Errorf("unknown pod network backend %q (want vxlan, host-gw or none)", s)
}

// Node annotations a node publishes for its peers.
const (
	AnnotationBackend  = "skiff.dev/backend"
	AnnotationVXLANMAC = "skiff.dev/vxlan-mac"
	AnnotationPublicIP = "skiff.dev/public-ip"
)

// Defaults, as Flannel's vxlan backend on Linux.
const (
	DefaultDevice = "skiff.1"
	DefaultVNI    = 1
	DefaultPort   = 8472
	// VXLANOverhead is what encapsulation adds to a packet: outer IPv4 (20),
	// UDP (8), VXLAN (8) and inner Ethernet (14) headers.
	VXLANOverhead = 50
	// RouteProtocol marks the routes this package installs (rtnetlink's
	// rtm_protocol; 115 is unassigned in /etc/iproute2/rt_protos).
	RouteProtocol = 115
)

// Peer is what Desired needs to know of a Node.
type Peer struct {
	Name     string
	PodCIDR  netip.Prefix
	PublicIP netip.Addr
	// Backend is what the peer announced; empty when it did not.
	Backend Backend
	// VTEPMAC is the peer's VXLAN device MAC; nil when not announced.
	VTEPMAC net.HardwareAddr
}

// PeerFromNode reads a Node's pod CIDR, public IP (the annotation, else its
// InternalIP) and VXLAN MAC. Fields it cannot parse stay zero; Desired
// skips peers that lack what the backend needs.
func PeerFromNode(n *corev1.Node) Peer {
	p := Peer{Name: n.Name, Backend: Backend(n.Annotations[AnnotationBackend])}
	if c, err := netip.ParsePrefix(n.Spec.PodCIDR); err == nil && c.Addr().Is4() {
		p.PodCIDR = c.Masked()
	}
	if a, err := netip.ParseAddr(n.Annotations[AnnotationPublicIP]); err == nil {
		p.PublicIP = a
	} else {
		for _, addr := range n.Status.Addresses {
			if addr.Type != corev1.NodeInternalIP {
				continue
			}
			if a, err := netip.ParseAddr(addr.Address); err == nil && a.Is4() {
				p.PublicIP = a
				break
			}
		}
	}
	if m, err := net.ParseMAC(n.Annotations[AnnotationVXLANMAC]); err == nil {
		p.VTEPMAC = m
	}
	return p
}

// Route is one route to a peer's pod CIDR. Dev empty lets the kernel pick
// the device from Gw (host-gw); set, the route is onlink on it (vxlan).
type Route struct {
	Dst netip.Prefix
	Gw  netip.Addr
	Dev string
}

// Neighbor is a permanent ARP entry on the VXLAN device.
type Neighbor struct {
	IP  netip.Addr
	MAC string
}

// FDBEntry sends frames for MAC to the VTEP at Dst.
type FDBEntry struct {
	MAC string
	Dst netip.Addr
}

// State is everything the overlay programs on one node.
type State struct {
	Routes    []Route
	Neighbors []Neighbor
	FDB       []FDBEntry
}

// Options are the parts of the node's configuration Desired depends on.
type Options struct {
	Backend Backend
	Device  string // VXLAN device name
	// Self is this node's name; SelfCIDR its pod CIDR (peers that claim an
	// overlapping CIDR are skipped rather than hijacking local traffic).
	Self     string
	SelfCIDR netip.Prefix
}

// Desired computes the routes, neighbours and FDB entries this node needs
// to reach every peer, sorted so equal inputs give equal states. Skipped
// lists the peers left out and why (not yet announced, conflicting CIDR,
// another backend): they are expected while nodes join, so they are not
// errors.
func Desired(o Options, peers []Peer) (st State, skipped map[string]string) {
	skipped = map[string]string{}
	if o.Backend == None || o.Backend == "" {
		return st, skipped
	}
	sorted := append([]Peer(nil), peers...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	seen := map[netip.Prefix]string{}
	for _, p := range sorted {
		if p.Name == o.Self {
			continue
		}
		switch {
		case !p.PodCIDR.IsValid():
			skipped[p.Name] = "no pod CIDR"
			continue
		case o.SelfCIDR.IsValid() && p.PodCIDR.Overlaps(o.SelfCIDR):
			skipped[p.Name] = "pod CIDR " + p.PodCIDR.String() + " overlaps this node's"
			continue
		case seen[p.PodCIDR] != "":
			skipped[p.Name] = "pod CIDR " + p.PodCIDR.String() + " also claimed by " + seen[p.PodCIDR]
			continue
		case !p.PublicIP.IsValid() || !p.PublicIP.Is4():
			skipped[p.Name] = "no IPv4 node address"
			continue
		case p.Backend != "" && p.Backend != o.Backend:
			skipped[p.Name] = "uses backend " + string(p.Backend)
			continue
		}
		switch o.Backend {
		case HostGW:
			st.Routes = append(st.Routes, Route{Dst: p.PodCIDR, Gw: p.PublicIP})
		case VXLAN:
			if len(p.VTEPMAC) == 0 {
				skipped[p.Name] = "no VXLAN MAC announced yet"
				continue
			}
			gw := p.PodCIDR.Addr()
			st.Routes = append(st.Routes, Route{Dst: p.PodCIDR, Gw: gw, Dev: o.Device})
			st.Neighbors = append(st.Neighbors, Neighbor{IP: gw, MAC: p.VTEPMAC.String()})
			st.FDB = append(st.FDB, FDBEntry{MAC: p.VTEPMAC.String(), Dst: p.PublicIP})
		}
		seen[p.PodCIDR] = p.Name
	}
	return st, skipped
}

// PodMTU is the MTU pods (the CNI bridge and veths) should use on a node
// whose uplink has linkMTU.
func PodMTU(b Backend, linkMTU int) int {
	if b == VXLAN {
		return linkMTU - VXLANOverhead
	}
	return linkMTU
}
