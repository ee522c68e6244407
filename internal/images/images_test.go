package images

import (
	"archive/tar"
	"io"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

func TestImageLayout(t *testing.T) {
	var spec Spec
	for _, s := range Specs() {
		if s.Ref == Testapp {
			spec = s
		}
	}
	img, err := Image(spec, []byte("#!fake"))
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != "/testapp" {
		t.Errorf("config %+v", cf.Config)
	}
	files := map[string]*tar.Header{}
	tr := tar.NewReader(mutate.Extract(img))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = h
	}
	if h := files["testapp"]; h == nil || h.Mode&0o111 == 0 {
		t.Errorf("testapp missing or not executable: %+v", h)
	}
	if h := files["bin/cat"]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "/testapp" {
		t.Errorf("bin/cat symlink: %+v", h)
	}
	if h := files["tmp"]; h == nil || h.Mode&0o1777 != 0o1777 {
		t.Errorf("tmp/: %+v", h)
	}

	// Same program, same image: builds are reproducible.
	again, _ := Image(spec, []byte("#!fake"))
	d1, _ := img.Digest()
	d2, _ := again.Digest()
	if d1 != d2 {
		t.Errorf("digests differ: %s %s", d1, d2)
	}
}
