package cli

import (
	"context"
	"fmt"
	"time"

	"k8s.io/client-go/discovery"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"

	"skiff.dev/skiff/internal/agent"
	"skiff.dev/skiff/internal/controllermanager"
	"skiff.dev/skiff/internal/memtrim"
	"skiff.dev/skiff/internal/scheduler"
	"skiff.dev/skiff/internal/server"
)

// AddComponents registers the in-process components `skiff server` runs
// beside the API server, honouring the --disable-* flags. Each talks to
// the API server through client-go, exactly as the standalone `skiff
// controller-manager` and `skiff scheduler` do; the controller manager and
// scheduler through the in-process transport (Server.InProcessConfig: the
// API handler called in memory, no TLS or sockets), the agent over HTTPS
// like a remote node. The controller manager and scheduler share one set of
// informers (sharedInformers).
func AddComponents(s *server.Server) {
	s.Components = append(s.Components, components(s.Config())...)
}

// components are the component factories AddComponents registers for cfg.
func components(cfg server.Config) []server.ComponentFactory {
	var out []server.ComponentFactory
	shared := &sharedInformers{}
	if !cfg.DisableControllerManager {
		out = append(out, func(ctx context.Context, s *server.Server) (server.Component, error) {
			rc, err := s.InProcessConfig()
			if err != nil {
				return nil, err
			}
			f, err := shared.take(ctx, s, rc, "controller-manager")
			if err != nil {
				return nil, err
			}
			return newControllerManager(rc, f, cfg.ClusterCIDR, cfg.LoadBalancerAddressPool, cfg.Controllers, s)
		})
	}
	if !cfg.DisableAgent {
		out = append(out, func(ctx context.Context, s *server.Server) (server.Component, error) {
			// The in-process agent talks to the API server like a remote one,
			// through the loopback client.
			a, err := agent.New(agent.Config{DataDir: cfg.DataDir, ServiceNetwork: agent.ServiceNetworkConfig{ClusterCIDR: cfg.ClusterCIDR}}, agent.Deps{RestConfig: s.LoopbackConfig(), Logger: s.Logger()})
			if err != nil {
				return nil, err
			}
			// The node's start-up (containerd, images) touches more of the
			// binary after the server's own trim: trim again once it is up.
			go memtrim.After(ctx, a.ImagesReady(), 5*time.Second, s.Logger())
			return a, nil
		})
	}
	if !cfg.DisableScheduler {
		out = append(out, func(ctx context.Context, s *server.Server) (server.Component, error) {
			rc, err := s.InProcessConfig()
			if err != nil {
				return nil, err
			}
			f, err := shared.take(ctx, s, rc, "scheduler")
			if err != nil {
				return nil, err
			}
			return newScheduler(rc, f, s)
		})
	}
	return out
}

// newControllerManager builds the in-process controller manager on
// factory, or on factories of its own when factory is nil.
func newControllerManager(rc *rest.Config, factory informers.SharedInformerFactory, clusterCIDR, lbPool string, controllers []string, s *server.Server) (server.Component, error) {
	rc = rest.CopyConfig(rc)
	rc.UserAgent = "skiff-controller-manager"
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("building controller-manager client: %w", err)
	}
	meta, err := metadata.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("building controller-manager metadata client: %w", err)
	}
	disc, err := discovery.NewDiscoveryClientForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("building controller-manager discovery client: %w", err)
	}
	return controllermanager.NewForClients(controllermanager.Config{
		LeaderElect:             true,
		ClusterCIDR:             clusterCIDR,
		LoadBalancerAddressPool: lbPool,
		Controllers:             controllers,
	}, controllermanager.Clients{Kube: kube, Metadata: meta, Discovery: disc, Informers: factory}, s.Logger())
}

// newScheduler builds the in-process scheduler on factory, or on a factory
// of its own when factory is nil.
func newScheduler(rc *rest.Config, factory informers.SharedInformerFactory, s *server.Server) (server.Component, error) {
	rc = rest.CopyConfig(rc)
	rc.UserAgent = "skiff-scheduler"
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("building scheduler client: %w", err)
	}
	if factory == nil {
		factory = informers.NewSharedInformerFactory(kube, 0)
	}
	return scheduler.New(scheduler.Config{LeaderElection: scheduler.LeaderElection{Enabled: true}}, kube, factory, s.Logger())
}
