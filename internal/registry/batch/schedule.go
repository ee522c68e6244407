package batch

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Schedule computes activation times of a CronJob schedule.
type Schedule interface {
	// Next returns the first activation strictly after t, in t's location,
	// or the zero time when there is none within five years.
	Next(t time.Time) time.Time
}

// ParseCron parses spec (as accepted by ParseSchedule) into a Schedule. A
// TZ=/CRON_TZ= prefix makes activations computed in that zone.
func ParseCron(spec string) (Schedule, error) {
	if err := ParseSchedule(spec); err != nil {
		return nil, err
	}
	spec = strings.TrimSpace(spec)
	var loc *time.Location
	if strings.HasPrefix(spec, "TZ=") || strings.HasPrefix(spec, "CRON_TZ=") {
		i := strings.Index(spec, " ")
		eq := strings.Index(spec, "=")
		l, err := time.LoadLocation(spec[eq+1 : i])
		if err != nil {
			return nil, fmt.Errorf("loading location %s: %w", spec[eq+1:i], err)
		}
		loc = l
		spec = strings.TrimSpace(spec[i:])
	}
	if d, ok := strings.CutPrefix(spec, "@every "); ok {
		dur, err := time.ParseDuration(d)
		if err != nil {
			return nil, fmt.Errorf("parsing duration %s: %w", d, err)
		}
		return everySchedule{max(dur.Truncate(time.Second), time.Second)}, nil
	}
	switch spec {
	case "@yearly", "@annually":
		spec = "0 0 1 1 *"
	case "@monthly":
		spec = "0 0 1 * *"
	case "@weekly":
		spec = "0 0 * * 0"
	case "@daily", "@midnight":
		spec = "0 0 * * *"
	case "@hourly":
		spec = "0 * * * *"
	}
	parts := strings.Fields(spec)
	s := &cronSchedule{loc: loc}
	dst := []*uint64{&s.minute, &s.hour, &s.dom, &s.month, &s.dow}
	for i, p := range parts {
		bits, err := cronBits(p, cronFields[i])
		if err != nil {
			return nil, err
		}
		*dst[i] = bits
	}
	return s, nil
}

// starBit marks a field written as * or ?, which changes how day-of-month
// and day-of-week combine (standard cron: both restricted means either).
const starBit = 1 << 63

type cronSchedule struct {
	minute, hour, dom, month, dow uint64
	loc                           *time.Location
}

func cronBits(field string, f cronField) (uint64, error) {
	var bits uint64
	for _, expr := range strings.Split(field, ",") {
		rangeAndStep := strings.Split(expr, "/")
		lowAndHigh := strings.Split(rangeAndStep[0], "-")
		start, end, step := f.min, f.max, 1
		star := lowAndHigh[0] == "*" || lowAndHigh[0] == "?"
		if !star {
			var err error
			if start, err = cronValue(lowAndHigh[0], f); err != nil {
				return 0, err
			}
			end = start
			if len(lowAndHigh) == 2 {
				if end, err = cronValue(lowAndHigh[1], f); err != nil {
					return 0, err
				}
			}
		}
		if len(rangeAndStep) == 2 {
			n, err := strconv.Atoi(rangeAndStep[1])
			if err != nil {
				return 0, fmt.Errorf("failed to parse int from %s: %w", rangeAndStep[1], err)
			}
			step = n
			if !star && len(lowAndHigh) == 1 {
				end = f.max // "N/step" means N-max/step
			}
		}
		if star && step == 1 {
			bits |= starBit
		}
		for v := start; v <= end; v += step {
			bits |= 1 << uint(v)
		}
	}
	return bits, nil
}

func (s *cronSchedule) dayMatches(t time.Time) bool {
	domMatch := s.dom&(1<<uint(t.Day())) > 0
	dowMatch := s.dow&(1<<uint(t.Weekday())) > 0
	if s.dom&starBit > 0 || s.dow&starBit > 0 {
		return domMatch && dowMatch
	}
	return domMatch || dowMatch
}

// Next implements Schedule.
func (s *cronSchedule) Next(t time.Time) time.Time {
	orig := t.Location()
	loc := orig
	if s.loc != nil {
		loc = s.loc
	}
	t = t.In(loc)
	t = t.Add(time.Minute - time.Duration(t.Second())*time.Second - time.Duration(t.Nanosecond()))
	limit := t.Year() + 5
wrap:
	if t.Year() > limit {
		return time.Time{}
	}
	for s.month&(1<<uint(t.Month())) == 0 {
		t = time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, loc)
		if t.Month() == time.January {
			goto wrap
		}
	}
	for !s.dayMatches(t) {
		t = time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, loc)
		if t.Day() == 1 {
			goto wrap
		}
	}
	for s.hour&(1<<uint(t.Hour())) == 0 {
		t = time.Date(t.Year(), t.Month(), t.Day(), t.Hour()+1, 0, 0, 0, loc)
		if t.Hour() == 0 {
			goto wrap
		}
	}
	for s.minute&(1<<uint(t.Minute())) == 0 {
		t = t.Add(time.Minute)
		if t.Minute() == 0 {
			goto wrap
		}
	}
	return t.In(orig)
}

type everySchedule struct{ d time.Duration }

// Next implements Schedule.
func (e everySchedule) Next(t time.Time) time.Time {
	return t.Add(e.d - time.Duration(t.Nanosecond()))
}
