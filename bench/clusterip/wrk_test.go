package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseWrk(t *testing.T) {
	out := `Running 10s test @ http://10.99.0.2:8080/healthz
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.20ms    0.90ms  31.00ms   90.00%
SKIFFBENCH requests=120000 duration_us=10000000 connect=1 read=2 write=3 status=4 timeout=5 p50_us=900 p90_us=1500 p99_us=4200 max_us=31000
Requests/sec:  12000.00
`
	r, err := parseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	want := run{Requests: 120000, Duration: 10 * time.Second, Errors: 15,
		P50: 900 * time.Microsecond, P90: 1500 * time.Microsecond, P99: 4200 * time.Microsecond, Max: 31 * time.Millisecond}
	if r != want {
		t.Errorf("parseWrk = %+v, want %+v", r, want)
	}
	if got := r.RPS(); got != 12000 {
		t.Errorf("RPS = %v, want 12000", got)
	}
	for name, bad := range map[string]string{
		"no report":      "Requests/sec: 5\n",
		"missing p99":    "SKIFFBENCH requests=1 duration_us=1 p50_us=1\n",
		"not a number":   "SKIFFBENCH requests=x duration_us=1 p50_us=1 p99_us=1\n",
		"malformed pair": "SKIFFBENCH requests 1\n",
	} {
		if _, err := parseWrk(bad); err == nil {
			t.Errorf("%s: parseWrk(%q) succeeded", name, bad)
		}
	}
}

func TestSummarizeAndOverhead(t *testing.T) {
	ms := time.Millisecond
	runs := []run{
		{Requests: 1000, Duration: time.Second, P50: 3 * ms, P99: 9 * ms, ClientCPU: 100 * ms, PodCPU: 100 * ms, Errors: 1},
		{Requests: 3000, Duration: time.Second, P50: 1 * ms, P99: 7 * ms, ClientCPU: 300 * ms, PodCPU: 600 * ms},
		{Requests: 2000, Duration: time.Second, P50: 2 * ms, P99: 8 * ms, ClientCPU: 200 * ms, PodCPU: 200 * ms, Errors: 2},
	}
	s := summarize(runs)
	want := summary{Runs: 3, RPS: 2000, P50: 2 * ms, P99: 8 * ms, CPUPerRequest: 200 * time.Microsecond,
		ClientCPUPerRequest: 100 * time.Microsecond, Errors: 3}
	if s != want {
		t.Errorf("summarize = %+v, want %+v", s, want)
	}
	if got := median([]float64{4, 1, 3, 2}); got != 2.5 {
		t.Errorf("median of an even count = %v, want 2.5", got)
	}
	if got := rpsOverhead(1000, 920); got < 7.99 || got > 8.01 {
		t.Errorf("rpsOverhead(1000, 920) = %v, want 8", got)
	}
	if got := durOverhead(2*ms, 3*ms); got != 50 {
		t.Errorf("durOverhead(2ms, 3ms) = %v, want 50", got)
	}
	if got := rpsOverhead(0, 5); got != 0 {
		t.Errorf("rpsOverhead with no direct result = %v, want 0", got)
	}
}

func TestWrkArgs(t *testing.T) {
	keep := wrkArgs("/s.lua", "http://x/", 2, 64, 10*time.Second, false)
	if slices.Contains(keep, "Connection: close") {
		t.Errorf("keep-alive args ask for Connection: close: %v", keep)
	}
	if got := strings.Join(keep, " "); got != "-t 2 -c 64 -d 10s --timeout 5s -s /s.lua http://x/" {
		t.Errorf("wrkArgs = %q", got)
	}
	cl := wrkArgs("/s.lua", "http://x/", 1, 8, 1500*time.Millisecond, true)
	if i := slices.Index(cl, "-H"); i < 0 || cl[i+1] != "Connection: close" || cl[len(cl)-1] != "http://x/" {
		t.Errorf("close args = %v", cl)
	}
	if i := slices.Index(cl, "-d"); cl[i+1] != "2s" {
		t.Errorf("duration rounds to whole seconds: got %s", cl[i+1])
	}
}

func TestValidate(t *testing.T) {
	ok := options{duration: time.Second, conns: 2, threads: 2, rounds: 1, path: "/", modes: "keepalive,close", from: "host,pod"}
	if err := validate(ok); err != nil {
		t.Fatalf("valid options refused: %v", err)
	}
	for name, mut := range map[string]func(*options){
		"short":      func(o *options) { o.duration = 500 * time.Millisecond },
		"few conns":  func(o *options) { o.conns = 1 },
		"no rounds":  func(o *options) { o.rounds = 0 },
		"bad path":   func(o *options) { o.path = "healthz" },
		"bad mode":   func(o *options) { o.modes = "keepalive,pipeline" },
		"no threads": func(o *options) { o.threads = 0 },
		"bad from":   func(o *options) { o.from = "host,node" },
	} {
		o := ok
		mut(&o)
		if err := validate(o); err == nil {
			t.Errorf("%s: validate accepted %+v", name, o)
		}
	}
}

// TestReportScript runs the Lua report script through a real wrk against
// a local server when wrk is installed, so a wrk whose done() API differs
// is caught before a long run.
func TestReportScript(t *testing.T) {
	wrk, err := findOnPath("wrk")
	if err != nil {
		t.Skip("wrk not installed")
	}
	srv := startEcho(t)
	script := filepath.Join(t.TempDir(), "report.lua")
	if err := os.WriteFile(script, []byte(reportScript), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, closeConns := range []bool{false, true} {
		out, err := exec.Command(wrk, wrkArgs(script, srv, 1, 2, time.Second, closeConns)...).CombinedOutput()
		if err != nil {
			t.Fatalf("wrk: %v\n%s", err, out)
		}
		r, err := parseWrk(string(out))
		if err != nil {
			t.Fatal(err)
		}
		if r.Requests == 0 || r.Duration < 900*time.Millisecond || r.P50 <= 0 || r.P99 < r.P50 {
			t.Errorf("close=%v: implausible run %+v\n%s", closeConns, r, out)
		}
		if r.Errors != 0 {
			t.Errorf("close=%v: %d errors against a local server\n%s", closeConns, r.Errors, out)
		}
	}
}

func startEcho(t *testing.T) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") }))
	t.Cleanup(srv.Close)
	return srv.URL + "/healthz"
}
