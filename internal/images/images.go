// Package images builds the two images every skiff node holds without a
// registry: localhost/skiff/pause:v1 (the sandbox process, internal/images/pause)
// and localhost/skiff/testapp:v1 (cmd/testapp), and imports them into
// containerd's k8s.io namespace.
//
// The binaries are compiled from skiff's source with CGO_ENABLED=0 go build
// at image-build time (skiff's own executable is linked against libc, so it
// cannot be reused inside a FROM-scratch image). That needs the Go toolchain
// and the source tree on the node, which holds wherever skiff's tests run;
// shipping prebuilt tarballs in <data-dir>/agent/images/ is the offline path.
//
// CRI has no import call: tarballs go in through containerd's Go client
// (containerd.go), which also serves `skiff images import` and `list`.
package images

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const (
	// Pause is the sandbox image containerd is configured with.
	Pause = "localhost/skiff/pause:v1"
	// Testapp is the end-to-end test image.
	Testapp = "localhost/skiff/testapp:v1"
)

// testappTools are the exec commands testapp answers to through /bin symlinks.
var testappTools = []string{"cat", "ls", "echo", "sleep", "env", "hostname", "write"}

// Spec is one image built from one Go main package.
type Spec struct {
	Ref     string   // image reference
	Package string   // Go package path of the main program
	Binary  string   // path of the program in the image, e.g. /pause
	Links   []string // extra paths symlinked to Binary
	Env     []string
}

// Specs are skiff's built-in images.
func Specs() []Spec {
	links := make([]string, 0, len(testappTools))
	for _, t := range testappTools {
		links = append(links, "/bin/"+t)
	}
	return []Spec{
		{Ref: Pause, Package: "skiff.dev/skiff/internal/images/pause", Binary: "/pause"},
		{Ref: Testapp, Package: "skiff.dev/skiff/cmd/testapp", Binary: "/testapp", Links: links,
			Env: []string{"PATH=/bin:/"}},
	}
}

// SourceDir finds skiff's module root: $SKIFF_SOURCE_DIR, else the module of
// the working directory as the go tool reports it.
func SourceDir(ctx context.Context) (string, error) {
	if d := os.Getenv("SKIFF_SOURCE_DIR"); d != "" {
		return d, nil
	}
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("locating skiff source (set SKIFF_SOURCE_DIR): %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("locating skiff source: not inside a Go module (set SKIFF_SOURCE_DIR)")
	}
	return filepath.Dir(gomod), nil
}

// Build compiles spec's program from srcDir and writes the image as a
// docker-archive tarball into outDir, returning its path.
func Build(ctx context.Context, srcDir, outDir string, spec Spec) (string, error) {
	bin := filepath.Join(outDir, filepath.Base(spec.Binary)+".bin")
	cmd := exec.CommandContext(ctx, "go", "build", "-ldflags=-s -w", "-o", bin, spec.Package)
	cmd.Dir = srcDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building %s: %w: %s", spec.Package, err, out)
	}
	prog, err := os.ReadFile(bin)
	if err != nil {
		return "", fmt.Errorf("reading built %s: %w", spec.Package, err)
	}
	img, err := Image(spec, prog)
	if err != nil {
		return "", err
	}
	ref, err := name.ParseReference(spec.Ref)
	if err != nil {
		return "", fmt.Errorf("parsing %s: %w", spec.Ref, err)
	}
	path := filepath.Join(outDir, strings.NewReplacer("/", "_", ":", "_").Replace(spec.Ref)+".tar")
	if err := tarball.WriteToFile(path, ref, img); err != nil {
		return "", fmt.Errorf("writing %s: %w", spec.Ref, err)
	}
	return path, nil
}

// Image assembles a one-layer image holding prog at spec.Binary.
func Image(spec Spec, prog []byte) (v1.Image, error) {
	layerTar, err := layerTar(spec, prog)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return nil, fmt.Errorf("creating layer for %s: %w", spec.Ref, err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, fmt.Errorf("appending layer for %s: %w", spec.Ref, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading config of %s: %w", spec.Ref, err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Created = v1.Time{Time: time.Unix(0, 0).UTC()}
	cf.Config.Entrypoint = []string{spec.Binary}
	cf.Config.Env = spec.Env
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("setting config of %s: %w", spec.Ref, err)
	}
	return img, nil
}

// layerTar is deterministic (fixed times and owners) so rebuilding the same
// program gives the same image ID.
func layerTar(spec Spec, prog []byte) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	hdrs := []*tar.Header{
		{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777},
		{Name: "var/", Typeflag: tar.TypeDir, Mode: 0o755},
	}
	for _, h := range hdrs {
		h.ModTime = epoch
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("writing layer: %w", err)
		}
	}
	if err := tw.WriteHeader(&tar.Header{Name: strings.TrimPrefix(spec.Binary, "/"), Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(prog)), ModTime: epoch}); err != nil {
		return nil, fmt.Errorf("writing layer: %w", err)
	}
	if _, err := tw.Write(prog); err != nil {
		return nil, fmt.Errorf("writing layer: %w", err)
	}
	for _, l := range spec.Links {
		if err := tw.WriteHeader(&tar.Header{Name: strings.TrimPrefix(l, "/"), Typeflag: tar.TypeSymlink, Linkname: spec.Binary, Mode: 0o777, ModTime: epoch}); err != nil {
			return nil, fmt.Errorf("writing layer: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("writing layer: %w", err)
	}
	return buf.Bytes(), nil
}

// Import loads a docker-archive or OCI tarball into containerd's k8s.io
// namespace (the one CRI uses) and unpacks it with overlayfs.
func Import(ctx context.Context, socket, path string) error {
	_, err := ImportFile(ctx, socket, path)
	return err
}

// Present reports whether the runtime holds ref.
func Present(ctx context.Context, img runtimeapi.ImageServiceClient, ref string) (bool, error) {
	resp, err := img.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	if err != nil {
		return false, fmt.Errorf("getting status of image %s: %w", ref, err)
	}
	return resp.GetImage() != nil, nil
}

// Ensure builds and imports each built-in image the runtime lacks. workDir
// receives the build outputs.
func Ensure(ctx context.Context, img runtimeapi.ImageServiceClient, socket, workDir string) error {
	var missing []Spec
	for _, s := range Specs() {
		ok, err := Present(ctx, img, s.Ref)
		if err != nil {
			return err
		}
		if !ok {
			missing = append(missing, s)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	src, err := SourceDir(ctx)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(workDir, 0o700); err != nil {
		return fmt.Errorf("creating image build dir: %w", err)
	}
	for _, s := range missing {
		path, err := Build(ctx, src, workDir, s)
		if err != nil {
			return err
		}
		if err := Import(ctx, socket, path); err != nil {
			return err
		}
	}
	return nil
}

// ImportDir imports every *.tar in dir (the offline image drop,
// <data-dir>/agent/images/). A missing dir is not an error.
func ImportDir(ctx context.Context, socket, dir string) error {
	paths, err := filepath.Glob(filepath.Join(dir, "*.tar"))
	if err != nil {
		return fmt.Errorf("listing %s: %w", dir, err)
	}
	for _, p := range paths {
		if err := Import(ctx, socket, p); err != nil {
			return err
		}
	}
	return nil
}
