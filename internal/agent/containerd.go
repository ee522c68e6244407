package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"text/template"
	"time"
)

// ContainerdConfig describes the containerd the agent runs for itself.
// Everything lives under Dir so two agents (or a test and the host) never
// share state.
type ContainerdConfig struct {
	// Dir holds config.toml, root/, state/ and containerd.sock.
	Dir string
	// CNIBinDir holds the plugins (Debian: /usr/lib/cni); CNIConfDir is
	// where the agent writes its network config.
	CNIBinDir, CNIConfDir string
	// SandboxImage is the pause image, imported by the agent (never pulled).
	SandboxImage string
	// InsecureRegistries (host:port) are pulled from over plain HTTP: a
	// hosts.toml for each is written under Dir/certs.d, containerd's
	// per-registry configuration directory (more can be dropped there).
	InsecureRegistries []string
	// Binary is the containerd executable; default "containerd" from PATH.
	Binary string
	// Logger receives containerd's output; nil discards it.
	Logger *slog.Logger
}

// ContainerdSocket is the socket of the private containerd of an agent
// with data directory dataDir (`skiff images` uses it).
func ContainerdSocket(dataDir string) string {
	return filepath.Join(dataDir, "agent", "containerd", "containerd.sock")
}

// Socket is the CRI endpoint path of a containerd run with cfg.
func (cfg ContainerdConfig) Socket() string { return filepath.Join(cfg.Dir, "containerd.sock") }

// containerdTemplate is containerd 1.6's version-2 config. cgroupfs rather than
// systemd: systemd is not PID 1 on skiff's nodes. restrict_oom_score_adj
// because the agent may lack CAP_SYS_RESOURCE inside a container.
var containerdTemplate = template.Must(template.New("config").Parse(`version = 2
root = "{{.Dir}}/root"
state = "{{.Dir}}/state"
oom_score = 0

[grpc]
  address = "{{.Dir}}/containerd.sock"

[ttrpc]
  address = "{{.Dir}}/containerd.sock.ttrpc"

[debug]
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{{.SandboxImage}}"
  restrict_oom_score_adj = true
  enable_selinux = false
  max_container_log_line_size = 16384
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{{.Dir}}/certs.d"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{{.CNIBinDir}}"
    conf_dir = "{{.CNIConfDir}}"
    max_conf_num = 1
`))

// RenderContainerdConfig returns config.toml for cfg.
func RenderContainerdConfig(cfg ContainerdConfig) (string, error) {
	var b strings.Builder
	if err := containerdTemplate.Execute(&b, cfg); err != nil {
		return "", fmt.Errorf("rendering containerd config: %w", err)
	}
	return b.String(), nil
}

// Containerd is a running containerd child process.
type Containerd struct {
	cfg  ContainerdConfig
	cmd  *exec.Cmd
	done chan error
}

// StartContainerd writes the config, starts containerd and waits until its
// socket accepts connections. The process is not tied to ctx: call Stop.
func StartContainerd(ctx context.Context, cfg ContainerdConfig) (*Containerd, error) {
	if cfg.Binary == "" {
		cfg.Binary = "containerd"
	}
	for _, d := range []string{cfg.Dir, cfg.CNIConfDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("creating %s: %w", d, err)
		}
	}
	conf, err := RenderContainerdConfig(cfg)
	if err != nil {
		return nil, err
	}
	confPath := filepath.Join(cfg.Dir, "config.toml")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return nil, fmt.Errorf("writing containerd config: %w", err)
	}
	if err := writeRegistryHosts(filepath.Join(cfg.Dir, "certs.d"), cfg.InsecureRegistries); err != nil {
		return nil, err
	}
	// A stale socket from a killed containerd would make the wait succeed early.
	_ = os.Remove(cfg.Socket())
	cmd := exec.Command(cfg.Binary, "--config", confPath)
	// Own process group: a terminal's ^C goes to the agent, which stops
	// containerd in order after its pods' state is safe.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	logFile, err := os.OpenFile(filepath.Join(cfg.Dir, "containerd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening containerd log: %w", err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting containerd: %w", err)
	}
	logFile.Close()
	c := &Containerd{cfg: cfg, cmd: cmd, done: make(chan error, 1)}
	go func() { c.done <- cmd.Wait() }()
	if cfg.Logger != nil {
		cfg.Logger.Info("started containerd", "pid", cmd.Process.Pid, "socket", cfg.Socket())
	}
	if err := c.waitSocket(ctx, 30*time.Second); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

func (c *Containerd) waitSocket(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		conn, err := net.DialTimeout("unix", c.cfg.Socket(), time.Second)
		if err == nil {
			conn.Close()
			return nil
		}
		select {
		case err := <-c.done:
			c.done <- err
			return fmt.Errorf("containerd exited during start (%v); see %s", err, filepath.Join(c.cfg.Dir, "containerd.log"))
		case <-ctx.Done():
			return fmt.Errorf("waiting for containerd socket: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waiting for containerd socket %s: not ready after %s", c.cfg.Socket(), timeout)
		}
	}
}

// Pid is containerd's process id.
func (c *Containerd) Pid() int { return c.cmd.Process.Pid }

// Endpoint is the CRI endpoint URL.
func (c *Containerd) Endpoint() string { return "unix://" + c.cfg.Socket() }

// Stop sends SIGTERM to containerd (by PID), waits up to 10 s, then kills it.
// Container shims are separate processes and keep running: stop the pods
// first when they should not outlive containerd.
func (c *Containerd) Stop() error {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-c.done:
		c.done <- err
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		err := <-c.done
		c.done <- err
	}
	return nil
}

// UnmountUnder lazily unmounts every mount point below dir, deepest first,
// so a data directory can be removed after containerd is gone.
func UnmountUnder(dir string) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("reading mountinfo: %w", err)
	}
	defer f.Close()
	var points []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) < 5 {
			continue
		}
		mp := fields[4]
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			points = append(points, mp)
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	var errs []error
	for _, p := range points {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			errs = append(errs, fmt.Errorf("unmounting %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// writeRegistryHosts writes a hosts.toml per insecure registry: containerd
// resolves and pulls from it over plain HTTP.
func writeRegistryHosts(dir string, hosts []string) error {
	for _, h := range hosts {
		if h == "" || h == "." || h == ".." || strings.ContainsAny(h, "/ \t\"") {
			return fmt.Errorf("insecure registry %q: want host or host:port", h)
		}
		d := filepath.Join(dir, h)
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("creating %s: %w", d, err)
		}
		conf := fmt.Sprintf("server = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", "http://"+h, "http://"+h)
		if err := os.WriteFile(filepath.Join(d, "hosts.toml"), []byte(conf), 0o600); err != nil {
			return fmt.Errorf("writing registry config for %s: %w", h, err)
		}
	}
	return nil
}
