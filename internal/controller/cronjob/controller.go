package cronjob

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	batchinformers "k8s.io/client-go/informers/batch/v1"
	"k8s.io/client-go/kubernetes"
	batchlisters "k8s.io/client-go/listers/batch/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"

	"skiff.dev/skiff/internal/controller"
	"skiff.dev/skiff/internal/registry/batch"
)

// TooManyMissed is how many missed activations are tolerated silently.
const TooManyMissed = 100

// Config tunes a Controller; the zero value is usable.
type Config struct {
	// Clock decides when schedules fire (default: real clock).
	Clock clock.Clock
}

// Controller runs CronJobs.
type Controller struct {
	client    kubernetes.Interface
	cjLister  batchlisters.CronJobLister
	jobLister batchlisters.JobLister
	recorder  record.EventRecorder
	queue     workqueue.TypedRateLimitingInterface[string]
	clock     clock.Clock
	logger    *slog.Logger
	synced    []cache.InformerSynced
}

var cronJobKind = batchv1.SchemeGroupVersion.WithKind("CronJob")

// New returns a CronJob controller fed by the given informers.
func New(cfg Config, client kubernetes.Interface, cronJobs batchinformers.CronJobInformer, jobs batchinformers.JobInformer, recorder record.EventRecorder, logger *slog.Logger) (*Controller, error) {
	if logger == nil {
		logger = slog.Default()
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if recorder == nil {
		recorder = &record.FakeRecorder{}
	}
	c := &Controller{client: client, cjLister: cronJobs.Lister(), jobLister: jobs.Lister(), recorder: recorder,
		queue: controller.NewQueue("cronjob"), clock: cfg.Clock, logger: logger.With("controller", "cronjob")}
	if _, err := cronJobs.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueue,
		UpdateFunc: func(_, n any) { c.enqueue(n) },
		DeleteFunc: c.enqueue,
	}); err != nil {
		return nil, fmt.Errorf("adding cronjob event handler: %w", err)
	}
	onJob := func(obj any) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		j, ok := obj.(*batchv1.Job)
		if !ok {
			return
		}
		if ref := metav1.GetControllerOf(j); ref != nil && ref.Kind == "CronJob" {
			c.queue.Add(j.Namespace + "/" + ref.Name)
		}
	}
	if _, err := jobs.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: onJob, UpdateFunc: func(_, n any) { onJob(n) }, DeleteFunc: onJob,
	}); err != nil {
		return nil, fmt.Errorf("adding cronjob job event handler: %w", err)
	}
	c.synced = []cache.InformerSynced{cronJobs.Informer().HasSynced, jobs.Informer().HasSynced}
	return c, nil
}

// Run waits for the caches and runs workers until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) error {
	defer c.queue.ShutDown()
	c.logger.Info("starting controller", "workers", workers)
	if !controller.WaitForSync(ctx, c.synced...) {
		return fmt.Errorf("waiting for cronjob caches: %w", ctx.Err())
	}
	controller.RunWorkers(ctx, c.logger, c.queue, workers, c.Sync)
	return nil
}

func (c *Controller) enqueue(obj any) { controller.Enqueue(c.queue, c.logger, obj) }

// Sync converges the CronJob named by key and requeues it for its next
// activation.
func (c *Controller) Sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	shared, err := c.cjLister.CronJobs(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("getting cronjob %s: %w", key, err)
	}
	after, err := c.sync(ctx, shared.DeepCopy())
	if after != nil {
		c.queue.AddAfter(key, *after)
	}
	return err
}

// JobName is the name of the Job of cj's activation at scheduled.
func JobName(cj *batchv1.CronJob, scheduled time.Time) string {
	return fmt.Sprintf("%s-%d", cj.Name, scheduled.Unix()/60)
}

func finished(j *batchv1.Job) (batchv1.JobConditionType, bool) {
	for _, c := range j.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == v1.ConditionTrue {
			return c.Type, true
		}
	}
	return "", false
}

func (c *Controller) location(cj *batchv1.CronJob) (*time.Location, error) {
	if cj.Spec.TimeZone == nil {
		return c.clock.Now().Location(), nil
	}
	loc, err := time.LoadLocation(*cj.Spec.TimeZone)
	if err != nil {
		return nil, fmt.Errorf("loading time zone %q: %w", *cj.Spec.TimeZone, err)
	}
	return loc, nil
}

// sync does the work of Sync and returns when to look again.
func (c *Controller) sync(ctx context.Context, cj *batchv1.CronJob) (*time.Duration, error) {
	all, err := c.jobLister.Jobs(cj.Namespace).List(labels.Everything())
	if err != nil {
		return nil, fmt.Errorf("listing jobs of cronjob %s/%s: %w", cj.Namespace, cj.Name, err)
	}
	var jobs []*batchv1.Job
	for _, j := range all {
		if ref := metav1.GetControllerOfNoCopy(j); ref != nil && ref.UID == cj.UID {
			jobs = append(jobs, j)
		}
	}
	orig := cj.Status.DeepCopy()
	c.reconcileActive(cj, jobs)
	var errs []error
	if err := c.cleanupHistory(ctx, cj, jobs); err != nil {
		errs = append(errs, err)
	}
	var after *time.Duration
	if cj.DeletionTimestamp == nil && !(cj.Spec.Suspend != nil && *cj.Spec.Suspend) {
		a, err := c.schedule(ctx, cj, jobs)
		after = a
		if err != nil {
			errs = append(errs, err)
		}
	}
	if !equality.Semantic.DeepEqual(*orig, cj.Status) {
		if _, err := c.client.BatchV1().CronJobs(cj.Namespace).UpdateStatus(ctx, cj, metav1.UpdateOptions{}); err != nil {
			errs = append(errs, fmt.Errorf("updating status of cronjob %s/%s: %w", cj.Namespace, cj.Name, err))
		}
	}
	return after, errors.Join(errs...)
}

// reconcileActive makes status.active list exactly the running Jobs, and
// records the last success.
func (c *Controller) reconcileActive(cj *batchv1.CronJob, jobs []*batchv1.Job) {
	byUID := map[string]*batchv1.Job{}
	for _, j := range jobs {
		byUID[string(j.UID)] = j
	}
	var active []v1.ObjectReference
	listed := map[string]bool{}
	for _, ref := range cj.Status.Active {
		j, ok := byUID[string(ref.UID)]
		if !ok {
			continue // deleted
		}
		if _, done := finished(j); done {
			continue
		}
		listed[string(ref.UID)] = true
		active = append(active, ref)
	}
	for _, j := range jobs {
		t, done := finished(j)
		if done {
			if t == batchv1.JobComplete && j.Status.CompletionTime != nil &&
				(cj.Status.LastSuccessfulTime == nil || cj.Status.LastSuccessfulTime.Before(j.Status.CompletionTime)) {
				ct := *j.Status.CompletionTime
				cj.Status.LastSuccessfulTime = &ct
			}
			continue
		}
		if !listed[string(j.UID)] {
			active = append(active, jobRef(j))
		}
	}
	sort.SliceStable(active, func(i, k int) bool { return active[i].Name < active[k].Name })
	cj.Status.Active = active
}

func jobRef(j *batchv1.Job) v1.ObjectReference {
	return v1.ObjectReference{Kind: "Job", Namespace: j.Namespace, Name: j.Name, UID: j.UID, APIVersion: "batch/v1", ResourceVersion: j.ResourceVersion}
}

// cleanupHistory deletes the oldest finished Jobs beyond the limits.
func (c *Controller) cleanupHistory(ctx context.Context, cj *batchv1.CronJob, jobs []*batchv1.Job) error {
	var ok, failed []*batchv1.Job
	for _, j := range jobs {
		switch t, done := finished(j); {
		case !done:
		case t == batchv1.JobComplete:
			ok = append(ok, j)
		default:
			failed = append(failed, j)
		}
	}
	okLimit, failLimit := int32(3), int32(1)
	if cj.Spec.SuccessfulJobsHistoryLimit != nil {
		okLimit = *cj.Spec.SuccessfulJobsHistoryLimit
	}
	if cj.Spec.FailedJobsHistoryLimit != nil {
		failLimit = *cj.Spec.FailedJobsHistoryLimit
	}
	var errs []error
	for _, set := range []struct {
		jobs  []*batchv1.Job
		limit int32
	}{{ok, okLimit}, {failed, failLimit}} {
		sort.Slice(set.jobs, func(i, k int) bool { return startOf(set.jobs[i]).Before(startOf(set.jobs[k])) })
		for i := 0; i < len(set.jobs)-int(max(set.limit, 0)); i++ {
			if err := c.deleteJob(ctx, cj, set.jobs[i]); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func startOf(j *batchv1.Job) time.Time {
	if j.Status.StartTime != nil {
		return j.Status.StartTime.Time
	}
	return j.CreationTimestamp.Time
}

func (c *Controller) deleteJob(ctx context.Context, cj *batchv1.CronJob, j *batchv1.Job) error {
	bg := metav1.DeletePropagationBackground
	err := c.client.BatchV1().Jobs(j.Namespace).Delete(ctx, j.Name, metav1.DeleteOptions{PropagationPolicy: &bg})
	if err != nil && !apierrors.IsNotFound(err) {
		c.recorder.Eventf(cj, v1.EventTypeWarning, "FailedDelete", "Deleted job: %v", err)
		return fmt.Errorf("deleting job %s/%s: %w", j.Namespace, j.Name, err)
	}
	c.recorder.Eventf(cj, v1.EventTypeNormal, "SuccessfulDelete", "Deleted job %v", j.Name)
	return nil
}

// mostRecent returns the latest activation in (earliest, now] and how many
// there were (counting stops past TooManyMissed).
func mostRecent(s batch.Schedule, earliest, now time.Time) (time.Time, int) {
	var last time.Time
	n := 0
	for t := s.Next(earliest); !t.IsZero() && !t.After(now); t = s.Next(t) {
		last = t
		n++
		if n > TooManyMissed {
			break
		}
	}
	if n <= TooManyMissed {
		return last, n
	}
	// Too many to walk: find the last activation in a window before now,
	// doubling the window from one minute, so the search is bounded.
	for w := time.Minute; ; w *= 2 {
		from := now.Add(-w)
		if from.Before(last) {
			from = last
		}
		if t := s.Next(from); !t.IsZero() && !t.After(now) {
			for ; !t.IsZero() && !t.After(now); t = s.Next(t) {
				last = t
			}
			return last, n
		}
		if !from.After(last) {
			return last, n
		}
	}
}

// schedule starts the Job of the most recent due activation, if any, and
// returns when the next one is due.
func (c *Controller) schedule(ctx context.Context, cj *batchv1.CronJob, jobs []*batchv1.Job) (*time.Duration, error) {
	loc, err := c.location(cj)
	if err != nil {
		c.recorder.Eventf(cj, v1.EventTypeWarning, "UnknownTimeZone", "invalid timeZone: %q: %s", ptrStr(cj.Spec.TimeZone), err)
		return nil, nil
	}
	sched, err := batch.ParseCron(cj.Spec.Schedule)
	if err != nil {
		c.recorder.Eventf(cj, v1.EventTypeWarning, "UnparseableSchedule", "unparseable schedule: %q : %s", cj.Spec.Schedule, err)
		return nil, nil
	}
	now := c.clock.Now().In(loc)
	earliest := cj.CreationTimestamp.Time
	if cj.Status.LastScheduleTime != nil {
		earliest = cj.Status.LastScheduleTime.Time
	}
	if d := cj.Spec.StartingDeadlineSeconds; d != nil {
		if s := now.Add(-time.Duration(*d) * time.Second); s.After(earliest) {
			earliest = s
		}
	}
	earliest = earliest.In(loc)
	next := func() *time.Duration {
		t := sched.Next(now)
		if t.IsZero() {
			return nil
		}
		d := t.Sub(now) + 100*time.Millisecond
		return &d
	}
	scheduled, missed := mostRecent(sched, earliest, now)
	if scheduled.IsZero() {
		return next(), nil
	}
	if missed > TooManyMissed {
		c.recorder.Eventf(cj, v1.EventTypeWarning, "TooManyMissedTimes",
			"too many missed start times: %d. Set or decrease .spec.startingDeadlineSeconds or check clock skew", missed)
		c.logger.Info("too many missed start times", "cronjob", cj.Namespace+"/"+cj.Name, "missed", missed)
	}
	if d := cj.Spec.StartingDeadlineSeconds; d != nil && scheduled.Add(time.Duration(*d)*time.Second).Before(now) {
		c.recorder.Eventf(cj, v1.EventTypeWarning, "MissSchedule", "Missed scheduled time to start a job: %s", scheduled.UTC().Format(time.RFC1123Z))
		return next(), nil
	}
	name := JobName(cj, scheduled)
	for _, ref := range cj.Status.Active {
		if ref.Name == name {
			return next(), nil
		}
	}
	if cj.Status.LastScheduleTime != nil && !cj.Status.LastScheduleTime.Time.Before(scheduled) {
		return next(), nil
	}
	switch cj.Spec.ConcurrencyPolicy {
	case batchv1.ForbidConcurrent:
		if len(cj.Status.Active) > 0 {
			c.recorder.Eventf(cj, v1.EventTypeNormal, "JobAlreadyActive", "Not starting job because prior execution is running and concurrency policy is Forbid")
			return next(), nil
		}
	case batchv1.ReplaceConcurrent:
		byName := map[string]*batchv1.Job{}
		for _, j := range jobs {
			byName[j.Name] = j
		}
		for _, ref := range cj.Status.Active {
			if j := byName[ref.Name]; j != nil {
				if err := c.deleteJob(ctx, cj, j); err != nil {
					return nil, err
				}
			}
		}
		cj.Status.Active = nil
	}
	job := newJob(cj, name, scheduled)
	created, err := c.client.BatchV1().Jobs(cj.Namespace).Create(ctx, job, metav1.CreateOptions{})
	switch {
	case apierrors.IsAlreadyExists(err):
		// Started by an earlier sync whose status write was lost.
		existing, gerr := c.client.BatchV1().Jobs(cj.Namespace).Get(ctx, name, metav1.GetOptions{})
		if gerr != nil {
			return nil, fmt.Errorf("getting existing job %s/%s: %w", cj.Namespace, name, gerr)
		}
		if ref := metav1.GetControllerOfNoCopy(existing); ref == nil || ref.UID != cj.UID {
			return next(), nil
		}
		created = existing
	case err != nil:
		c.recorder.Eventf(cj, v1.EventTypeWarning, "FailedCreate", "Error creating job: %v", err)
		return nil, fmt.Errorf("creating job %s/%s: %w", cj.Namespace, name, err)
	default:
		c.recorder.Eventf(cj, v1.EventTypeNormal, "SuccessfulCreate", "Created job %v", created.Name)
	}
	if _, done := finished(created); !done {
		cj.Status.Active = append(cj.Status.Active, jobRef(created))
	}
	st := metav1.NewTime(scheduled)
	cj.Status.LastScheduleTime = &st
	return next(), nil
}

func newJob(cj *batchv1.CronJob, name string, scheduled time.Time) *batchv1.Job {
	t := cj.Spec.JobTemplate.DeepCopy()
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{
			Name:            name,
			Namespace:       cj.Namespace,
			Labels:          t.Labels,
			Annotations:     t.Annotations,
			OwnerReferences: []metav1.OwnerReference{*controller.NewControllerRef(cj, cronJobKind)},
		},
		Spec: t.Spec,
	}
	if job.Annotations == nil {
		job.Annotations = map[string]string{}
	}
	job.Annotations[batchv1.CronJobScheduledTimestampAnnotation] = scheduled.Format(time.RFC3339)
	return job
}

func ptrStr(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
