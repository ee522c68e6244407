// Command apiserver benchmarks skiff's API server against the real skiff
// binary started as a subprocess on a fresh data dir, and prints a table:
//
//	go build -o /tmp/skiff ./cmd/skiff
//	go run ./bench/apiserver -skiff /tmp/skiff -scenario all
//
// Scenarios (comma-separated, or "all"):
//
//	start   time to /readyz 200: median of -starts fresh starts, and of
//	        restarts on an existing data dir
//	rss     VmRSS after -idle of idleness, whole server (--disable-agent)
//	        and API server + embedded etcd alone
//	create  pod creates from 1, 10 and 100 concurrent client-go clients
//	        (-levels), -pods pods per level: pods/s, p50, p99
//	list    LIST of -list-pods pods, rv "" and "0", JSON and protobuf
//	watch   delivery latency to -watchers watches at -watch-rate pods/s
//
// -upstream DIR (an upstream build as ../shared/anchors/upstream-k8s makes
// it: bin/, pki/admin.kubeconfig, start.sh, stop.sh) runs start, rss and
// the load scenarios against upstream kube-apiserver + etcd as well, each
// right after skiff's, and adds an upstream column to the table. Only one
// upstream can run on the machine at a time (start.sh's ports are fixed).
//
// -inprocess runs the create, list and watch scenarios against a server
// started in this process instead, so -cpuprofile covers it (the client's
// own work is in the profile too). docs/PERFORMANCE.md has the method and
// results.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"k8s.io/client-go/rest"

	"skiff.dev/skiff/internal/server"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench/apiserver:", err)
		os.Exit(1)
	}
}

type options struct {
	bin, work, scenarios, cpuprofile string
	starts, pods, listPods           int
	levels                           []int
	idle                             time.Duration
	watchers, watchRate              int
	watchDur                         time.Duration
	inprocess                        bool
	heapprofile                      string
	serverEnv                        []string
	upstream                         string
}

func run() error {
	var o options
	var levels string
	flag.StringVar(&o.bin, "skiff", "", "skiff binary (default: build ./cmd/skiff into the work dir)")
	flag.StringVar(&o.work, "work", "", "work directory for data dirs and logs (default: a new temp dir, removed afterwards)")
	flag.StringVar(&o.scenarios, "scenario", "all", "comma-separated scenarios: start,rss,create,list,watch or all")
	flag.IntVar(&o.starts, "starts", 5, "fresh starts (and restarts) for the start scenario")
	flag.DurationVar(&o.idle, "idle", 10*time.Second, "idle time before reading RSS")
	flag.IntVar(&o.pods, "pods", 5000, "pods created per concurrency level")
	flag.StringVar(&levels, "levels", "1,10,100", "client concurrency levels for create")
	flag.IntVar(&o.listPods, "list-pods", 10000, "pods in the namespace listed by the list scenario")
	flag.IntVar(&o.watchers, "watchers", 100, "concurrent watches for the watch scenario")
	flag.IntVar(&o.watchRate, "watch-rate", 100, "pods created per second while watching")
	flag.DurationVar(&o.watchDur, "watch-duration", 10*time.Second, "how long to write while watching")
	flag.BoolVar(&o.inprocess, "inprocess", false, "run create/list/watch against an in-process server (for -cpuprofile)")
	flag.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of this process (with -inprocess: the server too)")
	flag.StringVar(&o.heapprofile, "heapprofile", "", "with -inprocess: write a heap profile of the idle server after -idle, before any load")
	flag.StringVar(&o.upstream, "upstream", "", "upstream build dir ($UPSTREAM: bin/, pki/, start.sh, stop.sh): run start, rss and the load scenarios against kube-apiserver + etcd too, right after skiff")
	var serverEnv string
	flag.StringVar(&serverEnv, "server-env", "", "comma-separated VAR=value settings for every server started (e.g. GOGC=200)")
	flag.Parse()
	if serverEnv != "" {
		o.serverEnv = strings.Split(serverEnv, ",")
	}
	for _, s := range strings.Split(levels, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return fmt.Errorf("bad -levels entry %q", s)
		}
		o.levels = append(o.levels, n)
	}
	want := map[string]bool{}
	for _, s := range strings.Split(o.scenarios, ",") {
		s = strings.TrimSpace(s)
		switch s {
		case "all":
			for _, a := range []string{"start", "rss", "create", "list", "watch"} {
				want[a] = true
			}
		case "start", "rss", "create", "list", "watch":
			want[s] = true
		default:
			return fmt.Errorf("unknown scenario %q", s)
		}
	}
	if o.upstream != "" {
		abs, err := filepath.Abs(o.upstream)
		if err != nil {
			return fmt.Errorf("-upstream: %w", err)
		}
		o.upstream = abs
		for _, f := range []string{"start.sh", "stop.sh", "pki/admin.kubeconfig"} {
			if _, err := os.Stat(filepath.Join(abs, f)); err != nil {
				return fmt.Errorf("-upstream %s: not an upstream build dir: %w", abs, err)
			}
		}
		if o.inprocess {
			return fmt.Errorf("-upstream and -inprocess do not go together")
		}
	}
	if o.work == "" {
		dir, err := os.MkdirTemp("", "skiff-bench-")
		if err != nil {
			return fmt.Errorf("creating work dir: %w", err)
		}
		defer os.RemoveAll(dir)
		o.work = dir
	}
	ctx := context.Background()
	needBin := want["start"] || want["rss"] || (!o.inprocess && (want["create"] || want["list"] || want["watch"]))
	if needBin && o.bin == "" {
		o.bin = filepath.Join(o.work, "skiff")
		fmt.Fprintln(os.Stderr, "building", o.bin)
		cmd := exec.Command("go", "build", "-o", o.bin, "./cmd/skiff")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("building skiff (run from the repository root): %w", err)
		}
	}
	if o.cpuprofile != "" {
		f, err := os.Create(o.cpuprofile)
		if err != nil {
			return fmt.Errorf("creating cpu profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("starting cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}

	tab := &table{upstream: o.upstream != ""}
	emit := func(r result) {
		tab.add(r)
		fmt.Fprintf(os.Stderr, "skiff    %-8s %-48s %12s   (load %s)\n", r.scenario, r.metric, r.value, r.load)
	}
	emitUp := func(r result) {
		tab.addUpstream(r)
		fmt.Fprintf(os.Stderr, "upstream %-8s %-48s %12s   (load %s)\n", r.scenario, r.metric, r.upstream, r.upLoad)
	}
	if want["start"] {
		fresh, restart, err := coldStarts(ctx, o.bin, o.work, o.starts, o.serverEnv)
		if err != nil {
			return fmt.Errorf("start scenario: %w", err)
		}
		freshLabel := fmt.Sprintf("fresh data dir to /readyz 200 (median of %d)", len(fresh))
		restartLabel := "existing data dir to /readyz 200 (median)"
		emit(result{scenario: "start", metric: freshLabel, value: ms(fresh.median()), target: "< 1 s", load: loadAvg()})
		emit(result{scenario: "start", metric: restartLabel, value: ms(restart), target: "< 1 s", load: loadAvg()})
		if o.upstream != "" {
			ufresh, urestart, uapi, err := upstreamStarts(ctx, o.upstream, o.work, o.starts)
			if err != nil {
				return fmt.Errorf("start scenario, upstream: %w", err)
			}
			emitUp(result{scenario: "start", metric: freshLabel, upstream: ms(ufresh.median()), upLoad: loadAvg()})
			emitUp(result{scenario: "start", metric: restartLabel, upstream: ms(urestart.median()), upLoad: loadAvg()})
			emitUp(result{scenario: "start", metric: fmt.Sprintf("fresh: kube-apiserver alone, etcd up, to /healthz ok (start.sh, median of %d)", len(uapi)), upstream: ms(uapi.median()), upLoad: loadAvg()})
		}
	}
	if want["rss"] {
		apiLabel := ""
		for _, v := range []struct {
			apiOnly bool
			label   string
		}{{false, "whole server (--disable-agent)"}, {true, "API server + etcd only"}} {
			r, err := idleRSS(ctx, o.bin, filepath.Join(o.work, "rss"), v.apiOnly, o.idle, o.serverEnv)
			if err != nil {
				return fmt.Errorf("rss scenario: %w", err)
			}
			label := fmt.Sprintf("idle VmRSS after %s, %s", o.idle, v.label)
			if v.apiOnly {
				apiLabel = label
			}
			emit(result{scenario: "rss", metric: label, value: r.String(), target: "< 100 MB", load: loadAvg()})
		}
		if o.upstream != "" {
			api, etcd, err := upstreamIdleRSS(ctx, o.upstream, o.work, o.idle)
			if err != nil {
				return fmt.Errorf("rss scenario, upstream: %w", err)
			}
			load := loadAvg()
			emitUp(result{scenario: "rss", metric: apiLabel, upstream: api.add(etcd).String() + " kube-apiserver + etcd", upLoad: load})
			emitUp(result{scenario: "rss", metric: fmt.Sprintf("idle VmRSS after %s, kube-apiserver alone", o.idle), upstream: api.String(), upLoad: load})
			emitUp(result{scenario: "rss", metric: fmt.Sprintf("idle VmRSS after %s, etcd alone", o.idle), upstream: etcd.String(), upLoad: load})
		}
	}
	if want["create"] || want["list"] || want["watch"] {
		t, stop, err := o.startTarget(ctx)
		if err != nil {
			return err
		}
		if o.heapprofile != "" {
			if err := writeHeapProfile(o.heapprofile, o.idle); err != nil {
				stop()
				return err
			}
		}
		err = o.loadScenarios(ctx, t, want, emit)
		stop()
		if err != nil {
			return err
		}
		if o.upstream != "" {
			u, err := startUpstream(ctx, o.upstream, o.work, true)
			if err != nil {
				return fmt.Errorf("starting upstream for the load scenarios: %w", err)
			}
			err = o.loadScenarios(ctx, u, want, func(r result) {
				r.upstream, r.upLoad, r.value, r.load, r.target = r.value, r.load, "", "", ""
				emitUp(r)
			})
			u.stop()
			if err != nil {
				return fmt.Errorf("upstream: %w", err)
			}
		}
	}
	tab.print(os.Stdout)
	return nil
}

// waitServerIdle waits (at most 30 s) until the server uses less than 10%
// of a core over 200 ms, so that its start-up work (skiff builds its
// OpenAPI documents in the background after /readyz) is not counted as CPU
// of the pods created next. Targets whose CPU cannot be read return at
// once.
func waitServerIdle(t target) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		c0, err := t.cpuTime()
		if err != nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
		c1, err := t.cpuTime()
		if err != nil || c1-c0 < 20*time.Millisecond {
			return
		}
	}
}

// loadScenarios runs create, list and watch (those wanted) against t.
func (o *options) loadScenarios(ctx context.Context, t target, want map[string]bool, emit func(result)) error {
	if want["create"] {
		for _, c := range o.levels {
			waitServerIdle(t)
			cpu0, cpuErr := t.cpuTime()
			rate, lats, err := createLoad(ctx, t, fmt.Sprintf("bench-create-%d", c), c, o.pods)
			if err != nil {
				return fmt.Errorf("create scenario (%d clients): %w", c, err)
			}
			load := loadAvg()
			if cpu1, err := t.cpuTime(); err == nil && cpuErr == nil {
				// CPU per pod does not depend on how busy the machine
				// is, unlike pods/s.
				emit(result{scenario: "create", metric: fmt.Sprintf("server CPU per pod, %d clients", c), value: ms((cpu1 - cpu0) / time.Duration(o.pods)), load: load})
			}
			emit(result{scenario: "create", metric: fmt.Sprintf("pods/s, %d clients", c), value: fmt.Sprintf("%.0f", rate), target: targetFor(c), load: load})
			emit(result{scenario: "create", metric: fmt.Sprintf("p50 latency, %d clients", c), value: ms(lats.median()), load: load})
			emit(result{scenario: "create", metric: fmt.Sprintf("p99 latency, %d clients", c), value: ms(lats.percentile(0.99)), target: p99TargetFor(c), load: load})
		}
	}
	if want["list"] {
		ns := "bench-list"
		if _, _, err := createLoad(ctx, t, ns, 50, o.listPods); err != nil {
			return fmt.Errorf("list scenario: filling namespace: %w", err)
		}
		rs, err := listTimes(ctx, t, ns, 5)
		if err != nil {
			return fmt.Errorf("list scenario: %w", err)
		}
		for _, r := range rs {
			r.metric = strings.Replace(r.metric, "pods", strconv.Itoa(o.listPods)+" pods", 1)
			emit(r)
		}
	}
	if want["watch"] {
		lats, missed, err := watchLatency(ctx, t, "bench-watch", o.watchers, o.watchRate, o.watchDur)
		if err != nil {
			return fmt.Errorf("watch scenario: %w", err)
		}
		load := loadAvg()
		label := fmt.Sprintf("%d watchers, %d pods/s", o.watchers, o.watchRate)
		emit(result{scenario: "watch", metric: "p50 delivery, " + label, value: ms(lats.median()), load: load})
		emit(result{scenario: "watch", metric: "p99 delivery, " + label, value: ms(lats.percentile(0.99)), load: load})
		emit(result{scenario: "watch", metric: "events missed", value: strconv.Itoa(missed), target: "0", load: load})
	}
	return nil
}

// Upstream kube-apiserver v1.37.1 + etcd 3.7.3 on this machine (issue 2).
func targetFor(clients int) string {
	switch clients {
	case 100:
		return ">= 2000 (upstream 489)"
	case 10:
		return "> upstream 453"
	case 1:
		return "> upstream 197"
	}
	return ""
}

func p99TargetFor(clients int) string {
	switch clients {
	case 100:
		return "< 100 ms (upstream 427 ms)"
	case 1:
		return "< upstream 10 ms"
	}
	return "< upstream"
}

// table collects rows in the order skiff's results arrive; upstream's
// results fill the matching row (same scenario and metric) or, for
// upstream-only metrics, add a row.
type table struct {
	upstream bool
	rows     []*result
}

func (t *table) find(scenario, metric string) *result {
	for _, r := range t.rows {
		if r.scenario == scenario && r.metric == metric {
			return r
		}
	}
	return nil
}

func (t *table) add(r result) { t.rows = append(t.rows, &r) }

func (t *table) addUpstream(r result) {
	if row := t.find(r.scenario, r.metric); row != nil {
		row.upstream, row.upLoad = r.upstream, r.upLoad
		return
	}
	t.rows = append(t.rows, &r)
}

func (t *table) print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if !t.upstream {
		fmt.Fprintln(tw, "| scenario\t| metric\t| skiff\t| target\t| load (1/5/15 min)\t|")
		fmt.Fprintln(tw, "|---\t|---\t|---:\t|---\t|---\t|")
		for _, r := range t.rows {
			fmt.Fprintf(tw, "| %s\t| %s\t| %s\t| %s\t| %s\t|\n", r.scenario, r.metric, r.value, r.target, r.load)
		}
	} else {
		fmt.Fprintln(tw, "| scenario\t| metric\t| skiff\t| upstream\t| target\t| load, skiff\t| load, upstream\t|")
		fmt.Fprintln(tw, "|---\t|---\t|---:\t|---:\t|---\t|---\t|---\t|")
		for _, r := range t.rows {
			fmt.Fprintf(tw, "| %s\t| %s\t| %s\t| %s\t| %s\t| %s\t| %s\t|\n", r.scenario, r.metric, r.value, r.upstream, r.target, r.load, r.upLoad)
		}
	}
	tw.Flush()
}

// startTarget starts the server the load scenarios talk to: the binary as
// a subprocess (API server and etcd only), or in this process.
func (o *options) startTarget(ctx context.Context) (target, func(), error) {
	dir := filepath.Join(o.work, "load")
	_ = os.RemoveAll(dir)
	if !o.inprocess {
		p, err := startServer(ctx, o.bin, dir, true, o.serverEnv)
		if err != nil {
			return nil, nil, err
		}
		return p, p.stop, nil
	}
	var ports [3]int
	for i := range ports {
		p, err := freePort()
		if err != nil {
			return nil, nil, err
		}
		ports[i] = p
	}
	s, err := server.New(server.Config{
		DataDir: dir, BindAddress: "127.0.0.1", AdvertiseAddress: "127.0.0.1",
		HTTPSPort: ports[0], EtcdClientPort: ports[1], EtcdPeerPort: ports[2],
		DisableAgent: true, DisableScheduler: true, DisableControllerManager: true,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return nil, nil, fmt.Errorf("configuring in-process server: %w", err)
	}
	sctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- s.Run(sctx) }()
	deadline := time.After(60 * time.Second)
	for !s.Ready() {
		select {
		case err := <-errc:
			cancel()
			return nil, nil, fmt.Errorf("in-process server: %w", err)
		case <-deadline:
			cancel()
			return nil, nil, fmt.Errorf("in-process server not ready after 60s")
		case <-time.After(5 * time.Millisecond):
		}
	}
	return inproc{s}, func() { cancel(); <-errc }, nil
}

type inproc struct{ s *server.Server }

func (i inproc) restConfig() (*rest.Config, error) { return i.s.LoopbackConfig(), nil }

func (i inproc) cpuTime() (time.Duration, error) {
	return 0, fmt.Errorf("server cpu is not separable in process")
}

// writeHeapProfile waits idle, collects garbage and writes a heap profile.
func writeHeapProfile(path string, idle time.Duration) error {
	time.Sleep(idle)
	runtime.GC()
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("creating heap profile: %w", err)
	}
	defer f.Close()
	if err := pprof.WriteHeapProfile(f); err != nil {
		return fmt.Errorf("writing heap profile: %w", err)
	}
	return nil
}
