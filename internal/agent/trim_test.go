package agent

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// exeResident sums, over the test binary's read-only mappings, the
// resident and the PMD-mapped kB from /proc/self/smaps.
func exeResident(t *testing.T) (rss, pmd int64) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/exe", &st); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ino := strconv.FormatUint(st.Ino, 10)
	in := false
	s := bufio.NewScanner(f)
	for s.Scan() {
		fs := strings.Fields(s.Text())
		if len(fs) >= 5 && strings.Contains(fs[0], "-") && len(fs[1]) == 4 {
			in = fs[4] == ino && !strings.Contains(fs[1], "w")
			continue
		}
		if !in || len(fs) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(fs[1], 10, 64)
		switch fs[0] {
		case "Rss:":
			rss += v
		case "FilePmdMapped:":
			pmd += v
		}
	}
	return rss, pmd
}

func TestTrimExecutableMappings(t *testing.T) {
	beforeRSS, beforePMD := exeResident(t)
	released, err := trimExecutableMappings()
	if err != nil {
		t.Fatal(err)
	}
	if released == 0 {
		t.Fatal("no read-only mapping of the executable found")
	}
	// The process keeps running on refaulted pages.
	afterRSS, afterPMD := exeResident(t)
	t.Logf("executable resident: %d kB (%d kB PMD-mapped) before, %d kB (%d kB) after", beforeRSS, beforePMD, afterRSS, afterPMD)
	if afterPMD != 0 {
		t.Errorf("%d kB of the executable still PMD-mapped after trimming", afterPMD)
	}
	if afterRSS > beforeRSS {
		t.Errorf("executable resident grew from %d to %d kB", beforeRSS, afterRSS)
	}
	if beforePMD > 0 && afterRSS > beforeRSS/2 {
		t.Errorf("executable resident %d kB after trimming, want well under the %d kB before", afterRSS, beforeRSS)
	}
	var thp int
	if thp, err = unix.PrctlRetInt(unix.PR_GET_THP_DISABLE, 0, 0, 0, 0); err != nil || thp != 1 {
		t.Errorf("PR_GET_THP_DISABLE = %d, %v; want 1", thp, err)
	}
}

func TestCleanExecutableMappings(t *testing.T) {
	// The shape of a dynamically linked skiff binary: two clean read-only
	// segments, the RELRO page (read-only after relocation, so anonymous),
	// the writable data, and another file and anonymous memory.
	smaps := `00400000-01adc000 r--p 00000000 fe:00 42   /usr/bin/skiff
Rss:                3632 kB
Anonymous:             0 kB
01adc000-044de000 r-xp 016dc000 fe:00 42   /usr/bin/skiff
Rss:               43016 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me
079b1000-079b2000 r--p 075b0000 fe:00 42   /usr/bin/skiff
Rss:                   4 kB
Anonymous:             4 kB
079b2000-07af2000 rw-p 075b1000 fe:00 42   /usr/bin/skiff
Rss:                1024 kB
Anonymous:           120 kB
07af2000-09b4e000 rw-p 00000000 00:00 0
Rss:                 200 kB
Anonymous:           200 kB
7f0ef2d64000-7f0ef2d8a000 r--p 00000000 fe:00 77   /usr/lib/x86_64-linux-gnu/libc.so.6
Rss:                 152 kB
Anonymous:             0 kB
`
	got := cleanExecutableMappings(smaps, 42)
	want := []mapping{{0x400000, 0x1adc000}, {0x1adc000, 0x44de000}}
	if len(got) != len(want) {
		t.Fatalf("got %x, want %x", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %x, want %x", got, want)
		}
	}
}
