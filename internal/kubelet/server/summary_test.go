package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func sandbox(id, ns, name string, ready bool) *runtimeapi.PodSandbox {
	st := runtimeapi.PodSandboxState_SANDBOX_NOTREADY
	if ready {
		st = runtimeapi.PodSandboxState_SANDBOX_READY
	}
	return &runtimeapi.PodSandbox{Id: id, State: st, CreatedAt: t0.UnixNano(),
		Metadata: &runtimeapi.PodSandboxMetadata{Name: name, Namespace: ns, Uid: "uid-" + name}}
}

func container(id, sb, name string, running bool) *runtimeapi.Container {
	st := runtimeapi.ContainerState_CONTAINER_EXITED
	if running {
		st = runtimeapi.ContainerState_CONTAINER_RUNNING
	}
	return &runtimeapi.Container{Id: id, PodSandboxId: sb, State: st, CreatedAt: t0.UnixNano(), Metadata: &runtimeapi.ContainerMetadata{Name: name}}
}

func cstats(id string, at time.Time, cpuNanos, ws uint64) *runtimeapi.ContainerStats {
	return &runtimeapi.ContainerStats{
		Attributes: &runtimeapi.ContainerAttributes{Id: id},
		Cpu:        &runtimeapi.CpuUsage{Timestamp: at.UnixNano(), UsageCoreNanoSeconds: &runtimeapi.UInt64Value{Value: cpuNanos}},
		Memory:     &runtimeapi.MemoryUsage{Timestamp: at.UnixNano(), WorkingSetBytes: &runtimeapi.UInt64Value{Value: ws}},
	}
}

func TestAssembleSummary(t *testing.T) {
	r := newRates()
	in := func(at time.Time, a, b uint64) summaryInput {
		return summaryInput{
			NodeName: "n1",
			Node:     NodeSample{Time: at, BootTime: t0.Add(-time.Hour), CPUUsageCoreNanos: a + b + 1e9, MemTotal: 1000, MemFree: 400, MemAvail: 500, InactFile: 100},
			Sandboxes: []*runtimeapi.PodSandbox{
				sandbox("sb1", "ns", "web", true), sandbox("sb0", "ns", "old", false), sandbox("sb2", "kube-system", "dns", true),
			},
			Containers: []*runtimeapi.Container{
				container("c1", "sb1", "app", true), container("c2", "sb1", "side", true), container("c0", "sb1", "exited", false),
				container("c9", "sb0", "gone", true), container("c3", "sb2", "dns", true),
			},
			Stats: []*runtimeapi.ContainerStats{cstats("c1", at, a, 100<<20), cstats("c2", at, b, 20<<20), cstats("c3", at, 5e8, 1<<20)},
		}
	}
	first := assembleSummary(in(t0, 1e9, 2e9), r)
	if first.Node.CPU.UsageNanoCores != nil {
		t.Fatal("a rate from a single sample")
	}
	if got := *first.Node.Memory.WorkingSetBytes; got != 500 { // used 600 - inactive file 100
		t.Fatalf("node working set %d, want 500", got)
	}
	// 2 s later: app used 1 s of CPU (0.5 core), side 0.2 s (0.1 core).
	s := assembleSummary(in(t0.Add(2*time.Second), 2e9, 2.2e9), r)
	if len(s.Pods) != 2 || s.Pods[0].PodRef.Name != "dns" || s.Pods[1].PodRef.Name != "web" {
		t.Fatalf("pods %+v: want the two ready sandboxes, sorted", s.Pods)
	}
	web := s.Pods[1]
	if len(web.Containers) != 2 || web.Containers[0].Name != "app" || web.Containers[1].Name != "side" {
		t.Fatalf("web containers %+v: want the running ones", web.Containers)
	}
	if got := *web.Containers[0].CPU.UsageNanoCores; got != 5e8 {
		t.Errorf("app cpu %d nanocores, want 5e8", got)
	}
	if got := *web.CPU.UsageNanoCores; got != 6e8 {
		t.Errorf("pod cpu %d nanocores, want 6e8", got)
	}
	if got := *web.CPU.UsageCoreNanoSeconds; got != 4.2e9 {
		t.Errorf("pod cumulative cpu %d, want 4.2e9", got)
	}
	if got := *web.Memory.WorkingSetBytes; got != 120<<20 {
		t.Errorf("pod working set %d, want 120Mi", got)
	}
	if got := *s.Node.CPU.UsageNanoCores; got != 6e8 {
		t.Errorf("node cpu %d nanocores, want 6e8", got)
	}
	// Within the minimum window the rate still spans the earlier sample.
	s = assembleSummary(in(t0.Add(2100*time.Millisecond), 2.05e9, 2.2e9), r)
	if got := *s.Pods[1].Containers[0].CPU.UsageNanoCores; got != 5e8 {
		t.Errorf("app cpu %d nanocores over a 2.1 s window, want 5e8", got)
	}
	// A restarted container (counter going back) has no rate until its
	// next sample.
	s = assembleSummary(in(t0.Add(4*time.Second), 1e6, 2.4e9), r)
	if s.Pods[1].Containers[0].CPU.UsageNanoCores != nil || s.Pods[1].CPU.UsageNanoCores != nil {
		t.Error("rate across a counter reset")
	}
}

func TestParseProc(t *testing.T) {
	busy, boot, err := parseProcStat([]byte("cpu  100 5 50 1000 7 3 2 1 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\nbtime 1700000000\n"))
	if err != nil {
		t.Fatal(err)
	}
	if busy != (100+5+50+3+2+1)*1e7 || boot.Unix() != 1700000000 {
		t.Fatalf("busy %d boot %v", busy, boot)
	}
	if _, _, err := parseProcStat([]byte("intr 1\n")); err == nil {
		t.Fatal("no cpu line accepted")
	}
	mi := parseMeminfo([]byte("MemTotal:        2048 kB\nMemFree: 1024 kB\nHugePages_Total: 3\n"))
	if mi["MemTotal"] != 2048*1024 || mi["MemFree"] != 1024*1024 || mi["HugePages_Total"] != 3 {
		t.Fatalf("meminfo %v", mi)
	}
	dev := `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 500 5 0 0 0 0 0 0 500 5 0 0 0 0 0 0
  eth0: 1000 10 1 0 0 0 0 0 2000 20 2 0 0 0 0 0
  eth1: 3000 30 0 0 0 0 0 0 4000 40 0 0 0 0 0 0
`
	n := parseNetDev([]byte(dev), "eth1", t0)
	if n == nil || n.Name != "eth1" || *n.RxBytes != 3000 || len(n.Interfaces) != 2 || *n.Interfaces[0].TxErrors != 2 {
		t.Fatalf("net dev %+v", n)
	}
}

// statsCRI serves the stats calls; pod sandbox stats are Unimplemented,
// as in containerd 1.6.
type statsCRI struct {
	runtimeapi.RuntimeServiceClient
	cpu uint64
}

func (f *statsCRI) ListPodSandbox(context.Context, *runtimeapi.ListPodSandboxRequest, ...grpc.CallOption) (*runtimeapi.ListPodSandboxResponse, error) {
	return &runtimeapi.ListPodSandboxResponse{Items: []*runtimeapi.PodSandbox{sandbox("sb1", "ns", "web", true)}}, nil
}

func (f *statsCRI) ListContainers(context.Context, *runtimeapi.ListContainersRequest, ...grpc.CallOption) (*runtimeapi.ListContainersResponse, error) {
	return &runtimeapi.ListContainersResponse{Containers: []*runtimeapi.Container{container("c1", "sb1", "app", true)}}, nil
}

func (f *statsCRI) ListContainerStats(context.Context, *runtimeapi.ListContainerStatsRequest, ...grpc.CallOption) (*runtimeapi.ListContainerStatsResponse, error) {
	f.cpu += 1e9
	return &runtimeapi.ListContainerStatsResponse{Stats: []*runtimeapi.ContainerStats{cstats("c1", time.Time{}, f.cpu, 7<<20)}}, nil
}

func (f *statsCRI) ListPodSandboxStats(context.Context, *runtimeapi.ListPodSandboxStatsRequest, ...grpc.CallOption) (*runtimeapi.ListPodSandboxStatsResponse, error) {
	return nil, status.Error(codes.Unimplemented, "not implemented")
}

func TestStatsSummaryEndpoint(t *testing.T) {
	proc := t.TempDir()
	write := func(name, data string) {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(proc, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(proc, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("stat", "cpu  100 0 100 1000 0 0 0 0 0 0\nbtime 1700000000\n")
	write("meminfo", "MemTotal: 4096 kB\nMemFree: 1024 kB\nMemAvailable: 2048 kB\nInactive(file): 1024 kB\n")
	write("net/dev", "h\nh\n  eth0: 1 1 0 0 0 0 0 0 2 2 0 0 0 0 0 0\n")
	now := t0
	st := NewStats(StatsConfig{NodeName: "n1", Runtime: &statsCRI{}, ProcRoot: proc, FsPath: t.TempDir(), Now: func() time.Time { return now }})
	srv, err := New(Config{Runtime: &statsCRI{}, Stats: st})
	if err != nil {
		t.Fatal(err)
	}
	get := func(q string) Summary {
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/stats/summary"+q, nil))
		if rec.Code != http.StatusOK {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		var s Summary
		if err := json.Unmarshal(rec.Body.Bytes(), &s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	get("")
	now = now.Add(2 * time.Second)
	s := get("")
	if s.Node.NodeName != "n1" || *s.Node.CPU.UsageCoreNanoSeconds != 2e9 || *s.Node.Memory.WorkingSetBytes != 2048*1024 {
		t.Fatalf("node %+v cpu %+v mem %+v", s.Node, s.Node.CPU, s.Node.Memory)
	}
	if s.Node.Fs == nil || *s.Node.Fs.CapacityBytes == 0 || s.Node.Network == nil || s.Node.Network.Name != "eth0" {
		t.Fatalf("node fs %+v network %+v", s.Node.Fs, s.Node.Network)
	}
	if len(s.Pods) != 1 || len(s.Pods[0].Containers) != 1 || *s.Pods[0].Memory.WorkingSetBytes != 7<<20 || s.Pods[0].CPU.UsageNanoCores == nil {
		t.Fatalf("pods %+v", s.Pods)
	}
	if s := get("?only_cpu_and_memory=true"); s.Node.Fs != nil || s.Node.Network != nil {
		t.Fatal("only_cpu_and_memory kept fs and network")
	}
	srv2, _ := New(Config{Runtime: &statsCRI{}})
	rec := httptest.NewRecorder()
	srv2.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/stats/summary", nil))
	if rec.Code != http.StatusNotFound {
		t.Fatalf("no stats provider: status %d", rec.Code)
	}
}

// BenchmarkAssembleSummary: one /stats/summary of a full node (110 pods,
// two containers each) from already-read CRI answers.
func BenchmarkAssembleSummary(b *testing.B) {
	in := summaryInput{NodeName: "n1", Node: NodeSample{Time: t0, MemTotal: 8 << 30, MemFree: 4 << 30}}
	for i := 0; i < 110; i++ {
		sb := fmt.Sprintf("sb%d", i)
		in.Sandboxes = append(in.Sandboxes, sandbox(sb, "ns", fmt.Sprintf("pod-%d", i), true))
		for _, c := range []string{"app", "side"} {
			id := sb + c
			in.Containers = append(in.Containers, container(id, sb, c, true))
			in.Stats = append(in.Stats, cstats(id, t0, uint64(i)*1e6, 1<<20))
		}
	}
	r := newRates()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		in.Node.Time = t0.Add(time.Duration(i) * time.Second)
		_ = assembleSummary(in, r)
	}
}
