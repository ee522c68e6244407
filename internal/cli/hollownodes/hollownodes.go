// Package hollownodes is the `skiff hollow-nodes` verb: register N
// simulated nodes (see internal/hollow) against an API server.
package hollownodes

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"skiff.dev/skiff/internal/hollow"
)

type options struct {
	kubeconfig        string
	count             int
	prefix            string
	cpu, memory, pods string
	labels, taints    []string
	qps               float32
	burst             int
}

// NewCommand returns `skiff hollow-nodes`.
func NewCommand() *cobra.Command {
	o := &options{}
	cmd := &cobra.Command{
		Use:   "hollow-nodes",
		Short: "Register simulated nodes that heartbeat and run pods without containers",
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts, err := o.toOptions()
			if err != nil {
				return err
			}
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
			opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
			return hollow.New(client, opts).Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "path to a kubeconfig")
	f.IntVar(&o.count, "count", 1, "number of nodes")
	f.StringVar(&o.prefix, "prefix", "hollow-node-", "node name prefix")
	f.StringVar(&o.cpu, "cpu", "32", "cpu capacity per node")
	f.StringVar(&o.memory, "memory", "256Gi", "memory capacity per node")
	f.StringVar(&o.pods, "pods", "110", "pod capacity per node")
	f.StringSliceVar(&o.labels, "labels", nil, "node labels k=v,...")
	f.StringSliceVar(&o.taints, "taints", nil, "node taints k=v:Effect,...")
	f.Float32Var(&o.qps, "kube-api-qps", 2000, "client QPS limit")
	f.IntVar(&o.burst, "kube-api-burst", 4000, "client burst limit")
	return cmd
}

func (o *options) toOptions() (hollow.Options, error) {
	opts := hollow.Options{Count: o.count, Prefix: o.prefix, CPU: o.cpu, Memory: o.memory, Pods: o.pods, Labels: map[string]string{}}
	for _, l := range o.labels {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return opts, fmt.Errorf("parsing label %q: want k=v", l)
		}
		opts.Labels[k] = v
	}
	for _, t := range o.taints {
		taint, err := ParseTaint(t)
		if err != nil {
			return opts, err
		}
		opts.Taints = append(opts.Taints, taint)
	}
	return opts, nil
}

// ParseTaint parses k=v:Effect or k:Effect.
func ParseTaint(s string) (v1.Taint, error) {
	kv, effect, ok := strings.Cut(s, ":")
	if !ok {
		return v1.Taint{}, fmt.Errorf("parsing taint %q: want k=v:Effect", s)
	}
	k, v, _ := strings.Cut(kv, "=")
	e := v1.TaintEffect(effect)
	switch e {
	case v1.TaintEffectNoSchedule, v1.TaintEffectPreferNoSchedule, v1.TaintEffectNoExecute:
	default:
		return v1.Taint{}, fmt.Errorf("parsing taint %q: unknown effect %q", s, effect)
	}
	if k == "" {
		return v1.Taint{}, fmt.Errorf("parsing taint %q: empty key", s)
	}
	return v1.Taint{Key: k, Value: v, Effect: e}, nil
}
