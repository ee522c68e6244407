package memtrim

import (
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
)

func TestParseMapsAndSelect(t *testing.T) {
	const maps = `00400000-01951000 r--p 00000000 fe:00 1234 /usr/local/bin/skiff
01951000-04015000 r-xp 01551000 fe:00 1234 /usr/local/bin/skiff
04015000-0713c000 r--p 03c15000 fe:00 1234 /usr/local/bin/skiff
0713c000-0713d000 rw-p 06d3c000 fe:00 1234 /usr/local/bin/skiff
c000000000-c004000000 rw-p 00000000 00:00 0
7f0000000000-7f0000001000 r--p 00000000 fe:00 99 /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000002000-7f0000003000 r--p 00000000 fe:00 77 /tmp/dir with space/skiff
`
	got, err := ParseMaps(strings.NewReader(maps))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 7 || got[4].Path != "" || got[6].Path != "/tmp/dir with space/skiff" {
		t.Fatalf("parsed %+v", got)
	}
	sel := ExecutableReadOnly(got, "/usr/local/bin/skiff")
	if len(sel) != 3 || sel[0].Start != 0x400000 || sel[1].Perms != "r-xp" || sel[1].Offset != 0x1551000 || sel[2].End != 0x713c000 {
		t.Fatalf("selected %+v, want the three read-only mappings of the binary", sel)
	}
	if _, err := ParseMaps(strings.NewReader("zz-10 r--p 0 0:0 0 /x\n")); err == nil {
		t.Error("a bad address parsed")
	}
}

// TestReleaseExecutablePages runs the real call on the test binary: it
// must cover the binary's read-only mappings, lower the resident file
// pages, and leave the process working (this function keeps running on
// the pages it just paged out).
func TestReleaseExecutablePages(t *testing.T) {
	if Disabled() {
		t.Skip("SKIFF_KEEP_BINARY_PAGES is set")
	}
	before := rssFileKB(t)
	n, err := ReleaseExecutablePages()
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no mapping of the executable was covered")
	}
	after := rssFileKB(t)
	t.Logf("covered %d MB; RssFile %d -> %d kB", n>>20, before, after)
	if after >= before {
		t.Errorf("RssFile did not drop: %d -> %d kB", before, after)
	}
}

func rssFileKB(t *testing.T) int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip("no /proc/self/status")
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "RssFile:"); ok {
			var kb int
			for _, f := range strings.Fields(v) {
				if n, err := strconv.Atoi(f); err == nil {
					kb = n
					break
				}
			}
			return kb
		}
	}
	t.Skip("no RssFile line")
	return 0
}

// TestReleaseExact runs the exact release on the test binary: its
// mappings must be marked random-access (so later faults read single
// pages) and the file's cached pages this process does not map must be
// dropped, so that fault-around has no neighbours to map. The data
// (non-executable) mappings are checked: on the code, newer kernels read
// ahead on a fault whatever the advice.
func TestReleaseExact(t *testing.T) {
	if Disabled() {
		t.Skip("SKIFF_KEEP_BINARY_PAGES is set")
	}
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Skip("no /proc/self/exe")
	}
	// The whole file in the page cache, as after installing it.
	f, err := os.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(io.Discard, f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	before := cachedUnmappedDataKB(t, exe)
	if before == 0 {
		t.Skip("no cached unmapped page of the executable's data to drop")
	}
	n, err := Release(Options{Exact: true})
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no mapping of the executable was covered")
	}
	after := cachedUnmappedDataKB(t, exe)
	t.Logf("covered %d MB; cached, unmapped pages of the executable's data %d -> %d kB", n>>20, before, after)
	if after > before/4 {
		t.Errorf("the executable's page cache was not dropped: cached, unmapped data pages %d -> %d kB", before, after)
	}
	flags := exeVmFlags(t, exe)
	if len(flags) == 0 {
		t.Fatal("no read-only mapping of the executable in smaps")
	}
	for _, f := range flags {
		if !strings.Contains(" "+f+" ", " rr ") {
			t.Errorf("read-only mapping of the executable not marked random-access: VmFlags %q", f)
		}
	}
}

// exeVmFlags returns the VmFlags lines of this process's read-only
// mappings of exe.
func exeVmFlags(t *testing.T, exe string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Skip("no /proc/self/smaps")
	}
	var out []string
	in := false
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmFlags:"); ok {
			if in {
				out = append(out, strings.TrimSpace(v))
			}
			continue
		}
		if f := strings.Fields(l); len(f) >= 5 && !strings.HasSuffix(f[0], ":") {
			in = len(f) >= 6 && strings.Join(f[5:], " ") == exe && strings.HasPrefix(f[1], "r-") && strings.HasSuffix(f[1], "p")
		}
	}
	return out
}
