// Package serviceaccount keeps a "default" ServiceAccount in every active
// namespace: created when a namespace appears and re-created when deleted.
// Terminating namespaces are left alone, since the API server refuses
// creations there. Issuing tokens is the API server's job, not this package's.
package serviceaccount

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"skiff.dev/skiff/internal/controller"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// DefaultName is the service account every namespace gets.
const DefaultName = "default"

// Controller ensures the default service account exists. Its queue is keyed
// by namespace name.
type Controller struct {
	client   kubernetes.Interface
	nsLister corelisters.NamespaceLister
	saLister corelisters.ServiceAccountLister
	synced   []cache.InformerSynced
	queue    workqueue.TypedRateLimitingInterface[string]
	logger   *slog.Logger
}

// New returns a controller using the factory's namespace and service account informers.
func New(client kubernetes.Interface, factory informers.SharedInformerFactory, logger *slog.Logger) (*Controller, error) {
	if logger == nil {
		logger = slog.Default()
	}
	ns := factory.Core().V1().Namespaces()
	sa := factory.Core().V1().ServiceAccounts()
	c := &Controller{
		client:   client,
		nsLister: ns.Lister(),
		saLister: sa.Lister(),
		synced:   []cache.InformerSynced{ns.Informer().HasSynced, sa.Informer().HasSynced},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "serviceaccount"}),
		logger: logger.With("controller", "serviceaccount"),
	}
	if _, err := ns.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueueNamespace,
		UpdateFunc: func(_, obj any) { c.enqueueNamespace(obj) },
	}); err != nil {
		return nil, fmt.Errorf("adding namespace event handler: %w", err)
	}
	if _, err := sa.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		DeleteFunc: c.enqueueServiceAccountNamespace,
	}); err != nil {
		return nil, fmt.Errorf("adding service account event handler: %w", err)
	}
	return c, nil
}

func (c *Controller) enqueueNamespace(obj any) {
	if ns, ok := obj.(*corev1.Namespace); ok {
		c.queue.Add(ns.Name)
	}
}

func (c *Controller) enqueueServiceAccountNamespace(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	if sa, ok := obj.(*corev1.ServiceAccount); ok && sa.Name == DefaultName {
		c.queue.Add(sa.Namespace)
	}
}

// Run processes namespaces until ctx is done.
func (c *Controller) Run(ctx context.Context, workers int) error {
	defer utilruntime.HandleCrash()
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		c.queue.ShutDown()
		return errors.New("waiting for namespace and service account caches to sync")
	}
	controller.RunWorkers(ctx, c.logger, c.queue, workers, c.sync)
	return nil
}

func (c *Controller) sync(ctx context.Context, namespace string) error {
	ns, err := c.nsLister.Get(namespace)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("getting namespace %s: %w", namespace, err)
	}
	if ns.DeletionTimestamp != nil || ns.Status.Phase == corev1.NamespaceTerminating {
		return nil
	}
	if _, err := c.saLister.ServiceAccounts(namespace).Get(DefaultName); err == nil {
		return nil
	} else if !apierrors.IsNotFound(err) {
		return fmt.Errorf("getting service account %s/%s: %w", namespace, DefaultName, err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: DefaultName, Namespace: namespace}}
	_, err = c.client.CoreV1().ServiceAccounts(namespace).Create(ctx, sa, metav1.CreateOptions{})
	switch {
	case err == nil:
		c.logger.Info("created default service account", "namespace", namespace)
		return nil
	case apierrors.IsAlreadyExists(err):
		return nil // our cache lags; the informer will catch up
	case apierrors.IsForbidden(err) && apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause):
		return nil // the namespace started terminating under us
	default:
		return fmt.Errorf("creating service account %s/%s: %w", namespace, DefaultName, err)
	}
}
