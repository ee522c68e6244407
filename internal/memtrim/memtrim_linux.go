//go:build linux

package memtrim

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// ReleaseExecutablePages pages out this process's read-only mappings of
// its own executable and returns how many bytes of mappings it covered.
func ReleaseExecutablePages() (uint64, error) {
	if Disabled() {
		return 0, nil
	}
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, fmt.Errorf("finding the executable: %w", err)
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0, fmt.Errorf("reading mappings: %w", err)
	}
	maps, err := ParseMaps(f)
	f.Close()
	if err != nil {
		return 0, err
	}
	var total uint64
	for _, m := range ExecutableReadOnly(maps, exe) {
		// The raw system call: the range is not Go memory, so it is not
		// turned into a slice.
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, uintptr(m.Start), uintptr(m.End-m.Start), unix.MADV_PAGEOUT); errno != 0 {
			return total, fmt.Errorf("paging out %x-%x of %s: %w", m.Start, m.End, exe, errno)
		}
		total += m.End - m.Start
	}
	return total, nil
}
