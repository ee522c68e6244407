package agentjoin

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"skiff.dev/skiff/internal/agent"
	imagescli "skiff.dev/skiff/internal/cli/images"
	"skiff.dev/skiff/internal/images"
	"skiff.dev/skiff/internal/kubelet/cri"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run containerd")
	}
	if ps := agent.CheckPrereqs(agent.PrereqOptions{}); len(ps) > 0 {
		t.Skip(agent.FormatProblems(ps))
	}
}

// writeImage writes a one-file image named ref as a docker archive.
func writeImage(t *testing.T, dir, ref string) string {
	t.Helper()
	img, err := images.Image(images.Spec{Ref: ref, Binary: "/hello"}, []byte("not a real program"))
	if err != nil {
		t.Fatal(err)
	}
	tag, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, strings.NewReplacer("/", "_", ":", "_").Replace(ref)+".tar")
	if err := tarball.WriteToFile(path, tag, img); err != nil {
		t.Fatal(err)
	}
	return path
}

func runImages(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := imagescli.NewCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

// TestImagesImportAndList: `skiff images import` loads a tarball into the
// agent's containerd with containerd's Go client, CRI (what the kubelet
// uses) sees it at once, and `skiff images list` shows it.
func TestImagesImportAndList(t *testing.T) {
	requireRoot(t)
	dataDir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cdDir := filepath.Dir(agent.ContainerdSocket(dataDir))
	cd, err := agent.StartContainerd(ctx, agent.ContainerdConfig{Dir: cdDir, CNIBinDir: "/usr/lib/cni", CNIConfDir: filepath.Join(dataDir, "cni"), SandboxImage: images.Pause})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cd.Stop()
		_ = agent.UnmountUnder(dataDir)
	})
	const ref = "localhost/skiff-e2ef/hello:v1"
	tarPath := writeImage(t, t.TempDir(), ref)

	out, err := runImages(t, "import", tarPath, "--data-dir", dataDir)
	if err != nil || !strings.Contains(out, "imported "+ref) {
		t.Fatalf("images import: %v\n%s", err, out)
	}
	client, err := cri.Dial(ctx, cd.Endpoint())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if ok, err := images.Present(ctx, client.Image, ref); err != nil || !ok {
		t.Fatalf("cri does not see the imported image: present=%v err=%v", ok, err)
	}
	out, err = runImages(t, "list", "--data-dir", dataDir)
	if err != nil || !strings.Contains(out, ref) || !strings.Contains(out, "sha256:") {
		t.Fatalf("images list: %v\n%s", err, out)
	}

	// The agent's offline drop: every tarball in <data-dir>/agent/images.
	drop := filepath.Join(dataDir, "agent", "images")
	writeImage(t, drop, "localhost/skiff-e2ef/dropped:v1")
	if err := images.ImportDir(ctx, agent.ContainerdSocket(dataDir), drop); err != nil {
		t.Fatal(err)
	}
	if ok, err := images.Present(ctx, client.Image, "localhost/skiff-e2ef/dropped:v1"); err != nil || !ok {
		t.Fatalf("dropped tarball not imported: present=%v err=%v", ok, err)
	}

	// Bad input: a file that is not an image archive, and no agent.
	junk := filepath.Join(t.TempDir(), "junk.tar")
	if err := os.WriteFile(junk, []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := runImages(t, "import", junk, "--data-dir", dataDir); err == nil || !strings.Contains(err.Error(), "importing") {
		t.Fatalf("importing junk: %v", err)
	}
	if _, err := runImages(t, "list", "--data-dir", t.TempDir()); err == nil || !strings.Contains(err.Error(), "is the agent running") {
		t.Fatalf("listing without an agent: %v", err)
	}
}
