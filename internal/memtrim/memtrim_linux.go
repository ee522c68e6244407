//go:build linux

package memtrim

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Release pages out this process's read-only mappings of its own
// executable (see Options for what else it does) and returns how many
// bytes of mappings it covered.
func Release(o Options) (uint64, error) {
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
	ro := ExecutableReadOnly(maps, exe)
	var exeFile *os.File
	if o.Exact {
		if exeFile, err = os.Open(exe); err != nil {
			return 0, fmt.Errorf("opening the executable: %w", err)
		}
		defer exeFile.Close()
		// Dirty pages (a binary copied into place just before it was
		// started) can be neither paged out nor dropped: write them first.
		// Best effort: a read-only filesystem has nothing to write and
		// some (squashfs) answer EINVAL.
		_ = unix.Fdatasync(int(exeFile.Fd()))
		// Before the page-out, so that nothing faulted back in between
		// the calls below is read ahead.
		for _, m := range ro {
			if err := madvise(m, unix.MADV_RANDOM); err != nil {
				return 0, fmt.Errorf("marking %x-%x of %s random-access: %w", m.Start, m.End, exe, err)
			}
		}
	}
	var total uint64
	for _, m := range ro {
		if err := madvise(m, unix.MADV_PAGEOUT); err != nil {
			return total, fmt.Errorf("paging out %x-%x of %s: %w", m.Start, m.End, exe, err)
		}
		total += m.End - m.Start
	}
	if o.Exact {
		// The page cache still holds the parts of the file this process
		// did not map (the copy that installed it, read-ahead), and
		// fault-around would map those around every fault. Pages some
		// process maps are kept by the kernel.
		if err := unix.Fadvise(int(exeFile.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
			return total, fmt.Errorf("dropping the cached pages of %s: %w", exe, err)
		}
	}
	return total, nil
}

// madvise is the raw system call: the range is not Go memory, so it is
// not turned into a slice.
func madvise(m Mapping, advice int) error {
	if _, _, errno := unix.Syscall(unix.SYS_MADVISE, uintptr(m.Start), uintptr(m.End-m.Start), uintptr(advice)); errno != 0 {
		return errno
	}
	return nil
}
