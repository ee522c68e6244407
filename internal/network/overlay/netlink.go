package overlay

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// DeviceConfig is the VXLAN device of a node.
type DeviceConfig struct {
	Name string // default DefaultDevice
	VNI  int    // default DefaultVNI
	Port int    // default DefaultPort
	// LocalIP is the node's public address: the VXLAN source address, and
	// the address whose interface is the uplink.
	LocalIP netip.Addr
	// PodCIDR's .0 becomes the device's address, so traffic the node itself
	// sends to remote pods leaves with a source the peers route back.
	PodCIDR netip.Prefix
}

func (c *DeviceConfig) defaults() {
	if c.Name == "" {
		c.Name = DefaultDevice
	}
	if c.VNI == 0 {
		c.VNI = DefaultVNI
	}
	if c.Port == 0 {
		c.Port = DefaultPort
	}
}

// Device is a ready VXLAN device.
type Device struct {
	Index int
	MAC   net.HardwareAddr
	MTU   int
	// UplinkMTU is the MTU of the interface holding LocalIP.
	UplinkMTU int
}

// Applier programs one network namespace through a netlink handle.
type Applier struct {
	h *netlink.Handle
}

// NewApplier returns an applier on h; a nil h means the caller's namespace.
func NewApplier(h *netlink.Handle) *Applier {
	if h == nil {
		h = &netlink.Handle{}
	}
	return &Applier{h: h}
}

// Uplink returns the link that holds ip and its MTU.
func (a *Applier) Uplink(ip netip.Addr) (netlink.Link, error) {
	addrs, err := a.h.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("listing addresses: %w", err)
	}
	for _, ad := range addrs {
		if got, ok := netip.AddrFromSlice(ad.IP); ok && got.Unmap() == ip {
			l, err := a.h.LinkByIndex(ad.LinkIndex)
			if err != nil {
				return nil, fmt.Errorf("getting link of %s: %w", ip, err)
			}
			return l, nil
		}
	}
	return nil, fmt.Errorf("no interface holds the node address %s", ip)
}

// EnsureDevice creates the VXLAN device, or keeps an existing one whose
// VNI, port, source address and uplink match (so its MAC, which peers have
// programmed, survives agent restarts), and sets its MTU (uplink − 50),
// address (PodCIDR's .0/32) and state up.
func (a *Applier) EnsureDevice(c DeviceConfig) (Device, error) {
	c.defaults()
	if !c.LocalIP.Is4() || !c.PodCIDR.IsValid() {
		return Device{}, fmt.Errorf("ensuring vxlan device: an IPv4 node address and a pod CIDR are required")
	}
	up, err := a.Uplink(c.LocalIP)
	if err != nil {
		return Device{}, fmt.Errorf("ensuring vxlan device: %w", err)
	}
	upMTU := up.Attrs().MTU
	mtu := upMTU - VXLANOverhead
	want := &netlink.Vxlan{
		LinkAttrs:    netlink.LinkAttrs{Name: c.Name, MTU: mtu},
		VxlanId:      c.VNI,
		VtepDevIndex: up.Attrs().Index,
		SrcAddr:      c.LocalIP.AsSlice(),
		Port:         c.Port,
		Learning:     false,
	}
	l, err := a.h.LinkByName(c.Name)
	var notFound netlink.LinkNotFoundError
	switch {
	case errors.As(err, &notFound):
		l = nil
	case err != nil:
		return Device{}, fmt.Errorf("getting link %s: %w", c.Name, err)
	}
	if l != nil && !sameVXLAN(l, want) {
		if err := a.h.LinkDel(l); err != nil {
			return Device{}, fmt.Errorf("deleting mismatched link %s: %w", c.Name, err)
		}
		l = nil
	}
	if l == nil {
		if err := a.h.LinkAdd(want); err != nil {
			return Device{}, fmt.Errorf("creating vxlan device %s: %w", c.Name, err)
		}
		if l, err = a.h.LinkByName(c.Name); err != nil {
			return Device{}, fmt.Errorf("getting new vxlan device %s: %w", c.Name, err)
		}
	}
	if l.Attrs().MTU != mtu {
		if err := a.h.LinkSetMTU(l, mtu); err != nil {
			return Device{}, fmt.Errorf("setting mtu of %s: %w", c.Name, err)
		}
	}
	if err := a.ensureAddr(l, c.PodCIDR.Masked().Addr()); err != nil {
		return Device{}, err
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		if err := a.h.LinkSetUp(l); err != nil {
			return Device{}, fmt.Errorf("setting %s up: %w", c.Name, err)
		}
	}
	return Device{Index: l.Attrs().Index, MAC: l.Attrs().HardwareAddr, MTU: mtu, UplinkMTU: upMTU}, nil
}

func sameVXLAN(l netlink.Link, want *netlink.Vxlan) bool {
	v, ok := l.(*netlink.Vxlan)
	return ok && v.VxlanId == want.VxlanId && v.Port == want.Port &&
		v.VtepDevIndex == want.VtepDevIndex && v.SrcAddr.Equal(want.SrcAddr) && !v.Learning
}

// ensureAddr leaves exactly ip/32 on l.
func (a *Applier) ensureAddr(l netlink.Link, ip netip.Addr) error {
	addrs, err := a.h.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("listing addresses of %s: %w", l.Attrs().Name, err)
	}
	have := false
	for _, ad := range addrs {
		ones, _ := ad.Mask.Size()
		if got, ok := netip.AddrFromSlice(ad.IP); ok && got.Unmap() == ip && ones == 32 {
			have = true
			continue
		}
		if err := a.h.AddrDel(l, &ad); err != nil {
			return fmt.Errorf("removing stale address %s from %s: %w", ad.IPNet, l.Attrs().Name, err)
		}
	}
	if have {
		return nil
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(32, 32)}}
	if err := a.h.AddrAdd(l, addr); err != nil {
		return fmt.Errorf("adding %s to %s: %w", ip, l.Attrs().Name, err)
	}
	return nil
}

// RemoveDevice deletes the named device if it exists (switching to
// host-gw or none).
func (a *Applier) RemoveDevice(name string) error {
	if name == "" {
		name = DefaultDevice
	}
	l, err := a.h.LinkByName(name)
	var notFound netlink.LinkNotFoundError
	if errors.As(err, &notFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("getting link %s: %w", name, err)
	}
	if err := a.h.LinkDel(l); err != nil {
		return fmt.Errorf("deleting %s: %w", name, err)
	}
	return nil
}

// Apply makes the namespace hold exactly st's routes (among those tagged
// RouteProtocol) and, when dev names a VXLAN device, exactly st's permanent
// neighbour and FDB entries on it. It returns how many changes it made;
// a second Apply of the same state makes none. It carries on past a failed
// entry and returns every error joined.
func (a *Applier) Apply(st State, dev string) (int, error) {
	var errs []error
	changes := 0
	devIndex := 0
	if dev != "" {
		l, err := a.h.LinkByName(dev)
		if err != nil {
			return 0, fmt.Errorf("getting vxlan device %s: %w", dev, err)
		}
		devIndex = l.Attrs().Index
	}
	n, err := a.applyRoutes(st.Routes, dev, devIndex)
	changes += n
	errs = append(errs, err)
	if devIndex != 0 {
		n, err = a.applyNeighbors(st.Neighbors, devIndex)
		changes += n
		errs = append(errs, err)
		n, err = a.applyFDB(st.FDB, devIndex)
		changes += n
		errs = append(errs, err)
	} else if len(st.Neighbors)+len(st.FDB) > 0 {
		errs = append(errs, errors.New("neighbour and fdb entries need a vxlan device"))
	}
	return changes, errors.Join(errs...)
}

func (a *Applier) applyRoutes(want []Route, dev string, devIndex int) (int, error) {
	have, err := a.h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: RouteProtocol, Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	if err != nil {
		return 0, fmt.Errorf("listing overlay routes: %w", err)
	}
	byDst := map[netip.Prefix]netlink.Route{}
	for _, r := range have {
		if r.Dst == nil {
			continue
		}
		if p, ok := prefixOf(r.Dst); ok {
			byDst[p] = r
		}
	}
	var errs []error
	changes := 0
	wanted := map[netip.Prefix]bool{}
	for _, w := range want {
		wanted[w.Dst] = true
		idx := 0
		if w.Dev != "" {
			if w.Dev != dev {
				errs = append(errs, fmt.Errorf("route to %s names device %s, not %s", w.Dst, w.Dev, dev))
				continue
			}
			idx = devIndex
		}
		if h, ok := byDst[w.Dst]; ok && routeMatches(h, w, idx) {
			continue
		}
		r := &netlink.Route{
			Dst:       &net.IPNet{IP: w.Dst.Addr().AsSlice(), Mask: net.CIDRMask(w.Dst.Bits(), 32)},
			Gw:        w.Gw.AsSlice(),
			LinkIndex: idx,
			Protocol:  RouteProtocol,
			Table:     unix.RT_TABLE_MAIN,
		}
		if idx != 0 {
			r.Flags = int(netlink.FLAG_ONLINK)
		}
		if err := a.h.RouteReplace(r); err != nil {
			errs = append(errs, fmt.Errorf("programming route to %s via %s: %w", w.Dst, w.Gw, err))
			continue
		}
		changes++
	}
	for p, h := range byDst {
		if wanted[p] {
			continue
		}
		if err := a.h.RouteDel(&h); err != nil {
			errs = append(errs, fmt.Errorf("deleting stale route to %s: %w", p, err))
			continue
		}
		changes++
	}
	return changes, errors.Join(errs...)
}

func routeMatches(h netlink.Route, w Route, idx int) bool {
	gw, ok := netip.AddrFromSlice(h.Gw)
	if !ok || gw.Unmap() != w.Gw {
		return false
	}
	if idx != 0 {
		return h.LinkIndex == idx && h.Flags&int(netlink.FLAG_ONLINK) != 0
	}
	return true
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones).Masked(), true
}

func (a *Applier) applyNeighbors(want []Neighbor, devIndex int) (int, error) {
	have, err := a.h.NeighList(devIndex, netlink.FAMILY_V4)
	if err != nil {
		return 0, fmt.Errorf("listing neighbours: %w", err)
	}
	byIP := map[netip.Addr]netlink.Neigh{}
	for _, n := range have {
		if ip, ok := netip.AddrFromSlice(n.IP); ok && n.State&netlink.NUD_PERMANENT != 0 {
			byIP[ip.Unmap()] = n
		}
	}
	var errs []error
	changes := 0
	wanted := map[netip.Addr]bool{}
	for _, w := range want {
		wanted[w.IP] = true
		mac, err := net.ParseMAC(w.MAC)
		if err != nil {
			errs = append(errs, fmt.Errorf("neighbour %s: %w", w.IP, err))
			continue
		}
		if h, ok := byIP[w.IP]; ok && bytes.Equal(h.HardwareAddr, mac) {
			continue
		}
		err = a.h.NeighSet(&netlink.Neigh{
			LinkIndex: devIndex, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT,
			Type: unix.RTN_UNICAST, IP: w.IP.AsSlice(), HardwareAddr: mac,
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("programming neighbour %s: %w", w.IP, err))
			continue
		}
		changes++
	}
	for ip, h := range byIP {
		if wanted[ip] {
			continue
		}
		if err := a.h.NeighDel(&h); err != nil {
			errs = append(errs, fmt.Errorf("deleting stale neighbour %s: %w", ip, err))
			continue
		}
		changes++
	}
	return changes, errors.Join(errs...)
}

func (a *Applier) applyFDB(want []FDBEntry, devIndex int) (int, error) {
	have, err := a.h.NeighList(devIndex, unix.AF_BRIDGE)
	if err != nil {
		return 0, fmt.Errorf("listing fdb: %w", err)
	}
	byMAC := map[string]netlink.Neigh{}
	for _, n := range have {
		// Learning is off, so every unicast entry with a remote is ours;
		// all-zero MACs are the kernel's default destinations.
		if len(n.HardwareAddr) == 6 && !bytes.Equal(n.HardwareAddr, make([]byte, 6)) && n.IP != nil {
			byMAC[n.HardwareAddr.String()] = n
		}
	}
	var errs []error
	changes := 0
	wanted := map[string]bool{}
	for _, w := range want {
		mac, err := net.ParseMAC(w.MAC)
		if err != nil {
			errs = append(errs, fmt.Errorf("fdb entry %s: %w", w.MAC, err))
			continue
		}
		key := mac.String()
		wanted[key] = true
		if h, ok := byMAC[key]; ok {
			if ip, ok := netip.AddrFromSlice(h.IP); ok && ip.Unmap() == w.Dst {
				continue
			}
		}
		err = a.h.NeighSet(&netlink.Neigh{
			LinkIndex: devIndex, Family: unix.AF_BRIDGE, State: netlink.NUD_PERMANENT,
			Flags: netlink.NTF_SELF, IP: w.Dst.AsSlice(), HardwareAddr: mac,
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("programming fdb entry %s -> %s: %w", w.MAC, w.Dst, err))
			continue
		}
		changes++
	}
	for key, h := range byMAC {
		if wanted[key] {
			continue
		}
		h.Family, h.Flags = unix.AF_BRIDGE, netlink.NTF_SELF
		if err := a.h.NeighDel(&h); err != nil {
			errs = append(errs, fmt.Errorf("deleting stale fdb entry %s: %w", key, err))
			continue
		}
		changes++
	}
	return changes, errors.Join(errs...)
}
