package controller

import (
	"sync"
	"sync/atomic"
	"time"

	v1 "k8s.io/api/core/v1"
)

// IsPodActive reports whether pod still counts towards its controller's
// replicas: not finished and not being deleted.
func IsPodActive(p *v1.Pod) bool {
	return p.Status.Phase != v1.PodSucceeded && p.Status.Phase != v1.PodFailed && p.DeletionTimestamp == nil
}

// FilterActivePods returns the active pods of pods.
func FilterActivePods(pods []*v1.Pod) []*v1.Pod {
	var out []*v1.Pod
	for _, p := range pods {
		if IsPodActive(p) {
			out = append(out, p)
		}
	}
	return out
}

func podReadyCondition(p *v1.Pod) *v1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == v1.PodReady {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

// IsPodReady reports whether pod has condition Ready=True.
func IsPodReady(p *v1.Pod) bool {
	c := podReadyCondition(p)
	return c != nil && c.Status == v1.ConditionTrue
}

// IsPodAvailable reports whether pod has been ready for at least
// minReadySeconds at now.
func IsPodAvailable(p *v1.Pod, minReadySeconds int32, now time.Time) bool {
	c := podReadyCondition(p)
	if c == nil || c.Status != v1.ConditionTrue {
		return false
	}
	if minReadySeconds == 0 {
		return true
	}
	min := time.Duration(minReadySeconds) * time.Second
	return !c.LastTransitionTime.IsZero() && !c.LastTransitionTime.Add(min).After(now)
}

// UntilAvailable returns how long a ready pod still has to wait to become
// available, and false if the pod is not ready or already available.
func UntilAvailable(p *v1.Pod, minReadySeconds int32, now time.Time) (time.Duration, bool) {
	c := podReadyCondition(p)
	if c == nil || c.Status != v1.ConditionTrue || minReadySeconds == 0 {
		return 0, false
	}
	d := c.LastTransitionTime.Add(time.Duration(minReadySeconds) * time.Second).Sub(now)
	return d, d > 0
}

// ReadySince returns when pod became ready (its Ready condition's
// lastTransitionTime), or the zero time if it is not ready.
func ReadySince(p *v1.Pod) time.Time { return podReadyTime(p) }

func podReadyTime(p *v1.Pod) time.Time {
	if c := podReadyCondition(p); c != nil && c.Status == v1.ConditionTrue {
		return c.LastTransitionTime.Time
	}
	return time.Time{}
}

func maxRestarts(p *v1.Pod) int32 {
	var m int32
	for _, c := range p.Status.ContainerStatuses {
		if c.RestartCount > m {
			m = c.RestartCount
		}
	}
	return m
}

var phaseRank = map[v1.PodPhase]int{v1.PodPending: 0, v1.PodUnknown: 1, v1.PodRunning: 2}

// ActivePods sorts pods so that the ones to delete first on scale-down come
// first: unassigned before assigned, pending before unknown before running,
// not ready before ready, ready for a shorter time before longer, more
// restarts before fewer, newer before older.
type ActivePods []*v1.Pod

func (s ActivePods) Len() int      { return len(s) }
func (s ActivePods) Swap(i, j int) { s[i], s[j] = s[j], s[i] }

func (s ActivePods) Less(i, j int) bool {
	a, b := s[i], s[j]
	if (a.Spec.NodeName == "") != (b.Spec.NodeName == "") {
		return a.Spec.NodeName == ""
	}
	if ra, rb := phaseRank[a.Status.Phase], phaseRank[b.Status.Phase]; ra != rb {
		return ra < rb
	}
	if IsPodReady(a) != IsPodReady(b) {
		return !IsPodReady(a)
	}
	if IsPodReady(a) && IsPodReady(b) {
		ta, tb := podReadyTime(a), podReadyTime(b)
		if !ta.Equal(tb) {
			return ta.After(tb)
		}
	}
	if ra, rb := maxRestarts(a), maxRestarts(b); ra != rb {
		return ra > rb
	}
	ca, cb := a.CreationTimestamp.Time, b.CreationTimestamp.Time
	if !ca.Equal(cb) {
		if ca.IsZero() || cb.IsZero() {
			return ca.IsZero()
		}
		return ca.After(cb)
	}
	return a.Name < b.Name
}

// SlowStartBatch calls fn count times in batches of 1, 2, 4, ... (starting at
// initialBatch), the calls of one batch in parallel (at most
// SlowStartParallel at a time). It stops after the first batch with a
// failure, so a systematic error (quota, admission) costs one call rather
// than count. It returns the number of successful calls and the first
// error.
func SlowStartBatch(count, initialBatch int, fn func() error) (int, error) {
	remaining := count
	successes := 0
	batch := min(remaining, max(initialBatch, 1))
	for batch > 0 {
		var taken, failed atomic.Int64
		var first error
		var once sync.Once
		var wg sync.WaitGroup
		// A few goroutines take the batch's calls in turn instead of one
		// goroutine per call: a pod creation grows a new goroutine's
		// stack (protobuf sizing and encoding of the pod), and
		// runtime.copystack was ~0.15 s of 0.9 s of CreatePod CPU per
		// 10,000 pods with a goroutine per call.
		for range min(batch, SlowStartParallel) {
			wg.Go(func() {
				for taken.Add(1) <= int64(batch) {
					if err := fn(); err != nil {
						failed.Add(1)
						once.Do(func() { first = err })
					}
				}
			})
		}
		wg.Wait()
		successes += batch - int(failed.Load())
		if first != nil {
			return successes, first
		}
		remaining -= batch
		batch = min(2*batch, remaining)
	}
	return successes, nil
}

// SlowStartParallel bounds the calls SlowStartBatch makes at once: more
// in flight than this gains nothing on an API server with a few cores.
const SlowStartParallel = 16
