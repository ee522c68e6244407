package job

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	batchinformers "k8s.io/client-go/informers/batch/v1"
	"k8s.io/client-go/kubernetes"
	batchlisters "k8s.io/client-go/listers/batch/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"

	"skiff.dev/skiff/internal/controller"
)

// TTLController deletes finished Jobs ttlSecondsAfterFinished after their
// Complete or Failed condition, with foreground propagation so their pods
// go first.
type TTLController struct {
	client kubernetes.Interface
	lister batchlisters.JobLister
	queue  workqueue.TypedRateLimitingInterface[string]
	clock  clock.Clock
	logger *slog.Logger
	synced cache.InformerSynced
}

// NewTTL returns the TTL-after-finished controller.
func NewTTL(clk clock.Clock, client kubernetes.Interface, jobInformer batchinformers.JobInformer, logger *slog.Logger) (*TTLController, error) {
	if clk == nil {
		clk = clock.RealClock{}
	}
	if logger == nil {
		logger = slog.Default()
	}
	c := &TTLController{client: client, lister: jobInformer.Lister(), queue: controller.NewQueue("ttl-after-finished"),
		clock: clk, logger: logger.With("controller", "ttl-after-finished"), synced: jobInformer.Informer().HasSynced}
	enqueue := func(obj any) {
		if j, ok := obj.(*batchv1.Job); ok && j.Spec.TTLSecondsAfterFinished != nil && isFinished(j) {
			controller.Enqueue(c.queue, c.logger, obj)
		}
	}
	if _, err := jobInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueue, UpdateFunc: func(_, n any) { enqueue(n) },
	}); err != nil {
		return nil, fmt.Errorf("adding ttl job event handler: %w", err)
	}
	return c, nil
}

// Run waits for the cache and runs workers until ctx ends.
func (c *TTLController) Run(ctx context.Context, workers int) error {
	defer c.queue.ShutDown()
	if !controller.WaitForSync(ctx, c.synced) {
		return fmt.Errorf("waiting for ttl job cache: %w", ctx.Err())
	}
	controller.RunWorkers(ctx, c.logger, c.queue, workers, c.Sync)
	return nil
}

// finishedAt is when job got its Complete or Failed condition.
func finishedAt(job *batchv1.Job) (time.Time, bool) {
	for _, t := range []batchv1.JobConditionType{batchv1.JobComplete, batchv1.JobFailed} {
		if c := getCondition(&job.Status, t); c != nil {
			return c.LastTransitionTime.Time, true
		}
	}
	return time.Time{}, false
}

// Sync deletes the Job named by key once its TTL has passed, or requeues it
// for then.
func (c *TTLController) Sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	job, err := c.lister.Jobs(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("getting job %s: %w", key, err)
	}
	if job.DeletionTimestamp != nil || job.Spec.TTLSecondsAfterFinished == nil {
		return nil
	}
	at, ok := finishedAt(job)
	if !ok {
		return nil
	}
	if left := at.Add(time.Duration(*job.Spec.TTLSecondsAfterFinished) * time.Second).Sub(c.clock.Now()); left > 0 {
		c.queue.AddAfter(key, left)
		return nil
	}
	fg := metav1.DeletePropagationForeground
	err = c.client.BatchV1().Jobs(ns).Delete(ctx, name, metav1.DeleteOptions{
		PropagationPolicy: &fg,
		Preconditions:     &metav1.Preconditions{UID: &job.UID, ResourceVersion: &job.ResourceVersion},
	})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting expired job %s: %w", key, err)
	}
	c.logger.Info("deleted finished job after its ttl", "job", key)
	return nil
}
