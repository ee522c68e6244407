package batch

import (
	"testing"
	"time"
)

func TestScheduleNext(t *testing.T) {
	utc := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, tc := range []struct{ spec, from, want string }{
		{"*/1 * * * *", "2026-01-01T10:00:30Z", "2026-01-01T10:01:00Z"},
		{"*/15 * * * *", "2026-01-01T10:00:00Z", "2026-01-01T10:15:00Z"},
		{"5 4 * * *", "2026-01-01T10:00:00Z", "2026-01-02T04:05:00Z"},
		{"0 0 * * mon", "2026-01-01T00:00:00Z", "2026-01-05T00:00:00Z"}, // 2026-01-01 is a Thursday
		{"0 0 13 * 5", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"},  // day 13 OR Friday
		{"0 0 31 2 *", "2026-01-01T00:00:00Z", ""},                      // never
		{"30 2 1-3/2 jan-mar *", "2026-01-01T03:00:00Z", "2026-01-03T02:30:00Z"},
		{"5/20 * * * *", "2026-01-01T00:06:00Z", "2026-01-01T00:25:00Z"},
		{"@hourly", "2026-01-01T10:59:59Z", "2026-01-01T11:00:00Z"},
		{"@every 90s", "2026-01-01T10:00:00Z", "2026-01-01T10:01:30Z"},
		{"TZ=Asia/Tokyo 0 9 * * *", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"},
	} {
		s, err := ParseCron(tc.spec)
		if err != nil {
			t.Fatalf("%s: %v", tc.spec, err)
		}
		got := s.Next(utc(tc.from))
		if tc.want == "" {
			if !got.IsZero() {
				t.Errorf("%s: got %v, want none", tc.spec, got)
			}
			continue
		}
		if !got.Equal(utc(tc.want)) {
			t.Errorf("%s from %s: got %v, want %s", tc.spec, tc.from, got, tc.want)
		}
	}
	if _, err := ParseCron("61 * * * *"); err == nil {
		t.Fatal("accepted minute 61")
	}
}
