package main

// Upstream kube-apiserver + etcd, started by the anchor's start.sh
// (../shared/anchors/upstream-k8s), measured with the same code as skiff.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// The loopback ports start.sh uses (fixed in the script).
var upstreamPorts = []int{16443, 23790, 23800, 20259, 20257}

const upstreamAPIPort = 16443

// upstreamProc is one upstream control plane started by $UPSTREAM/start.sh,
// cut down to kube-apiserver + etcd once start.sh has returned.
type upstreamProc struct {
	dir     string
	pids    map[string]int // "kube-apiserver", "etcd"
	readyIn time.Duration  // start.sh launched (etcd not yet running) to /readyz 200
	// apiHealthIn is start.sh's own figure: kube-apiserver launched, with
	// etcd already healthy, to /healthz "ok".
	apiHealthIn time.Duration
}

// checkUpstreamFree refuses to start when any of start.sh's ports is taken
// or its PID files name a live process: another run (the scheduler's
// side-by-side benchmark uses the same ports) or a stale one.
func checkUpstreamFree(dir string) error {
	for _, n := range []string{"etcd", "kube-apiserver", "kube-scheduler", "kube-controller-manager"} {
		if pid, err := readPIDFile(filepath.Join(dir, "run", n+".pid")); err == nil && syscall.Kill(pid, 0) == nil {
			return fmt.Errorf("upstream %s is already running (pid %d): stop it with UPSTREAM=%s %s/stop.sh", n, pid, dir, dir)
		}
	}
	for _, p := range upstreamPorts {
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			return fmt.Errorf("upstream port %d is in use (another upstream run?): %w", p, err)
		}
		l.Close()
	}
	return nil
}

func readPIDFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("bad pid file %s: %q", path, strings.TrimSpace(string(b)))
	}
	return pid, nil
}

// parseAPIHealth finds start.sh's "kube-apiserver /healthz: ok after 3.41 s"
// line.
func parseAPIHealth(out string) (time.Duration, error) {
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "kube-apiserver /healthz:") {
			continue
		}
		fs := strings.Fields(line)
		// kube-apiserver /healthz: ok after N s
		if len(fs) < 6 || fs[2] != "ok" || fs[3] != "after" {
			return 0, fmt.Errorf("kube-apiserver not healthy: %q", line)
		}
		f, err := strconv.ParseFloat(fs[4], 64)
		if err != nil {
			return 0, fmt.Errorf("parsing %q: %w", line, err)
		}
		return time.Duration(f * float64(time.Second)), nil
	}
	return 0, errors.New("no kube-apiserver /healthz line in start.sh output")
}

// startUpstream runs start.sh (FRESH=1 wipes etcd data first), polls
// /readyz with the admin client certificate every 2 ms from the moment the
// script is launched, as startServer does for skiff, then stops
// kube-scheduler and kube-controller-manager so only kube-apiserver and
// etcd remain.
func startUpstream(ctx context.Context, dir, logDir string, fresh bool) (*upstreamProc, error) {
	if err := checkUpstreamFree(dir); err != nil {
		return nil, err
	}
	cfg, err := upstreamRestConfig(dir)
	if err != nil {
		return nil, err
	}
	tlsCfg, err := rest.TLSConfigFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("upstream admin TLS config: %w", err)
	}
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg}}
	defer client.CloseIdleConnections()

	logPath := filepath.Join(logDir, fmt.Sprintf("upstream-start.%d.log", time.Now().UnixNano()))
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("creating start.sh log: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command("bash", filepath.Join(dir, "start.sh"))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "UPSTREAM="+dir)
	if fresh {
		cmd.Env = append(cmd.Env, "FRESH=1")
	}
	u := &upstreamProc{dir: dir, pids: map[string]int{}}
	started := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("running %s/start.sh: %w", dir, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	url := fmt.Sprintf("https://127.0.0.1:%d/readyz", upstreamAPIPort)
	var scriptErr error
	scriptDone := false
	ready := false
	for deadline := time.Now().Add(120 * time.Second); time.Now().Before(deadline); {
		if !scriptDone {
			select {
			case scriptErr = <-done:
				scriptDone = true
			default:
			}
		}
		if err := ctx.Err(); err != nil {
			scriptErr = err
			break
		}
		resp, err := client.Get(url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				u.readyIn = time.Since(started)
				ready = true
				break
			}
		}
		if scriptDone && scriptErr != nil {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	if !scriptDone {
		// start.sh goes on to start and wait for the scheduler and
		// controller manager.
		scriptErr = <-done
	}
	u.readPIDs()
	if !ready || scriptErr != nil {
		u.stop()
		return nil, fmt.Errorf("upstream start.sh (log %s, daemon logs in %s/run): ready=%v, script: %v", logPath, dir, ready, scriptErr)
	}
	out, _ := os.ReadFile(logPath)
	if u.apiHealthIn, err = parseAPIHealth(string(out)); err != nil {
		u.stop()
		return nil, fmt.Errorf("upstream start.sh (log %s): %w", logPath, err)
	}
	for _, n := range []string{"kube-scheduler", "kube-controller-manager"} {
		if err := stopPIDFile(filepath.Join(dir, "run", n+".pid")); err != nil {
			u.stop()
			return nil, fmt.Errorf("stopping upstream %s: %w", n, err)
		}
	}
	for _, n := range []string{"kube-apiserver", "etcd"} {
		if u.pids[n] == 0 {
			u.stop()
			return nil, fmt.Errorf("no pid for upstream %s in %s/run", n, dir)
		}
	}
	return u, nil
}

func (u *upstreamProc) readPIDs() {
	for _, n := range []string{"kube-apiserver", "etcd"} {
		if pid, err := readPIDFile(filepath.Join(u.dir, "run", n+".pid")); err == nil {
			u.pids[n] = pid
		}
	}
}

// stopPIDFile sends SIGTERM to the process a PID file names, waits for it
// to go (SIGKILL after 10 s) and removes the file, so stop.sh does not
// signal a reused PID later.
func stopPIDFile(path string) error {
	pid, err := readPIDFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err == nil {
		deadline := time.Now().Add(10 * time.Second)
		for syscall.Kill(pid, 0) == nil && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if syscall.Kill(pid, 0) == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	return os.Remove(path)
}

// stop runs stop.sh, which stops whatever start.sh started by PID.
func (u *upstreamProc) stop() {
	cmd := exec.Command("bash", filepath.Join(u.dir, "stop.sh"))
	cmd.Env = append(os.Environ(), "UPSTREAM="+u.dir)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	_ = cmd.Run()
}

func upstreamRestConfig(dir string) (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(dir, "pki", "admin.kubeconfig"))
	if err != nil {
		return nil, fmt.Errorf("loading upstream admin kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = -1, 0
	cfg.UserAgent = "skiff-bench"
	return cfg, nil
}

func (u *upstreamProc) restConfig() (*rest.Config, error) { return upstreamRestConfig(u.dir) }

// cpuTime is kube-apiserver's plus etcd's CPU: skiff's one process holds
// both.
func (u *upstreamProc) cpuTime() (time.Duration, error) {
	var sum time.Duration
	for _, n := range []string{"kube-apiserver", "etcd"} {
		c, err := procCPU(u.pids[n])
		if err != nil {
			return 0, fmt.Errorf("upstream %s: %w", n, err)
		}
		sum += c
	}
	return sum, nil
}

func readRSS(pid int) (rss, error) {
	var r rss
	for _, f := range []struct {
		name string
		dst  *int64
	}{{"VmRSS:", &r.total}, {"RssAnon:", &r.anon}, {"RssFile:", &r.file}} {
		v, err := procStatusKB(pid, f.name)
		if err != nil {
			return rss{}, err
		}
		*f.dst = v
	}
	return r, nil
}

func (r rss) add(o rss) rss { return rss{r.total + o.total, r.anon + o.anon, r.file + o.file} }

// upstreamStarts is coldStarts for upstream: n fresh starts, then n
// restarts on the last etcd data. It returns /readyz times from the
// launch of start.sh and start.sh's own kube-apiserver-only /healthz
// times for the fresh starts.
func upstreamStarts(ctx context.Context, dir, logDir string, n int) (fresh, restart, apiOnly durations, err error) {
	for i := 0; i < 2*n; i++ {
		u, err := startUpstream(ctx, dir, logDir, i < n)
		if err != nil {
			return nil, nil, nil, err
		}
		u.stop()
		if i < n {
			fresh = append(fresh, u.readyIn)
			apiOnly = append(apiOnly, u.apiHealthIn)
		} else {
			restart = append(restart, u.readyIn)
		}
	}
	return fresh, restart, apiOnly, nil
}

// upstreamIdleRSS starts a fresh upstream, waits idle with only
// kube-apiserver and etcd running, and reads both processes' memory.
func upstreamIdleRSS(ctx context.Context, dir, logDir string, idle time.Duration) (api, etcd rss, err error) {
	u, err := startUpstream(ctx, dir, logDir, true)
	if err != nil {
		return rss{}, rss{}, err
	}
	defer u.stop()
	select {
	case <-time.After(idle):
	case <-ctx.Done():
		return rss{}, rss{}, ctx.Err()
	}
	if api, err = readRSS(u.pids["kube-apiserver"]); err != nil {
		return rss{}, rss{}, fmt.Errorf("upstream kube-apiserver: %w", err)
	}
	if etcd, err = readRSS(u.pids["etcd"]); err != nil {
		return rss{}, rss{}, fmt.Errorf("upstream etcd: %w", err)
	}
	return api, etcd, nil
}
