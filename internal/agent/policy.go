package agent

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"k8s.io/client-go/kubernetes"

	"skiff.dev/skiff/internal/network/policy"
)

// bridgeNFCallIPTables makes the bridge pass bridged IPv4 frames through
// the IP netfilter hooks, where the policy table (and the proxy's DNAT of
// a reply between two pods of the same bridge) sees them.
const bridgeNFCallIPTables = "/proc/sys/net/bridge/bridge-nf-call-iptables"

// startNetworkPolicy enforces NetworkPolicies on this node's pods (the
// skiff-policy nftables table, internal/network/policy) until ctx ends.
// It is always on; a failure is logged, not fatal, so the node still runs
// pods (unisolated) and the problem is visible.
func (a *Agent) startNetworkPolicy(ctx context.Context, client kubernetes.Interface) {
	if err := ensureBridgeNetfilter(); err != nil {
		a.log.Warn("traffic between pods of this node will not be subject to NetworkPolicy", "err", err)
	}
	c, err := policy.New(policy.Config{NodeName: a.cfg.NodeName}, policy.Deps{Client: client, Logger: a.deps.Logger})
	if err != nil {
		a.log.Error("NetworkPolicy enforcement is off", "err", err)
		return
	}
	go func() {
		if err := c.Run(ctx); err != nil {
			a.log.Error("NetworkPolicy enforcement stopped", "err", err)
		}
	}()
}

// ensureBridgeNetfilter loads br_netfilter if needed and turns on
// bridge-nf-call-iptables in the agent's network namespace.
func ensureBridgeNetfilter() error {
	if _, err := os.Stat(bridgeNFCallIPTables); os.IsNotExist(err) {
		if out, err := exec.Command("modprobe", "br_netfilter").CombinedOutput(); err != nil {
			return fmt.Errorf("loading br_netfilter: %v: %s", err, strings.TrimSpace(string(out)))
		}
	}
	b, err := os.ReadFile(bridgeNFCallIPTables)
	if err != nil {
		return fmt.Errorf("reading %s: %w", bridgeNFCallIPTables, err)
	}
	if strings.TrimSpace(string(b)) == "1" {
		return nil
	}
	if err := os.WriteFile(bridgeNFCallIPTables, []byte("1\n"), 0o644); err != nil {
		return fmt.Errorf("enabling %s: %w", bridgeNFCallIPTables, err)
	}
	return nil
}
