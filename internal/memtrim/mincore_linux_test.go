package memtrim

import (
	"encoding/binary"
	"os"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// cachedUnmappedDataKB is how much of the executable's read-only,
// non-executable mappings is in the page cache (mincore on a fresh
// mapping of the file) without being mapped by this process (present bit
// of /proc/self/pagemap).
func cachedUnmappedDataKB(t *testing.T, exe string) int {
	t.Helper()
	mf, err := os.Open("/proc/self/maps")
	if err != nil {
		t.Skip("no /proc/self/maps")
	}
	maps, err := ParseMaps(mf)
	mf.Close()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	size := int(st.Size())
	fm, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(fm)
	page := os.Getpagesize()
	vec := make([]byte, (size+page-1)/page)
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&fm[0])), uintptr(size), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatalf("mincore: %v", errno)
	}
	pm, err := os.Open("/proc/self/pagemap")
	if err != nil {
		t.Skip("no /proc/self/pagemap")
	}
	defer pm.Close()
	n := 0
	buf := make([]byte, 8)
	for _, m := range ExecutableReadOnly(maps, exe) {
		if m.Perms[2] == 'x' {
			continue
		}
		for a := m.Start; a < m.End; a += uint64(page) {
			idx := int((m.Offset + a - m.Start) / uint64(page))
			if idx >= len(vec) || vec[idx]&1 == 0 {
				continue
			}
			if _, err := pm.ReadAt(buf, int64(a/uint64(page)*8)); err != nil {
				t.Fatalf("reading pagemap: %v", err)
			}
			if binary.LittleEndian.Uint64(buf)>>63 == 0 {
				n++
			}
		}
	}
	return n * page / 1024
}
