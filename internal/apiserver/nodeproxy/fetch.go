package nodeproxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// maxFetch bounds a kubelet answer read into memory (a /stats/summary of
// 110 pods is well under 1 MiB).
const maxFetch = 16 << 20

// Fetch GETs path (with its query) from node's kubelet with the API
// server's kubelet client certificate and returns the body, for callers
// inside the API server such as metrics.k8s.io.
func (p *Proxy) Fetch(ctx context.Context, node *corev1.Node, path string) ([]byte, error) {
	host, err := KubeletHost(node)
	if err != nil {
		return nil, err
	}
	p2, q, _ := strings.Cut(path, "?")
	target := &url.URL{Scheme: "https", Host: host, Path: p2, RawQuery: q}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("building kubelet request: %w", err)
	}
	resp, err := p.transport.RoundTrip(req)
	if err != nil {
		return nil, fmt.Errorf("calling the kubelet of node %s: %w", node.Name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxFetch))
	if err != nil {
		return nil, fmt.Errorf("reading from the kubelet of node %s: %w", node.Name, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("kubelet of node %s answered %s: %s", node.Name, resp.Status, strings.TrimSpace(string(body[:min(len(body), 512)])))
	}
	return body, nil
}
