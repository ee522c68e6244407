package server

import (
	"bytes"
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const sample = `2024-01-01T00:00:01.000000001Z stdout F one
2024-01-01T00:00:02Z stderr F two
2024-01-01T00:00:03Z stdout P thr
2024-01-01T00:00:03.5Z stdout F ee
garbage line
2024-01-01T00:00:04Z stdout F four
`

func writeLog(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "0.log")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReadLogs(t *testing.T) {
	since := time.Date(2024, 1, 1, 0, 0, 2, 0, time.UTC)
	for _, tc := range []struct {
		name string
		opts LogOptions
		want string
	}{
		{"all", LogOptions{TailLines: -1}, "one\ntwo\nthree\nfour\n"},
		{"tail 1", LogOptions{TailLines: 1}, "four\n"},
		{"tail 3 counts file lines", LogOptions{TailLines: 3}, "ee\nfour\n"},
		{"tail 0", LogOptions{TailLines: 0}, ""},
		{"tail more than there is", LogOptions{TailLines: 100}, "one\ntwo\nthree\nfour\n"},
		{"since", LogOptions{TailLines: -1, Since: since}, "two\nthree\nfour\n"},
		{"timestamps", LogOptions{TailLines: 2, Timestamps: true}, "2024-01-01T00:00:04Z four\n"},
		{"timestamps partial", LogOptions{TailLines: -1, Timestamps: true, Since: since.Add(time.Second)},
			// A partial entry keeps its own timestamp and no newline, as upstream.
			"2024-01-01T00:00:03Z thr2024-01-01T00:00:03.5Z ee\n2024-01-01T00:00:04Z four\n"},
		{"limit bytes", LogOptions{TailLines: -1, LimitBytes: 6}, "one\ntw"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := ReadLogs(context.Background(), writeLog(t, sample), tc.opts, &b, nil, nil, time.Millisecond); err != nil {
				t.Fatal(err)
			}
			got := b.String()
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestParseCRILine(t *testing.T) {
	e, err := ParseCRILine([]byte("2024-01-01T00:00:01.5Z stderr P:x a b "))
	if err != nil || e.Stream != "stderr" || !e.Partial || string(e.Content) != "a b " || e.Time.Nanosecond() != 5e8 {
		t.Errorf("got %+v, %v", e, err)
	}
	e, err = ParseCRILine([]byte("2024-01-01T00:00:01Z stdout F"))
	if err != nil || len(e.Content) != 0 || e.Partial {
		t.Errorf("empty line: %+v, %v", e, err)
	}
	for _, bad := range []string{"", "nope stdout F x", "2024-01-01T00:00:01Z stdin F x", "2024-01-01T00:00:01Z stdout X x"} {
		if _, err := ParseCRILine([]byte(bad)); err == nil {
			t.Errorf("%q: want error", bad)
		}
	}
}

func TestReadLogsFollow(t *testing.T) {
	p := writeLog(t, "2024-01-01T00:00:01Z stdout F one\n2024-01-01T00:00:02Z stdout F tw")
	var running atomic.Bool
	running.Store(true)
	var b syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- ReadLogs(context.Background(), p, LogOptions{TailLines: -1, Follow: true}, &b, nil, running.Load, time.Millisecond)
	}()
	waitUntil(t, func() bool { return b.String() == "one\n" })
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString("o\n2024-01-01T00:00:03Z stdout F three\n")
	f.Close()
	waitUntil(t, func() bool { return b.String() == "one\ntwo\nthree\n" })
	running.Store(false)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("follow did not end when the container stopped")
	}
}

func TestParseLogOptions(t *testing.T) {
	now := time.Date(2024, 1, 1, 1, 0, 0, 0, time.UTC)
	o, err := ParseLogOptions(url.Values{"follow": {"true"}, "tailLines": {"5"}, "sinceSeconds": {"60"}, "timestamps": {"1"}}, now)
	if err != nil || !o.Follow || o.TailLines != 5 || !o.Timestamps || !o.Since.Equal(now.Add(-time.Minute)) {
		t.Errorf("got %+v, %v", o, err)
	}
	for _, q := range []url.Values{{"tailLines": {"-1"}}, {"follow": {"maybe"}}, {"sinceSeconds": {"1"}, "sinceTime": {"2024-01-01T00:00:00Z"}}, {"limitBytes": {"0"}}} {
		if _, err := ParseLogOptions(q, now); err == nil {
			t.Errorf("%v: want error", q)
		}
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
		time.Sleep(time.Millisecond)
	}
}
