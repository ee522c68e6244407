package batch

import "testing"

func TestParseSchedule(t *testing.T) {
	valid := []string{"* * * * *", "*/5 * * * *", "0 0 1 1 *", "0-30/10 9-17 * JAN-Mar mon-FRI", "15,45 */2 1,15 * 0",
		"@hourly", "@daily", "@every 1h30m", "TZ=UTC 0 * * * *", "0 0 ? * *"}
	for _, s := range valid {
		if err := ParseSchedule(s); err != nil {
			t.Errorf("ParseSchedule(%q) = %v, want nil", s, err)
		}
	}
	invalid := []string{"", "* * * *", "* * * * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *",
		"* * * * 7", "*/0 * * * *", "5-1 * * * *", "a * * * *", "@fortnightly", "@every soon", "1-2-3 * * * *", "*/1/2 * * * *"}
	for _, s := range invalid {
		if err := ParseSchedule(s); err == nil {
			t.Errorf("ParseSchedule(%q) = nil, want error", s)
		}
	}
}
