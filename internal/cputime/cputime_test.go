package cputime

import (
	"testing"
	"time"
)

func TestProcessCountsBusyWork(t *testing.T) {
	start := Process()
	if start <= 0 {
		t.Fatalf("Process() = %v before any work, want > 0", start)
	}
	// Spin for 50 ms of wall time: the process's CPU must grow by a
	// good part of it, and never by much more than wall time allows
	// (plus the runtime's other threads).
	wall := time.Now()
	x := 0
	for time.Since(wall) < 50*time.Millisecond {
		x++
	}
	used := Process() - start
	if used < 20*time.Millisecond {
		t.Errorf("50 ms of spinning used %v of CPU (x=%d)", used, x)
	}
	if elapsed := time.Since(wall); used > 4*elapsed+20*time.Millisecond {
		t.Errorf("%v of CPU in %v of wall time", used, elapsed)
	}
}
