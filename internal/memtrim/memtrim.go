// Package memtrim hands the pages of the skiff executable that start-up
// touched back to the kernel once a long-running command is up.
//
// skiff is one ~160 MB binary. Starting any command runs the package
// initialisers of everything linked in and walks type and pclntab data
// all over the file, and the kernel maps file pages around every fault
// (fault-around, and whole large folios of the page cache, often as
// 2 MB huge pages), so an idle `skiff server` had ~75 MB of the binary
// mapped although its steady state touches about half of that. MADV_PAGEOUT
// on the executable's read-only mappings reclaims the pages only this
// process maps (shared ones are skipped by the kernel) and leaves the
// others; the code the process keeps running faults its pages back in on
// use. Pages a mapping holds privately (relocations written at load)
// cannot be paged out without swap and stay as they are, so the call
// never changes what the process sees, only what is resident.
//
// The cost is one read of the re-touched pages from the page cache or
// disk; it is paid once, right after start-up, not per request.
package memtrim

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"
)

// Mapping is one line of /proc/PID/maps.
type Mapping struct {
	Start, End uint64
	Perms      string
	Offset     uint64 // in the file
	Path       string
}

// ParseMaps reads the /proc/PID/maps format.
func ParseMaps(r io.Reader) ([]Mapping, error) {
	var out []Mapping
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok {
			return nil, fmt.Errorf("parsing maps line %q: no address range", sc.Text())
		}
		start, err := strconv.ParseUint(lo, 16, 64)
		if err != nil {
			return nil, fmt.Errorf("parsing maps line %q: %w", sc.Text(), err)
		}
		end, err := strconv.ParseUint(hi, 16, 64)
		if err != nil {
			return nil, fmt.Errorf("parsing maps line %q: %w", sc.Text(), err)
		}
		off, err := strconv.ParseUint(f[2], 16, 64)
		if err != nil {
			return nil, fmt.Errorf("parsing maps line %q: %w", sc.Text(), err)
		}
		m := Mapping{Start: start, End: end, Perms: f[1], Offset: off}
		if len(f) >= 6 {
			m.Path = strings.Join(f[5:], " ")
		}
		out = append(out, m)
	}
	return out, sc.Err()
}

// ExecutableReadOnly picks the read-only (text, rodata, pclntab)
// mappings of the file at exe.
func ExecutableReadOnly(maps []Mapping, exe string) []Mapping {
	var out []Mapping
	for _, m := range maps {
		if m.Path != exe || len(m.Perms) < 4 {
			continue
		}
		if m.Perms[0] == 'r' && m.Perms[1] == '-' && m.Perms[3] == 'p' {
			out = append(out, m)
		}
	}
	return out
}

// Options tune a release.
type Options struct {
	// Exact keeps, from then on, only the pages the process really
	// touches: later faults on the executable read and map one page each
	// instead of a read-ahead window and the 64 KiB fault-around of cached
	// neighbours (MADV_RANDOM on the mappings), and the page cache of the
	// file is dropped where no process maps it (POSIX_FADV_DONTNEED), so
	// there are no cached neighbours to map. Without it a page touched
	// after the trim brings its cached neighbours with it, so a small
	// working set spread over the binary (code of the idle loops, type
	// data the GC reads) shows as several times its size. The price: the
	// first touch of a page after the trim is a 4 KiB read from disk
	// (about 0.1 ms here) instead of a page-cache hit, so it is for a
	// process whose steady state runs little code (the node agent), not
	// one serving requests all over its code. On the code mapping Linux
	// 6.16 and later read ahead on a fault whatever the advice (one
	// read-ahead window from the faulting page), so code still comes back
	// in such chunks; the data mappings (rodata, pclntab: type
	// descriptors the GC and reflection read) come back page by page.
	Exact bool
}

// ReleaseExecutablePages is Release with the default options.
func ReleaseExecutablePages() (uint64, error) { return Release(Options{}) }

// Disabled reports whether SKIFF_KEEP_BINARY_PAGES asks to skip the trim
// (to measure with and without it).
func Disabled() bool { return os.Getenv("SKIFF_KEEP_BINARY_PAGES") != "" }

// After waits for ready, then settle more (start-up work still under way
// touches pages that would only be faulted back), then releases the
// executable's pages and logs what it did. It returns early when ctx
// ends. Run it in its own goroutine.
func After(ctx context.Context, ready <-chan struct{}, settle time.Duration, log *slog.Logger) {
	AfterWith(ctx, ready, settle, log, Options{})
}

// AfterWith is After with options.
func AfterWith(ctx context.Context, ready <-chan struct{}, settle time.Duration, log *slog.Logger, o Options) {
	select {
	case <-ctx.Done():
		return
	case <-ready:
	}
	t := time.NewTimer(settle)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return
	case <-t.C:
	}
	n, err := Release(o)
	if err != nil {
		log.Warn("releasing start-up pages of the executable", "err", err)
		return
	}
	if n > 0 {
		log.Debug("released start-up pages of the executable", "mappedMB", n>>20, "exact", o.Exact)
	}
}
