// Package endpointslice maintains discovery.k8s.io/v1 EndpointSlices for
// every Service with a selector: IPv4 endpoints of the matching pods with
// ready/serving/terminating conditions, at most MaxEndpointsPerSlice per
// slice, grouped by the port list each pod resolves to.
//
// Contract: sync(namespace/name) lists the service's pods and the slices
// labelled kubernetes.io/service-name=<name> and managed by this controller,
// computes a Plan with the pure reconcile function (keeping endpoints in the
// slices that already hold them) and applies it. Slices carry a controller
// ownerReference to the service, so the garbage collector removes them with
// it. Pod events enqueue the selecting services directly.
package endpointslice

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"skiff.dev/skiff/internal/controller"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"skiff.dev/skiff/internal/controller/endpoints"
)

// ControllerName is the managed-by label value, the same as upstream's so
// other tools recognise the slices.
const ControllerName = "endpointslice-controller.k8s.io"

// MaxEndpointsPerSlice is upstream's default --max-endpoints-per-slice.
const MaxEndpointsPerSlice = 100

// Controller keeps EndpointSlices in step with Services and Pods.
type Controller struct {
	client      kubernetes.Interface
	svcLister   corelisters.ServiceLister
	podHandlers cache.ResourceEventHandlerFuncs
	podLister   corelisters.PodLister
	sliceLister discoverylisters.EndpointSliceLister
	synced      []cache.InformerSynced
	queue       workqueue.TypedRateLimitingInterface[string]
	logger      *slog.Logger

	maxPerSlice int
	// newName names created slices; the fake clientset does not honour
	// generateName, and tests want stable names.
	newName func(svc string) string
}

// New returns a controller using the factory's service, pod and endpointslice informers.
func New(client kubernetes.Interface, factory informers.SharedInformerFactory, logger *slog.Logger) (*Controller, error) {
	if logger == nil {
		logger = slog.Default()
	}
	svcs := factory.Core().V1().Services()
	pods := factory.Core().V1().Pods()
	eps := factory.Discovery().V1().EndpointSlices()
	c := &Controller{
		client:      client,
		svcLister:   svcs.Lister(),
		podLister:   pods.Lister(),
		sliceLister: eps.Lister(),
		synced:      []cache.InformerSynced{svcs.Informer().HasSynced, pods.Informer().HasSynced, eps.Informer().HasSynced},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "endpointslice"}),
		logger:      logger.With("controller", "endpointslice"),
		maxPerSlice: MaxEndpointsPerSlice,
		newName:     func(svc string) string { return svc + "-" + utilrand.String(5) },
	}
	if _, err := svcs.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueue,
		UpdateFunc: func(_, obj any) { c.enqueue(obj) },
		DeleteFunc: c.enqueue,
	}); err != nil {
		return nil, fmt.Errorf("adding service event handler: %w", err)
	}
	c.podHandlers = endpoints.PodHandlers(svcs.Informer().GetIndexer(), func(k string) { c.queue.Add(k) })
	if _, err := pods.Informer().AddEventHandler(c.podHandlers); err != nil {
		return nil, fmt.Errorf("adding pod event handler: %w", err)
	}
	if _, err := eps.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		// Repair slices edited or deleted by someone else.
		UpdateFunc: func(_, obj any) { c.onSlice(obj) },
		DeleteFunc: c.onSlice,
	}); err != nil {
		return nil, fmt.Errorf("adding endpointslice event handler: %w", err)
	}
	return c, nil
}

func (c *Controller) enqueue(obj any) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		utilruntime.HandleError(err)
		return
	}
	c.queue.Add(key)
}

func (c *Controller) onSlice(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	es, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok || es.Labels[discoveryv1.LabelManagedBy] != ControllerName || es.Labels[discoveryv1.LabelServiceName] == "" {
		return
	}
	c.queue.Add(es.Namespace + "/" + es.Labels[discoveryv1.LabelServiceName])
}

// Run processes services until ctx is done.
func (c *Controller) Run(ctx context.Context, workers int) error {
	defer utilruntime.HandleCrash()
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		c.queue.ShutDown()
		return errors.New("waiting for service, pod and endpointslice caches to sync")
	}
	controller.RunWorkers(ctx, c.logger, c.queue, workers, c.sync)
	return nil
}

func (c *Controller) sync(ctx context.Context, key string) error {
	namespace, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return fmt.Errorf("splitting key %q: %w", key, err)
	}
	svc, err := c.svcLister.Services(namespace).Get(name)
	if apierrors.IsNotFound(err) {
		return nil // the garbage collector removes slices owned by the service
	}
	if err != nil {
		return fmt.Errorf("getting service %s: %w", key, err)
	}
	if svc.Spec.Selector == nil || svc.Spec.Type == corev1.ServiceTypeExternalName {
		return nil
	}
	pods, err := c.podLister.Pods(namespace).List(labels.SelectorFromValidatedSet(svc.Spec.Selector))
	if err != nil {
		return fmt.Errorf("listing pods for service %s: %w", key, err)
	}
	existing, err := c.sliceLister.EndpointSlices(namespace).List(labels.SelectorFromSet(labels.Set{
		discoveryv1.LabelServiceName: name,
		discoveryv1.LabelManagedBy:   ControllerName,
	}))
	if err != nil {
		return fmt.Errorf("listing endpointslices for service %s: %w", key, err)
	}
	plan := reconcile(svc, pods, existing, c.maxPerSlice, func() string { return c.newName(name) })
	return c.apply(ctx, namespace, plan)
}

// apply writes creates first, then updates, then deletes, so endpoints moving
// between slices are never absent from all of them.
func (c *Controller) apply(ctx context.Context, namespace string, plan Plan) error {
	api := c.client.DiscoveryV1().EndpointSlices(namespace)
	var errs []error
	for _, es := range plan.Create {
		if _, err := api.Create(ctx, es, metav1.CreateOptions{}); err != nil {
			if apierrors.IsForbidden(err) && apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
				return nil
			}
			errs = append(errs, fmt.Errorf("creating endpointslice %s/%s: %w", namespace, es.Name, err))
		}
	}
	for _, es := range plan.Update {
		if _, err := api.Update(ctx, es, metav1.UpdateOptions{}); err != nil {
			errs = append(errs, fmt.Errorf("updating endpointslice %s/%s: %w", namespace, es.Name, err))
		}
	}
	for _, es := range plan.Delete {
		err := api.Delete(ctx, es.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &es.UID}})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("deleting endpointslice %s/%s: %w", namespace, es.Name, err))
		}
	}
	return errors.Join(errs...)
}
