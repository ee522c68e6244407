package e2e

import (
	"net"
	"testing"
)

// freeKubeletPort is a free TCP port for a test node's kubelet API, so the
// e2e tests neither need 10250 nor collide with a kubelet on the host.
func freeKubeletPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatalf("finding a free kubelet port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
