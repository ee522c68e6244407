package e2eutil

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// recorder is a Logger that keeps what it was told.
type recorder struct {
	mu    sync.Mutex
	lines []string
}

func (r *recorder) Logf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, fmt.Sprintf(format, args...))
}

func (r *recorder) all() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.lines, "\n")
}

func TestSandboxNetns(t *testing.T) {
	for _, tc := range []struct{ name, info, want string }{
		{"containerd 1.6 info", `{"pid":42,"runtimeSpec":{"linux":{"namespaces":[{"type":"pid"},{"type":"network","path":"/var/run/netns/cni-1234"},{"type":"ipc"}]}}}`, "/var/run/netns/cni-1234"},
		{"host network", `{"runtimeSpec":{"linux":{"namespaces":[{"type":"pid"},{"type":"ipc"}]}}}`, ""},
		{"no info", ``, ""},
		{"garbage", `{"runtimeSpec":`, ""},
	} {
		if got := sandboxNetns(tc.info); got != tc.want {
			t.Errorf("%s: sandboxNetns = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestLogFunc(t *testing.T) {
	var got string
	var l Logger = LogFunc(func(format string, args ...any) { got = fmt.Sprintf(format, args...) })
	l.Logf("removing %s: %d", "x", 3)
	if got != "removing x: 3" {
		t.Errorf("LogFunc passed %q", got)
	}
}

// TestKillProcessesUnder kills a process that names a path under the
// directory and spares one that names a sibling with the same prefix.
func TestKillProcessesUnder(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("needs sleep")
	}
	base := t.TempDir()
	dir := filepath.Join(base, "n1")
	// The command line names the path through argv[0]: a link to sleep.
	start := func(link string) *exec.Cmd {
		if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(sleep, link); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(link, "60")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	inside := start(filepath.Join(dir, "state", "sleep"))
	sibling := start(filepath.Join(base, "n1-other", "sleep"))
	exited := make(chan error, 1)
	go func() { exited <- inside.Wait() }()

	r := &recorder{}
	KillProcessesUnder(r, dir)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatalf("the process naming %s was not killed; log: %s", dir, r.all())
	}
	if err := sibling.Process.Signal(unix.Signal(0)); err != nil {
		t.Errorf("the process naming %s-other was killed too: %v", dir, err)
	}
	if !strings.Contains(r.all(), fmt.Sprint(inside.Process.Pid)) {
		t.Errorf("the kill was not logged: %q", r.all())
	}
}

// inFreshNetns runs fn on a thread in a new network namespace, which Go
// discards (with the namespace) when fn returns: nothing reaches the host.
func inFreshNetns(t *testing.T, fn func()) {
	t.Helper()
	done := make(chan string, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			done <- fmt.Sprintf("creating a network namespace: %v", err)
			return
		}
		fn()
		done <- ""
	}()
	if msg := <-done; msg != "" {
		t.Fatal(msg)
	}
}

func requireRoot(t *testing.T, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s", tool)
		}
	}
}

func randomSuffix() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func TestDeleteLinks(t *testing.T) {
	requireRoot(t)
	name := "skiffeu" + randomSuffix()
	inFreshNetns(t, func() {
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}); err != nil {
			t.Errorf("adding a bridge: %v", err)
			return
		}
		r := &recorder{}
		DeleteLinks(r, name, name+"x") // the second does not exist: no complaint
		if _, err := netlink.LinkByName(name); err == nil {
			t.Errorf("link %s still there", name)
		}
		if r.all() != "" {
			t.Errorf("logged %q for a link that exists and one that does not", r.all())
		}
	})
}

func TestDeleteNftTables(t *testing.T) {
	requireRoot(t, "nft")
	name := "skiffeu-" + randomSuffix()
	inFreshNetns(t, func() {
		if out, err := exec.Command("nft", "add", "table", "ip", name).CombinedOutput(); err != nil {
			t.Errorf("adding table: %v: %s", err, out)
			return
		}
		r := &recorder{}
		DeleteNftTables(r, "ip", name, name+"x")
		out, err := exec.Command("nft", "list", "tables", "ip").CombinedOutput()
		if err != nil {
			t.Errorf("listing tables: %v: %s", err, out)
		}
		if strings.Contains(string(out), name) {
			t.Errorf("table %s still there: %s", name, out)
		}
		if r.all() != "" {
			t.Errorf("logged %q for a table that exists and one that does not", r.all())
		}
	})
}

func TestRemoveNetns(t *testing.T) {
	requireRoot(t, "ip")
	name := "skiffeu-" + randomSuffix()
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("adding netns: %v: %s", err, out)
	}
	p := "/var/run/netns/" + name
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	r := &recorder{}
	RemoveNetns(r, p, p+"-gone")
	if _, err := os.Lstat(p); err == nil {
		t.Errorf("%s still there", p)
	}
	if r.all() != "" {
		t.Errorf("logged %q", r.all())
	}
}
