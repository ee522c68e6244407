// Package cputime reads the CPU time this process has used. Benchmarks
// report CPU per operation from it: on a machine shared with other work it
// is far steadier than wall time.
package cputime

import (
	"syscall"
	"time"
)

// Process is the user plus system CPU time this process has used so far
// (all threads; not its children), or 0 if the kernel cannot say.
func Process() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
