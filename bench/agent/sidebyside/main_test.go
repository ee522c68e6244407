package main

import (
	"archive/tar"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// The busybox image must run `sleep 3600` from PATH as bench.py's pods
// do: /bin/sleep resolves to the busybox program and PATH names /bin.
func TestBusyboxImage(t *testing.T) {
	prog := []byte("\x7fELF fake busybox")
	img, err := busyboxImage(prog, []string{"sh", "sleep"})
	if err != nil {
		t.Fatal(err)
	}
	// Through a tarball, as ctr and `skiff images import` read it.
	path := filepath.Join(t.TempDir(), "busybox.tar")
	if err := writeTar(path, busyboxRef, img); err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(busyboxRef)
	if err != nil {
		t.Fatal(err)
	}
	img, err = tarball.ImageFromPath(path, &tag)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cf.Config.Cmd, []string{"sleep", "3600"}) || !slices.Equal(cf.Config.Env, []string{"PATH=/bin"}) || cf.OS != "linux" {
		t.Errorf("config: cmd %q env %q os %q", cf.Config.Cmd, cf.Config.Env, cf.OS)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers: %d, %v", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	files := map[string]*tar.Header{}
	var body []byte
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = h
		if h.Name == "bin/busybox" {
			if body, err = io.ReadAll(tr); err != nil {
				t.Fatal(err)
			}
		}
	}
	if string(body) != string(prog) || files["bin/busybox"].Mode&0o111 == 0 {
		t.Errorf("bin/busybox: %q mode %o", body, files["bin/busybox"].Mode)
	}
	for _, a := range []string{"bin/sh", "bin/sleep"} {
		h := files[a]
		if h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "busybox" {
			t.Errorf("%s: %+v, want a symlink to busybox", a, h)
		}
	}
	if h := files["tmp/"]; h == nil || h.Mode != 0o1777 {
		t.Errorf("tmp/: %+v", h)
	}
}

func TestBusyboxApplets(t *testing.T) {
	const bin = "/bin/busybox"
	if _, err := os.Stat(bin); err != nil {
		t.Skip("busybox-static is not installed")
	}
	a, err := busyboxApplets(bin)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(a, "sleep") || !slices.Contains(a, "sh") || slices.Contains(a, "busybox") {
		t.Errorf("applets %v: want sleep and sh, not busybox itself", a)
	}
}
