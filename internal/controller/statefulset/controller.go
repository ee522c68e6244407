package statefulset

import (
	"context"
	"fmt"
	"log/slog"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	appsinformers "k8s.io/client-go/informers/apps/v1"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"

	"skiff.dev/skiff/internal/controller"
)

// Config tunes a Controller; the zero value is usable.
type Config struct {
	// Clock decides pod availability (default: real clock).
	Clock clock.Clock
}

// Controller runs StatefulSets.
type Controller struct {
	client    kubernetes.Interface
	setLister appslisters.StatefulSetLister
	podLister corelisters.PodLister
	pvcLister corelisters.PersistentVolumeClaimLister
	revLister appslisters.ControllerRevisionLister
	recorder  record.EventRecorder
	queue     workqueue.TypedRateLimitingInterface[string]
	clock     clock.Clock
	logger    *slog.Logger
	synced    []cache.InformerSynced
}

var setKind = appsv1.SchemeGroupVersion.WithKind("StatefulSet")

// New returns a StatefulSet controller fed by the given informers.
func New(cfg Config, client kubernetes.Interface, sets appsinformers.StatefulSetInformer, pods coreinformers.PodInformer,
	pvcs coreinformers.PersistentVolumeClaimInformer, revs appsinformers.ControllerRevisionInformer,
	recorder record.EventRecorder, logger *slog.Logger) (*Controller, error) {
	if logger == nil {
		logger = slog.Default()
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if recorder == nil {
		recorder = &record.FakeRecorder{}
	}
	c := &Controller{
		client: client, setLister: sets.Lister(), podLister: pods.Lister(), pvcLister: pvcs.Lister(), revLister: revs.Lister(),
		recorder: recorder, queue: controller.NewQueue("statefulset"), clock: cfg.Clock, logger: logger.With("controller", "statefulset"),
	}
	if _, err := sets.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueue,
		UpdateFunc: func(_, n any) { c.enqueue(n) },
		DeleteFunc: c.enqueue,
	}); err != nil {
		return nil, fmt.Errorf("adding statefulset event handler: %w", err)
	}
	onPod := func(obj any) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		p, ok := obj.(*v1.Pod)
		if !ok {
			return
		}
		// In place: this runs for every event of every pod.
		if ref := metav1.GetControllerOfNoCopy(p); ref != nil && ref.Kind == "StatefulSet" {
			c.queue.Add(p.Namespace + "/" + ref.Name)
		}
	}
	if _, err := pods.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    onPod,
		UpdateFunc: func(_, n any) { onPod(n) },
		DeleteFunc: onPod,
	}); err != nil {
		return nil, fmt.Errorf("adding statefulset pod event handler: %w", err)
	}
	c.synced = []cache.InformerSynced{sets.Informer().HasSynced, pods.Informer().HasSynced, pvcs.Informer().HasSynced, revs.Informer().HasSynced}
	return c, nil
}

// Run waits for the caches and runs workers until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) error {
	defer c.queue.ShutDown()
	c.logger.Info("starting controller", "workers", workers)
	if !controller.WaitForSync(ctx, c.synced...) {
		return fmt.Errorf("waiting for statefulset caches: %w", ctx.Err())
	}
	controller.RunWorkers(ctx, c.logger, c.queue, workers, c.Sync)
	return nil
}

func (c *Controller) enqueue(obj any) { controller.Enqueue(c.queue, c.logger, obj) }
