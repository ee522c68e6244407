package nettest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestRandomName(t *testing.T) {
	a, b := RandomName("skiffnt-"), RandomName("skiffnt-")
	if a == b || !strings.HasPrefix(a, "skiffnt-") || len(a) != len("skiffnt-")+8 {
		t.Errorf("RandomName gave %q and %q", a, b)
	}
}

// TestInFreshNetns creates a table in a fresh namespace and checks that
// the host's namespace never had it and the fresh one did.
func TestInFreshNetns(t *testing.T) {
	RequireRoot(t, "nft")
	table := RandomName("skiffnt-")
	ctx := context.Background()
	InFreshNetns(t, func() error {
		if out, err := exec.Command("nft", "add", "table", "ip", table).CombinedOutput(); err != nil {
			return fmt.Errorf("adding table: %v: %s", err, out)
		}
		out, err := ListTable(ctx, "ip", table)
		if err != nil {
			return err
		}
		if !strings.Contains(out, "table ip "+table) {
			t.Errorf("ListTable inside: %q", out)
		}
		return nil
	})
	if _, err := ListTable(ctx, "ip", table); err == nil {
		t.Errorf("table %s is visible in the host's namespace", table)
		_ = exec.Command("nft", "delete", "table", "ip", table).Run()
	}
}

// TestAddNetns checks that a named namespace exists while the test runs,
// that InNetns runs inside it, and that it is gone after the clean-up.
func TestAddNetns(t *testing.T) {
	RequireRoot(t, "ip", "nft")
	name := RandomName("skiffnt-")
	t.Run("inside", func(t *testing.T) {
		AddNetns(t, name)
		if _, err := os.Stat("/run/netns/" + name); err != nil {
			t.Fatalf("netns %s not created: %v", name, err)
		}
		table := RandomName("skiffnt-")
		// Not Run: t.Fatal must not be called from InNetns's goroutine.
		if err := InNetns(name, func() error {
			if out, err := exec.Command("nft", "add", "table", "ip", table).CombinedOutput(); err != nil {
				return fmt.Errorf("adding table: %v: %s", err, out)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if err := InNetns(name, func() error { _, err := ListTable(context.Background(), "ip", table); return err }); err != nil {
			t.Errorf("table made in %s not found there: %v", name, err)
		}
		if _, err := ListTable(context.Background(), "ip", table); err == nil {
			t.Errorf("table made in %s is visible on the host", name)
		}
	})
	if _, err := os.Stat("/run/netns/" + name); err == nil {
		t.Errorf("netns %s left after its test ended", name)
		_ = exec.Command("ip", "netns", "del", name).Run()
	}
	if err := InNetns(RandomName("skiffnt-missing-"), func() error { return nil }); err == nil {
		t.Error("InNetns of a namespace that does not exist succeeded")
	}
}
