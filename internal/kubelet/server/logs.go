package server

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"time"
)

// LogOptions are the containerLogs query parameters (upstream's
// PodLogOptions, as the API server forwards them).
type LogOptions struct {
	Follow     bool
	Previous   bool
	Timestamps bool
	TailLines  int64 // -1: all
	LimitBytes int64 // 0: unlimited
	Since      time.Time
}

// ParseLogOptions reads LogOptions from a containerLogs query; now anchors
// sinceSeconds.
func ParseLogOptions(q url.Values, now time.Time) (LogOptions, error) {
	o := LogOptions{TailLines: -1}
	var err error
	if o.Follow, err = boolParam(q, "follow"); err != nil {
		return o, err
	}
	if o.Previous, err = boolParam(q, "previous"); err != nil {
		return o, err
	}
	if o.Timestamps, err = boolParam(q, "timestamps"); err != nil {
		return o, err
	}
	if v := q.Get("tailLines"); v != "" {
		if o.TailLines, err = strconv.ParseInt(v, 10, 64); err != nil || o.TailLines < 0 {
			return o, fmt.Errorf("tailLines: invalid value %q", v)
		}
	}
	if v := q.Get("limitBytes"); v != "" {
		if o.LimitBytes, err = strconv.ParseInt(v, 10, 64); err != nil || o.LimitBytes < 1 {
			return o, fmt.Errorf("limitBytes: invalid value %q", v)
		}
	}
	if v := q.Get("sinceSeconds"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return o, fmt.Errorf("sinceSeconds: invalid value %q", v)
		}
		o.Since = now.Add(-time.Duration(n) * time.Second)
	}
	if v := q.Get("sinceTime"); v != "" {
		if !o.Since.IsZero() {
			return o, errors.New("at most one of sinceTime or sinceSeconds may be specified")
		}
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return o, fmt.Errorf("sinceTime: invalid value %q", v)
		}
		o.Since = t
	}
	return o, nil
}

func boolParam(q url.Values, name string) (bool, error) {
	v := q.Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%s: invalid value %q", name, v)
	}
	return b, nil
}

// LogEntry is one line of a CRI log file:
// "<RFC3339Nano> <stdout|stderr> <F|P> <content>".
type LogEntry struct {
	Time    time.Time
	Stream  string
	Partial bool // P: the line continues in the next entry
	Content []byte
}

// ParseCRILine parses one line (without its newline) of a CRI log file.
func ParseCRILine(line []byte) (LogEntry, error) {
	var e LogEntry
	ts, rest, ok := bytes.Cut(line, []byte{' '})
	if !ok {
		return e, errors.New("parsing cri log line: no timestamp")
	}
	t, err := time.Parse(time.RFC3339Nano, string(ts))
	if err != nil {
		return e, fmt.Errorf("parsing cri log timestamp: %w", err)
	}
	stream, rest, ok := bytes.Cut(rest, []byte{' '})
	if !ok || (string(stream) != "stdout" && string(stream) != "stderr") {
		return e, errors.New("parsing cri log line: bad stream")
	}
	tag, content, ok := bytes.Cut(rest, []byte{' '})
	if !ok {
		// "<ts> stdout F" with an empty line has no trailing space in
		// some writers.
		tag, content = rest, nil
	}
	e.Time, e.Stream, e.Content = t, string(stream), content
	// The tag may carry more flags separated by ':'; only the first matters.
	switch {
	case bytes.HasPrefix(tag, []byte("P")):
		e.Partial = true
	case bytes.HasPrefix(tag, []byte("F")):
	default:
		return e, errors.New("parsing cri log line: bad tag")
	}
	return e, nil
}

// tailOffset is the offset of the start of the last n lines of f (n >= 0),
// found by reading backwards in blocks.
func tailOffset(f io.ReaderAt, size, n int64) (int64, error) {
	if n < 0 {
		return 0, nil
	}
	const block = 32 << 10
	buf := make([]byte, block)
	end := size
	// A trailing newline terminates the last line rather than starting an
	// empty one.
	count := int64(-1)
	for end > 0 {
		start := max(end-block, 0)
		b := buf[:end-start]
		if _, err := f.ReadAt(b, start); err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		for i := len(b) - 1; i >= 0; i-- {
			if b[i] == '\n' {
				count++
				if count == n {
					return start + int64(i) + 1, nil
				}
			}
		}
		end = start
	}
	return 0, nil
}

// logWriter renders entries as the API returns them and enforces
// limitBytes.
type logWriter struct {
	w         io.Writer
	opts      LogOptions
	remaining int64 // -1: unlimited
}

var errLimitReached = errors.New("log limit reached")

func (lw *logWriter) write(e LogEntry) error {
	if !lw.opts.Since.IsZero() && e.Time.Before(lw.opts.Since) {
		return nil
	}
	var b []byte
	if lw.opts.Timestamps {
		b = append(b, e.Time.Format(time.RFC3339Nano)...)
		b = append(b, ' ')
	}
	b = append(b, e.Content...)
	if !e.Partial {
		b = append(b, '\n')
	}
	if lw.remaining >= 0 && int64(len(b)) >= lw.remaining {
		_, err := lw.w.Write(b[:lw.remaining])
		lw.remaining = 0
		if err != nil {
			return err
		}
		return errLimitReached
	}
	if lw.remaining >= 0 {
		lw.remaining -= int64(len(b))
	}
	_, err := lw.w.Write(b)
	return err
}

// ReadLogs copies the CRI log file at path to w as the containerLogs API
// renders it. With opts.Follow it keeps reading until ctx ends or, at end
// of file, running reports that the container has stopped; poll is how long
// to wait for more data. flush, when non-nil, is called after each batch.
func ReadLogs(ctx context.Context, path string, opts LogOptions, w io.Writer, flush func(), running func() bool, poll time.Duration) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("opening log file: %w", err)
	}
	defer f.Close()
	if opts.TailLines >= 0 {
		st, err := f.Stat()
		if err != nil {
			return fmt.Errorf("reading log file: %w", err)
		}
		off, err := tailOffset(f, st.Size(), opts.TailLines)
		if err != nil {
			return fmt.Errorf("reading log file: %w", err)
		}
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			return fmt.Errorf("reading log file: %w", err)
		}
	}
	lw := &logWriter{w: w, opts: opts, remaining: -1}
	if opts.LimitBytes > 0 {
		lw.remaining = opts.LimitBytes
	}
	r := bufio.NewReaderSize(f, 64<<10)
	var pending []byte // a line read before its newline was written
	for {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			pending = append(pending, line...)
			continue
		}
		if err == nil {
			if len(pending) > 0 {
				line = append(pending, line...)
				pending = pending[:0]
			}
			e, perr := ParseCRILine(bytes.TrimSuffix(line, []byte{'\n'}))
			if perr != nil {
				continue // a corrupt line is skipped, as upstream does
			}
			if werr := lw.write(e); werr != nil {
				if errors.Is(werr, errLimitReached) {
					werr = nil
				}
				if flush != nil {
					flush()
				}
				return werr
			}
			continue
		}
		if !errors.Is(err, io.EOF) {
			return fmt.Errorf("reading log file: %w", err)
		}
		pending = append(pending, line...)
		if flush != nil {
			flush()
		}
		if !opts.Follow {
			return nil
		}
		// Check liveness before waiting, then drain once more, so the
		// last lines a container writes before exiting are not lost.
		alive := running == nil || running()
		if !alive {
			rest, _ := io.ReadAll(r)
			pending = append(pending, rest...)
			for _, l := range bytes.SplitAfter(pending, []byte{'\n'}) {
				if len(l) == 0 || l[len(l)-1] != '\n' {
					continue
				}
				if e, perr := ParseCRILine(bytes.TrimSuffix(l, []byte{'\n'})); perr == nil {
					if werr := lw.write(e); werr != nil {
						break
					}
				}
			}
			if flush != nil {
				flush()
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(poll):
		}
	}
}
