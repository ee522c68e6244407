package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// reportScript makes wrk print one machine-readable line at the end of a
// run (wrk's own summary rounds and changes units).
const reportScript = `done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("SKIFFBENCH requests=%d duration_us=%d connect=%d read=%d write=%d status=%d timeout=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
`

// run is one wrk run against one target.
type run struct {
	Requests int64
	Duration time.Duration
	// Errors sums wrk's connect, read, write, non-2xx/3xx status and
	// timeout errors.
	Errors             int64
	P50, P90, P99, Max time.Duration
	// ClientCPU is wrk's user+system CPU; PodCPU the pod cgroup's CPU over
	// the same run. Locally generated packets go through the OUTPUT hook
	// (the ClusterIP DNAT) in the sender's system call, so most of the
	// proxy's per-packet cost lands in ClientCPU; softirq work is charged
	// to whichever task was running and is only roughly attributed.
	ClientCPU, PodCPU time.Duration
}

func (r run) RPS() float64 {
	if r.Duration <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Duration.Seconds()
}

// CPUPerRequest is client plus pod CPU per request.
func (r run) CPUPerRequest() time.Duration {
	if r.Requests == 0 {
		return 0
	}
	return (r.ClientCPU + r.PodCPU) / time.Duration(r.Requests)
}

// parseWrk reads the line reportScript prints out of wrk's output.
func parseWrk(out string) (run, error) {
	for _, line := range strings.Split(out, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "SKIFFBENCH ")
		if !ok {
			continue
		}
		vals := map[string]int64{}
		for _, f := range strings.Fields(rest) {
			k, v, ok := strings.Cut(f, "=")
			if !ok {
				return run{}, fmt.Errorf("parsing wrk report field %q", f)
			}
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return run{}, fmt.Errorf("parsing wrk report field %q: %w", f, err)
			}
			vals[k] = n
		}
		for _, k := range []string{"requests", "duration_us", "p50_us", "p99_us"} {
			if _, ok := vals[k]; !ok {
				return run{}, fmt.Errorf("wrk report has no %s: %q", k, line)
			}
		}
		us := func(k string) time.Duration { return time.Duration(vals[k]) * time.Microsecond }
		return run{
			Requests: vals["requests"], Duration: us("duration_us"),
			Errors: vals["connect"] + vals["read"] + vals["write"] + vals["status"] + vals["timeout"],
			P50:    us("p50_us"), P90: us("p90_us"), P99: us("p99_us"), Max: us("max_us"),
		}, nil
	}
	return run{}, fmt.Errorf("no SKIFFBENCH line in wrk output:\n%s", out)
}

// wrkArgs builds the command line of one run. closeConns asks the server
// to close every connection after its response, so each request opens a
// new connection and passes the proxy's NAT rules again (with keep-alive
// only a connection's first packet is matched against them; later ones
// follow the conntrack entry).
func wrkArgs(script, url string, threads, conns int, d time.Duration, closeConns bool) []string {
	args := []string{"-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns),
		"-d", strconv.Itoa(int(d.Round(time.Second)/time.Second)) + "s", "--timeout", "5s", "-s", script}
	if closeConns {
		args = append(args, "-H", "Connection: close")
	}
	return append(args, url)
}

// runWrk runs wrk once and measures its CPU and the pod cgroup's.
// prefix, when set, is the command wrk runs under (nsenter into a pod's
// network namespace; it execs wrk, so the rusage is wrk's).
func runWrk(ctx context.Context, prefix []string, wrk string, args []string, podCgroup string) (run, error) {
	argv := append(append(append([]string(nil), prefix...), wrk), args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pod0, err := cgroupCPU(podCgroup)
	if err != nil {
		return run{}, err
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return run{}, fmt.Errorf("running %s: %w\n%s", strings.Join(argv, " "), err, out)
	}
	pod1, err := cgroupCPU(podCgroup)
	if err != nil {
		return run{}, err
	}
	r, err := parseWrk(string(out))
	if err != nil {
		return run{}, err
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.ClientCPU = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	r.PodCPU = pod1 - pod0
	return r, nil
}

// cgroupCPU reads cpuacct.usage (nanoseconds) of a cgroup v1 directory
// given relative to the cpuacct hierarchy.
func cgroupCPU(rel string) (time.Duration, error) {
	for _, h := range []string{"cpuacct", "cpu,cpuacct"} {
		b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", h, rel, "cpuacct.usage"))
		if err != nil {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parsing cpuacct.usage of %s: %w", rel, err)
		}
		return time.Duration(n), nil
	}
	return 0, fmt.Errorf("no cpuacct.usage for cgroup %s (cgroup v1 cpuacct hierarchy expected)", rel)
}

// summary is the median over rounds of each figure of one target.
type summary struct {
	Runs                int
	RPS                 float64
	P50, P99            time.Duration
	CPUPerRequest       time.Duration
	ClientCPUPerRequest time.Duration
	Errors              int64
}

func summarize(runs []run) summary {
	s := summary{Runs: len(runs)}
	if len(runs) == 0 {
		return s
	}
	rps := make([]float64, len(runs))
	var p50, p99, cpu, ccpu []time.Duration
	for i, r := range runs {
		rps[i] = r.RPS()
		p50 = append(p50, r.P50)
		p99 = append(p99, r.P99)
		cpu = append(cpu, r.CPUPerRequest())
		if r.Requests > 0 {
			ccpu = append(ccpu, r.ClientCPU/time.Duration(r.Requests))
		}
		s.Errors += r.Errors
	}
	s.RPS = median(rps)
	s.P50, s.P99 = median(p50), median(p99)
	s.CPUPerRequest = median(cpu)
	if len(ccpu) > 0 {
		s.ClientCPUPerRequest = median(ccpu)
	}
	return s
}

// median of a non-empty slice (the mean of the middle two for even
// lengths).
func median[T int64 | float64 | time.Duration](xs []T) T {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// wrkVersion is the first line wrk -v prints ("wrk 4.1.0 [epoll] …").
func wrkVersion(wrk string) string {
	out, _ := exec.Command(wrk, "-v").CombinedOutput()
	first, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return first
}

// rpsOverhead and durOverhead say how much worse via is than direct, in percent: fewer
// requests per second, or more latency or CPU.
func rpsOverhead(direct, via float64) float64 {
	if direct == 0 {
		return 0
	}
	return (direct - via) / direct * 100
}

func durOverhead(direct, via time.Duration) float64 {
	if direct == 0 {
		return 0
	}
	return float64(via-direct) / float64(direct) * 100
}

// findOnPath is exec.LookPath that also looks in the sbin/bin directories
// a minimal PATH may lack.
func findOnPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/bin", "/usr/local/bin", "/usr/sbin"} {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", name)
}

// ensureWrk finds wrk, installing the Debian package when it is missing
// and we may (root, apt-get present).
func ensureWrk(ctx context.Context) (string, error) {
	if p, err := findOnPath("wrk"); err == nil {
		return p, nil
	}
	if _, err := exec.LookPath("apt-get"); err != nil || os.Geteuid() != 0 {
		return "", fmt.Errorf("wrk is not installed (Debian: apt-get install wrk)")
	}
	fmt.Fprintln(os.Stderr, "installing wrk (apt-get install -y wrk)")
	cmd := exec.CommandContext(ctx, "apt-get", "install", "-y", "wrk")
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("installing wrk: %w\n%s", err, lastLines(string(out), 10))
	}
	return findOnPath("wrk")
}

func lastLines(s string, n int) string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
