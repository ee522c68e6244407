package main

import (
	"fmt"
	"sort"
	"time"
)

// durations summarises a sample of latencies.
type durations []time.Duration

// percentile returns the q-th percentile (0 < q <= 1) by the nearest-rank
// method; zero for an empty sample.
func (d durations) percentile(q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append(durations(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	rank := int(q*float64(len(s))+0.999999999) - 1
	if rank < 0 {
		rank = 0
	}
	if rank >= len(s) {
		rank = len(s) - 1
	}
	return s[rank]
}

func (d durations) median() time.Duration { return d.percentile(0.5) }

// ms formats a duration in milliseconds with precision fitting its size.
func ms(d time.Duration) string {
	f := float64(d) / float64(time.Millisecond)
	switch {
	case f >= 100:
		return fmt.Sprintf("%.0f ms", f)
	case f >= 10:
		return fmt.Sprintf("%.1f ms", f)
	default:
		return fmt.Sprintf("%.2f ms", f)
	}
}
