package nftables

import "testing"

// TestCompileRuleRefusesWhatItCannotExpress: anything outside the subset
// must make the writer fall back to nft, never be half-compiled.
func TestCompileRuleRefusesWhatItCannotExpress(t *testing.T) {
	for _, rule := range []string{
		"ip saddr { 10.0.0.0/8, 10.1.0.0/16 } goto x",
		"ip saddr @affinity-x goto ep-x",
		"update @affinity-x { ip saddr }",
		"counter",
		"masquerade fully-random",
		"ip daddr 10.0.0.1/33 drop",
		"dnat to [::1]:80",
	} {
		if _, err := compileRule(rule); err == nil {
			t.Errorf("CompileRule(%q) succeeded, want an error", rule)
		}
	}
	for _, rule := range []string{
		"numgen random mod 3 1 meta l4proto tcp dnat to 10.244.1.2:8080",
		"ip daddr 10.96.0.10 tcp dport 80 ip saddr != 10.240.0.0/12 jump mark-for-masquerade",
		"fib saddr type local goto svc-x",
		"drop",
	} {
		if _, err := compileRule(rule); err != nil {
			t.Errorf("CompileRule(%q): %v", rule, err)
		}
	}
}
