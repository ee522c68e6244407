package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
)

// options are the command line's settings, checked.
type options struct {
	pods     int   // pods per burst
	inFlight []int // bursts to run, by how many pods may be in flight at once
	single   int   // one-pod-alone starts
	rounds   int   // each burst setting is run this many times
	gap      time.Duration
	images   string // dir with busybox.tar and pause.tar; "" builds them
	cniBin   string
	work     string // "" makes (and removes) a temp dir
}

// parseOptions reads the command line (without the program name).
func parseOptions(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("crifloor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.pods, "pods", 30, "pods per burst")
	inFlight := fs.String("in-flight", "all,2,4,8", `bursts to run: how many pods may be between RunPodSandbox and StartContainer at once, comma-separated ("all" = -pods)`)
	fs.IntVar(&o.single, "single", 5, "one pod alone, this many times (0: none)")
	fs.IntVar(&o.rounds, "rounds", 1, "run every burst setting this many times")
	fs.DurationVar(&o.gap, "gap", 2*time.Second, "pause after each burst's pods are removed (and after each single pod)")
	fs.StringVar(&o.images, "images", "", "directory holding busybox.tar and pause.tar from `go run ./bench/agent/sidebyside images -out DIR` (default: build them)")
	fs.StringVar(&o.cniBin, "cni-bin-dir", "/usr/lib/cni", "CNI plugin directory")
	fs.StringVar(&o.work, "work", "", "work directory for containerd's root, state and socket (default: a new temp dir, removed afterwards)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.pods < 1 {
		return o, fmt.Errorf("-pods %d: want at least 1", o.pods)
	}
	if o.single < 0 {
		return o, fmt.Errorf("-single %d: want 0 or more", o.single)
	}
	if o.rounds < 1 {
		return o, fmt.Errorf("-rounds %d: want at least 1", o.rounds)
	}
	if o.gap < 0 {
		return o, fmt.Errorf("-gap %v: want 0 or more", o.gap)
	}
	var err error
	if o.inFlight, err = parseInFlight(*inFlight, o.pods); err != nil {
		return o, err
	}
	return o, nil
}

// parseInFlight reads a list like "all,2,4,8"; "all" stands for pods.
func parseInFlight(s string, pods int) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "all" {
			out = append(out, pods)
			continue
		}
		k, err := strconv.Atoi(f)
		if err != nil || k < 1 {
			return nil, fmt.Errorf("-in-flight: %q is not a positive number or \"all\"", f)
		}
		if k > pods {
			return nil, fmt.Errorf("-in-flight: %d exceeds -pods %d", k, pods)
		}
		out = append(out, k)
	}
	if len(out) == 0 {
		return nil, errors.New("-in-flight: empty list")
	}
	return out, nil
}

// summary is the distribution of one set of latencies.
type summary struct {
	n                       int
	min, p50, p90, p99, max time.Duration
}

// summarize computes nearest-rank percentiles (the value at rank
// ceil(p*n)): with 30 samples p99 is the slowest, as it is for the 30-pod
// burst in issue 7.
func summarize(ds []time.Duration) summary {
	if len(ds) == 0 {
		return summary{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return summary{n: len(s), min: s[0], p50: rank(s, 0.50), p90: rank(s, 0.90), p99: rank(s, 0.99), max: s[len(s)-1]}
}

// rank is the nearest-rank percentile p (0 < p <= 1) of sorted s.
func rank(s []time.Duration, p float64) time.Duration {
	// Integer arithmetic in per-mille: 0.9*10 in floating point is
	// 9.000000000000002, whose ceiling would skip a rank.
	pm := int(p*1000 + 0.5)
	i := (pm*len(s)+999)/1000 - 1
	return s[max(0, min(i, len(s)-1))]
}

// secs formats a duration as seconds with millisecond resolution.
func secs(d time.Duration) string { return fmt.Sprintf("%.3f s", d.Seconds()) }

// msPer formats total/n in milliseconds.
func msPer(total time.Duration, n int) string {
	if n == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f ms", float64(total)/float64(n)/float64(time.Millisecond))
}

// table renders the results as a markdown table: the one-pod-alone runs
// as one row, then one row per burst. "CPU / cores" is the run's CPU
// spread over every core of the machine: the shortest time the work
// could take on an otherwise idle machine, so no scheduling of the same
// calls can bring the last pod's start under it.
func table(single, bursts []result, cores int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "| run | p50 | p90 | p99 | max | own p50 / p99 | RunPodSandbox p50 | Create+Start p50 | all started | CPU per pod: runtime / pods | CPU / %d cores | cores busy | load |\n", cores)
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	if len(single) > 0 {
		var all result
		for _, r := range single {
			all.fromBurst = append(all.fromBurst, r.fromBurst...)
			all.own = append(all.own, r.own...)
			all.sandbox = append(all.sandbox, r.sandbox...)
			all.container = append(all.container, r.container...)
			all.makespan += r.makespan
			all.runtimeCPU += r.runtimeCPU
			all.podCPU += r.podCPU
		}
		all.load = single[0].load + " … " + single[len(single)-1].load
		row(&b, fmt.Sprintf("one pod alone (n=%d)", len(single)), all, false, cores)
	}
	for _, r := range bursts {
		name := fmt.Sprintf("%d pods, %d in flight", r.pods, r.inFlight)
		if r.inFlight == r.pods {
			name = fmt.Sprintf("%d pods, all at once", r.pods)
		}
		row(&b, name, r, true, cores)
	}
	if len(bursts) > 0 {
		b.WriteString("\n| run | runtime CPU per pod by process: containerd / its children (CNI, shim start) / shims with runc |\n|---|---|\n")
		for _, r := range bursts {
			n := len(r.fromBurst)
			fmt.Fprintf(&b, "| %d pods, %d in flight | %s / %s / %s |\n", r.pods, r.inFlight,
				msPer(r.split.containerd, n), msPer(r.split.children, n), msPer(r.split.shims, n))
		}
	}
	return b.String()
}

// row writes one result; the burst's end-to-end time ("all started") is
// left out for the one-pod runs, where it is the pod's own time.
func row(b *strings.Builder, name string, r result, showMakespan bool, cores int) {
	s, own := summarize(r.fromBurst), summarize(r.own)
	busy := "-"
	if r.makespan > 0 {
		busy = fmt.Sprintf("%.2f", float64(r.runtimeCPU+r.podCPU)/float64(r.makespan))
	}
	makespan, floor := "-", "-"
	if showMakespan {
		makespan = secs(r.makespan)
		floor = secs((r.runtimeCPU + r.podCPU) / time.Duration(max(1, cores)))
	}
	fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s / %s | %s | %s | %s | %s / %s | %s | %s | %s |\n",
		name, secs(s.p50), secs(s.p90), secs(s.p99), secs(s.max), secs(own.p50), secs(own.p99),
		secs(summarize(r.sandbox).p50), secs(summarize(r.container).p50), makespan,
		msPer(r.runtimeCPU, s.n), msPer(r.podCPU, s.n), floor, busy, r.load)
}
