package batch

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

type cronField struct {
	name     string
	min, max int
	names    map[string]int
}

var (
	months = map[string]int{"jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6,
		"jul": 7, "aug": 8, "sep": 9, "oct": 10, "nov": 11, "dec": 12}
	weekdays   = map[string]int{"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
	cronFields = []cronField{
		{"minute", 0, 59, nil}, {"hour", 0, 23, nil}, {"day of month", 1, 31, nil},
		{"month", 1, 12, months}, {"day of week", 0, 6, weekdays},
	}
	cronMacros = map[string]bool{"@yearly": true, "@annually": true, "@monthly": true, "@weekly": true,
		"@daily": true, "@midnight": true, "@hourly": true}
)

// ParseSchedule reports whether spec is a schedule upstream's CronJob
// controller can run: five space-separated fields (minute hour day-of-month
// month day-of-week), an @-macro, or "@every <duration>". An optional
// leading TZ=/CRON_TZ= zone is accepted here; the CronJob validation
// rejects it separately with upstream's message.
func ParseSchedule(spec string) error {
	spec = strings.TrimSpace(spec)
	if spec == "" {
		return fmt.Errorf("empty spec string")
	}
	if strings.HasPrefix(spec, "TZ=") || strings.HasPrefix(spec, "CRON_TZ=") {
		i := strings.Index(spec, " ")
		if i < 0 {
			return fmt.Errorf("missing schedule after time zone: %s", spec)
		}
		eq := strings.Index(spec, "=")
		if _, err := time.LoadLocation(spec[eq+1 : i]); err != nil {
			return fmt.Errorf("provided bad location %s: %w", spec[eq+1:i], err)
		}
		spec = strings.TrimSpace(spec[i:])
	}
	if strings.HasPrefix(spec, "@") {
		if cronMacros[spec] {
			return nil
		}
		if d, ok := strings.CutPrefix(spec, "@every "); ok {
			if _, err := time.ParseDuration(d); err != nil {
				return fmt.Errorf("failed to parse duration %s: %w", spec, err)
			}
			return nil
		}
		return fmt.Errorf("unrecognized descriptor: %s", spec)
	}
	parts := strings.Fields(spec)
	if len(parts) != len(cronFields) {
		return fmt.Errorf("expected exactly 5 fields, found %d: %s", len(parts), spec)
	}
	for i, p := range parts {
		if err := parseCronField(p, cronFields[i]); err != nil {
			return err
		}
	}
	return nil
}

func parseCronField(s string, f cronField) error {
	for _, expr := range strings.Split(s, ",") {
		if err := parseCronRange(expr, f); err != nil {
			return err
		}
	}
	return nil
}

func parseCronRange(expr string, f cronField) error {
	rangeAndStep := strings.Split(expr, "/")
	if len(rangeAndStep) > 2 {
		return fmt.Errorf("too many slashes: %s", expr)
	}
	lowAndHigh := strings.Split(rangeAndStep[0], "-")
	start, end := f.min, f.max
	switch {
	case lowAndHigh[0] == "*" || lowAndHigh[0] == "?":
		if len(lowAndHigh) > 1 {
			return fmt.Errorf("too many hyphens: %s", expr)
		}
	case len(lowAndHigh) > 2:
		return fmt.Errorf("too many hyphens: %s", expr)
	default:
		var err error
		if start, err = cronValue(lowAndHigh[0], f); err != nil {
			return err
		}
		end = start
		if len(lowAndHigh) == 2 {
			if end, err = cronValue(lowAndHigh[1], f); err != nil {
				return err
			}
		}
	}
	if len(rangeAndStep) == 2 {
		step, err := strconv.Atoi(rangeAndStep[1])
		if err != nil {
			return fmt.Errorf("failed to parse int from %s: %w", rangeAndStep[1], err)
		}
		if step <= 0 {
			return fmt.Errorf("step of range should be a positive number: %s", expr)
		}
	}
	if start < f.min {
		return fmt.Errorf("beginning of range (%d) below minimum (%d): %s", start, f.min, expr)
	}
	if end > f.max {
		return fmt.Errorf("end of range (%d) above maximum (%d): %s", end, f.max, expr)
	}
	if start > end {
		return fmt.Errorf("beginning of range (%d) beyond end of range (%d): %s", start, end, expr)
	}
	return nil
}

func cronValue(s string, f cronField) (int, error) {
	if v, ok := f.names[strings.ToLower(s)]; ok {
		return v, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("failed to parse int from %s: %w", s, err)
	}
	if n < 0 {
		return 0, fmt.Errorf("negative number (%d) not allowed: %s", n, s)
	}
	return n, nil
}
