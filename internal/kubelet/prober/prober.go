// Package prober runs liveness, readiness and startup probes (httpGet,
// tcpSocket, exec, grpc) for running containers and keeps their latest
// results.
//
// A container with a startup probe runs only that probe until it succeeds
// once; its liveness and readiness probes start afterwards (Started tells
// the kubelet), and the startup probe stops.
//
// One goroutine per (container, probe kind) ticks every periodSeconds after
// initialDelaySeconds and applies successThreshold/failureThreshold, so a
// result only flips after enough consecutive outcomes. Results are read by
// the kubelet when it builds pod status; OnChange tells it which pod to
// sync. The check itself (Checker) is an interface so the threshold logic is
// tested without networking or a runtime.
package prober

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/utils/clock"
)

// Kind is the probe kind.
type Kind string

const (
	Liveness  Kind = "liveness"
	Readiness Kind = "readiness"
	Startup   Kind = "startup"
)

// Target is what a probe checks.
type Target struct {
	PodUID      types.UID
	PodIP       string
	ContainerID string
	Container   *v1.Container
}

// Checker performs one probe attempt; nil means success.
type Checker interface {
	Check(ctx context.Context, p *v1.Probe, t Target) error
}

// Manager owns the probe workers.
type Manager struct {
	checker  Checker
	clock    clock.WithTicker
	onChange func(types.UID)

	mu      sync.Mutex
	workers map[key]*worker
	results map[key]bool
}

type key struct {
	containerID string
	kind        Kind
}

type worker struct {
	uid    types.UID
	cancel context.CancelFunc
}

// NewManager returns a Manager; onChange is called (from a probe goroutine)
// whenever a result flips.
func NewManager(checker Checker, clk clock.WithTicker, onChange func(types.UID)) *Manager {
	return &Manager{checker: checker, clock: clk, onChange: onChange, workers: map[key]*worker{}, results: map[key]bool{}}
}

// Result is the latest result for a container's probe; ok is false while
// none is known (before the first threshold is reached).
func (m *Manager) Result(containerID string, kind Kind) (result, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.results[key{containerID, kind}]
	return r, ok
}

// Started reports whether a running container counts as started: it has
// no startup probe or that probe has succeeded.
func (m *Manager) Started(containerID string, c *v1.Container) bool {
	if c.StartupProbe == nil {
		return true
	}
	r, ok := m.Result(containerID, Startup)
	return ok && r
}

// Ensure starts workers for t's probes that are not running yet; liveness
// and readiness wait until the container has started.
func (m *Manager) Ensure(ctx context.Context, t Target) {
	started := m.Started(t.ContainerID, t.Container)
	for kind, p := range map[Kind]*v1.Probe{Liveness: t.Container.LivenessProbe, Readiness: t.Container.ReadinessProbe, Startup: t.Container.StartupProbe} {
		if p == nil || (kind != Startup && !started) {
			continue
		}
		k := key{t.ContainerID, kind}
		m.mu.Lock()
		if _, ok := m.workers[k]; ok {
			m.mu.Unlock()
			continue
		}
		wctx, cancel := context.WithCancel(ctx)
		m.workers[k] = &worker{uid: t.PodUID, cancel: cancel}
		m.mu.Unlock()
		go m.run(wctx, k, p, t)
	}
}

// RetainPod stops the workers of pod uid's containers not in live (by
// container ID) and forgets their results.
func (m *Manager) RetainPod(uid types.UID, live map[string]bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, w := range m.workers {
		if w.uid == uid && !live[k.containerID] {
			w.cancel()
			delete(m.workers, k)
			delete(m.results, k)
		}
	}
}

func (m *Manager) run(ctx context.Context, k key, p *v1.Probe, t Target) {
	period := time.Duration(max(p.PeriodSeconds, 1)) * time.Second
	timeout := time.Duration(max(p.TimeoutSeconds, 1)) * time.Second
	successThreshold, failureThreshold := max(p.SuccessThreshold, 1), max(p.FailureThreshold, 1)
	if k.kind != Readiness {
		successThreshold = 1 // upstream requires 1 for liveness and startup
	}
	if p.InitialDelaySeconds > 0 {
		select {
		case <-ctx.Done():
			return
		case <-m.clock.After(time.Duration(p.InitialDelaySeconds) * time.Second):
		}
	}
	tick := m.clock.NewTicker(period)
	defer tick.Stop()
	var successes, failures int32
	for {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		err := m.checker.Check(cctx, p, t)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			successes, failures = successes+1, 0
		} else {
			successes, failures = 0, failures+1
		}
		switch {
		case successes >= successThreshold:
			m.set(k, true, t.PodUID)
			if k.kind == Startup {
				return // a startup probe is done once it has succeeded
			}
		case failures >= failureThreshold:
			m.set(k, false, t.PodUID)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C():
		}
	}
}

func (m *Manager) set(k key, r bool, uid types.UID) {
	m.mu.Lock()
	old, ok := m.results[k]
	m.results[k] = r
	m.mu.Unlock()
	if (!ok || old != r) && m.onChange != nil {
		m.onChange(uid)
	}
}

// NetChecker runs httpGet and tcpSocket probes from the node and exec
// probes through CRI ExecSync.
type NetChecker struct {
	Runtime runtimeapi.RuntimeServiceClient
}

var _ Checker = NetChecker{}

// Check performs one probe attempt.
func (c NetChecker) Check(ctx context.Context, p *v1.Probe, t Target) error {
	switch {
	case p.HTTPGet != nil:
		return checkHTTP(ctx, p.HTTPGet, t)
	case p.TCPSocket != nil:
		port, err := resolvePort(p.TCPSocket.Port, t.Container)
		if err != nil {
			return err
		}
		host := p.TCPSocket.Host
		if host == "" {
			host = t.PodIP
		}
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return fmt.Errorf("dialing: %w", err)
		}
		return conn.Close()
	case p.GRPC != nil:
		return checkGRPC(ctx, p.GRPC, t.PodIP)
	case p.Exec != nil:
		deadline, _ := ctx.Deadline()
		resp, err := c.Runtime.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: t.ContainerID, Cmd: p.Exec.Command, Timeout: int64(time.Until(deadline).Seconds() + 0.5)})
		if err != nil {
			return fmt.Errorf("exec probe: %w", err)
		}
		if resp.GetExitCode() != 0 {
			return fmt.Errorf("exec probe exited %d: %s", resp.GetExitCode(), resp.GetStderr())
		}
		return nil
	}
	return fmt.Errorf("probe has no handler")
}

func checkHTTP(ctx context.Context, g *v1.HTTPGetAction, t Target) error {
	return HTTPGet(ctx, g, t.PodIP, t.Container)
}

// HTTPGet performs an httpGet action (a probe or a lifecycle hook) against
// podIP unless the action names a host; a status outside 200-399 is an
// error.
func HTTPGet(ctx context.Context, g *v1.HTTPGetAction, podIP string, c *v1.Container) error {
	t := Target{PodIP: podIP, Container: c}
	port, err := resolvePort(g.Port, t.Container)
	if err != nil {
		return err
	}
	host := g.Host
	if host == "" {
		host = t.PodIP
	}
	scheme := "http"
	if g.Scheme == v1.URISchemeHTTPS {
		scheme = "https"
	}
	u := url.URL{Scheme: scheme, Host: net.JoinHostPort(host, strconv.Itoa(port)), Path: g.Path}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("building probe request: %w", err)
	}
	req.Header.Set("User-Agent", "kube-probe/skiff")
	for _, h := range g.HTTPHeaders {
		req.Header.Add(h.Name, h.Value)
	}
	resp, err := probeClient.Do(req)
	if err != nil {
		return fmt.Errorf("probe request: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 10<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("probe returned http %d", resp.StatusCode)
	}
	return nil
}

// probeClient does not follow redirects off the pod and keeps no idle
// connections: probes must not hold sockets open in the pod.
var probeClient = &http.Client{
	Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

func resolvePort(p intstr.IntOrString, c *v1.Container) (int, error) {
	if p.Type == intstr.Int {
		return p.IntValue(), nil
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort), nil
		}
	}
	if n, err := strconv.Atoi(p.StrVal); err == nil {
		return n, nil
	}
	return 0, fmt.Errorf("port %q not found in container %s", p.StrVal, c.Name)
}
