package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestParseAPIHealth(t *testing.T) {
	out := "etcd: {\"health\":\"true\"}\nkube-apiserver /healthz: ok after 3.412345678 s\nkube-scheduler /healthz: ok   kube-controller-manager /healthz: ok\n"
	d, err := parseAPIHealth(out)
	if err != nil {
		t.Fatal(err)
	}
	if want := 3412345678 * time.Nanosecond; d < want-time.Microsecond || d > want+time.Microsecond {
		t.Errorf("got %v, want %v", d, want)
	}
	// bc prints values below 1 without a leading zero.
	if d, err := parseAPIHealth("kube-apiserver /healthz: ok after .950 s\n"); err != nil || d != 950*time.Millisecond {
		t.Errorf("got %v, %v; want 950ms", d, err)
	}
	for _, bad := range []string{
		"",
		"kube-apiserver died, see run/kube-apiserver.log\n",
		"kube-apiserver /healthz:  after 120.1 s\n",
		"kube-apiserver /healthz: ok after soon s\n",
	} {
		if _, err := parseAPIHealth(bad); err == nil {
			t.Errorf("parseAPIHealth(%q): no error", bad)
		}
	}
}

func TestTableMergesUpstream(t *testing.T) {
	tab := &table{upstream: true}
	tab.add(result{scenario: "create", metric: "pods/s, 1 clients", value: "300", target: "> upstream 197", load: "1.0 1.0 1.0"})
	tab.add(result{scenario: "create", metric: "pods/s, 10 clients", value: "900", load: "2.0 2.0 2.0"})
	tab.addUpstream(result{scenario: "create", metric: "pods/s, 10 clients", upstream: "450", upLoad: "3.0 3.0 3.0"})
	tab.addUpstream(result{scenario: "rss", metric: "kube-apiserver alone", upstream: "270 MB", upLoad: "4.0 4.0 4.0"})
	if len(tab.rows) != 3 {
		t.Fatalf("got %d rows, want 3", len(tab.rows))
	}
	if r := tab.rows[1]; r.value != "900" || r.upstream != "450" || r.upLoad != "3.0 3.0 3.0" || r.load != "2.0 2.0 2.0" {
		t.Errorf("merged row = %+v", *r)
	}
	if r := tab.rows[0]; r.upstream != "" {
		t.Errorf("row without upstream got %q", r.upstream)
	}
	var buf bytes.Buffer
	tab.print(&buf)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 5 {
		t.Fatalf("table has %d lines:\n%s", len(lines), buf.String())
	}
	if !strings.Contains(lines[0], "upstream") || !strings.Contains(lines[3], "450") || !strings.Contains(lines[4], "270 MB") {
		t.Errorf("table:\n%s", buf.String())
	}
	if got := strings.Count(lines[3], "|"); got != 8 {
		t.Errorf("row has %d separators, want 8: %q", got, lines[3])
	}
}

func TestStopPIDFile(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Skip("no sleep binary:", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
	path := filepath.Join(dir, "run", "kube-scheduler.pid")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A live process named in a PID file means upstream is running.
	if err := checkUpstreamFree(dir); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("checkUpstreamFree with a live pid: %v", err)
	}
	if err := stopPIDFile(path); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Fatal("process still running after stopPIDFile")
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("pid file left behind: %v", err)
	}
	// A missing file is nothing to stop.
	if err := stopPIDFile(path); err != nil {
		t.Errorf("missing pid file: %v", err)
	}
	if err := os.WriteFile(path, []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := stopPIDFile(path); err == nil {
		t.Error("pid 1 accepted")
	}
	if err := syscall.Kill(cmd.Process.Pid, 0); err == nil {
		t.Error("process still exists")
	}
}

func TestRSSAdd(t *testing.T) {
	got := rss{100, 60, 40}.add(rss{50, 20, 30})
	if got != (rss{150, 80, 70}) {
		t.Errorf("got %+v", got)
	}
	if s := (rss{2048, 1024, 1024}).String(); s != "2 MB (anon 1, file 1)" {
		t.Errorf("String() = %q", s)
	}
}
