package agent

import (
	"os"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestEnsureBridgeNetfilter turns bridge-nf-call-iptables off in a fresh
// network namespace (the sysctl is per namespace) and has the agent's
// check turn it back on.
func TestEnsureBridgeNetfilter(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace")
	}
	if _, err := os.Stat(bridgeNFCallIPTables); err != nil {
		t.Skip("br_netfilter is not loaded on this machine")
	}
	errc := make(chan error, 1)
	var got string
	go func() {
		runtime.LockOSThread() // never unlocked: the thread and its netns die with the goroutine
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		if err := os.WriteFile(bridgeNFCallIPTables, []byte("0\n"), 0o644); err != nil {
			errc <- err
			return
		}
		if err := ensureBridgeNetfilter(); err != nil {
			errc <- err
			return
		}
		b, err := os.ReadFile(bridgeNFCallIPTables)
		got = strings.TrimSpace(string(b))
		errc <- err
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if got != "1" {
		t.Fatalf("bridge-nf-call-iptables = %q after ensureBridgeNetfilter, want 1", got)
	}
}
