// Package framework starts an in-process skiff control plane for
// integration tests: embedded etcd (no fsync) on free loopback ports, the
// API server on a free port, and optionally the controller manager and
// scheduler. It hands back client configs and the admin kubeconfig path so
// tests can drive the server with client-go or real kubectl binaries.
package framework

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"skiff.dev/skiff/internal/cli"
	"skiff.dev/skiff/internal/server"
)

// Options select what runs besides the API server.
type Options struct {
	// ControllerManager and Scheduler run the in-process components.
	ControllerManager bool
	Scheduler         bool
	// Controllers selects the controller manager's controllers
	// (server.Config.Controllers; empty: all).
	Controllers []string
	// Logs sends the server's logs to the test log.
	Logs bool
	// EtcdServers uses an external etcd instead of the embedded one.
	EtcdServers []string
	// NodeCertValidity shortens the node client certificates the server
	// signs (server.Config.NodeCertValidity), for rotation tests.
	NodeCertValidity time.Duration
}

// Cluster is a running test control plane.
type Cluster struct {
	Server     *server.Server
	Config     *rest.Config
	Client     kubernetes.Interface
	Kubeconfig string
	DataDir    string
}

// Start starts a control plane and stops it when the test ends.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	dir := t.TempDir()
	var logger *slog.Logger
	if opts.Logs {
		logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	} else {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s, err := server.New(server.Config{
		DataDir:                  dir,
		BindAddress:              "127.0.0.1",
		HTTPSPort:                freePort(t),
		EtcdClientPort:           freePort(t),
		EtcdPeerPort:             freePort(t),
		AdvertiseAddress:         "127.0.0.1",
		DisableAgent:             true,
		DisableControllerManager: !opts.ControllerManager,
		DisableScheduler:         !opts.Scheduler,
		Controllers:              opts.Controllers,
		EtcdServers:              opts.EtcdServers,
		UnsafeNoFsync:            true,
		NodeCertValidity:         opts.NodeCertValidity,
		Logger:                   logger,
	})
	if err != nil {
		t.Fatalf("configuring server: %v", err)
	}
	cli.AddComponents(s)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		// Stopping embedded etcd can take a while on a busy machine, and
		// t.TempDir's removal must not race it: etcd exits the whole test
		// binary when its WAL directory vanishes under it.
		case <-time.After(time.Minute):
			buf := make([]byte, 4<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Errorf("server did not stop within a minute; goroutines:\n%s", buf)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for !s.Ready() {
		select {
		case err := <-done:
			t.Fatalf("server exited during start: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not ready after 30s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	rc := s.LoopbackConfig()
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatalf("building client: %v", err)
	}
	return &Cluster{Server: s, Config: rc, Client: client, Kubeconfig: server.AdminKubeconfigPath(dir), DataDir: dir}
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// KubectlBinaries returns the real kubectl binaries to test against: the
// oldest and newest shipped beside the preinstalled kubectl (kubectl.1.27,
// kubectl.1.33), or nil when none are installed.
func KubectlBinaries() map[string]string {
	out := map[string]string{}
	p, err := exec.LookPath("kubectl")
	if err != nil {
		return out
	}
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return out
	}
	dir := filepath.Dir(real)
	for _, v := range []string{"1.27", "1.33"} {
		b := filepath.Join(dir, "kubectl."+v)
		if st, err := os.Stat(b); err == nil && !st.IsDir() {
			out[v] = b
		}
	}
	return out
}

// Kubectl runs a kubectl binary against the cluster and returns its
// combined output.
func (c *Cluster) Kubectl(t testing.TB, bin string, stdin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
	cmd.Env = append(os.Environ(), "KUBECONFIG=", "HOME="+c.DataDir)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}
