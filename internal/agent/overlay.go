package agent

import (
	"context"
	"fmt"
	"net/netip"

	"k8s.io/client-go/kubernetes"

	"skiff.dev/skiff/internal/network/overlay"
)

// startPodNetwork prepares this node's end of the pod network before any
// pod starts (the VXLAN device for the vxlan backend) and runs the overlay
// controller that programs routes to the other nodes' pod CIDRs until ctx
// ends. It returns the MTU the CNI bridge and veths must use (0: the
// plugin's default).
func (a *Agent) startPodNetwork(ctx context.Context, client kubernetes.Interface, podCIDR netip.Prefix) (int, error) {
	name := a.cfg.FlannelBackend
	if name == "" {
		name = string(overlay.VXLAN)
	}
	backend, err := overlay.ParseBackend(name)
	if err != nil {
		return 0, err
	}
	nodeIP, err := netip.ParseAddr(a.cfg.NodeIP)
	if err != nil {
		return 0, fmt.Errorf("parsing node ip %q: %w", a.cfg.NodeIP, err)
	}
	if backend != overlay.None && (nodeIP.IsLoopback() || !nodeIP.Is4()) {
		// No route out (NodeIP fell back to loopback) or an IPv6 node: no
		// peer could reach us, so there is nothing to program.
		a.log.Warn("pod network across nodes disabled: the node address is not a routable IPv4 address", "nodeIP", nodeIP, "backend", backend)
		backend = overlay.None
	}
	c, err := overlay.New(overlay.Config{
		NodeName: a.cfg.NodeName,
		Backend:  backend,
		Device: overlay.DeviceConfig{
			Name: a.cfg.VXLANDevice, Port: a.cfg.VXLANPort, VNI: a.cfg.VXLANVNI,
			LocalIP: nodeIP, PodCIDR: podCIDR,
		},
	}, overlay.Deps{Client: client, Logger: a.log})
	if err != nil {
		return 0, err
	}
	mtu, err := c.Prepare()
	if err != nil {
		return 0, fmt.Errorf("preparing the pod network (%s backend): %w", backend, err)
	}
	go func() {
		if err := c.Run(ctx); err != nil {
			a.log.Error("pod network controller stopped", "err", err)
		}
	}()
	a.log.Info("pod network ready", "backend", backend, "podMTU", mtu)
	return mtu, nil
}
