package podautoscaler

import (
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
)

// step is one reconcile of a normalisation scenario: at t0+at the target
// has current replicas and the metrics propose proposed; the controller
// must settle on want (and then scales, which the history remembers).
type step struct {
	at                time.Duration
	current, proposed int32
	want              int32
	able, limited     string // expected condition reasons; "" skips
}

func i32(v int32) *int32 { return &v }

func rules(window int32, sel autoscalingv2.ScalingPolicySelect, policies ...autoscalingv2.HPAScalingPolicy) *autoscalingv2.HPAScalingRules {
	return &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: &window, SelectPolicy: &sel, Policies: policies}
}

func pods(v, period int32) autoscalingv2.HPAScalingPolicy {
	return autoscalingv2.HPAScalingPolicy{Type: autoscalingv2.PodsScalingPolicy, Value: v, PeriodSeconds: period}
}

func percent(v, period int32) autoscalingv2.HPAScalingPolicy {
	return autoscalingv2.HPAScalingPolicy{Type: autoscalingv2.PercentScalingPolicy, Value: v, PeriodSeconds: period}
}

func TestNormalize(t *testing.T) {
	const key = "ns/hpa"
	cases := []struct {
		name     string
		behavior *autoscalingv2.HorizontalPodAutoscalerBehavior // nil: upstream's legacy path
		min, max int32
		steps    []step
	}{
		{name: "no behavior: scale-down waits for the 5 minute window", min: 1, max: 10, steps: []step{
			{at: 0, current: 5, proposed: 5, want: 5, able: "ReadyForNewScale", limited: "DesiredWithinRange"},
			{at: time.Minute, current: 5, proposed: 2, want: 5, able: "ScaleDownStabilized"},
			{at: 4 * time.Minute, current: 5, proposed: 2, want: 5, able: "ScaleDownStabilized"},
			{at: 5*time.Minute + time.Second, current: 5, proposed: 2, want: 2, able: "ReadyForNewScale"},
		}},
		{name: "no behavior: scale-up is immediate but at most max(2x, 4)", min: 1, max: 20, steps: []step{
			{at: 0, current: 1, proposed: 10, want: 4, limited: "ScaleUpLimit"},
			{at: time.Second, current: 4, proposed: 10, want: 8, limited: "ScaleUpLimit"},
			{at: 2 * time.Second, current: 8, proposed: 10, want: 10, limited: "DesiredWithinRange"},
		}},
		{name: "no behavior: max replicas", min: 1, max: 10, steps: []step{
			{at: 0, current: 8, proposed: 30, want: 10, limited: "TooManyReplicas"},
		}},
		{name: "no behavior: min replicas", min: 3, max: 10, steps: []step{
			{at: 0, current: 5, proposed: 5, want: 5},
			{at: 6 * time.Minute, current: 5, proposed: 1, want: 3, limited: "TooFewReplicas"},
		}},
		{name: "default behavior: 4 pods or 100% per 15 s, whichever is more", min: 1, max: 100,
			behavior: &autoscalingv2.HorizontalPodAutoscalerBehavior{}, steps: []step{
				{at: 0, current: 2, proposed: 50, want: 6, limited: "ScaleUpLimit"},
				// Within the same 15 s period the budget is spent.
				{at: 5 * time.Second, current: 6, proposed: 50, want: 6, limited: "ScaleUpLimit"},
				{at: 16 * time.Second, current: 6, proposed: 50, want: 12, limited: "ScaleUpLimit"},
			}},
		{name: "default behavior: scale-down window is 300 s", min: 1, max: 100,
			behavior: &autoscalingv2.HorizontalPodAutoscalerBehavior{}, steps: []step{
				{at: 0, current: 10, proposed: 10, want: 10},
				{at: 299 * time.Second, current: 10, proposed: 1, want: 10, able: "ScaleDownStabilized"},
				{at: 301 * time.Second, current: 10, proposed: 1, want: 1, able: "ReadyForNewScale"},
			}},
		{name: "pods policy limits the rate per period", min: 1, max: 100,
			behavior: &autoscalingv2.HorizontalPodAutoscalerBehavior{ScaleUp: rules(0, autoscalingv2.MaxChangePolicySelect, pods(1, 60))}, steps: []step{
				{at: 0, current: 2, proposed: 10, want: 3, limited: "ScaleUpLimit"},
				{at: 30 * time.Second, current: 3, proposed: 10, want: 3, limited: "ScaleUpLimit"},
				{at: 61 * time.Second, current: 3, proposed: 10, want: 4, limited: "ScaleUpLimit"},
			}},
		{name: "selectPolicy Max takes the larger change", min: 1, max: 100,
			behavior: &autoscalingv2.HorizontalPodAutoscalerBehavior{ScaleUp: rules(0, autoscalingv2.MaxChangePolicySelect, pods(4, 60), percent(100, 60))}, steps: []step{
				{at: 0, current: 10, proposed: 50, want: 20, limited: "ScaleUpLimit"},
			}},
		{name: "selectPolicy Min takes the smaller change", min: 1, max: 100,
			behavior: &autoscalingv2.HorizontalPodAutoscalerBehavior{ScaleUp: rules(0, autoscalingv2.MinChangePolicySelect, pods(4, 60), percent(100, 60))}, steps: []step{
				{at: 0, current: 10, proposed: 50, want: 14, limited: "ScaleUpLimit"},
			}},
		{name: "percent rounds up so small targets still grow", min: 1, max: 100,
			behavior: &autoscalingv2.HorizontalPodAutoscalerBehavior{ScaleUp: rules(0, autoscalingv2.MaxChangePolicySelect, percent(10, 60))}, steps: []step{
				{at: 0, current: 2, proposed: 5, want: 3, limited: "ScaleUpLimit"},
			}},
		{name: "selectPolicy Disabled freezes that direction", min: 1, max: 100,
			behavior: &autoscalingv2.HorizontalPodAutoscalerBehavior{ScaleDown: rules(0, autoscalingv2.DisabledPolicySelect, percent(100, 15))}, steps: []step{
				{at: 0, current: 5, proposed: 1, want: 5, limited: "ScaleDownLimit"},
				{at: time.Second, current: 5, proposed: 9, want: 9, limited: "DesiredWithinRange"},
			}},
		{name: "scale-down percent policy, then max with min replicas", min: 4, max: 100,
			behavior: &autoscalingv2.HorizontalPodAutoscalerBehavior{ScaleDown: rules(0, autoscalingv2.MaxChangePolicySelect, percent(50, 60))}, steps: []step{
				{at: 0, current: 20, proposed: 1, want: 10, limited: "ScaleDownLimit"},
				{at: 61 * time.Second, current: 10, proposed: 1, want: 5, limited: "ScaleDownLimit"},
				{at: 122 * time.Second, current: 5, proposed: 1, want: 4, limited: "TooFewReplicas"},
			}},
		{name: "scale-up stabilisation window takes the lowest recent recommendation", min: 1, max: 100,
			behavior: &autoscalingv2.HorizontalPodAutoscalerBehavior{ScaleUp: rules(60, autoscalingv2.MaxChangePolicySelect, pods(100, 15))}, steps: []step{
				{at: 0, current: 3, proposed: 3, want: 3},
				{at: 10 * time.Second, current: 3, proposed: 8, want: 3, able: "ScaleUpStabilized"},
				{at: 30 * time.Second, current: 3, proposed: 6, want: 3, able: "ScaleUpStabilized"},
				// The 3 has left the window; 6 is now the lowest.
				{at: 61 * time.Second, current: 3, proposed: 9, want: 6, able: "ScaleUpStabilized"},
			}},
		{name: "behavior respects max replicas", min: 1, max: 5,
			behavior: &autoscalingv2.HorizontalPodAutoscalerBehavior{}, steps: []step{
				{at: 0, current: 3, proposed: 50, want: 5, limited: "TooManyReplicas"},
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHistory()
			var b *autoscalingv2.HorizontalPodAutoscalerBehavior
			if tc.behavior != nil {
				b = withDefaults(tc.behavior, DefaultDownscaleStabilization)
			}
			h.seed(key, tc.steps[0].current, t0.Add(tc.steps[0].at))
			for i, s := range tc.steps {
				now := t0.Add(s.at)
				var n normalized
				if b == nil {
					n = h.normalize(key, now, DefaultDownscaleStabilization, s.current, s.proposed, tc.min, tc.max)
				} else {
					n = h.normalizeWithBehavior(key, now, b, s.current, s.proposed, tc.min, tc.max)
				}
				if n.replicas != s.want {
					t.Fatalf("step %d (t+%v, %d → %d): got %d, want %d", i, s.at, s.current, s.proposed, n.replicas, s.want)
				}
				if s.able != "" && n.ableToScale.reason != s.able {
					t.Errorf("step %d: AbleToScale reason %q, want %q", i, n.ableToScale.reason, s.able)
				}
				if s.limited != "" && n.limited.reason != s.limited {
					t.Errorf("step %d: ScalingLimited reason %q, want %q", i, n.limited.reason, s.limited)
				}
				if n.limited.status != (s.limited != "" && s.limited != "DesiredWithinRange") && s.limited != "" {
					t.Errorf("step %d: ScalingLimited status %v for %q", i, n.limited.status, s.limited)
				}
				h.storeScaleEvent(key, now, b, s.current, n.replicas)
			}
		})
	}
}

func TestWithDefaultsKeepsUserValues(t *testing.T) {
	in := &autoscalingv2.HorizontalPodAutoscalerBehavior{ScaleDown: &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: i32(30)}}
	out := withDefaults(in, 7*time.Minute)
	if *out.ScaleDown.StabilizationWindowSeconds != 30 || *out.ScaleUp.StabilizationWindowSeconds != 0 {
		t.Fatalf("windows %d/%d", *out.ScaleDown.StabilizationWindowSeconds, *out.ScaleUp.StabilizationWindowSeconds)
	}
	if len(out.ScaleUp.Policies) != 2 || len(out.ScaleDown.Policies) != 1 || *out.ScaleDown.SelectPolicy != autoscalingv2.MaxChangePolicySelect {
		t.Fatalf("defaults %+v", out)
	}
	if in.ScaleUp != nil {
		t.Fatal("input mutated")
	}
	if got := *withDefaults(&autoscalingv2.HorizontalPodAutoscalerBehavior{}, 7*time.Minute).ScaleDown.StabilizationWindowSeconds; got != 420 {
		t.Fatalf("default scale-down window %d, want the controller's 420", got)
	}
}
