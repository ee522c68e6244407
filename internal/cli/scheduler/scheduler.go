// Package scheduler is the `skiff scheduler` verb: run the scheduler
// against any API server reachable through a kubeconfig.
package scheduler

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	sched "skiff.dev/skiff/internal/scheduler"
)

type options struct {
	kubeconfig  string
	leaderElect bool
	name        string
	percentage  int32
	qps         float32
	burst       int
}

// NewCommand returns `skiff scheduler`.
func NewCommand() *cobra.Command {
	o := &options{}
	cmd := &cobra.Command{
		Use:   "scheduler",
		Short: "Run the pod scheduler against an API server",
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "path to a kubeconfig (default: in-cluster / $KUBECONFIG)")
	f.BoolVar(&o.leaderElect, "leader-elect", false, "elect a leader through the kube-system/kube-scheduler Lease")
	f.StringVar(&o.name, "scheduler-name", sched.DefaultSchedulerName, "schedule pods whose spec.schedulerName is this")
	f.Int32Var(&o.percentage, "percentage-of-nodes-to-score", 0, "percentage of nodes to find feasible before scoring (0: adaptive)")
	f.Float32Var(&o.qps, "kube-api-qps", 5000, "client QPS limit")
	f.IntVar(&o.burst, "kube-api-burst", 10000, "client burst limit")
	return cmd
}

func run(cmd *cobra.Command, o *options) error {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = o.kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, nil).ClientConfig()
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = o.qps, o.burst
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("creating client: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	factory := informers.NewSharedInformerFactory(client, 0)
	s, err := sched.New(sched.Config{SchedulerName: o.name, PercentageOfNodesToScore: o.percentage,
		LeaderElection: sched.LeaderElection{Enabled: o.leaderElect}}, client, factory, logger)
	if err != nil {
		return fmt.Errorf("creating scheduler: %w", err)
	}
	return s.Run(cmd.Context())
}
