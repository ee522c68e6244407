package cli

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"skiff.dev/skiff/internal/server"
)

func newServerCommand() *cobra.Command {
	var cfg server.Config
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the control plane (API server on embedded etcd, controllers, scheduler) and, unless disabled, an agent",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := server.New(cfg)
			if err != nil {
				return err
			}
			AddComponents(s)
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return s.Run(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.DataDir, "data-dir", DefaultDataDir, "directory for etcd data, certificates, kubeconfigs and the join token")
	f.StringVar(&cfg.BindAddress, "bind-address", "0.0.0.0", "address the API server listens on")
	f.IntVar(&cfg.HTTPSPort, "https-port", 6443, "API server HTTPS port")
	f.IntVar(&cfg.EtcdClientPort, "etcd-client-port", 2379, "embedded etcd client port (loopback only)")
	f.IntVar(&cfg.EtcdPeerPort, "etcd-peer-port", 2380, "embedded etcd peer port (loopback only)")
	f.StringSliceVar(&cfg.EtcdServers, "etcd-servers", nil, "use these external etcd endpoints instead of the embedded etcd")
	f.StringVar(&cfg.AdvertiseAddress, "advertise-address", "", "address advertised to clients (default: first host address)")
	f.StringVar(&cfg.ClusterCIDR, "cluster-cidr", "10.42.0.0/16", "pod network CIDR, one /24 per node")
	f.StringVar(&cfg.ServiceCIDR, "service-cidr", "10.43.0.0/16", "service ClusterIP range")
	f.StringVar(&cfg.ServiceNodePortRange, "service-node-port-range", "30000-32767", "port range reserved for NodePort services")
	f.StringVar(&cfg.LoadBalancerAddressPool, "lb-address-pool", "", "addresses for LoadBalancer services, as IPv4 CIDRs or first-last ranges, comma-separated (default: the nodes' InternalIPs)")
	f.BoolVar(&cfg.DisableAgent, "disable-agent", false, "do not run a node agent in this process")
	f.BoolVar(&cfg.DisableScheduler, "disable-scheduler", false, "do not run the scheduler in this process")
	f.BoolVar(&cfg.DisableControllerManager, "disable-controller-manager", false, "do not run the controller manager in this process")
	f.StringSliceVar(&cfg.Controllers, "controllers", []string{"*"}, "in-process controllers to run: '*' for all, 'name' to enable, '-name' to disable")
	return cmd
}
