package server

import (
	"sort"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The /stats/summary document. The JSON shape is upstream's
// (k8s.io/kubelet/pkg/apis/stats/v1alpha1), which metrics-server, kubectl
// get --raw and skiff's metrics.k8s.io read; skiff may not import that
// module, so the types are restated here with the fields skiff fills.

// Summary is GET /stats/summary.
type Summary struct {
	Node NodeStats  `json:"node"`
	Pods []PodStats `json:"pods"`
}

// NodeStats are the machine's.
type NodeStats struct {
	NodeName  string        `json:"nodeName"`
	StartTime metav1.Time   `json:"startTime"`
	CPU       *CPUStats     `json:"cpu,omitempty"`
	Memory    *MemoryStats  `json:"memory,omitempty"`
	Network   *NetworkStats `json:"network,omitempty"`
	Fs        *FsStats      `json:"fs,omitempty"`
	Runtime   *RuntimeStats `json:"runtime,omitempty"`
}

// RuntimeStats is the container runtime's storage.
type RuntimeStats struct {
	ImageFs *FsStats `json:"imageFs,omitempty"`
}

// PodReference names a pod.
type PodReference struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	UID       string `json:"uid"`
}

// PodStats are one pod's: CPU and memory are its containers' sums.
type PodStats struct {
	PodRef           PodReference     `json:"podRef"`
	StartTime        metav1.Time      `json:"startTime"`
	Containers       []ContainerStats `json:"containers"`
	CPU              *CPUStats        `json:"cpu,omitempty"`
	Memory           *MemoryStats     `json:"memory,omitempty"`
	Network          *NetworkStats    `json:"network,omitempty"`
	EphemeralStorage *FsStats         `json:"ephemeral-storage,omitempty"`
}

// ContainerStats are one running container's.
type ContainerStats struct {
	Name      string       `json:"name"`
	StartTime metav1.Time  `json:"startTime"`
	CPU       *CPUStats    `json:"cpu,omitempty"`
	Memory    *MemoryStats `json:"memory,omitempty"`
	Rootfs    *FsStats     `json:"rootfs,omitempty"`
}

// CPUStats: UsageNanoCores is the rate over the last sampling window
// (absent until two samples exist), UsageCoreNanoSeconds the cumulative
// total.
type CPUStats struct {
	Time                 metav1.Time `json:"time"`
	UsageNanoCores       *uint64     `json:"usageNanoCores,omitempty"`
	UsageCoreNanoSeconds *uint64     `json:"usageCoreNanoSeconds,omitempty"`
}

// MemoryStats in bytes; WorkingSetBytes is what kubectl top shows.
type MemoryStats struct {
	Time            metav1.Time `json:"time"`
	AvailableBytes  *uint64     `json:"availableBytes,omitempty"`
	UsageBytes      *uint64     `json:"usageBytes,omitempty"`
	WorkingSetBytes *uint64     `json:"workingSetBytes,omitempty"`
	RSSBytes        *uint64     `json:"rssBytes,omitempty"`
	PageFaults      *uint64     `json:"pageFaults,omitempty"`
	MajorPageFaults *uint64     `json:"majorPageFaults,omitempty"`
}

// InterfaceStats are one network interface's counters.
type InterfaceStats struct {
	Name     string  `json:"name"`
	RxBytes  *uint64 `json:"rxBytes,omitempty"`
	RxErrors *uint64 `json:"rxErrors,omitempty"`
	TxBytes  *uint64 `json:"txBytes,omitempty"`
	TxErrors *uint64 `json:"txErrors,omitempty"`
}

// NetworkStats: the default interface's counters inline, all in
// Interfaces.
type NetworkStats struct {
	Time metav1.Time `json:"time"`
	InterfaceStats
	Interfaces []InterfaceStats `json:"interfaces,omitempty"`
}

// FsStats in bytes and inodes.
type FsStats struct {
	Time           metav1.Time `json:"time"`
	AvailableBytes *uint64     `json:"availableBytes,omitempty"`
	CapacityBytes  *uint64     `json:"capacityBytes,omitempty"`
	UsedBytes      *uint64     `json:"usedBytes,omitempty"`
	InodesFree     *uint64     `json:"inodesFree,omitempty"`
	Inodes         *uint64     `json:"inodes,omitempty"`
	InodesUsed     *uint64     `json:"inodesUsed,omitempty"`
}

// NodeSample is what the node's /proc and statfs said at one time.
type NodeSample struct {
	Time               time.Time
	BootTime           time.Time
	CPUUsageCoreNanos  uint64
	MemTotal, MemAvail uint64
	MemFree, InactFile uint64
	Fs, ImageFs        *FsStats
	Network            *NetworkStats
}

// cpuSample is one cumulative CPU reading.
type cpuSample struct {
	at    time.Time
	total uint64
}

// cpuHistory keeps the two most recent samples at least minRateWindow
// apart, so a rate always spans a window of at least that length however
// often it is asked for.
type cpuHistory struct {
	older, newer cpuSample
	n            int
}

// minRateWindow is the shortest window a CPU rate is computed over.
const minRateWindow = time.Second

// rates turns cumulative CPU counters into rates (a container ID, or ""
// for the node).
type rates struct {
	last map[string]cpuHistory
}

func newRates() *rates { return &rates{last: map[string]cpuHistory{}} }

// observe records total at t and returns the rate per second over the
// window back to a sample at least minRateWindow old, if there is one.
func (r *rates) observe(key string, t time.Time, total uint64) *uint64 {
	h := r.last[key]
	s := cpuSample{at: t, total: total}
	switch {
	case h.n == 0:
		r.last[key] = cpuHistory{newer: s, n: 1}
		return nil
	case total < h.newer.total:
		// Counter reset (a restarted container under the same key).
		r.last[key] = cpuHistory{newer: s, n: 1}
		return nil
	case t.Sub(h.newer.at) >= minRateWindow:
		h.older, h.newer, h.n = h.newer, s, 2
	}
	r.last[key] = h
	if h.n < 2 {
		return nil
	}
	dt := t.Sub(h.older.at)
	if dt <= 0 || total < h.older.total {
		return nil
	}
	v := uint64(float64(total-h.older.total) / dt.Seconds())
	return &v
}

// prune forgets keys not in keep (containers that are gone).
func (r *rates) prune(keep map[string]bool) {
	for k := range r.last {
		if k != "" && !keep[k] {
			delete(r.last, k)
		}
	}
}

// summaryInput is everything assembleSummary needs; no I/O.
type summaryInput struct {
	NodeName   string
	Node       NodeSample
	Sandboxes  []*runtimeapi.PodSandbox
	Containers []*runtimeapi.Container
	Stats      []*runtimeapi.ContainerStats
	// SandboxStats are the runtime's pod-level stats where it has them
	// (network); keyed by sandbox ID.
	SandboxStats map[string]*runtimeapi.PodSandboxStats
}

func u64(v uint64) *uint64 { return &v }

// assembleSummary builds the summary from one sample. Rates come from r,
// which it updates.
func assembleSummary(in summaryInput, r *rates) Summary {
	now := metav1.NewTime(in.Node.Time)
	n := NodeStats{NodeName: in.NodeName, StartTime: metav1.NewTime(in.Node.BootTime), Fs: in.Node.Fs, Network: in.Node.Network}
	n.CPU = &CPUStats{Time: now, UsageCoreNanoSeconds: u64(in.Node.CPUUsageCoreNanos), UsageNanoCores: r.observe("", in.Node.Time, in.Node.CPUUsageCoreNanos)}
	if in.Node.MemTotal > 0 {
		usage := in.Node.MemTotal - min(in.Node.MemFree, in.Node.MemTotal)
		ws := usage - min(in.Node.InactFile, usage)
		n.Memory = &MemoryStats{Time: now, AvailableBytes: u64(in.Node.MemAvail), UsageBytes: u64(usage), WorkingSetBytes: u64(ws)}
	}
	if in.Node.ImageFs != nil {
		n.Runtime = &RuntimeStats{ImageFs: in.Node.ImageFs}
	}

	stats := map[string]*runtimeapi.ContainerStats{}
	for _, s := range in.Stats {
		stats[s.GetAttributes().GetId()] = s
	}
	type podAcc struct {
		ps  PodStats
		cpu *CPUStats
		mem *MemoryStats
	}
	pods := map[string]*podAcc{}
	var order []string
	for _, sb := range in.Sandboxes {
		if sb.GetState() != runtimeapi.PodSandboxState_SANDBOX_READY {
			continue
		}
		m := sb.GetMetadata()
		acc := &podAcc{ps: PodStats{
			PodRef:    PodReference{Name: m.GetName(), Namespace: m.GetNamespace(), UID: m.GetUid()},
			StartTime: metav1.NewTime(time.Unix(0, sb.GetCreatedAt())),
		}}
		if ss := in.SandboxStats[sb.GetId()]; ss != nil {
			acc.ps.Network = criNetwork(ss.GetLinux().GetNetwork())
		}
		pods[sb.GetId()] = acc
		order = append(order, sb.GetId())
	}
	seen := map[string]bool{}
	for _, c := range in.Containers {
		acc := pods[c.GetPodSandboxId()]
		if acc == nil || c.GetState() != runtimeapi.ContainerState_CONTAINER_RUNNING {
			continue
		}
		seen[c.GetId()] = true
		cs := ContainerStats{Name: c.GetMetadata().GetName(), StartTime: metav1.NewTime(time.Unix(0, c.GetCreatedAt()))}
		if s := stats[c.GetId()]; s != nil {
			if cpu := s.GetCpu(); cpu != nil {
				t := metav1.NewTime(in.Node.Time)
				if cpu.GetTimestamp() > 0 {
					t = metav1.NewTime(time.Unix(0, cpu.GetTimestamp()))
				}
				total := cpu.GetUsageCoreNanoSeconds().GetValue()
				rate := r.observe(c.GetId(), t.Time, total)
				// Prefer the runtime's own rate when it has one.
				if v := cpu.GetUsageNanoCores(); v != nil && v.GetValue() > 0 {
					rate = u64(v.GetValue())
				}
				cs.CPU = &CPUStats{Time: t, UsageCoreNanoSeconds: u64(total), UsageNanoCores: rate}
			}
			if mem := s.GetMemory(); mem != nil {
				cs.Memory = &MemoryStats{Time: now, WorkingSetBytes: u64(mem.GetWorkingSetBytes().GetValue())}
				if v := mem.GetUsageBytes(); v != nil {
					cs.Memory.UsageBytes = u64(v.GetValue())
				}
				if v := mem.GetRssBytes(); v != nil {
					cs.Memory.RSSBytes = u64(v.GetValue())
				}
			}
			if fs := s.GetWritableLayer(); fs != nil {
				cs.Rootfs = &FsStats{Time: now, UsedBytes: u64(fs.GetUsedBytes().GetValue())}
				if v := fs.GetInodesUsed(); v != nil {
					cs.Rootfs.InodesUsed = u64(v.GetValue())
				}
			}
		}
		acc.ps.Containers = append(acc.ps.Containers, cs)
		if cs.CPU != nil {
			if acc.cpu == nil {
				acc.cpu = &CPUStats{Time: cs.CPU.Time, UsageCoreNanoSeconds: u64(0), UsageNanoCores: u64(0)}
			}
			*acc.cpu.UsageCoreNanoSeconds += *cs.CPU.UsageCoreNanoSeconds
			if cs.CPU.UsageNanoCores == nil || acc.cpu.UsageNanoCores == nil {
				acc.cpu.UsageNanoCores = nil // a pod's rate needs every container's
			} else {
				*acc.cpu.UsageNanoCores += *cs.CPU.UsageNanoCores
			}
		}
		if cs.Memory != nil {
			if acc.mem == nil {
				acc.mem = &MemoryStats{Time: now, WorkingSetBytes: u64(0)}
			}
			*acc.mem.WorkingSetBytes += *cs.Memory.WorkingSetBytes
		}
	}
	r.prune(seen)
	out := Summary{Node: n, Pods: []PodStats{}}
	for _, id := range order {
		acc := pods[id]
		acc.ps.CPU, acc.ps.Memory = acc.cpu, acc.mem
		sort.Slice(acc.ps.Containers, func(i, j int) bool { return acc.ps.Containers[i].Name < acc.ps.Containers[j].Name })
		if acc.ps.Containers == nil {
			acc.ps.Containers = []ContainerStats{}
		}
		out.Pods = append(out.Pods, acc.ps)
	}
	sort.Slice(out.Pods, func(i, j int) bool {
		a, b := out.Pods[i].PodRef, out.Pods[j].PodRef
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	return out
}

func criNetwork(n *runtimeapi.NetworkUsage) *NetworkStats {
	if n == nil || n.GetDefaultInterface() == nil {
		return nil
	}
	conv := func(i *runtimeapi.NetworkInterfaceUsage) InterfaceStats {
		return InterfaceStats{Name: i.GetName(), RxBytes: u64(i.GetRxBytes().GetValue()), RxErrors: u64(i.GetRxErrors().GetValue()),
			TxBytes: u64(i.GetTxBytes().GetValue()), TxErrors: u64(i.GetTxErrors().GetValue())}
	}
	out := &NetworkStats{Time: metav1.NewTime(time.Unix(0, n.GetTimestamp())), InterfaceStats: conv(n.GetDefaultInterface())}
	for _, i := range n.GetInterfaces() {
		out.Interfaces = append(out.Interfaces, conv(i))
	}
	return out
}
