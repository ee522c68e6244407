// Package cni renders the node's pod network configuration for the CNI
// plugins containerd's CRI plugin invokes: a Linux bridge with host-local
// IPAM on the node's pod CIDR, plus loopback. The agent writes the file into
// containerd's CNI conf dir before the first sandbox is created; containerd
// runs the plugins itself.
//
// host-local keeps its allocations in DataDir (under the agent's data dir,
// not /var/lib/cni) so a node's state stays in one place and tests can check
// that a deleted pod released its IP.
package cni

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
)

// Config is the node's pod network.
type Config struct {
	// Name is the network name; host-local keys allocations by it.
	Name string
	// Bridge is the Linux bridge device, e.g. "skiff0".
	Bridge string
	// PodCIDR is the node's pod subnet; the bridge takes its first address.
	PodCIDR netip.Prefix
	// DataDir is host-local's allocation store.
	DataDir string
	// MTU of the bridge and veths; 0 lets the plugin choose.
	MTU int
}

// FileName is the conflist file the agent owns in the conf dir.
const FileName = "10-skiff.conflist"

// Render returns the conflist JSON for c.
func Render(c Config) ([]byte, error) {
	if !c.PodCIDR.IsValid() {
		return nil, fmt.Errorf("rendering cni config: pod cidr is not set")
	}
	if c.Name == "" || c.Bridge == "" || c.DataDir == "" {
		return nil, fmt.Errorf("rendering cni config: name, bridge and data dir are required")
	}
	prefix := c.PodCIDR.Masked()
	gw := prefix.Addr().Next()
	bridge := map[string]any{
		"type":      "bridge",
		"bridge":    c.Bridge,
		"isGateway": true,
		// isDefaultGateway installs the pod's default route; an IPAM route
		// as well would collide with it.
		"isDefaultGateway": true,
		// Masquerading belongs to the service proxy's nftables rules; the
		// bridge plugin's ipMasq would need iptables.
		"ipMasq":      false,
		"hairpinMode": true,
		"ipam": map[string]any{
			"type":    "host-local",
			"dataDir": c.DataDir,
			"ranges":  [][]map[string]string{{{"subnet": prefix.String(), "gateway": gw.String()}}},
		},
	}
	if c.MTU > 0 {
		bridge["mtu"] = c.MTU
	}
	conf := map[string]any{
		"cniVersion": "0.4.0",
		"name":       c.Name,
		"plugins":    []any{bridge},
	}
	b, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("rendering cni config: %w", err)
	}
	return append(b, '\n'), nil
}

// Write renders c into confDir/FileName atomically.
func Write(confDir string, c Config) error {
	b, err := Render(c)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(confDir, 0o755); err != nil {
		return fmt.Errorf("creating cni conf dir: %w", err)
	}
	tmp := filepath.Join(confDir, "."+FileName+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("writing cni config: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(confDir, FileName)); err != nil {
		return fmt.Errorf("writing cni config: %w", err)
	}
	return nil
}

// Allocated lists the IPs host-local holds for network name in dataDir.
func Allocated(dataDir, name string) ([]netip.Addr, error) {
	ents, err := os.ReadDir(filepath.Join(dataDir, name))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading host-local allocations: %w", err)
	}
	var out []netip.Addr
	for _, e := range ents {
		if a, err := netip.ParseAddr(e.Name()); err == nil {
			out = append(out, a)
		}
	}
	return out, nil
}
