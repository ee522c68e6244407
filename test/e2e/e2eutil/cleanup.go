// Package e2eutil holds the clean-up helpers the end-to-end packages
// share: whatever a failed test leaves of a node (sandboxes, shims,
// container processes, cgroups, links, nftables tables, network namespace
// mounts) is removed through them.
//
// Every helper is best effort: it removes what it can, reports what it
// kills or fails to remove through a Logger, and never fails the test, so
// one leftover does not hide the others.
package e2eutil

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"skiff.dev/skiff/internal/agent"
	"skiff.dev/skiff/internal/kubelet/cri"
)

// Logger is where the helpers report: a *testing.T or *testing.B, or
// LogFunc for a TestMain that tears down after its tests have ended.
type Logger interface {
	Logf(format string, args ...any)
}

// LogFunc adapts a printf-style function to Logger.
type LogFunc func(format string, args ...any)

// Logf calls f.
func (f LogFunc) Logf(format string, args ...any) { f(format, args...) }

// RemoveAllSandboxes stops and removes every pod sandbox of the runtime
// (releasing their netns, veths and IPs through CNI). It returns the
// network namespace paths the sandboxes had, so a caller can remove any
// the runtime could not (RemoveNetns).
func RemoveAllSandboxes(l Logger, c *cri.Client) (netns []string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := c.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		l.Logf("listing sandboxes for cleanup: %v", err)
		return nil
	}
	for _, sb := range resp.GetItems() {
		id := sb.GetId()
		if st, err := c.Runtime.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id, Verbose: true}); err == nil {
			if p := sandboxNetns(st.GetInfo()["info"]); p != "" {
				netns = append(netns, p)
			}
		}
		// NotFound: the agent removed it since the list, which is fine.
		if _, err := c.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil && status.Code(err) != codes.NotFound {
			l.Logf("stopping sandbox %s: %v", id, err)
		}
		if _, err := c.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil && status.Code(err) != codes.NotFound {
			l.Logf("removing sandbox %s: %v", id, err)
		}
	}
	return netns
}

// RemoveSandboxesAt dials the CRI endpoint ("unix:///path") of a running
// containerd and removes every sandbox, as RemoveAllSandboxes.
func RemoveSandboxesAt(l Logger, endpoint string) (netns []string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := cri.Dial(ctx, endpoint)
	if err != nil {
		l.Logf("dialing %s for cleanup: %v", endpoint, err)
		return nil
	}
	defer c.Close()
	return RemoveAllSandboxes(l, c)
}

// PurgeAgent removes every sandbox (netns, veth, IP) of a stopped agent
// through a containerd of its own started on the agent's state, and stops
// that containerd again. Unlike the other helpers it returns an error when
// it cannot start or reach that containerd: the callers fail the test then,
// since every sandbox would be left behind.
func PurgeAgent(l Logger, a *agent.Agent) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cd, err := agent.StartContainerd(ctx, a.ContainerdConfig())
	if err != nil {
		return fmt.Errorf("starting containerd for cleanup: %w", err)
	}
	defer cd.Stop()
	c, err := cri.Dial(ctx, cd.Endpoint())
	if err != nil {
		return fmt.Errorf("dialing containerd for cleanup: %w", err)
	}
	defer c.Close()
	RemoveAllSandboxes(l, c)
	return nil
}

// sandboxNetns reads the network namespace path from containerd's verbose
// sandbox info (its runtime spec); "" when there is none.
func sandboxNetns(info string) string {
	var v struct {
		RuntimeSpec struct {
			Linux struct {
				Namespaces []struct{ Type, Path string }
			}
		}
	}
	if json.Unmarshal([]byte(info), &v) != nil {
		return ""
	}
	for _, ns := range v.RuntimeSpec.Linux.Namespaces {
		if ns.Type == "network" {
			return ns.Path
		}
	}
	return ""
}

// KillShims kills containerd-shim processes serving the containerd under dir.
func KillShims(l Logger, dir string) {
	killMatching(l, "leftover shim", func(cmdline string) bool {
		return strings.Contains(cmdline, "containerd-shim") && strings.Contains(cmdline, dir)
	})
}

// KillProcessesUnder kills every process (but this one) whose command
// line names a path under dir: the shims of every containerd under it, and
// any containerd or agent process a killed parent left behind.
func KillProcessesUnder(l Logger, dir string) {
	prefix := strings.TrimSuffix(dir, "/") + "/"
	killMatching(l, "leftover process", func(cmdline string) bool { return strings.Contains(cmdline, prefix) })
}

func killMatching(l Logger, what string, match func(cmdline string) bool) {
	self := os.Getpid()
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		cmdline := strings.ReplaceAll(strings.TrimRight(string(b), "\x00"), "\x00", " ")
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if err != nil || pid == self || !match(cmdline) {
			continue
		}
		l.Logf("killing %s %d (%s)", what, pid, cmdline)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// RemoveCgroupTree kills any process left in the node's cgroups
// (containers whose shim died) and removes the cgroup directories under
// root in every hierarchy, deepest first.
func RemoveCgroupTree(l Logger, root string) {
	var dirs []string
	tops, _ := filepath.Glob("/sys/fs/cgroup/*" + root)
	for _, top := range tops {
		_ = filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
	}
	killed := map[int]bool{}
	for _, d := range dirs {
		b, _ := os.ReadFile(filepath.Join(d, "cgroup.procs"))
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil && !killed[pid] {
				killed[pid] = true
				l.Logf("killing leftover container process %d", pid)
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	if len(killed) > 0 {
		// A cgroup with a dying process in it cannot be removed yet.
		time.Sleep(200 * time.Millisecond)
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Remove(dirs[i]); err != nil && !errors.Is(err, os.ErrNotExist) {
			l.Logf("removing cgroup %s: %v", dirs[i], err)
		}
	}
}

// DeleteLinks deletes the host's network links of those names (a bridge,
// the host end of a veth) that exist.
func DeleteLinks(l Logger, names ...string) {
	for _, name := range names {
		link, err := netlink.LinkByName(name)
		if err != nil {
			var nf netlink.LinkNotFoundError
			if !errors.As(err, &nf) {
				l.Logf("finding link %s: %v", name, err)
			}
			continue
		}
		if err := netlink.LinkDel(link); err != nil {
			l.Logf("deleting link %s: %v", name, err)
		}
	}
}

// DeleteNftTables deletes the nftables tables of those names in family
// ("ip", "inet", …) that exist in the host's namespace.
func DeleteNftTables(l Logger, family string, names ...string) {
	for _, name := range names {
		out, err := exec.Command("nft", "delete", "table", family, name).CombinedOutput()
		if err != nil && !strings.Contains(string(out), "No such file or directory") {
			l.Logf("deleting nftables table %s %s: %v: %s", family, name, err, strings.TrimSpace(string(out)))
		}
	}
}

// RemoveNetns unmounts and removes the named network namespaces' bind
// mounts (paths like /var/run/netns/NAME, what `ip netns del` does). A path
// that is already gone is skipped.
func RemoveNetns(l Logger, paths ...string) {
	for _, p := range paths {
		if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			l.Logf("unmounting netns %s: %v", p, err)
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			l.Logf("removing netns %s: %v", p, err)
		}
	}
}
