package agent

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Problem is one missing prerequisite with the fix.
type Problem struct {
	What string // what is missing
	Fix  string // one line telling the operator what to install or enable
}

func (p Problem) String() string { return p.What + ": " + p.Fix }

// PrereqOptions says where to look.
type PrereqOptions struct {
	CNIBinDir string // default /usr/lib/cni
	// ExternalRuntime skips the containerd/runc checks: the operator named
	// an existing CRI endpoint.
	ExternalRuntime bool
	// LookPath and ReadFile default to the real ones; tests replace them.
	LookPath func(string) (string, error)
	ReadFile func(string) ([]byte, error)
	Stat     func(string) (os.FileInfo, error)
}

const aptHint = "apt-get install -y "

// CheckPrereqs lists what a node lacks to run pods: containerd, runc, the
// CNI plugins, nftables, cgroups and overlayfs. An empty result means ready.
func CheckPrereqs(o PrereqOptions) []Problem {
	if o.CNIBinDir == "" {
		o.CNIBinDir = "/usr/lib/cni"
	}
	if o.LookPath == nil {
		o.LookPath = exec.LookPath
	}
	if o.ReadFile == nil {
		o.ReadFile = os.ReadFile
	}
	if o.Stat == nil {
		o.Stat = os.Stat
	}
	var ps []Problem
	if !o.ExternalRuntime {
		for _, bin := range []struct{ name, pkg string }{{"containerd", "containerd"}, {"ctr", "containerd"}, {"runc", "runc"}} {
			if _, err := o.LookPath(bin.name); err != nil {
				ps = append(ps, Problem{What: bin.name + " not found in PATH", Fix: aptHint + bin.pkg})
			}
		}
	}
	for _, plugin := range []string{"bridge", "host-local", "loopback", "portmap"} {
		if _, err := o.Stat(filepath.Join(o.CNIBinDir, plugin)); err != nil {
			ps = append(ps, Problem{What: "CNI plugin " + plugin + " not found in " + o.CNIBinDir, Fix: aptHint + "containernetworking-plugins"})
		}
	}
	if _, err := o.LookPath("nft"); err != nil {
		ps = append(ps, Problem{What: "nft not found in PATH", Fix: aptHint + "nftables"})
	}
	if _, err := o.LookPath("ip"); err != nil {
		ps = append(ps, Problem{What: "ip not found in PATH", Fix: aptHint + "iproute2"})
	}
	if b, err := o.ReadFile("/proc/filesystems"); err != nil || !hasFilesystem(string(b), "overlay") {
		ps = append(ps, Problem{What: "overlayfs is not available", Fix: "load the overlay kernel module (modprobe overlay)"})
	}
	ps = append(ps, checkCgroups(o)...)
	return ps
}

func hasFilesystem(procFilesystems, name string) bool {
	s := bufio.NewScanner(strings.NewReader(procFilesystems))
	for s.Scan() {
		f := strings.Fields(s.Text())
		if len(f) > 0 && f[len(f)-1] == name {
			return true
		}
	}
	return false
}

// checkCgroups accepts cgroup v2 (unified) or v1 with the controllers runc
// needs mounted.
func checkCgroups(o PrereqOptions) []Problem {
	if _, err := o.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return nil
	}
	var ps []Problem
	for _, c := range []string{"cpu", "memory", "pids", "devices", "freezer"} {
		if _, err := o.Stat(filepath.Join("/sys/fs/cgroup", c)); err != nil {
			ps = append(ps, Problem{What: "cgroup controller " + c + " is not mounted", Fix: "mount cgroups (v2 at /sys/fs/cgroup, or v1 hierarchies per controller; apt-get install -y cgroupfs-mount)"})
		}
	}
	return ps
}

// FormatProblems renders problems as the one message the CLI prints.
func FormatProblems(ps []Problem) string {
	var b strings.Builder
	fmt.Fprintf(&b, "this node is missing %d prerequisite(s):\n", len(ps))
	for _, p := range ps {
		fmt.Fprintf(&b, "  - %s\n", p)
	}
	return b.String()
}
