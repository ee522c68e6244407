// Package agent is the `skiff agent` verb (run a node) and `skiff
// check-config` (list missing node prerequisites). Flags live here; the node
// itself is internal/agent.
package agent

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"skiff.dev/skiff/internal/agent"
	"skiff.dev/skiff/internal/memtrim"
)

// NewCommand returns `skiff agent`.
func NewCommand() *cobra.Command {
	var cfg agent.Config
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run a node: a kubelet on containerd that runs the pods bound to it",
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
			a, err := agent.New(cfg, agent.Deps{Logger: logger})
			if err != nil {
				return err
			}
			parent := cmd.Context()
			if parent == nil {
				parent = context.Background()
			}
			ctx, stop := signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
			defer stop()
			// Once the node is up, hand back the binary's start-up pages
			// and keep only the pages the agent goes on touching
			// (internal/memtrim, Options.Exact).
			go memtrim.AfterWith(ctx, a.ImagesReady(), 5*time.Second, logger, memtrim.Options{Exact: true})
			return a.Run(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Server, "server", "", "API server URL, e.g. https://HOST:6443")
	f.StringVar(&cfg.Token, "token", "", "join token (K10 form or bare secret) from the server's <data-dir>/token")
	f.StringVar(&cfg.CAFile, "ca-file", "", "API server CA certificate (default: the CA pinned by a K10 token, when the server presents it)")
	f.StringVar(&cfg.Kubeconfig, "kubeconfig", "", "authenticate with this kubeconfig instead of --server/--token")
	f.StringVar(&cfg.DataDir, "data-dir", "/var/lib/skiff", "directory for node state (the agent uses <data-dir>/agent)")
	f.StringVar(&cfg.NodeName, "node-name", "", "node name (default: hostname)")
	f.StringVar(&cfg.NodeIP, "node-ip", "", "node InternalIP (default: address of the default route)")
	f.IntVar(&cfg.KubeletPort, "kubelet-port", 10250, "kubelet API port advertised in the Node")
	f.StringVar(&cfg.ContainerRuntimeEndpoint, "container-runtime-endpoint", "", "existing CRI socket (unix:///…); default: run a private containerd")
	f.StringVar(&cfg.PodCIDR, "pod-cidr", "", "pod subnet when the Node has none (default: the one the server's node IPAM assigns, or 10.42.0.0/24 when none is assigned within 30 s)")
	f.StringVar(&cfg.CNIBinDir, "cni-bin-dir", "/usr/lib/cni", "directory of the CNI plugins")
	f.StringVar(&cfg.Bridge, "bridge", "skiff0", "Linux bridge for pod networking")
	f.StringSliceVar(&cfg.InsecureRegistries, "insecure-registry", nil, "registry host:port to pull from over plain HTTP (repeatable)")
	f.BoolVar(&cfg.Ingress.Disable, "disable-ingress", false, "do not run the built-in ingress controller (IngressClass skiff) on this node")
	f.IntVar(&cfg.Ingress.HTTPPort, "ingress-http-port", 80, "port of the built-in ingress controller's HTTP listener")
	f.IntVar(&cfg.Ingress.HTTPSPort, "ingress-https-port", 443, "port of the built-in ingress controller's HTTPS listener")
	f.StringVar(&cfg.FlannelBackend, "flannel-backend", "vxlan", "how pod traffic crosses nodes: vxlan, host-gw (nodes on one L2 segment) or none")
	f.IntVar(&cfg.VXLANPort, "vxlan-port", 8472, "UDP port of the VXLAN overlay")
	f.StringVar(&cfg.VXLANDevice, "vxlan-device", "skiff.1", "name of the VXLAN device")
	f.StringVar(&cfg.CgroupRoot, "cgroup-root", "/skiff", "cgroupfs parent of the pods' cgroups")
	f.StringVar(&cfg.ServiceNetwork.ClusterCIDR, "cluster-cidr", "10.42.0.0/16", "every pod network of the cluster (the server's --cluster-cidr): pod traffic to anything else is masqueraded")
	f.StringVar(&cfg.ServiceNetwork.ClusterDomain, "cluster-domain", "cluster.local", "DNS domain of the cluster DNS this node serves")
	f.BoolVar(&cfg.ServiceNetwork.Disable, "disable-service-network", false, "do not run the service proxy, node NAT (egress masquerade, hostPorts) and cluster DNS on this node")
	return cmd
}

// NewCheckConfigCommand returns `skiff check-config`.
func NewCheckConfigCommand() *cobra.Command {
	var o agent.PrereqOptions
	var endpoint string
	cmd := &cobra.Command{
		Use:   "check-config",
		Short: "Check this machine has what a skiff node needs (containerd, runc, CNI plugins, nftables, cgroups, overlayfs)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.ExternalRuntime = endpoint != ""
			ps := agent.CheckPrereqs(o)
			if len(ps) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "all node prerequisites are present")
				return nil
			}
			fmt.Fprint(cmd.OutOrStdout(), agent.FormatProblems(ps))
			return fmt.Errorf("%d node prerequisite(s) missing", len(ps))
		},
	}
	cmd.Flags().StringVar(&o.CNIBinDir, "cni-bin-dir", "/usr/lib/cni", "directory of the CNI plugins")
	cmd.Flags().StringVar(&endpoint, "container-runtime-endpoint", "", "skip the containerd/runc checks: an existing CRI runtime is used")
	return cmd
}
