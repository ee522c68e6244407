// Package controllermanager is the `skiff controller-manager` verb: it runs
// skiff's controllers against any Kubernetes-compatible API server, given a
// kubeconfig, the way kube-controller-manager does. Flag definitions live
// here; the work is done by internal/controllermanager.
package controllermanager

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/clientcmd"

	"skiff.dev/skiff/internal/controllermanager"
)

// NewCommand returns `skiff controller-manager`.
func NewCommand() *cobra.Command {
	var (
		kubeconfig string
		cfg        controllermanager.Config
	)
	cmd := &cobra.Command{
		Use:   "controller-manager",
		Short: "Run skiff's controllers (deployments, replicasets, namespaces, endpoints, ...) against an API server",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rules := clientcmd.NewDefaultClientConfigLoadingRules()
			rules.ExplicitPath = kubeconfig
			rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
			if err != nil {
				return fmt.Errorf("loading kubeconfig: %w", err)
			}
			logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
			m, err := controllermanager.New(cfg, rc, logger)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return m.Run(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&kubeconfig, "kubeconfig", "", "path to a kubeconfig (default: $KUBECONFIG, ~/.kube/config or in-cluster)")
	f.BoolVar(&cfg.LeaderElect, "leader-elect", true, "run controllers only while holding the kube-system/kube-controller-manager Lease")
	f.StringVar(&cfg.LeaseNamespace, "leader-elect-resource-namespace", "kube-system", "namespace of the leader election Lease")
	f.StringVar(&cfg.LeaseName, "leader-elect-resource-name", "kube-controller-manager", "name of the leader election Lease")
	f.DurationVar(&cfg.LeaseDuration, "leader-elect-lease-duration", 0, "lease duration (default 15s)")
	f.DurationVar(&cfg.RenewDeadline, "leader-elect-renew-deadline", 0, "renew deadline (default 10s)")
	f.DurationVar(&cfg.RetryPeriod, "leader-elect-retry-period", 0, "retry period (default 2s)")
	f.StringSliceVar(&cfg.Controllers, "controllers", []string{"*"}, "controllers to run: '*' for all, 'name' to enable, '-name' to disable")
	f.StringVar(&cfg.ClusterCIDR, "cluster-cidr", "10.42.0.0/16", "pod network CIDR the node IPAM controller allocates from")
	f.DurationVar(&cfg.ResyncPeriod, "min-resync-period", 0, "shared informer resync period (0: none)")
	return cmd
}
