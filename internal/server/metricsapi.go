package server

import (
	"context"
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"

	"skiff.dev/skiff/internal/apiserver/metricsapi"
	"skiff.dev/skiff/internal/apiserver/nodeproxy"
	kubeletserver "skiff.dev/skiff/internal/kubelet/server"
	"skiff.dev/skiff/internal/registry/generic"
)

// metricsAPI builds metrics.k8s.io over the stores and the kubelets'
// summaries, read through the node proxy's kubelet client.
func (s *Server) metricsAPI(proxy *nodeproxy.Proxy) (*metricsapi.API, error) {
	return metricsapi.New(metricsapi.Config{
		Nodes: func(ctx context.Context) ([]corev1.Node, error) {
			o, err := s.store("", "nodes").List(ctx, "", generic.ListOptions{ResourceVersion: "0"})
			if err != nil {
				return nil, err
			}
			return o.(*corev1.NodeList).Items, nil
		},
		Pods: func(ctx context.Context, ns string) ([]corev1.Pod, error) {
			o, err := s.store("", "pods").List(ctx, ns, generic.ListOptions{ResourceVersion: "0"})
			if err != nil {
				return nil, err
			}
			return o.(*corev1.PodList).Items, nil
		},
		Summary: func(ctx context.Context, n *corev1.Node) (*kubeletserver.Summary, error) {
			b, err := proxy.Fetch(ctx, n, "/stats/summary?only_cpu_and_memory=true")
			if err != nil {
				return nil, err
			}
			var sum kubeletserver.Summary
			if err := json.Unmarshal(b, &sum); err != nil {
				return nil, fmt.Errorf("decoding the summary of node %s: %w", n.Name, err)
			}
			return &sum, nil
		},
		Logger: s.log,
	})
}
