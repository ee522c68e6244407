package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// StatsConfig configures the /stats/summary provider.
type StatsConfig struct {
	NodeName string
	// NodeIP picks the node's default interface for network stats.
	NodeIP  string
	Runtime runtimeapi.RuntimeServiceClient
	// FsPath is statfs'd for the node filesystem and ImageFsPath for the
	// runtime's (both default "/").
	FsPath, ImageFsPath string
	// ProcRoot is where /proc is read from (tests).
	ProcRoot string
	// SampleInterval primes CPU rates in the background (default 10 s) so
	// a first request already has usageNanoCores.
	SampleInterval time.Duration
	Now            func() time.Time
}

// Stats assembles summaries from CRI and /proc.
type Stats struct {
	cfg StatsConfig
	mu  sync.Mutex
	r   *rates
}

// NewStats builds a Stats provider.
func NewStats(cfg StatsConfig) *Stats {
	if cfg.FsPath == "" {
		cfg.FsPath = "/"
	}
	if cfg.ImageFsPath == "" {
		cfg.ImageFsPath = cfg.FsPath
	}
	if cfg.ProcRoot == "" {
		cfg.ProcRoot = "/proc"
	}
	if cfg.SampleInterval == 0 {
		cfg.SampleInterval = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Stats{cfg: cfg, r: newRates()}
}

// Run samples every SampleInterval until ctx ends.
func (s *Stats) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.SampleInterval)
	defer t.Stop()
	for {
		_, _ = s.Summary(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Summary reads one sample and assembles it.
func (s *Stats) Summary(ctx context.Context) (Summary, error) {
	in := summaryInput{NodeName: s.cfg.NodeName}
	node, err := s.nodeSample()
	if err != nil {
		return Summary{}, err
	}
	in.Node = node
	sbs, err := s.cfg.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return Summary{}, fmt.Errorf("listing sandboxes: %w", err)
	}
	in.Sandboxes = sbs.GetItems()
	cs, err := s.cfg.Runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		return Summary{}, fmt.Errorf("listing containers: %w", err)
	}
	in.Containers = cs.GetContainers()
	st, err := s.cfg.Runtime.ListContainerStats(ctx, &runtimeapi.ListContainerStatsRequest{})
	if err != nil {
		return Summary{}, fmt.Errorf("listing container stats: %w", err)
	}
	in.Stats = st.GetStats()
	// Pod-level stats (the network) are newer CRI; a runtime without them
	// (Unimplemented) leaves the pods without network stats.
	if ps, err := s.cfg.Runtime.ListPodSandboxStats(ctx, &runtimeapi.ListPodSandboxStatsRequest{}); err == nil {
		in.SandboxStats = map[string]*runtimeapi.PodSandboxStats{}
		for _, p := range ps.GetStats() {
			in.SandboxStats[p.GetAttributes().GetId()] = p
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return assembleSummary(in, s.r), nil
}

// nodeSample reads /proc and statfs.
func (s *Stats) nodeSample() (NodeSample, error) {
	n := NodeSample{Time: s.cfg.Now()}
	stat, err := os.ReadFile(filepath.Join(s.cfg.ProcRoot, "stat"))
	if err != nil {
		return n, fmt.Errorf("reading node cpu: %w", err)
	}
	if n.CPUUsageCoreNanos, n.BootTime, err = parseProcStat(stat); err != nil {
		return n, err
	}
	mem, err := os.ReadFile(filepath.Join(s.cfg.ProcRoot, "meminfo"))
	if err != nil {
		return n, fmt.Errorf("reading node memory: %w", err)
	}
	mi := parseMeminfo(mem)
	n.MemTotal, n.MemFree, n.MemAvail, n.InactFile = mi["MemTotal"], mi["MemFree"], mi["MemAvailable"], mi["Inactive(file)"]
	n.Fs = statfs(s.cfg.FsPath, n.Time)
	n.ImageFs = statfs(s.cfg.ImageFsPath, n.Time)
	if dev, err := os.ReadFile(filepath.Join(s.cfg.ProcRoot, "net", "dev")); err == nil {
		n.Network = parseNetDev(dev, defaultInterface(s.cfg.NodeIP), n.Time)
	}
	return n, nil
}

// userHZ is the kernel's USER_HZ, 100 on every Linux architecture skiff
// runs on.
const userHZ = 100

// parseProcStat returns the CPU time spent not idle (user, nice, system,
// irq, softirq, steal) in nanoseconds, and the boot time.
func parseProcStat(b []byte) (uint64, time.Time, error) {
	var busy uint64
	var boot time.Time
	found := false
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "cpu":
			if len(f) < 9 {
				return 0, boot, fmt.Errorf("parsing /proc/stat cpu line %q", sc.Text())
			}
			for _, i := range []int{1, 2, 3, 6, 7, 8} { // user nice system irq softirq steal
				v, err := strconv.ParseUint(f[i], 10, 64)
				if err != nil {
					return 0, boot, fmt.Errorf("parsing /proc/stat: %w", err)
				}
				busy += v
			}
			found = true
		case "btime":
			if len(f) > 1 {
				if v, err := strconv.ParseInt(f[1], 10, 64); err == nil {
					boot = time.Unix(v, 0)
				}
			}
		}
	}
	if !found {
		return 0, boot, fmt.Errorf("parsing /proc/stat: no cpu line")
	}
	return busy * (1e9 / userHZ), boot, nil
}

// parseMeminfo returns /proc/meminfo in bytes.
func parseMeminfo(b []byte) map[string]uint64 {
	out := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			continue
		}
		if len(f) > 1 && f[1] == "kB" {
			n *= 1024
		}
		out[k] = n
	}
	return out
}

// parseNetDev returns the counters of every interface but loopback, with
// def (or the first) as the default.
func parseNetDev(b []byte, def string, at time.Time) *NetworkStats {
	var ifs []InterfaceStats
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		name = strings.TrimSpace(name)
		f := strings.Fields(rest)
		if name == "lo" || len(f) < 16 {
			continue
		}
		n := func(i int) *uint64 { v, _ := strconv.ParseUint(f[i], 10, 64); return &v }
		ifs = append(ifs, InterfaceStats{Name: name, RxBytes: n(0), RxErrors: n(2), TxBytes: n(8), TxErrors: n(10)})
	}
	if len(ifs) == 0 {
		return nil
	}
	out := &NetworkStats{Time: metav1.NewTime(at), InterfaceStats: ifs[0], Interfaces: ifs}
	for _, i := range ifs {
		if i.Name == def {
			out.InterfaceStats = i
		}
	}
	return out
}

// defaultInterface is the name of the interface holding ip.
func defaultInterface(ip string) string {
	want := net.ParseIP(ip)
	ifs, err := net.Interfaces()
	if err != nil || want == nil {
		return ""
	}
	for _, i := range ifs {
		addrs, _ := i.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.Equal(want) {
				return i.Name
			}
		}
	}
	return ""
}

func statfs(path string, at time.Time) *FsStats {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return nil
	}
	bs := uint64(st.Bsize)
	capacity, avail, free := st.Blocks*bs, st.Bavail*bs, st.Bfree*bs
	return &FsStats{Time: metav1.NewTime(at), CapacityBytes: u64(capacity), AvailableBytes: u64(avail), UsedBytes: u64(capacity - free),
		Inodes: u64(st.Files), InodesFree: u64(st.Ffree), InodesUsed: u64(st.Files - st.Ffree)}
}

// statsSummary serves GET /stats/summary (only_cpu_and_memory=true trims
// the answer as upstream does for metrics-server).
func (s *Server) statsSummary(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Stats == nil {
		http.Error(w, "stats are not available on this node", http.StatusNotFound)
		return
	}
	sum, err := s.cfg.Stats.Summary(r.Context())
	if err != nil {
		http.Error(w, fmt.Sprintf("collecting stats: %v", err), http.StatusInternalServerError)
		return
	}
	if v, _ := strconv.ParseBool(r.URL.Query().Get("only_cpu_and_memory")); v {
		sum.Node.Fs, sum.Node.Network, sum.Node.Runtime = nil, nil, nil
		for i := range sum.Pods {
			sum.Pods[i].Network, sum.Pods[i].EphemeralStorage = nil, nil
			for j := range sum.Pods[i].Containers {
				sum.Pods[i].Containers[j].Rootfs = nil
			}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(sum)
}
