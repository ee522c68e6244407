package podautoscaler

import (
	"math"
	"sync"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
)

// Upstream's scale-up limit without spec.behavior: at most
// max(2×current, 4) replicas in one step.
const (
	scaleUpLimitFactor  = 2.0
	scaleUpLimitMinimum = 4.0
)

// condition is a condition the normalisation wants set on the HPA.
type condition struct {
	status          bool
	reason, message string
}

// normalized is the outcome of bounding a recommendation.
type normalized struct {
	replicas    int32
	ableToScale condition // AbleToScale: stabilised or ready for a new scale
	limited     condition // ScalingLimited
}

type recommendation struct {
	replicas int32
	at       time.Time
}

type scaleEvent struct {
	change int32 // replicas added (scale-up list) or removed (scale-down list)
	at     time.Time
}

// history is the per-HPA memory behind stabilisation windows and rate
// policies. It lives only in the controller's memory, as upstream's.
type history struct {
	mu              sync.Mutex
	recommendations map[string][]recommendation
	ups, downs      map[string][]scaleEvent
}

func newHistory() *history {
	return &history{recommendations: map[string][]recommendation{}, ups: map[string][]scaleEvent{}, downs: map[string][]scaleEvent{}}
}

// forget drops everything known about key (the HPA was deleted).
func (h *history) forget(key string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.recommendations, key)
	delete(h.ups, key)
	delete(h.downs, key)
}

// seed records the current replica count as the first recommendation of a
// newly seen HPA, so a restarted controller does not scale down at once.
func (h *history) seed(key string, current int32, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.recommendations[key] == nil {
		h.recommendations[key] = []recommendation{{current, now}}
	}
}

// record stores rec, reusing the slot of a sample older than both cutoffs.
func (h *history) record(key string, rec recommendation, stale func(time.Time) bool) {
	for i, r := range h.recommendations[key] {
		if stale(r.at) {
			h.recommendations[key][i] = rec
			return
		}
	}
	h.recommendations[key] = append(h.recommendations[key], rec)
}

// normalize bounds a recommendation for an HPA without spec.behavior: the
// highest recommendation of the scale-down window, then min/max replicas
// and the scale-up limit.
func (h *history) normalize(key string, now time.Time, window time.Duration, current, proposed, minReplicas, maxReplicas int32) normalized {
	h.mu.Lock()
	stabilized := proposed
	cutoff := now.Add(-window)
	for _, r := range h.recommendations[key] {
		if !r.at.Before(cutoff) && r.replicas > stabilized {
			stabilized = r.replicas
		}
	}
	h.record(key, recommendation{proposed, now}, func(t time.Time) bool { return t.Before(cutoff) })
	h.mu.Unlock()

	var out normalized
	if stabilized != proposed {
		out.ableToScale = condition{true, "ScaleDownStabilized", "recent recommendations were higher than current one, applying the highest recent recommendation"}
	} else {
		out.ableToScale = condition{true, "ReadyForNewScale", "recommended size matches current size"}
	}

	upLimit := int32(math.Max(scaleUpLimitFactor*float64(current), scaleUpLimitMinimum))
	maxAllowed, reason, message := maxReplicas, "TooManyReplicas", "the desired replica count is more than the maximum replica count"
	if maxReplicas > upLimit {
		maxAllowed, reason, message = upLimit, "ScaleUpLimit", "the desired replica count is increasing faster than the maximum scale rate"
	}
	out.replicas = stabilized
	switch {
	case stabilized < minReplicas:
		out.replicas = minReplicas
		reason, message = "TooFewReplicas", "the desired replica count is less than the minimum replica count"
	case stabilized > maxAllowed:
		out.replicas = maxAllowed
	default:
		reason, message = "DesiredWithinRange", "the desired count is within the acceptable range"
	}
	out.limited = condition{out.replicas != stabilized, reason, message}
	return out
}

// normalizeWithBehavior bounds a recommendation with spec.behavior: the
// stabilisation windows of both directions, then the scaling policies and
// min/max replicas. b must have its defaults filled in.
func (h *history) normalizeWithBehavior(key string, now time.Time, b *autoscalingv2.HorizontalPodAutoscalerBehavior, current, proposed, minReplicas, maxReplicas int32) normalized {
	h.mu.Lock()
	defer h.mu.Unlock()
	upCutoff := now.Add(-time.Duration(*b.ScaleUp.StabilizationWindowSeconds) * time.Second)
	downCutoff := now.Add(-time.Duration(*b.ScaleDown.StabilizationWindowSeconds) * time.Second)
	// The lowest recommendation of the scale-up window caps a scale-up,
	// the highest of the scale-down window floors a scale-down.
	upRec, downRec := proposed, proposed
	for _, r := range h.recommendations[key] {
		if r.at.After(upCutoff) {
			upRec = min(upRec, r.replicas)
		}
		if r.at.After(downCutoff) {
			downRec = max(downRec, r.replicas)
		}
	}
	stabilized := min(max(current, upRec), downRec)
	h.record(key, recommendation{proposed, now}, func(t time.Time) bool { return t.Before(upCutoff) && t.Before(downCutoff) })

	var out normalized
	switch {
	case stabilized == proposed:
		out.ableToScale = condition{true, "ReadyForNewScale", "recommended size matches current size"}
	case proposed >= current:
		out.ableToScale = condition{true, "ScaleUpStabilized", "recent recommendations were lower than current one, applying the lowest recent recommendation"}
	default:
		out.ableToScale = condition{true, "ScaleDownStabilized", "recent recommendations were higher than current one, applying the highest recent recommendation"}
	}

	out.replicas = stabilized
	reason, message := "DesiredWithinRange", "the desired count is within the acceptable range"
	switch {
	case stabilized > current:
		limit := max(scaleUpLimit(now, current, h.ups[key], h.downs[key], b.ScaleUp), current)
		maxAllowed, r, m := maxReplicas, "TooManyReplicas", "the desired replica count is more than the maximum replica count"
		if maxAllowed > limit {
			maxAllowed, r, m = limit, "ScaleUpLimit", "the desired replica count is increasing faster than the maximum scale rate"
		}
		if stabilized > maxAllowed {
			out.replicas, reason, message = maxAllowed, r, m
		}
	case stabilized < current:
		limit := min(scaleDownLimit(now, current, h.ups[key], h.downs[key], b.ScaleDown), current)
		minAllowed, r, m := minReplicas, "TooFewReplicas", "the desired replica count is less than the minimum replica count"
		if minAllowed < limit {
			minAllowed, r, m = limit, "ScaleDownLimit", "the desired replica count is decreasing faster than the maximum scale rate"
		}
		if stabilized < minAllowed {
			out.replicas, reason, message = minAllowed, r, m
		}
	}
	out.limited = condition{out.replicas != stabilized, reason, message}
	return out
}

// storeScaleEvent remembers a rescale for the rate policies; events older
// than the longest policy period can no longer matter and are dropped.
func (h *history) storeScaleEvent(key string, now time.Time, b *autoscalingv2.HorizontalPodAutoscalerBehavior, from, to int32) {
	if b == nil || from == to {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	events, rules, change := h.ups, b.ScaleUp, to-from
	if to < from {
		events, rules, change = h.downs, b.ScaleDown, from-to
	}
	cutoff := now.Add(-time.Duration(longestPeriod(rules)) * time.Second)
	kept := events[key][:0]
	for _, e := range events[key] {
		if !e.at.Before(cutoff) {
			kept = append(kept, e)
		}
	}
	events[key] = append(kept, scaleEvent{change, now})
}

func longestPeriod(r *autoscalingv2.HPAScalingRules) int32 {
	var longest int32
	if r == nil {
		return 0
	}
	for _, p := range r.Policies {
		longest = max(longest, p.PeriodSeconds)
	}
	return longest
}

// changeInPeriod sums the changes of events within the last period.
func changeInPeriod(now time.Time, periodSeconds int32, events []scaleEvent) int32 {
	cutoff := now.Add(-time.Duration(periodSeconds) * time.Second)
	var n int32
	for _, e := range events {
		if e.at.After(cutoff) {
			n += e.change
		}
	}
	return n
}

// scaleUpLimit is the highest replica count the policies allow: each
// policy measures from the replica count at the start of its period;
// selectPolicy Max takes the most permissive, Min the least.
func scaleUpLimit(now time.Time, current int32, ups, downs []scaleEvent, r *autoscalingv2.HPAScalingRules) int32 {
	sel := *r.SelectPolicy
	if sel == autoscalingv2.DisabledPolicySelect {
		return current
	}
	pick, result := maxInt32, int32(math.MinInt32)
	if sel == autoscalingv2.MinChangePolicySelect {
		pick, result = minInt32, math.MaxInt32
	}
	for _, p := range r.Policies {
		start := current - changeInPeriod(now, p.PeriodSeconds, ups) + changeInPeriod(now, p.PeriodSeconds, downs)
		var proposed int32
		switch p.Type {
		case autoscalingv2.PodsScalingPolicy:
			proposed = start + p.Value
		case autoscalingv2.PercentScalingPolicy:
			// Rounded up: a small percentage of few pods must still add one.
			proposed = int32(math.Ceil(float64(start) * (1 + float64(p.Value)/100)))
		default:
			continue
		}
		result = pick(result, proposed)
	}
	return result
}

// scaleDownLimit is the lowest replica count the policies allow.
func scaleDownLimit(now time.Time, current int32, ups, downs []scaleEvent, r *autoscalingv2.HPAScalingRules) int32 {
	sel := *r.SelectPolicy
	if sel == autoscalingv2.DisabledPolicySelect {
		return current
	}
	pick, result := minInt32, int32(math.MaxInt32)
	if sel == autoscalingv2.MinChangePolicySelect {
		pick, result = maxInt32, math.MinInt32
	}
	for _, p := range r.Policies {
		start := current - changeInPeriod(now, p.PeriodSeconds, ups) + changeInPeriod(now, p.PeriodSeconds, downs)
		var proposed int32
		switch p.Type {
		case autoscalingv2.PodsScalingPolicy:
			proposed = start - p.Value
		case autoscalingv2.PercentScalingPolicy:
			proposed = int32(float64(start) * (1 - float64(p.Value)/100))
		default:
			continue
		}
		result = pick(result, proposed)
	}
	return result
}

// withDefaults returns b with upstream's defaults filled in (the API
// server defaults stored objects, but the controller must not depend on
// it): scale-up with no window, 4 pods or 100% per 15 s, whichever is
// more; scale-down with downWindow, 100% per 15 s.
func withDefaults(b *autoscalingv2.HorizontalPodAutoscalerBehavior, downWindow time.Duration) *autoscalingv2.HorizontalPodAutoscalerBehavior {
	b = b.DeepCopy()
	fill := func(r *autoscalingv2.HPAScalingRules, window int32, policies []autoscalingv2.HPAScalingPolicy) *autoscalingv2.HPAScalingRules {
		if r == nil {
			r = &autoscalingv2.HPAScalingRules{}
		}
		if r.StabilizationWindowSeconds == nil {
			r.StabilizationWindowSeconds = &window
		}
		if r.SelectPolicy == nil {
			sel := autoscalingv2.MaxChangePolicySelect
			r.SelectPolicy = &sel
		}
		if r.Policies == nil {
			r.Policies = policies
		}
		return r
	}
	b.ScaleUp = fill(b.ScaleUp, 0, []autoscalingv2.HPAScalingPolicy{
		{Type: autoscalingv2.PodsScalingPolicy, Value: 4, PeriodSeconds: 15},
		{Type: autoscalingv2.PercentScalingPolicy, Value: 100, PeriodSeconds: 15}})
	b.ScaleDown = fill(b.ScaleDown, int32(downWindow/time.Second), []autoscalingv2.HPAScalingPolicy{
		{Type: autoscalingv2.PercentScalingPolicy, Value: 100, PeriodSeconds: 15}})
	return b
}

func minInt32(a, b int32) int32 { return min(a, b) }
func maxInt32(a, b int32) int32 { return max(a, b) }
