package controller

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// SyncFunc converges the object named by key ("namespace/name" or "name").
// It must be idempotent; a returned error requeues the key with rate limiting.
type SyncFunc func(ctx context.Context, key string) error

// NewQueue returns the rate-limited work queue every controller uses.
func NewQueue(name string) workqueue.TypedRateLimitingInterface[string] {
	return workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: name},
	)
}

// KeyFor returns the queue key of an informer object, unwrapping tombstones.
func KeyFor(obj any) (string, error) {
	return cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
}

// Enqueue adds obj's key to q, logging objects that have no key.
func Enqueue(q workqueue.TypedRateLimitingInterface[string], logger *slog.Logger, obj any) {
	key, err := KeyFor(obj)
	if err != nil {
		logger.Error("cannot compute queue key", "err", err)
		return
	}
	q.Add(key)
}

// RunWorkers starts workers goroutines that drain q through sync, and blocks
// until ctx is cancelled; then it shuts the queue down and waits for the
// workers to return.
func RunWorkers(ctx context.Context, logger *slog.Logger, q workqueue.TypedRateLimitingInterface[string], workers int, syncFn SyncFunc) {
	if workers < 1 {
		workers = 1
	}
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Go(func() {
			for ProcessNext(ctx, logger, q, syncFn) {
			}
		})
	}
	<-ctx.Done()
	q.ShutDown()
	wg.Wait()
}

// ProcessNext takes one key from q and syncs it. It returns false once the
// queue has been shut down.
func ProcessNext(ctx context.Context, logger *slog.Logger, q workqueue.TypedRateLimitingInterface[string], syncFn SyncFunc) bool {
	key, quit := q.Get()
	if quit {
		return false
	}
	defer q.Done(key)
	start := time.Now()
	err := syncFn(ctx, key)
	if err == nil {
		q.Forget(key)
		return true
	}
	logger.Info("sync failed, requeueing", "key", key, "err", err, "retries", q.NumRequeues(key), "duration", time.Since(start))
	q.AddRateLimited(key)
	return true
}

// WaitForSync waits for the informers behind synced; it reports false when
// ctx ends first.
func WaitForSync(ctx context.Context, synced ...cache.InformerSynced) bool {
	return cache.WaitForCacheSync(ctx.Done(), synced...)
}
