package job

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"skiff.dev/skiff/internal/controller"
)

// defaultMaxUncounted bounds status.uncountedTerminatedPods (both lists together)
// and the finalizers removed per sync, as upstream's MaxUncountedPods: one
// status write never carries an unbounded list of UIDs, and a huge Job
// does not starve the others.
const defaultMaxUncounted = 500

// staleRetry re-checks a Job whose cached copy predates our own status
// write, in case the informer's update event were lost.
const staleRetry = 2 * time.Second

// removeFinalizerPatch drops the job-tracking finalizer.
var removeFinalizerPatch = []byte(`{"metadata":{"$deleteFromPrimitiveList/finalizers":["` + batchv1.JobTrackingFinalizer + `"]}}`)

// Sync converges the Job named by key.
func (c *Controller) Sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	shared, err := c.jobLister.Jobs(ns).Get(name)
	if apierrors.IsNotFound(err) {
		c.expectations.Delete(key)
		c.finalizers.forget(key)
		return nil
	}
	if err != nil {
		return fmt.Errorf("getting job %s: %w", key, err)
	}
	if c.written.stale(key, shared.ResourceVersion) {
		// Our last status write has not reached the informer; its update
		// event enqueues the Job again (the timer is only a safety net).
		c.queue.AddAfter(key, staleRetry)
		return nil
	}
	job := shared.DeepCopy()
	// Expectations are read before the pods are listed, as upstream: a pod
	// we created that reaches the cache after the listing (the counting
	// below makes API calls) would satisfy them, and manage would then
	// replace it because it is missing from the stale list of active pods.
	satisfied := c.expectations.Satisfied(key)
	pods, err := c.getPods(ctx, job)
	if err != nil {
		return err
	}
	if isFinished(job) {
		// Counting is over; release whatever still carries our finalizer.
		var held []*v1.Pod
		for _, p := range pods {
			if hasTrackingFinalizer(p) && !c.finalizers.pending(key, p.UID) {
				if len(held) == c.maxUncounted {
					c.queue.Add(key) // the rest next time, so one Job does not starve others
					break
				}
				held = append(held, p)
			}
		}
		_, err := c.removeFinalizers(ctx, key, held)
		return err
	}
	return c.syncRunning(ctx, key, job, pods, satisfied)
}

func (c *Controller) getPods(ctx context.Context, job *batchv1.Job) ([]*v1.Pod, error) {
	if job.Spec.Selector == nil {
		return nil, nil
	}
	sel, err := metav1.LabelSelectorAsSelector(job.Spec.Selector)
	if err != nil {
		return nil, fmt.Errorf("parsing selector of job %s/%s: %w", job.Namespace, job.Name, err)
	}
	if sel.Empty() {
		return nil, nil
	}
	all, err := c.podLister.Pods(job.Namespace).List(labels.Everything())
	if err != nil {
		return nil, fmt.Errorf("listing pods of job %s/%s: %w", job.Namespace, job.Name, err)
	}
	m := &controller.RefManager{
		Controller: job, Kind: jobKind, Selector: sel,
		CanAdopt: controller.FreshCanAdopt(job.UID, func(ctx context.Context) (metav1.Object, error) {
			return c.client.BatchV1().Jobs(job.Namespace).Get(ctx, job.Name, metav1.GetOptions{})
		}),
	}
	pods, err := m.ClaimPods(ctx, all, controller.RealPodControl{Client: c.client, Recorder: c.recorder})
	if err != nil {
		return pods, fmt.Errorf("claiming pods of job %s/%s: %w", job.Namespace, job.Name, err)
	}
	return pods, nil
}

func isFinished(job *batchv1.Job) bool {
	return hasCondition(&job.Status, batchv1.JobComplete) || hasCondition(&job.Status, batchv1.JobFailed)
}

func hasCondition(st *batchv1.JobStatus, t batchv1.JobConditionType) bool {
	return getCondition(st, t) != nil
}

func getCondition(st *batchv1.JobStatus, t batchv1.JobConditionType) *batchv1.JobCondition {
	for i := range st.Conditions {
		if st.Conditions[i].Type == t && st.Conditions[i].Status == v1.ConditionTrue {
			return &st.Conditions[i]
		}
	}
	return nil
}

// setCondition sets condition t, keeping its transition time when the
// status does not change. It reports whether anything changed.
func setCondition(st *batchv1.JobStatus, t batchv1.JobConditionType, s v1.ConditionStatus, reason, msg string, now time.Time) bool {
	ts := metav1.NewTime(now)
	for i := range st.Conditions {
		c := &st.Conditions[i]
		if c.Type != t {
			continue
		}
		if c.Status == s && c.Reason == reason && c.Message == msg {
			return false
		}
		if c.Status != s {
			c.LastTransitionTime = ts
		}
		c.Status, c.Reason, c.Message, c.LastProbeTime = s, reason, msg, ts
		return true
	}
	st.Conditions = append(st.Conditions, batchv1.JobCondition{Type: t, Status: s, Reason: reason, Message: msg, LastProbeTime: ts, LastTransitionTime: ts})
	return true
}

func isIndexed(job *batchv1.Job) bool {
	return job.Spec.CompletionMode != nil && *job.Spec.CompletionMode == batchv1.IndexedCompletion
}

func int32Or(p *int32, d int32) int32 {
	if p == nil {
		return d
	}
	return *p
}

// countsAsFailed reports whether a pod with the tracking finalizer is a
// failure: phase Failed, or (without a podFailurePolicy, which needs the
// phase to evaluate) deleted before it succeeded.
func countsAsFailed(job *batchv1.Job, p *v1.Pod) bool {
	if p.Status.Phase == v1.PodFailed {
		return true
	}
	return job.Spec.PodFailurePolicy == nil && p.DeletionTimestamp != nil && p.Status.Phase != v1.PodSucceeded
}

// failureAction is the podFailurePolicy action for a failed pod, and the
// index of the matching rule (-1 when no rule matched: Count).
func failureAction(job *batchv1.Job, p *v1.Pod) (batchv1.PodFailurePolicyAction, int) {
	if p.Status.Phase != v1.PodFailed {
		return batchv1.PodFailurePolicyActionCount, -1
	}
	r := matchPolicy(job.Spec.PodFailurePolicy, p)
	if r == nil {
		return batchv1.PodFailurePolicyActionCount, -1
	}
	for i := range job.Spec.PodFailurePolicy.Rules {
		if &job.Spec.PodFailurePolicy.Rules[i] == r {
			return r.Action, i
		}
	}
	return r.Action, -1
}

type uidSet map[types.UID]struct{}

func toUIDSet(uids []types.UID) uidSet {
	s := uidSet{}
	for _, u := range uids {
		s[u] = struct{}{}
	}
	return s
}

func (s uidSet) sorted() []types.UID {
	out := make([]types.UID, 0, len(s))
	for u := range s {
		out = append(out, u)
	}
	slices.Sort(out)
	return out
}

// satisfied is whether the expectations of key were met before pods were
// listed.
func (c *Controller) syncRunning(ctx context.Context, key string, job *batchv1.Job, pods []*v1.Pod, satisfied bool) error {
	now := c.clock.Now()
	st := job.Status.DeepCopy()
	if st.UncountedTerminatedPods == nil {
		st.UncountedTerminatedPods = &batchv1.UncountedTerminatedPods{}
	}
	indexed := isIndexed(job)
	completions := int(int32Or(job.Spec.Completions, 0))
	perIndex := indexed && job.Spec.BackoffLimitPerIndex != nil
	completed := parseIndexes(st.CompletedIndexes, completions)
	failedIdx := indexSet{}
	if perIndex {
		failedIdx = parseIndexes(ptrStr(st.FailedIndexes), completions)
	}
	uncSucc := toUIDSet(st.UncountedTerminatedPods.Succeeded)
	uncFail := toUIDSet(st.UncountedTerminatedPods.Failed)

	// Step 1: note newly finished pods in uncountedTerminatedPods. Pods
	// already listed there only need their finalizer removed, wherever they
	// are in the list; new ones join while the lists (and this sync's
	// finalizer removals) stay under c.maxUncounted, as upstream. The rest
	// wait for the next sync.
	var toRemove []*v1.Pod
	changed, more := false, false
	laterSucc, laterFail, laterIdx := 0, 0, indexSet{}
	budget := c.maxUncounted - len(uncSucc) - len(uncFail)
	// room is how many more successes a NonIndexed Job with completions
	// can count. A pod that succeeds beyond it (one created for a create
	// call that failed on the client but reached the server, or one that
	// finished while being trimmed) is released uncounted, so
	// status.succeeded never exceeds spec.completions.
	room := -1
	if !indexed && job.Spec.Completions != nil {
		room = max(completions-int(st.Succeeded)-len(uncSucc), 0)
	}
	surplus := 0
	for _, p := range pods {
		if !hasTrackingFinalizer(p) || c.finalizers.pending(key, p.UID) {
			continue
		}
		if _, ok := uncSucc[p.UID]; ok {
			toRemove = append(toRemove, p)
			continue
		}
		if _, ok := uncFail[p.UID]; ok {
			toRemove = append(toRemove, p)
			continue
		}
		if p.Status.Phase != v1.PodSucceeded && !countsAsFailed(job, p) {
			continue
		}
		if p.Status.Phase == v1.PodSucceeded && room == 0 {
			if budget > 0 {
				budget--
				surplus++
				toRemove = append(toRemove, p)
			}
			continue
		}
		if budget <= 0 {
			// Not recorded this time, but finished: manage and judge must
			// count it, or they would replace it with an extra pod.
			more = true
			switch {
			case p.Status.Phase == v1.PodSucceeded && indexed:
				if i := podIndex(p); i >= 0 && i < completions {
					laterIdx[i] = struct{}{}
				}
			case p.Status.Phase == v1.PodSucceeded:
				laterSucc++
				if room > 0 {
					room--
				}
			default:
				if a, _ := failureAction(job, p); a != batchv1.PodFailurePolicyActionIgnore {
					laterFail++
				}
			}
			continue
		}
		budget--
		switch {
		case p.Status.Phase == v1.PodSucceeded:
			uncSucc[p.UID] = struct{}{}
			toRemove = append(toRemove, p)
			changed = true
			if room > 0 {
				room--
			}
		case countsAsFailed(job, p):
			toRemove = append(toRemove, p)
			action, rule := failureAction(job, p)
			if action == batchv1.PodFailurePolicyActionIgnore {
				continue
			}
			uncFail[p.UID] = struct{}{}
			changed = true
			idx := podIndex(p)
			switch action {
			case batchv1.PodFailurePolicyActionFailJob:
				if !hasCondition(st, batchv1.JobFailureTarget) {
					setCondition(st, batchv1.JobFailureTarget, v1.ConditionTrue, batchv1.JobReasonPodFailurePolicy, policyMessage(p, rule), now)
				}
			case batchv1.PodFailurePolicyActionFailIndex:
				if perIndex && idx >= 0 && idx < completions {
					failedIdx[idx] = struct{}{}
				}
			default:
				if perIndex && idx >= 0 && idx < completions && int32(indexFailureCount(p)+1) > *job.Spec.BackoffLimitPerIndex {
					failedIdx[idx] = struct{}{}
				}
			}
		}
	}
	if more {
		c.queue.Add(key)
	}
	if surplus > 0 {
		c.logger.Info("released surplus succeeded pods uncounted", "job", key, "pods", surplus)
		c.recorder.Eventf(job, v1.EventTypeNormal, "SurplusPods", "%d pods succeeded beyond spec.completions and were not counted", surplus)
	}
	if perIndex {
		st.FailedIndexes = strPtr(failedIdx.String())
	}
	if changed {
		st.UncountedTerminatedPods = &batchv1.UncountedTerminatedPods{Succeeded: uncSucc.sorted(), Failed: uncFail.sorted()}
		updated, err := c.updateStatus(ctx, job, st)
		if err != nil {
			return err
		}
		job = updated
		st = job.Status.DeepCopy()
	}

	// Step 2: remove the finalizers of counted pods.
	removed, rmErr := c.removeFinalizers(ctx, key, toRemove)

	// Step 3: move pods whose finalizer is gone from uncounted to the counters.
	byUID := make(map[types.UID]*v1.Pod, len(pods))
	for _, p := range pods {
		byUID[p.UID] = p
	}
	gone := func(u types.UID) bool {
		p := byUID[u]
		_, ok := removed[u]
		return p == nil || !hasTrackingFinalizer(p) || ok || c.finalizers.pending(key, u)
	}
	for u := range uncSucc {
		if !gone(u) {
			continue
		}
		delete(uncSucc, u)
		if !indexed {
			st.Succeeded++
			continue
		}
		if p := byUID[u]; p != nil {
			if i := podIndex(p); i >= 0 && i < completions {
				completed[i] = struct{}{}
			}
		}
	}
	for u := range uncFail {
		if gone(u) {
			delete(uncFail, u)
			st.Failed++
		}
	}
	if indexed {
		st.Succeeded = int32(len(completed))
		st.CompletedIndexes = completed.String()
	}
	st.UncountedTerminatedPods = &batchv1.UncountedTerminatedPods{Succeeded: uncSucc.sorted(), Failed: uncFail.sorted()}

	// Step 4: decide the Job's fate and manage its pods.
	var active, terminating []*v1.Pod
	for _, p := range pods {
		switch {
		case controller.IsPodActive(p):
			active = append(active, p)
		case p.DeletionTimestamp != nil && p.Status.Phase != v1.PodSucceeded && p.Status.Phase != v1.PodFailed:
			terminating = append(terminating, p)
		}
	}
	suspended := job.Spec.Suspend != nil && *job.Spec.Suspend
	if !suspended && st.StartTime == nil {
		t := metav1.NewTime(now)
		st.StartTime = &t
	}
	if !hasCondition(st, batchv1.JobFailureTarget) && !hasCondition(st, batchv1.JobSuccessCriteriaMet) {
		c.judge(key, job, st, active, completed, failedIdx, len(uncSucc)+laterSucc, len(uncFail)+laterFail, now)
	}
	var manageErr error
	var created, deleted int
	switch {
	case hasCondition(st, batchv1.JobFailureTarget) || hasCondition(st, batchv1.JobSuccessCriteriaMet):
		deleted, manageErr = c.deletePods(ctx, key, job, active)
		if len(st.UncountedTerminatedPods.Succeeded)+len(st.UncountedTerminatedPods.Failed) == 0 && !more && manageErr == nil {
			c.finish(job, st, now)
		}
	case suspended:
		if setCondition(st, batchv1.JobSuspended, v1.ConditionTrue, "JobSuspended", "Job suspended", now) {
			c.recorder.Event(job, v1.EventTypeNormal, "Suspended", "Job suspended")
		}
		deleted, manageErr = c.deletePods(ctx, key, job, active)
	default:
		if cond := findCondition(st, batchv1.JobSuspended); cond != nil && cond.Status == v1.ConditionTrue {
			setCondition(st, batchv1.JobSuspended, v1.ConditionFalse, "JobResumed", "Job resumed", now)
			t := metav1.NewTime(now)
			st.StartTime = &t
			c.recorder.Event(job, v1.EventTypeNormal, "Resumed", "Job resumed")
		}
		if satisfied {
			done := completed
			if len(laterIdx) > 0 {
				done = indexSet{}
				for i := range completed {
					done[i] = struct{}{}
				}
				for i := range laterIdx {
					done[i] = struct{}{}
				}
			}
			created, deleted, manageErr = c.manage(ctx, key, job, st.Succeeded+int32(len(uncSucc)+laterSucc), pods, active, terminating, done, failedIdx, now)
		}
		if d := job.Spec.ActiveDeadlineSeconds; d != nil && st.StartTime != nil {
			left := st.StartTime.Add(time.Duration(*d) * time.Second).Sub(now)
			c.queue.AddAfter(key, left)
		}
	}
	if satisfied {
		st.Active = int32(len(active) + created - deleted)
	} else {
		// The cache lags behind our own writes; keep the last count.
		st.Active = job.Status.Active
	}
	if u := st.UncountedTerminatedPods; len(u.Succeeded)+len(u.Failed) == 0 && job.Status.UncountedTerminatedPods == nil {
		st.UncountedTerminatedPods = nil
	}
	ready := int32(0)
	for _, p := range active {
		if controller.IsPodReady(p) {
			ready++
		}
	}
	st.Ready = &ready
	term := int32(len(terminating))
	st.Terminating = &term
	if !equality.Semantic.DeepEqual(job.Status, *st) {
		if _, err := c.updateStatus(ctx, job, st); err != nil {
			return errors.Join(err, rmErr, manageErr)
		}
	}
	return errors.Join(rmErr, manageErr)
}

// judge adds FailureTarget or SuccessCriteriaMet when the Job has failed or
// succeeded.
func (c *Controller) judge(key string, job *batchv1.Job, st *batchv1.JobStatus, active []*v1.Pod, completed, failedIdx indexSet, uncSucc, uncFail int, now time.Time) {
	completions := int32Or(job.Spec.Completions, 0)
	fail := func(reason, msg string) {
		setCondition(st, batchv1.JobFailureTarget, v1.ConditionTrue, reason, msg, now)
	}
	switch {
	case job.Spec.BackoffLimitPerIndex == nil && st.Failed+int32(uncFail) > int32Or(job.Spec.BackoffLimit, 6):
		fail(batchv1.JobReasonBackoffLimitExceeded, "Job has reached the specified backoff limit")
	case job.Spec.BackoffLimitPerIndex != nil && job.Spec.MaxFailedIndexes != nil && int32(len(failedIdx)) > *job.Spec.MaxFailedIndexes:
		fail(batchv1.JobReasonMaxFailedIndexesExceeded, "Job has exceeded the specified maximal number of failed indexes")
	case job.Spec.ActiveDeadlineSeconds != nil && st.StartTime != nil && !(job.Spec.Suspend != nil && *job.Spec.Suspend) &&
		!now.Before(st.StartTime.Add(time.Duration(*job.Spec.ActiveDeadlineSeconds)*time.Second)):
		fail(batchv1.JobReasonDeadlineExceeded, "Job was active longer than specified deadline")
	case isIndexed(job):
		if int32(len(completed)+len(failedIdx)) < completions {
			return
		}
		if len(failedIdx) > 0 {
			fail(batchv1.JobReasonFailedIndexes, "Job has failed indexes")
			return
		}
		setCondition(st, batchv1.JobSuccessCriteriaMet, v1.ConditionTrue, batchv1.JobReasonCompletionsReached, "Reached expected number of succeeded pods", now)
	case job.Spec.Completions != nil:
		if st.Succeeded+int32(uncSucc) >= completions {
			setCondition(st, batchv1.JobSuccessCriteriaMet, v1.ConditionTrue, batchv1.JobReasonCompletionsReached, "Reached expected number of succeeded pods", now)
		}
	default:
		if st.Succeeded+int32(uncSucc) > 0 && len(active) == 0 {
			setCondition(st, batchv1.JobSuccessCriteriaMet, v1.ConditionTrue, batchv1.JobReasonCompletionsReached, "Reached expected number of succeeded pods", now)
		}
	}
	if cnd := getCondition(st, batchv1.JobFailureTarget); cnd != nil {
		c.logger.Info("job failed", "job", key, "reason", cnd.Reason)
	}
}

// finish turns the interim condition into Complete or Failed.
func (c *Controller) finish(job *batchv1.Job, st *batchv1.JobStatus, now time.Time) {
	if ft := getCondition(st, batchv1.JobFailureTarget); ft != nil {
		setCondition(st, batchv1.JobFailed, v1.ConditionTrue, ft.Reason, ft.Message, now)
		c.recorder.Event(job, v1.EventTypeWarning, ft.Reason, ft.Message)
		return
	}
	setCondition(st, batchv1.JobComplete, v1.ConditionTrue, "", "", now)
	t := metav1.NewTime(now)
	st.CompletionTime = &t
	c.recorder.Event(job, v1.EventTypeNormal, "Completed", "Job completed")
}

func findCondition(st *batchv1.JobStatus, t batchv1.JobConditionType) *batchv1.JobCondition {
	for i := range st.Conditions {
		if st.Conditions[i].Type == t {
			return &st.Conditions[i]
		}
	}
	return nil
}

func (c *Controller) updateStatus(ctx context.Context, job *batchv1.Job, st *batchv1.JobStatus) (*batchv1.Job, error) {
	j := job.DeepCopy()
	j.Status = *st
	updated, err := c.client.BatchV1().Jobs(j.Namespace).UpdateStatus(ctx, j, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("updating status of job %s/%s: %w", j.Namespace, j.Name, err)
	}
	c.written.replaced(j.Namespace+"/"+j.Name, job.ResourceVersion)
	return updated, nil
}

// removeFinalizers removes the tracking finalizer from pods and returns the
// UIDs it succeeded (or found gone) for.
func (c *Controller) removeFinalizers(ctx context.Context, key string, pods []*v1.Pod) (uidSet, error) {
	done := uidSet{}
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for _, p := range pods {
		c.finalizers.expect(key, p.UID)
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			_, err := c.client.CoreV1().Pods(p.Namespace).Patch(ctx, p.Name, types.StrategicMergePatchType, removeFinalizerPatch, metav1.PatchOptions{})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				done[p.UID] = struct{}{}
			case apierrors.IsNotFound(err):
				c.finalizers.observed(key, p.UID)
				done[p.UID] = struct{}{}
			default:
				c.finalizers.observed(key, p.UID)
				errs = append(errs, fmt.Errorf("removing tracking finalizer from pod %s/%s: %w", p.Namespace, p.Name, err))
			}
		})
	}
	wg.Wait()
	return done, errors.Join(errs...)
}

// deletePods deletes pods without counting them: their finalizer goes first.
func (c *Controller) deletePods(ctx context.Context, key string, job *batchv1.Job, pods []*v1.Pod) (int, error) {
	if len(pods) == 0 {
		return 0, nil
	}
	if len(pods) > c.burst {
		pods = pods[:c.burst]
	}
	keys := make([]string, len(pods))
	for i, p := range pods {
		keys[i] = p.Namespace + "/" + p.Name
	}
	c.expectations.ExpectDeletions(key, keys)
	var n atomic.Int32
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for _, p := range pods {
		wg.Go(func() {
			err := c.deleteJobPod(ctx, key, job, p)
			if err != nil {
				c.expectations.DeletionObserved(key, p.Namespace+"/"+p.Name)
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				return
			}
			n.Add(1)
		})
	}
	wg.Wait()
	return int(n.Load()), errors.Join(errs...)
}

func (c *Controller) deleteJobPod(ctx context.Context, key string, job *batchv1.Job, p *v1.Pod) error {
	if hasTrackingFinalizer(p) {
		c.finalizers.expect(key, p.UID)
		if _, err := c.client.CoreV1().Pods(p.Namespace).Patch(ctx, p.Name, types.StrategicMergePatchType, removeFinalizerPatch, metav1.PatchOptions{}); err != nil {
			c.finalizers.observed(key, p.UID)
			if apierrors.IsNotFound(err) {
				return nil
			}
			return fmt.Errorf("removing tracking finalizer from pod %s/%s: %w", p.Namespace, p.Name, err)
		}
	}
	err := c.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		c.recorder.Eventf(job, v1.EventTypeWarning, controller.FailedDeletePodReason, "Error deleting: %v", err)
		return fmt.Errorf("deleting pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	c.recorder.Eventf(job, v1.EventTypeNormal, controller.SuccessfulDeletePodReason, "Deleted pod: %v", p.Name)
	return nil
}

// manage creates or deletes pods so the Job runs the pods it should.
func (c *Controller) manage(ctx context.Context, key string, job *batchv1.Job, succeeded int32, pods, active, terminating []*v1.Pod, completed, failedIdx indexSet, now time.Time) (created, deleted int, err error) {
	parallelism := int(int32Or(job.Spec.Parallelism, 1))
	occupied := len(active)
	if job.Spec.PodReplacementPolicy != nil && *job.Spec.PodReplacementPolicy == batchv1.Failed {
		occupied += len(terminating)
	}
	counted := func(p *v1.Pod) bool {
		if !countsAsFailed(job, p) {
			return false
		}
		a, _ := failureAction(job, p)
		return a != batchv1.PodFailurePolicyActionIgnore
	}
	if !isIndexed(job) {
		want := parallelism
		if job.Spec.Completions != nil {
			want = min(parallelism, int(*job.Spec.Completions-succeeded))
		} else if succeeded > 0 {
			want = len(active)
		}
		want = max(want, 0)
		if len(active) > want {
			sorted := slices.Clone(active)
			sort.Sort(controller.ActivePods(sorted))
			deleted, err = c.deletePods(ctx, key, job, sorted[:len(active)-want])
			return 0, deleted, err
		}
		n := min(want-occupied, c.burst)
		if n <= 0 {
			return 0, 0, nil
		}
		if fails, last := backOffState(pods, counted); fails > 0 {
			if wait := last.Add(backOff(fails)).Sub(now); wait > 0 {
				c.queue.AddAfter(key, wait)
				return 0, 0, nil
			}
		}
		created, err = c.createPods(ctx, key, job, make([]int, n), nil)
		return created, 0, err
	}

	// Indexed: one active pod per pending index, lowest indexes first.
	completions := int(int32Or(job.Spec.Completions, 0))
	seen := map[int]bool{}
	var excess []*v1.Pod
	sorted := slices.Clone(active)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].CreationTimestamp.Before(&sorted[j].CreationTimestamp) })
	for _, p := range sorted {
		i := podIndex(p)
		if i < 0 || i >= completions || seen[i] || completed.has(i) || failedIdx.has(i) {
			excess = append(excess, p)
			continue
		}
		seen[i] = true
	}
	if len(excess) > 0 {
		deleted, err = c.deletePods(ctx, key, job, excess)
		return 0, deleted, err
	}
	for _, p := range terminating {
		if i := podIndex(p); i >= 0 && occupied > len(active) {
			seen[i] = true
		}
	}
	byIndex := map[int][]*v1.Pod{}
	for _, p := range pods {
		if i := podIndex(p); i >= 0 {
			byIndex[i] = append(byIndex[i], p)
		}
	}
	room := min(parallelism-occupied, c.burst)
	var todo, failures []int
	var wait time.Duration
	for i := 0; i < completions && len(todo) < room; i++ {
		if seen[i] || completed.has(i) || failedIdx.has(i) {
			continue
		}
		fails, last := backOffState(byIndex[i], counted)
		if fails > 0 {
			if w := last.Add(backOff(fails)).Sub(now); w > 0 {
				if wait == 0 || w < wait {
					wait = w
				}
				continue
			}
		}
		todo = append(todo, i)
		prior := 0
		for _, p := range byIndex[i] {
			if counted(p) {
				prior = max(prior, indexFailureCount(p)+1)
			}
		}
		failures = append(failures, prior)
	}
	if wait > 0 {
		c.queue.AddAfter(key, wait)
	}
	if len(todo) == 0 {
		return 0, 0, nil
	}
	created, err = c.createPods(ctx, key, job, todo, failures)
	return created, 0, err
}

// createPods creates one pod per entry of indexes (ignored for NonIndexed
// Jobs) in slow-start batches.
func (c *Controller) createPods(ctx context.Context, key string, job *batchv1.Job, indexes, failures []int) (int, error) {
	c.expectations.ExpectCreations(key, len(indexes))
	var next atomic.Int32
	ok, err := controller.SlowStartBatch(len(indexes), 1, func() error {
		i := int(next.Add(1) - 1)
		idx, fails := -1, 0
		if isIndexed(job) {
			idx = indexes[i]
			if failures != nil {
				fails = failures[i]
			}
		}
		pod := c.newPod(job, idx, fails)
		created, err := c.client.CoreV1().Pods(job.Namespace).Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			c.recorder.Eventf(job, v1.EventTypeWarning, controller.FailedCreatePodReason, "Error creating: %v", err)
			return fmt.Errorf("creating pod for job %s: %w", key, err)
		}
		c.recorder.Eventf(job, v1.EventTypeNormal, controller.SuccessfulCreatePodReason, "Created pod: %v", created.Name)
		return nil
	})
	for i := ok; i < len(indexes); i++ {
		c.expectations.CreationObserved(key)
	}
	return ok, err
}

// newPod builds a pod of job; idx >= 0 makes it the pod of that completion
// index.
func (c *Controller) newPod(job *batchv1.Job, idx, failures int) *v1.Pod {
	pod := controller.PodFromTemplate(&job.Spec.Template, job, controller.NewControllerRef(job, jobKind))
	pod.Finalizers = append(pod.Finalizers, batchv1.JobTrackingFinalizer)
	if idx < 0 {
		return pod
	}
	s := strconv.Itoa(idx)
	pod.GenerateName = fmt.Sprintf("%s-%d-", job.Name, idx)
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	if pod.Labels == nil {
		pod.Labels = map[string]string{}
	}
	pod.Annotations[batchv1.JobCompletionIndexAnnotation] = s
	pod.Labels[batchv1.JobCompletionIndexAnnotation] = s
	if job.Spec.BackoffLimitPerIndex != nil {
		pod.Annotations[batchv1.JobIndexFailureCountAnnotation] = strconv.Itoa(failures)
	}
	if pod.Spec.Hostname == "" {
		pod.Spec.Hostname = fmt.Sprintf("%s-%d", job.Name, idx)
	}
	env := v1.EnvVar{Name: "JOB_COMPLETION_INDEX", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{
		FieldPath: fmt.Sprintf("metadata.annotations['%s']", batchv1.JobCompletionIndexAnnotation)}}}
	addEnv := func(cs []v1.Container) {
		for i := range cs {
			if !slices.ContainsFunc(cs[i].Env, func(e v1.EnvVar) bool { return e.Name == env.Name }) {
				cs[i].Env = append(cs[i].Env, env)
			}
		}
	}
	addEnv(pod.Spec.Containers)
	addEnv(pod.Spec.InitContainers)
	return pod
}

func ptrStr(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func strPtr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
