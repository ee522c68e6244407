// Package nettest is the harness shared by the tests that program the real
// kernel: they run as root, create network namespaces (named ones through
// iproute2, or anonymous ones on a locked thread) and nftables tables in
// them, so nothing they make is visible on the host or outlives them.
//
// Only tests import it: every function that can fail takes a testing.TB
// and skips, fails or registers its clean-up through it. Callers keep to
// the address range and name prefix their package owns (docs/TESTING.md);
// nettest chooses no names or addresses of its own.
package nettest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// RequireRoot skips the test unless it runs as root with every one of
// tools (for example "nft", "ip") on the PATH.
func RequireRoot(t testing.TB, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, nftables)")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s on the PATH", tool)
		}
	}
}

// RandomName is prefix followed by 8 random hex digits, for namespaces and
// tables that must not collide with a concurrent run of the same test.
func RandomName(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// Run runs a command (typically ip or nft) and fails the test with its
// output when it fails.
func Run(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// AddNetns creates the named network namespace (/run/netns/name) and
// deletes it when the test ends, with every link and table inside it; a
// failed deletion fails the test, since it leaves the namespace behind.
func AddNetns(t testing.TB, name string) {
	t.Helper()
	Run(t, "ip", "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("deleting netns %s: %v: %s", name, err, out)
		}
	})
}

// InNetns runs fn on a thread that has joined the named network namespace
// (see AddNetns); sockets fn opens and processes it starts live there. The
// thread stays locked, so Go discards it afterwards instead of reusing a
// thread in the wrong namespace.
func InNetns(name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open("/run/netns/" + name)
		if err != nil {
			errc <- fmt.Errorf("opening netns %s: %w", name, err)
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("joining netns %s: %w", name, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// InFreshNetns runs fn on a thread moved into a new, anonymous network
// namespace, so its hooks never see the host's traffic, and fails the test
// with fn's error. The thread is not unlocked: Go destroys it when fn
// returns, and with it the namespace and everything in it.
func InFreshNetns(t testing.TB, fn func() error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("creating network namespace: %w", err)
			return
		}
		errc <- fn()
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// ListTable is `nft list table FAMILY TABLE` in the calling thread's
// namespace (call it inside InNetns or InFreshNetns).
func ListTable(ctx context.Context, family, table string) (string, error) {
	out, err := exec.CommandContext(ctx, "nft", "list", "table", family, table).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("listing table %s %s: %v: %s", family, table, err, out)
	}
	return string(out), nil
}
