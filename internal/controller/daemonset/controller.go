package daemonset

import (
	"context"
	"fmt"
	"log/slog"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
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
	// Clock decides availability and expectations (default: real clock).
	Clock clock.Clock
	// BurstPods caps creations or deletions per sync (default 250).
	BurstPods int
}

// Controller runs DaemonSets.
type Controller struct {
	client       kubernetes.Interface
	dsLister     appslisters.DaemonSetLister
	podLister    corelisters.PodLister
	nodeLister   corelisters.NodeLister
	revLister    appslisters.ControllerRevisionLister
	recorder     record.EventRecorder
	expectations *controller.Expectations
	queue        workqueue.TypedRateLimitingInterface[string]
	clock        clock.Clock
	logger       *slog.Logger
	burst        int
	synced       []cache.InformerSynced
}

var dsKind = appsv1.SchemeGroupVersion.WithKind("DaemonSet")

// New returns a DaemonSet controller fed by the given informers.
func New(cfg Config, client kubernetes.Interface, dss appsinformers.DaemonSetInformer, pods coreinformers.PodInformer,
	nodes coreinformers.NodeInformer, revs appsinformers.ControllerRevisionInformer, recorder record.EventRecorder, logger *slog.Logger) (*Controller, error) {
	if logger == nil {
		logger = slog.Default()
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.BurstPods <= 0 {
		cfg.BurstPods = 250
	}
	if recorder == nil {
		recorder = &record.FakeRecorder{}
	}
	c := &Controller{
		client: client, dsLister: dss.Lister(), podLister: pods.Lister(), nodeLister: nodes.Lister(), revLister: revs.Lister(),
		recorder: recorder, expectations: controller.NewExpectations(cfg.Clock), queue: controller.NewQueue("daemonset"),
		clock: cfg.Clock, logger: logger.With("controller", "daemonset"), burst: cfg.BurstPods,
	}
	if _, err := dss.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueue,
		UpdateFunc: func(_, n any) { c.enqueue(n) },
		DeleteFunc: func(obj any) {
			if key, err := controller.KeyFor(obj); err == nil {
				c.expectations.Delete(key)
				c.queue.Add(key)
			}
		},
	}); err != nil {
		return nil, fmt.Errorf("adding daemonset event handler: %w", err)
	}
	if _, err := pods.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.onPod(obj, true, false) },
		UpdateFunc: func(_, n any) { c.onPod(n, false, false) },
		DeleteFunc: func(obj any) { c.onPod(obj, false, true) },
	}); err != nil {
		return nil, fmt.Errorf("adding daemonset pod event handler: %w", err)
	}
	if _, err := nodes.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { c.enqueueAll() },
		UpdateFunc: c.updateNode,
		DeleteFunc: func(any) { c.enqueueAll() },
	}); err != nil {
		return nil, fmt.Errorf("adding daemonset node event handler: %w", err)
	}
	c.synced = []cache.InformerSynced{dss.Informer().HasSynced, pods.Informer().HasSynced, nodes.Informer().HasSynced, revs.Informer().HasSynced}
	return c, nil
}

// Run waits for the caches and runs workers until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) error {
	defer c.queue.ShutDown()
	c.logger.Info("starting controller", "workers", workers)
	if !controller.WaitForSync(ctx, c.synced...) {
		return fmt.Errorf("waiting for daemonset caches: %w", ctx.Err())
	}
	controller.RunWorkers(ctx, c.logger, c.queue, workers, c.Sync)
	return nil
}

func (c *Controller) enqueue(obj any) { controller.Enqueue(c.queue, c.logger, obj) }

func (c *Controller) enqueueAll() {
	all, err := c.dsLister.List(labels.Everything())
	if err != nil {
		return
	}
	for _, ds := range all {
		c.queue.Add(ds.Namespace + "/" + ds.Name)
	}
}

// updateNode requeues every DaemonSet when something that decides
// placement changed: labels, taints, readiness is not among them.
func (c *Controller) updateNode(oldObj, newObj any) {
	o, ok1 := oldObj.(*v1.Node)
	n, ok2 := newObj.(*v1.Node)
	if !ok1 || !ok2 {
		return
	}
	if labels.Equals(o.Labels, n.Labels) && fmt.Sprint(o.Spec.Taints) == fmt.Sprint(n.Spec.Taints) && o.Spec.Unschedulable == n.Spec.Unschedulable {
		return
	}
	c.enqueueAll()
}

func (c *Controller) onPod(obj any, added, deleted bool) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	p, ok := obj.(*v1.Pod)
	if !ok {
		return
	}
	// In place: this runs for every event of every pod.
	ref := metav1.GetControllerOfNoCopy(p)
	if ref == nil || ref.Kind != "DaemonSet" {
		return
	}
	key := p.Namespace + "/" + ref.Name
	if added {
		c.expectations.CreationObserved(key)
	}
	if p.DeletionTimestamp != nil || deleted {
		c.expectations.DeletionObserved(key, p.Namespace+"/"+p.Name)
	}
	c.queue.Add(key)
}
