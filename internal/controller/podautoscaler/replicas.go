package podautoscaler

import (
	"errors"
	"fmt"
	"math"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"
)

// Upstream's defaults (kube-controller-manager flags).
const (
	// DefaultTolerance is --horizontal-pod-autoscaler-tolerance.
	DefaultTolerance = 0.1
	// DefaultCPUInitializationPeriod is
	// --horizontal-pod-autoscaler-cpu-initialization-period.
	DefaultCPUInitializationPeriod = 5 * time.Minute
	// DefaultInitialReadinessDelay is
	// --horizontal-pod-autoscaler-initial-readiness-delay.
	DefaultInitialReadinessDelay = 30 * time.Second
)

// calculator turns pods and their metrics into a replica proposal. It does
// no I/O: the controller fetches both and hands them in.
type calculator struct {
	tolerance               float64
	cpuInitializationPeriod time.Duration
	readinessDelay          time.Duration
}

// utilizationProposal is the outcome for a Utilization target.
type utilizationProposal struct {
	replicas    int32
	utilization int32 // current average utilisation, percent of requests
	rawAverage  int64 // current average usage per pod, milli-units
}

// utilizationReplicas proposes a replica count for a target utilisation
// (percent of the pods' requests). metrics is modified.
func (c calculator) utilizationReplicas(now time.Time, current int32, target int32, resource v1.ResourceName, container string, pods []*v1.Pod, metrics PodMetricsInfo) (utilizationProposal, error) {
	if len(pods) == 0 {
		return utilizationProposal{}, errors.New("no pods returned by selector while calculating replica count")
	}
	ready, unready, missing, ignored := c.groupPods(now, pods, metrics, resource)
	removeMetrics(metrics, ignored)
	removeMetrics(metrics, unready)
	if len(metrics) == 0 {
		return utilizationProposal{}, errors.New("did not receive metrics for targeted pods (pods might be unready)")
	}
	requests, err := podRequests(pods, container, resource)
	if err != nil {
		return utilizationProposal{}, err
	}
	ratio, utilization, raw, err := utilizationRatio(metrics, requests, target)
	if err != nil {
		return utilizationProposal{}, err
	}
	p := utilizationProposal{replicas: current, utilization: utilization, rawAverage: raw}

	scaleUpWithUnready := unready.Len() > 0 && ratio > 1.0
	if !scaleUpWithUnready && missing.Len() == 0 {
		if math.Abs(1.0-ratio) > c.tolerance {
			p.replicas = int32(math.Ceil(ratio * float64(ready)))
		}
		return p, nil
	}
	// Fill in the pods we could not measure conservatively, so that they
	// dampen the change rather than drive it.
	if missing.Len() > 0 {
		switch {
		case ratio < 1.0:
			// On a scale-down a missing pod counts as using its whole
			// request (or the target, when that is above 100%).
			fallback := int64(max(100, target))
			for name := range missing {
				metrics[name] = PodMetric{Value: requests[name] * fallback / 100}
			}
		case ratio > 1.0:
			for name := range missing {
				metrics[name] = PodMetric{Value: 0}
			}
		}
	}
	if scaleUpWithUnready {
		for name := range unready {
			metrics[name] = PodMetric{Value: 0}
		}
	}
	newRatio, _, _, err := utilizationRatio(metrics, requests, target)
	if err != nil {
		return utilizationProposal{}, err
	}
	p.replicas = c.dampened(current, ratio, newRatio, len(metrics))
	return p, nil
}

// averageValueReplicas proposes a replica count for a target average usage
// per pod (milli-units); it returns the proposal and the current average.
// metrics is modified.
func (c calculator) averageValueReplicas(now time.Time, current int32, target int64, resource v1.ResourceName, pods []*v1.Pod, metrics PodMetricsInfo) (int32, int64, error) {
	if len(pods) == 0 {
		return 0, 0, errors.New("no pods returned by selector while calculating replica count")
	}
	ready, unready, missing, ignored := c.groupPods(now, pods, metrics, resource)
	removeMetrics(metrics, ignored)
	removeMetrics(metrics, unready)
	if len(metrics) == 0 {
		return 0, 0, errors.New("did not receive metrics for targeted pods (pods might be unready)")
	}
	ratio, usage := usageRatio(metrics, target)
	scaleUpWithUnready := unready.Len() > 0 && ratio > 1.0
	if !scaleUpWithUnready && missing.Len() == 0 {
		if math.Abs(1.0-ratio) <= c.tolerance {
			return current, usage, nil
		}
		return int32(math.Ceil(ratio * float64(ready))), usage, nil
	}
	if missing.Len() > 0 {
		fill := int64(0)
		if ratio < 1.0 {
			fill = target
		}
		for name := range missing {
			metrics[name] = PodMetric{Value: fill}
		}
	}
	if scaleUpWithUnready {
		for name := range unready {
			metrics[name] = PodMetric{Value: 0}
		}
	}
	newRatio, _ := usageRatio(metrics, target)
	return c.dampened(current, ratio, newRatio, len(metrics)), usage, nil
}

// dampened is the proposal after filling in missing and unready pods: no
// change when within tolerance or when the fill-in flipped the direction
// of the change.
func (c calculator) dampened(current int32, ratio, newRatio float64, counted int) int32 {
	if math.Abs(1.0-newRatio) <= c.tolerance || (ratio < 1.0 && newRatio > 1.0) || (ratio > 1.0 && newRatio < 1.0) {
		return current
	}
	n := int32(math.Ceil(newRatio * float64(counted)))
	if (newRatio < 1.0 && n > current) || (newRatio > 1.0 && n < current) {
		return current
	}
	return n
}

// groupPods sorts pods into ready ones with metrics (counted), unready
// ones, ones without metrics, and ones to ignore (deleted or failed).
func (c calculator) groupPods(now time.Time, pods []*v1.Pod, metrics PodMetricsInfo, resource v1.ResourceName) (ready int, unready, missing, ignored sets.Set[string]) {
	unready, missing, ignored = sets.New[string](), sets.New[string](), sets.New[string]()
	for _, pod := range pods {
		if pod.DeletionTimestamp != nil || pod.Status.Phase == v1.PodFailed {
			ignored.Insert(pod.Name)
			continue
		}
		if pod.Status.Phase == v1.PodPending {
			unready.Insert(pod.Name)
			continue
		}
		m, ok := metrics[pod.Name]
		if !ok {
			missing.Insert(pod.Name)
			continue
		}
		// Only CPU is distorted by start-up (JIT, caches warming), so only
		// CPU samples are second-guessed.
		if resource == v1.ResourceCPU && c.cpuUnready(now, pod, m) {
			unready.Insert(pod.Name)
			continue
		}
		ready++
	}
	return ready, unready, missing, ignored
}

// cpuUnready reports whether a pod's CPU sample should not be trusted: the
// pod is not ready yet, or within its initialisation period the sample
// predates a full window since it became ready, or after that period it
// has never been ready (it went unready within the readiness delay of its
// start and stayed so).
func (c calculator) cpuUnready(now time.Time, pod *v1.Pod, m PodMetric) bool {
	cond := readyCondition(pod)
	if cond == nil || pod.Status.StartTime == nil {
		return true
	}
	start := pod.Status.StartTime.Time
	if start.Add(c.cpuInitializationPeriod).After(now) {
		return cond.Status == v1.ConditionFalse || m.Timestamp.Before(cond.LastTransitionTime.Add(m.Window))
	}
	return cond.Status == v1.ConditionFalse && start.Add(c.readinessDelay).After(cond.LastTransitionTime.Time)
}

func readyCondition(pod *v1.Pod) *v1.PodCondition {
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == v1.PodReady {
			return &pod.Status.Conditions[i]
		}
	}
	return nil
}

func removeMetrics(metrics PodMetricsInfo, pods sets.Set[string]) {
	for name := range pods {
		delete(metrics, name)
	}
}

// podRequests returns each pod's request of resource in milli-units
// (summed over its containers, or of the named container).
func podRequests(pods []*v1.Pod, container string, resource v1.ResourceName) (map[string]int64, error) {
	out := make(map[string]int64, len(pods))
	for _, pod := range pods {
		var sum int64
		for _, ctr := range pod.Spec.Containers {
			if container != "" && ctr.Name != container {
				continue
			}
			q, ok := ctr.Resources.Requests[resource]
			if !ok {
				return nil, fmt.Errorf("missing request for %s in container %s of Pod %s", resource, ctr.Name, pod.Name)
			}
			sum += q.MilliValue()
		}
		out[pod.Name] = sum
	}
	return out, nil
}

// utilizationRatio is usage/target where usage is the pods' total usage as
// a percentage of their total requests.
func utilizationRatio(metrics PodMetricsInfo, requests map[string]int64, target int32) (ratio float64, utilization int32, rawAverage int64, err error) {
	var usage, requested int64
	n := 0
	for name, m := range metrics {
		r, ok := requests[name]
		if !ok {
			// A metric for a pod the selector no longer matches.
			continue
		}
		usage += m.Value
		requested += r
		n++
	}
	if requested == 0 {
		return 0, 0, 0, errors.New("no metrics returned matched known pods")
	}
	utilization = int32(usage * 100 / requested)
	return float64(utilization) / float64(target), utilization, usage / int64(n), nil
}

// usageRatio is the average usage over target.
func usageRatio(metrics PodMetricsInfo, target int64) (float64, int64) {
	var total int64
	for _, m := range metrics {
		total += m.Value
	}
	avg := total / int64(len(metrics))
	return float64(avg) / float64(target), avg
}
