package job

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	v1 "k8s.io/api/core/v1"
)

// Back-off of failed pods: 10 s, doubling per consecutive failure, capped.
const (
	DefaultBackOff = 10 * time.Second
	MaxBackOff     = 6 * time.Minute
)

// backOff returns the delay before replacing a pod after failures
// consecutive failures (0 means no delay).
func backOff(failures int) time.Duration {
	if failures <= 0 {
		return 0
	}
	d := DefaultBackOff
	for i := 1; i < failures; i++ {
		d *= 2
		if d >= MaxBackOff {
			return MaxBackOff
		}
	}
	return d
}

// finishTime is when pod p finished: the latest container termination, else
// its Ready condition's last transition, else its deletion or creation time.
func finishTime(p *v1.Pod) time.Time {
	var t time.Time
	for _, cs := range append(slices.Clone(p.Status.InitContainerStatuses), p.Status.ContainerStatuses...) {
		if cs.State.Terminated != nil && cs.State.Terminated.FinishedAt.After(t) {
			t = cs.State.Terminated.FinishedAt.Time
		}
	}
	if !t.IsZero() {
		return t
	}
	for _, c := range p.Status.Conditions {
		if c.Type == v1.PodReady && !c.LastTransitionTime.IsZero() {
			return c.LastTransitionTime.Time
		}
	}
	if p.DeletionTimestamp != nil {
		return p.DeletionTimestamp.Time
	}
	return p.CreationTimestamp.Time
}

// backOffState returns the number of failures since the last success among
// pods and the time of the latest one.
func backOffState(pods []*v1.Pod, failed func(*v1.Pod) bool) (int, time.Time) {
	type fin struct {
		t      time.Time
		failed bool
	}
	var fins []fin
	for _, p := range pods {
		switch {
		case p.Status.Phase == v1.PodSucceeded:
			fins = append(fins, fin{finishTime(p), false})
		case failed(p):
			fins = append(fins, fin{finishTime(p), true})
		}
	}
	sort.SliceStable(fins, func(i, j int) bool { return fins[i].t.Before(fins[j].t) })
	n := 0
	var last time.Time
	for i := len(fins) - 1; i >= 0 && fins[i].failed; i-- {
		if n == 0 {
			last = fins[i].t
		}
		n++
	}
	return n, last
}

// matchPolicy returns the first podFailurePolicy rule matching the failed
// pod p, or nil.
func matchPolicy(policy *batchv1.PodFailurePolicy, p *v1.Pod) *batchv1.PodFailurePolicyRule {
	if policy == nil {
		return nil
	}
	for i := range policy.Rules {
		r := &policy.Rules[i]
		if r.OnExitCodes != nil && matchExitCodes(r.OnExitCodes, p) {
			return r
		}
		for _, pc := range r.OnPodConditions {
			for _, c := range p.Status.Conditions {
				if c.Type == pc.Type && c.Status == pc.Status {
					return r
				}
			}
		}
	}
	return nil
}

func matchExitCodes(req *batchv1.PodFailurePolicyOnExitCodesRequirement, p *v1.Pod) bool {
	for _, cs := range append(slices.Clone(p.Status.InitContainerStatuses), p.Status.ContainerStatuses...) {
		if req.ContainerName != nil && *req.ContainerName != cs.Name {
			continue
		}
		if cs.State.Terminated == nil {
			continue
		}
		code := cs.State.Terminated.ExitCode
		in := slices.Contains(req.Values, code)
		switch req.Operator {
		case batchv1.PodFailurePolicyOnExitCodesOpIn:
			if in {
				return true
			}
		case batchv1.PodFailurePolicyOnExitCodesOpNotIn:
			if !in && code != 0 {
				return true
			}
		}
	}
	return false
}

// policyMessage describes why rule matched p, as upstream's event message.
func policyMessage(p *v1.Pod, idx int) string {
	return fmt.Sprintf("Pod %s/%s has condition or exit code matching FailJob rule at index %d", p.Namespace, p.Name, idx)
}

// completion indexes

// podIndex returns the completion index of p, or -1.
func podIndex(p *v1.Pod) int {
	v, ok := p.Annotations[batchv1.JobCompletionIndexAnnotation]
	if !ok {
		v, ok = p.Labels[batchv1.JobCompletionIndexAnnotation]
	}
	if !ok {
		return -1
	}
	i, err := strconv.Atoi(v)
	if err != nil || i < 0 {
		return -1
	}
	return i
}

// indexSet is a set of completion indexes.
type indexSet map[int]struct{}

// parseIndexes parses "1,3-5" as written in status.completedIndexes.
func parseIndexes(s string, limit int) indexSet {
	out := indexSet{}
	if s == "" {
		return out
	}
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			continue
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil {
				continue
			}
		}
		for i := a; i <= b && i < limit; i++ {
			out[i] = struct{}{}
		}
	}
	return out
}

// String renders the set as upstream: sorted, consecutive runs as "a-b".
func (s indexSet) String() string {
	idx := make([]int, 0, len(s))
	for i := range s {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	var b strings.Builder
	for i := 0; i < len(idx); {
		j := i
		for j+1 < len(idx) && idx[j+1] == idx[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(idx[i]))
		if j > i {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(idx[j]))
		}
		i = j + 1
	}
	return b.String()
}

func (s indexSet) has(i int) bool { _, ok := s[i]; return ok }

// indexFailureCount is the failures of p's index before p, as recorded on p.
func indexFailureCount(p *v1.Pod) int {
	n, err := strconv.Atoi(p.Annotations[batchv1.JobIndexFailureCountAnnotation])
	if err != nil || n < 0 {
		return 0
	}
	return n
}
