package main

import (
	"io"
	"slices"
	"strings"
	"testing"
	"time"
)

func ms(v ...int) []time.Duration {
	out := make([]time.Duration, len(v))
	for i, x := range v {
		out[i] = time.Duration(x) * time.Millisecond
	}
	return out
}

func TestSummarize(t *testing.T) {
	// 1..30 ms shuffled: nearest rank puts p50 at the 15th, p90 at the
	// 27th and p99 at the 30th (the slowest of a 30-pod burst).
	var thirty []int
	for i := 30; i >= 1; i-- {
		thirty = append(thirty, (i*7)%30+1)
	}
	for _, tc := range []struct {
		name                        string
		in                          []time.Duration
		min, p50, p90, p99, maxWant time.Duration
	}{
		{"one", ms(400), 400 * time.Millisecond, 400 * time.Millisecond, 400 * time.Millisecond, 400 * time.Millisecond, 400 * time.Millisecond},
		{"five", ms(50, 10, 40, 20, 30), 10 * time.Millisecond, 30 * time.Millisecond, 50 * time.Millisecond, 50 * time.Millisecond, 50 * time.Millisecond},
		{"ten", ms(10, 9, 8, 7, 6, 5, 4, 3, 2, 1), 1 * time.Millisecond, 5 * time.Millisecond, 9 * time.Millisecond, 10 * time.Millisecond, 10 * time.Millisecond},
		{"thirty", ms(thirty...), 1 * time.Millisecond, 15 * time.Millisecond, 27 * time.Millisecond, 30 * time.Millisecond, 30 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := slices.Clone(tc.in)
			s := summarize(in)
			if s.n != len(tc.in) || s.min != tc.min || s.p50 != tc.p50 || s.p90 != tc.p90 || s.p99 != tc.p99 || s.max != tc.maxWant {
				t.Errorf("summarize = %+v, want n=%d min %v p50 %v p90 %v p99 %v max %v", s, len(tc.in), tc.min, tc.p50, tc.p90, tc.p99, tc.maxWant)
			}
			if !slices.Equal(in, tc.in) {
				t.Errorf("summarize reordered its input")
			}
		})
	}
	if s := summarize(nil); s != (summary{}) {
		t.Errorf("summarize(nil) = %+v, want zero", s)
	}
}

func TestParseOptions(t *testing.T) {
	o, err := parseOptions(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.pods != 30 || !slices.Equal(o.inFlight, []int{30, 2, 4, 8}) || o.single != 5 || o.rounds != 1 || o.gap != 2*time.Second {
		t.Errorf("defaults = %+v", o)
	}
	o, err = parseOptions([]string{"-pods", "10", "-in-flight", "1, all", "-single", "0", "-rounds", "3", "-gap", "0s"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.pods != 10 || !slices.Equal(o.inFlight, []int{1, 10}) || o.single != 0 || o.rounds != 3 || o.gap != 0 {
		t.Errorf("parsed = %+v", o)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-pods", "0"}, "-pods 0"},
		{[]string{"-in-flight", "0"}, `"0" is not a positive number`},
		{[]string{"-in-flight", "two"}, `"two" is not a positive number`},
		{[]string{"-in-flight", "4,"}, `"" is not a positive number`},
		{[]string{"-pods", "5", "-in-flight", "8"}, "8 exceeds -pods 5"},
		{[]string{"-single", "-1"}, "-single -1"},
		{[]string{"-rounds", "0"}, "-rounds 0"},
		{[]string{"-gap", "-1s"}, "-gap -1s"},
		{[]string{"extra"}, "unexpected arguments"},
		{[]string{"-nosuchflag"}, "flag provided but not defined"},
	} {
		_, err := parseOptions(tc.args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseOptions(%q) error = %v, want one containing %q", tc.args, err, tc.want)
		}
	}
}

func TestTable(t *testing.T) {
	burst := result{pods: 3, inFlight: 3, fromBurst: ms(300, 100, 200), own: ms(300, 100, 200), sandbox: ms(80, 60, 70),
		container: ms(40, 20, 30), makespan: 300 * time.Millisecond, runtimeCPU: 450 * time.Millisecond, podCPU: 30 * time.Millisecond, load: "1.00 2.00 3.00"}
	burst.split = cpuSplit{containerd: 90 * time.Millisecond, children: 120 * time.Millisecond, shims: 240 * time.Millisecond}
	bounded := burst
	bounded.inFlight = 1
	bounded.split.shims = 300 * time.Millisecond
	single := []result{
		{pods: 1, inFlight: 1, fromBurst: ms(100), own: ms(100), sandbox: ms(60), container: ms(40), makespan: 100 * time.Millisecond, runtimeCPU: 150 * time.Millisecond, load: "0.5 0 0"},
		{pods: 1, inFlight: 1, fromBurst: ms(300), own: ms(300), sandbox: ms(80), container: ms(20), makespan: 300 * time.Millisecond, runtimeCPU: 250 * time.Millisecond, load: "0.7 0 0"},
	}
	got := strings.Split(strings.TrimSpace(table(single, []result{burst, bounded}, 2)), "\n")
	want := []string{
		"| one pod alone (n=2) | 0.100 s | 0.300 s | 0.300 s | 0.300 s | 0.100 s / 0.300 s | 0.060 s | 0.020 s | - | 200.0 ms / 0.0 ms | - | 1.00 | 0.5 0 0 … 0.7 0 0 |",
		"| 3 pods, all at once | 0.200 s | 0.300 s | 0.300 s | 0.300 s | 0.200 s / 0.300 s | 0.070 s | 0.030 s | 0.300 s | 150.0 ms / 10.0 ms | 0.240 s | 1.60 | 1.00 2.00 3.00 |",
		"| 3 pods, 1 in flight | 0.200 s | 0.300 s | 0.300 s | 0.300 s | 0.200 s / 0.300 s | 0.070 s | 0.030 s | 0.300 s | 150.0 ms / 10.0 ms | 0.240 s | 1.60 | 1.00 2.00 3.00 |",
		"",
		"| run | runtime CPU per pod by process: containerd / its children (CNI, shim start) / shims with runc |",
		"|---|---|",
		"| 3 pods, 3 in flight | 30.0 ms / 40.0 ms / 80.0 ms |",
		"| 3 pods, 1 in flight | 30.0 ms / 40.0 ms / 100.0 ms |",
	}
	if len(got) != 2+len(want) {
		t.Fatalf("table has %d lines, want %d:\n%s", len(got), 2+len(want), strings.Join(got, "\n"))
	}
	for i, w := range want {
		if got[2+i] != w {
			t.Errorf("row %d:\n got %s\nwant %s", i, got[2+i], w)
		}
	}
}
