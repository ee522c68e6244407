// Package e2eutil holds the clean-up helpers the end-to-end packages
// share: whatever a failed test leaves of a node (sandboxes, shims,
// container processes, cgroups) is removed through them.
package e2eutil

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"skiff.dev/skiff/internal/kubelet/cri"
)

// RemoveAllSandboxes stops and removes every pod sandbox of the runtime
// (releasing their netns, veths and IPs through CNI).
func RemoveAllSandboxes(t testing.TB, c *cri.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := c.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		t.Logf("listing sandboxes for cleanup: %v", err)
		return
	}
	for _, sb := range resp.GetItems() {
		_, _ = c.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sb.GetId()})
		_, _ = c.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sb.GetId()})
	}
}

// KillShims kills containerd-shim processes serving the containerd under dir.
func KillShims(t testing.TB, dir string) {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(b), "containerd-shim") || !strings.Contains(string(b), dir) {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if proc, err := os.FindProcess(pid); err == nil {
			t.Logf("killing leftover shim %d", pid)
			_ = proc.Kill()
		}
	}
}

// RemoveCgroupTree kills any process left in the node's cgroups
// (containers whose shim died) and removes the cgroup directories under
// root in every hierarchy, deepest first.
func RemoveCgroupTree(t testing.TB, root string) {
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
				if proc, err := os.FindProcess(pid); err == nil {
					t.Logf("killing leftover container process %d", pid)
					_ = proc.Kill()
				}
			}
		}
	}
	time.Sleep(100 * time.Millisecond)
	for i := len(dirs) - 1; i >= 0; i-- {
		_ = os.Remove(dirs[i])
	}
}
