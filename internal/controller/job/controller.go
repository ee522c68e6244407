package job

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"sync"

	batchv1 "k8s.io/api/batch/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	batchinformers "k8s.io/client-go/informers/batch/v1"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	batchlisters "k8s.io/client-go/listers/batch/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"

	"skiff.dev/skiff/internal/controller"
)

// Config tunes a Controller; the zero value is usable.
type Config struct {
	// Clock drives back-off, deadlines and timestamps (default: real clock).
	Clock clock.Clock
	// BurstPods caps pod creations or deletions per sync (default 500).
	BurstPods int
}

// Controller runs Jobs.
type Controller struct {
	client       kubernetes.Interface
	jobLister    batchlisters.JobLister
	podLister    corelisters.PodLister
	recorder     record.EventRecorder
	expectations *controller.Expectations
	finalizers   *finalizerExpectations
	written      *writtenVersions
	queue        workqueue.TypedRateLimitingInterface[string]
	clock        clock.Clock
	logger       *slog.Logger
	burst        int
	// maxUncounted is defaultMaxUncounted; tests lower it.
	maxUncounted int
	synced       []cache.InformerSynced
}

var jobKind = batchv1.SchemeGroupVersion.WithKind("Job")

// New returns a Job controller fed by the given informers.
func New(cfg Config, client kubernetes.Interface, jobInformer batchinformers.JobInformer, podInformer coreinformers.PodInformer, recorder record.EventRecorder, logger *slog.Logger) (*Controller, error) {
	if logger == nil {
		logger = slog.Default()
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.BurstPods <= 0 {
		cfg.BurstPods = 500
	}
	if recorder == nil {
		recorder = &record.FakeRecorder{}
	}
	c := &Controller{
		client:       client,
		jobLister:    jobInformer.Lister(),
		podLister:    podInformer.Lister(),
		recorder:     recorder,
		expectations: controller.NewExpectations(cfg.Clock),
		finalizers:   &finalizerExpectations{m: map[string]map[types.UID]struct{}{}},
		written:      &writtenVersions{m: map[string]map[string]struct{}{}},
		queue:        controller.NewQueue("job"),
		clock:        cfg.Clock,
		logger:       logger.With("controller", "job"),
		burst:        cfg.BurstPods,
		maxUncounted: defaultMaxUncounted,
	}
	if _, err := jobInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueue,
		UpdateFunc: func(_, n any) { c.enqueue(n) },
		DeleteFunc: c.deleteJob,
	}); err != nil {
		return nil, fmt.Errorf("adding job event handler: %w", err)
	}
	if _, err := podInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.addPod,
		UpdateFunc: c.updatePod,
		DeleteFunc: c.deletePod,
	}); err != nil {
		return nil, fmt.Errorf("adding job pod event handler: %w", err)
	}
	c.synced = []cache.InformerSynced{jobInformer.Informer().HasSynced, podInformer.Informer().HasSynced}
	return c, nil
}

// Queue exposes the work queue to tests.
func (c *Controller) Queue() workqueue.TypedRateLimitingInterface[string] { return c.queue }

// Run waits for the caches and runs workers until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) error {
	defer c.queue.ShutDown()
	c.logger.Info("starting controller", "workers", workers)
	if !controller.WaitForSync(ctx, c.synced...) {
		return fmt.Errorf("waiting for job caches: %w", ctx.Err())
	}
	controller.RunWorkers(ctx, c.logger, c.queue, workers, c.Sync)
	return nil
}

func (c *Controller) enqueue(obj any) { controller.Enqueue(c.queue, c.logger, obj) }

func (c *Controller) deleteJob(obj any) {
	key, err := controller.KeyFor(obj)
	if err != nil {
		return
	}
	c.expectations.Delete(key)
	c.finalizers.forget(key)
	c.written.forget(key)
	c.queue.Add(key)
}

func podFrom(obj any) (*v1.Pod, bool) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	p, ok := obj.(*v1.Pod)
	return p, ok
}

// jobAPIVersion is the apiVersion of a Job's controller references.
var jobAPIVersion = batchv1.SchemeGroupVersion.String()

// jobKeyOf returns the key of the Job controlling p, or "". It runs for
// every event of every pod, most of them not a Job's: it reads the
// reference in place.
func (c *Controller) jobKeyOf(p *v1.Pod) string {
	ref := metav1.GetControllerOfNoCopy(p)
	if ref == nil || ref.Kind != "Job" || ref.APIVersion != jobAPIVersion {
		return ""
	}
	j, err := c.jobLister.Jobs(p.Namespace).Get(ref.Name)
	if err != nil || j.UID != ref.UID {
		return ""
	}
	return p.Namespace + "/" + j.Name
}

func (c *Controller) addPod(obj any) {
	p, ok := podFrom(obj)
	if !ok {
		return
	}
	if key := c.jobKeyOf(p); key != "" {
		c.expectations.CreationObserved(key)
		c.queue.Add(key)
	}
}

func (c *Controller) updatePod(oldObj, newObj any) {
	old, ok1 := podFrom(oldObj)
	cur, ok2 := podFrom(newObj)
	if !ok1 || !ok2 || old.ResourceVersion == cur.ResourceVersion && cur.ResourceVersion != "" {
		return
	}
	key := c.jobKeyOf(cur)
	if key == "" {
		key = c.jobKeyOf(old)
	}
	if key == "" {
		return
	}
	if !hasTrackingFinalizer(cur) {
		c.finalizers.observed(key, cur.UID)
	}
	if cur.DeletionTimestamp != nil && old.DeletionTimestamp == nil {
		c.expectations.DeletionObserved(key, cur.Namespace+"/"+cur.Name)
	}
	if !reflect.DeepEqual(old.Status, cur.Status) || !reflect.DeepEqual(old.Labels, cur.Labels) ||
		!reflect.DeepEqual(old.Finalizers, cur.Finalizers) || old.DeletionTimestamp != cur.DeletionTimestamp {
		c.queue.Add(key)
	}
}

func (c *Controller) deletePod(obj any) {
	p, ok := podFrom(obj)
	if !ok {
		return
	}
	key := c.jobKeyOf(p)
	if key == "" {
		return
	}
	c.expectations.DeletionObserved(key, p.Namespace+"/"+p.Name)
	c.finalizers.observed(key, p.UID)
	c.queue.Add(key)
}

func hasTrackingFinalizer(p *v1.Pod) bool {
	return slices.Contains(p.Finalizers, batchv1.JobTrackingFinalizer)
}

// finalizerExpectations remembers, per Job, the pods whose tracking
// finalizer the controller removed but whose update the informer has not
// delivered yet; such pods must not be counted again.
type finalizerExpectations struct {
	mu sync.Mutex
	m  map[string]map[types.UID]struct{}
}

func (f *finalizerExpectations) expect(key string, uid types.UID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.m[key]
	if s == nil {
		s = map[types.UID]struct{}{}
		f.m[key] = s
	}
	s[uid] = struct{}{}
}

func (f *finalizerExpectations) observed(key string, uid types.UID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.m[key], uid)
}

func (f *finalizerExpectations) pending(key string, uid types.UID) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.m[key][uid]
	return ok
}

func (f *finalizerExpectations) forget(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.m, key)
}

// writtenVersions remembers, per Job, the resourceVersions that the
// controller's own status writes replaced. A Job the informer still shows
// at one of them predates a write: a sync from it would recount from the
// old status (pods already moved to the counters look uncounted, counters
// look short) and its status write could only end in a 409 Conflict and a
// rate-limited retry. Such a sync waits for the informer instead, which
// delivers the write as an update and enqueues the Job. The informer's
// view only moves forward, so once it shows any other version the record
// is dropped. Versions are compared for equality only.
type writtenVersions struct {
	mu sync.Mutex
	m  map[string]map[string]struct{}
}

// replaced records that a write replaced version rv of the Job.
func (w *writtenVersions) replaced(key, rv string) {
	if rv == "" {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.m[key]
	if s == nil {
		s = map[string]struct{}{}
		w.m[key] = s
	}
	s[rv] = struct{}{}
}

// stale reports whether version rv of the Job predates one of our writes;
// a newer version clears the record.
func (w *writtenVersions) stale(key, rv string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	s, ok := w.m[key]
	if !ok {
		return false
	}
	if _, old := s[rv]; old {
		return true
	}
	delete(w.m, key)
	return false
}

func (w *writtenVersions) forget(key string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.m, key)
}
