package agent

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"skiff.dev/skiff/internal/images"
	"skiff.dev/skiff/internal/kubelet/cri"
)

func TestRenderContainerdConfig(t *testing.T) {
	got, err := RenderContainerdConfig(ContainerdConfig{Dir: "/d", CNIBinDir: "/usr/lib/cni", CNIConfDir: "/d/cni", SandboxImage: images.Pause})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`root = "/d/root"`, `address = "/d/containerd.sock"`, `restrict_oom_score_adj = true`,
		`SystemdCgroup = false`, `snapshotter = "overlayfs"`, `sandbox_image = "localhost/skiff/pause:v1"`,
		`conf_dir = "/d/cni"`, `bin_dir = "/usr/lib/cni"`, `config_path = "/d/certs.d"`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("config lacks %q:\n%s", want, got)
		}
	}
}

func TestWriteRegistryHosts(t *testing.T) {
	dir := t.TempDir()
	if err := writeRegistryHosts(dir, []string{"127.0.0.1:5000", "reg.local"}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "127.0.0.1:5000", "hosts.toml"))
	if err != nil {
		t.Fatal(err)
	}
	want := "server = \"http://127.0.0.1:5000\"\n\n[host.\"http://127.0.0.1:5000\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
	if string(b) != want {
		t.Fatalf("hosts.toml:\n%s\nwant:\n%s", b, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "reg.local", "hosts.toml")); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "..", "http://x", "a b", "../x/y"} {
		if err := writeRegistryHosts(dir, []string{bad}); err == nil {
			t.Errorf("insecure registry %q accepted", bad)
		}
	}
}

func TestCheckPrereqsNamesPackages(t *testing.T) {
	missing := func(string) (string, error) { return "", exec.ErrNotFound }
	ps := CheckPrereqs(PrereqOptions{
		LookPath: missing,
		ReadFile: func(string) ([]byte, error) { return []byte("nodev\tproc\n"), nil },
		Stat:     func(string) (os.FileInfo, error) { return nil, os.ErrNotExist },
	})
	msg := FormatProblems(ps)
	for _, want := range []string{"apt-get install -y containerd", "apt-get install -y runc", "containernetworking-plugins", "nftables", "overlay", "cgroup controller memory"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q:\n%s", want, msg)
		}
	}
	ok := CheckPrereqs(PrereqOptions{
		LookPath: func(s string) (string, error) { return "/usr/bin/" + s, nil },
		ReadFile: func(string) ([]byte, error) { return []byte("nodev\toverlay\n"), nil },
		Stat:     func(string) (os.FileInfo, error) { return nil, nil },
	})
	if len(ok) != 0 {
		t.Errorf("want no problems, got %v", ok)
	}
}

// TestContainerdImages starts a private containerd, builds and imports the
// built-in images and checks CRI sees them.
func TestContainerdImages(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run containerd")
	}
	if ps := CheckPrereqs(PrereqOptions{}); len(ps) > 0 {
		t.Skip(FormatProblems(ps))
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c, err := StartContainerd(ctx, ContainerdConfig{Dir: filepath.Join(dir, "containerd"), CNIBinDir: "/usr/lib/cni", CNIConfDir: filepath.Join(dir, "cni"), SandboxImage: images.Pause})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Stop(); UnmountUnder(dir) })
	client, err := cri.Dial(ctx, c.Endpoint())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if err := images.Ensure(ctx, client.Image, filepath.Join(dir, "containerd.sock"), filepath.Join(dir, "build")); err == nil {
		t.Fatal("ensure with a wrong socket should fail")
	}
	if err := images.Ensure(ctx, client.Image, filepath.Join(dir, "containerd", "containerd.sock"), filepath.Join(dir, "build")); err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{images.Pause, images.Testapp} {
		ok, err := images.Present(ctx, client.Image, ref)
		if err != nil || !ok {
			t.Errorf("image %s present=%v err=%v", ref, ok, err)
		}
	}
}
