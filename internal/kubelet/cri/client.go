// Package cri is skiff's thin client for the Container Runtime Interface:
// the runtime and image services of a CRI runtime (containerd) over its unix
// socket. It adds nothing but dialing, so the kubelet talks CRI directly and
// tests can substitute fakes for the two service interfaces.
package cri

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// maxMsgSize matches the kubelet's limit: container lists on busy nodes
// exceed gRPC's 4 MiB default.
const maxMsgSize = 16 << 20

// Client holds both CRI services on one connection.
type Client struct {
	Runtime runtimeapi.RuntimeServiceClient
	Image   runtimeapi.ImageServiceClient
	conn    *grpc.ClientConn
}

// Dial connects to endpoint ("unix:///path" or a bare socket path) and waits
// until the runtime answers Version, or ctx ends (give it a deadline).
func Dial(ctx context.Context, endpoint string) (*Client, error) {
	path := strings.TrimPrefix(endpoint, "unix://")
	if strings.Contains(path, "://") {
		return nil, fmt.Errorf("dialing cri endpoint %q: only unix sockets are supported", endpoint)
	}
	conn, err := grpc.NewClient("passthrough:///"+path,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMsgSize), grpc.MaxCallSendMsgSize(maxMsgSize)),
	)
	if err != nil {
		return nil, fmt.Errorf("dialing cri endpoint %q: %w", endpoint, err)
	}
	c := &Client{
		Runtime: runtimeapi.NewRuntimeServiceClient(conn),
		Image:   runtimeapi.NewImageServiceClient(conn),
		conn:    conn,
	}
	// A restarting containerd accepts connections before its CRI plugin
	// has recovered ("server is not initialized yet"): retry until ready.
	for {
		_, err := c.Version(ctx)
		if err == nil {
			return c, nil
		}
		select {
		case <-ctx.Done():
			conn.Close()
			return nil, err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Version asks the runtime for its name and version.
func (c *Client) Version(ctx context.Context) (*runtimeapi.VersionResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v, err := c.Runtime.Version(ctx, &runtimeapi.VersionRequest{})
	if err != nil {
		return nil, fmt.Errorf("getting cri runtime version: %w", err)
	}
	return v, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }
