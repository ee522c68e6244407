package volume

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// File is one file of a projected volume (configMap, secret, downwardAPI,
// projected): its content and permission bits.
type File struct {
	Data []byte
	Mode os.FileMode
}

// dataLink is the symlink naming the current payload directory; the
// user-visible entries are symlinks through it, so one rename switches the
// whole volume at once and a reader never sees half an update (upstream's
// ..data layout, which applications and sidecar reloaders rely on).
const dataLink = "..data"

// checkPath rejects a payload path that could escape the volume or collide
// with the writer's own ..-prefixed entries.
func checkPath(p string) error {
	if p == "" || filepath.IsAbs(p) {
		return fmt.Errorf("invalid path %q: must be relative and non-empty", p)
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." || part == "." || part == "" {
			return fmt.Errorf("invalid path %q: must not contain '..', '.' or empty elements", p)
		}
	}
	if strings.HasPrefix(p, "..") {
		return fmt.Errorf("invalid path %q: must not start with '..'", p)
	}
	return nil
}

// writeAtomic makes dir present exactly files, switching atomically from
// the previous payload. It reports whether anything changed; an unchanged
// payload touches nothing. gid, when >= 0, owns the files (fsGroup).
func writeAtomic(dir string, files map[string]File, gid int64) (bool, error) {
	for p := range files {
		if err := checkPath(p); err != nil {
			return false, err
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, fmt.Errorf("creating volume dir: %w", err)
	}
	old, err := os.Readlink(filepath.Join(dir, dataLink))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("reading %s: %w", dataLink, err)
	}
	if old != "" && samePayload(filepath.Join(dir, old), files) {
		return false, nil
	}

	ts, err := os.MkdirTemp(dir, ".."+time.Now().UTC().Format("2006_01_02_15_04_05."))
	if err != nil {
		return false, fmt.Errorf("creating payload dir: %w", err)
	}
	if err := writePayload(ts, files, gid); err != nil {
		_ = os.RemoveAll(ts)
		return false, err
	}
	tmpLink := filepath.Join(dir, dataLink+"_tmp")
	_ = os.Remove(tmpLink)
	if err := os.Symlink(filepath.Base(ts), tmpLink); err != nil {
		_ = os.RemoveAll(ts)
		return false, fmt.Errorf("linking payload: %w", err)
	}
	if err := os.Rename(tmpLink, filepath.Join(dir, dataLink)); err != nil {
		_ = os.RemoveAll(ts)
		return false, fmt.Errorf("switching payload: %w", err)
	}

	// Visible entries: one symlink per top-level name through ..data.
	top := map[string]bool{}
	for p := range files {
		first, _, _ := strings.Cut(p, "/")
		top[first] = true
	}
	for name := range top {
		link := filepath.Join(dir, name)
		target := filepath.Join(dataLink, name)
		if cur, err := os.Readlink(link); err == nil && cur == target {
			continue
		}
		_ = os.Remove(link)
		if err := os.Symlink(target, link); err != nil {
			return true, fmt.Errorf("linking %s: %w", name, err)
		}
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return true, fmt.Errorf("listing volume dir: %w", err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "..") || top[e.Name()] {
			continue
		}
		if e.Type()&fs.ModeSymlink != 0 {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
	if old != "" && old != filepath.Base(ts) {
		_ = os.RemoveAll(filepath.Join(dir, old))
	}
	return true, nil
}

func writePayload(root string, files map[string]File, gid int64) error {
	if err := os.Chmod(root, 0o755); err != nil {
		return fmt.Errorf("setting payload dir mode: %w", err)
	}
	for p, f := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return fmt.Errorf("creating dir for %s: %w", p, err)
		}
		if err := os.WriteFile(full, f.Data, f.Mode.Perm()); err != nil {
			return fmt.Errorf("writing %s: %w", p, err)
		}
		// WriteFile's mode is filtered by the umask.
		if err := os.Chmod(full, f.Mode.Perm()); err != nil {
			return fmt.Errorf("setting mode of %s: %w", p, err)
		}
		if gid >= 0 {
			if err := os.Chown(full, -1, int(gid)); err != nil {
				return fmt.Errorf("setting group of %s: %w", p, err)
			}
		}
	}
	return nil
}

// samePayload reports whether the payload directory holds exactly files.
func samePayload(root string, files map[string]File) bool {
	n := 0
	same := true
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		f, ok := files[rel]
		if !ok {
			same = false
			return fs.SkipAll
		}
		info, err := d.Info()
		if err != nil || info.Mode().Perm() != f.Mode.Perm() {
			same = false
			return fs.SkipAll
		}
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(b, f.Data) {
			same = false
			return fs.SkipAll
		}
		n++
		return nil
	})
	return err == nil && same && n == len(files)
}
