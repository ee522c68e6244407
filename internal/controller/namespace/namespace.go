// Package namespace empties namespaces that are being deleted and then
// releases them to the API server.
//
// Contract: when a Namespace has a deletionTimestamp and still carries the
// "kubernetes" finalizer, sync discovers every namespaced resource that can be
// listed and deleted, deletes its content (deletecollection where supported,
// otherwise object by object with a UID precondition) through the metadata
// client, and records progress in the NamespaceDeletion*/Namespace*Remaining
// conditions as upstream does. Only when nothing is left does it remove the
// finalizer through the namespaces/finalize subresource; the API server then
// deletes the namespace. While content remains (for example objects waiting on
// their own finalizers) the namespace is re-checked after RecheckDelay.
package namespace

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
)

// RecheckDelay is how long a namespace with remaining content waits before
// the next pass.
const RecheckDelay = 2 * time.Second

// Condition reasons and messages, as upstream's namespace controller.
const (
	reasonDiscovered       = "ResourcesDiscovered"
	reasonDiscoveryFailed  = "DiscoveryFailed"
	reasonParsed           = "ParsedGroupVersions"
	reasonParseFailed      = "GroupVersionParsingFailed"
	reasonContentDeleted   = "ContentDeleted"
	reasonDeletionFailed   = "ContentDeletionFailed"
	reasonContentRemoved   = "ContentRemoved"
	reasonResourcesRemain  = "SomeResourcesRemain"
	reasonNoFinalizers     = "ContentHasNoFinalizers"
	reasonFinalizersRemain = "SomeFinalizersRemain"
)

// Controller deletes the content of terminating namespaces.
type Controller struct {
	client    kubernetes.Interface
	metadata  metadata.Interface
	discovery discovery.DiscoveryInterface
	nsLister  corelisters.NamespaceLister
	nsSynced  cache.InformerSynced
	queue     workqueue.TypedRateLimitingInterface[string]
	clock     clock.PassiveClock
	logger    *slog.Logger
}

// New returns a namespace controller. The discovery client finds the
// namespaced resources to empty; the metadata client deletes them.
func New(client kubernetes.Interface, metadataClient metadata.Interface, disco discovery.DiscoveryInterface, factory informers.SharedInformerFactory, logger *slog.Logger) (*Controller, error) {
	if logger == nil {
		logger = slog.Default()
	}
	ns := factory.Core().V1().Namespaces()
	c := &Controller{
		client:    client,
		metadata:  metadataClient,
		discovery: disco,
		nsLister:  ns.Lister(),
		nsSynced:  ns.Informer().HasSynced,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](5*time.Millisecond, time.Minute),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "namespace"}),
		clock:  clock.RealClock{},
		logger: logger.With("controller", "namespace"),
	}
	if _, err := ns.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueue,
		UpdateFunc: func(_, obj any) { c.enqueue(obj) },
	}); err != nil {
		return nil, fmt.Errorf("adding namespace event handler: %w", err)
	}
	return c, nil
}

func (c *Controller) enqueue(obj any) {
	if ns, ok := obj.(*corev1.Namespace); ok && ns.DeletionTimestamp != nil {
		c.queue.Add(ns.Name)
	}
}

// Run processes terminating namespaces until ctx is done.
func (c *Controller) Run(ctx context.Context, workers int) error {
	defer utilruntime.HandleCrash()
	defer c.queue.ShutDown()
	if !cache.WaitForCacheSync(ctx.Done(), c.nsSynced) {
		return errors.New("waiting for namespace cache to sync")
	}
	for range workers {
		go wait.UntilWithContext(ctx, c.worker, time.Second)
	}
	<-ctx.Done()
	return nil
}

func (c *Controller) worker(ctx context.Context) {
	for c.processNext(ctx) {
	}
}

// errContentRemaining asks for a later re-check without counting as a failure.
var errContentRemaining = errors.New("content remaining")

func (c *Controller) processNext(ctx context.Context) bool {
	key, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(key)
	err := c.sync(ctx, key)
	switch {
	case err == nil:
		c.queue.Forget(key)
	case errors.Is(err, errContentRemaining):
		c.queue.Forget(key)
		c.queue.AddAfter(key, RecheckDelay)
	default:
		c.logger.Error("deleting namespace content", "namespace", key, "err", err)
		c.queue.AddRateLimited(key)
	}
	return true
}

// result accumulates one pass over a namespace's content.
type result struct {
	discoveryErr   error
	parseFailures  []string
	deleteFailures []string // "resource: error"
	remaining      map[string]int
	finalizers     map[string]int
}

func (c *Controller) sync(ctx context.Context, name string) error {
	ns, err := c.nsLister.Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("getting namespace %s: %w", name, err)
	}
	if ns.DeletionTimestamp == nil || !slices.Contains(ns.Spec.Finalizers, corev1.FinalizerKubernetes) {
		return nil
	}
	ns = ns.DeepCopy()

	res := c.deleteContent(ctx, name)

	wantConds := conditionsFor(res)
	if ns.Status.Phase != corev1.NamespaceTerminating || conditionsChanged(ns.Status.Conditions, wantConds) {
		ns.Status.Phase = corev1.NamespaceTerminating
		ns.Status.Conditions = mergeConditions(ns.Status.Conditions, wantConds, metav1.NewTime(c.clock.Now()))
		updated, err := c.client.CoreV1().Namespaces().UpdateStatus(ctx, ns, metav1.UpdateOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("updating status of namespace %s: %w", name, err)
		}
		ns = updated
	}

	if res.discoveryErr != nil || len(res.parseFailures) > 0 || len(res.deleteFailures) > 0 {
		return fmt.Errorf("deleting content of namespace %s: %s", name, failureSummary(res))
	}
	if len(res.remaining) > 0 {
		return fmt.Errorf("namespace %s: %w", name, errContentRemaining)
	}

	ns.Spec.Finalizers = slices.DeleteFunc(slices.Clone(ns.Spec.Finalizers), func(f corev1.FinalizerName) bool {
		return f == corev1.FinalizerKubernetes
	})
	if _, err := c.client.CoreV1().Namespaces().Finalize(ctx, ns, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("finalizing namespace %s: %w", name, err)
	}
	c.logger.Info("namespace emptied and finalized", "namespace", name)
	return nil
}

func failureSummary(r result) string {
	var parts []string
	if r.discoveryErr != nil {
		parts = append(parts, "discovery: "+r.discoveryErr.Error())
	}
	parts = append(parts, r.parseFailures...)
	parts = append(parts, r.deleteFailures...)
	return strings.Join(parts, "; ")
}

// deleteContent makes one deletion pass over every namespaced resource.
func (c *Controller) deleteContent(ctx context.Context, namespace string) result {
	res := result{remaining: map[string]int{}, finalizers: map[string]int{}}
	lists, err := discovery.ServerPreferredNamespacedResources(c.discovery)
	if err != nil {
		// Partial discovery still lets us delete what we know; the
		// condition reports the failing groups and the pass is retried.
		res.discoveryErr = err
		if !discovery.IsGroupDiscoveryFailedError(err) {
			return res
		}
	}
	type target struct {
		gvr        schema.GroupVersionResource
		collection bool
	}
	var targets []target
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			res.parseFailures = append(res.parseFailures, fmt.Sprintf("%s: %v", l.GroupVersion, err))
			continue
		}
		for _, r := range l.APIResources {
			if strings.Contains(r.Name, "/") {
				continue // subresource
			}
			verbs := sets.New(r.Verbs...)
			if !verbs.Has("list") || !(verbs.Has("delete") || verbs.Has("deletecollection")) {
				continue
			}
			targets = append(targets, target{gvr: gv.WithResource(r.Name), collection: verbs.Has("deletecollection")})
		}
	}
	sort.Slice(targets, func(i, j int) bool { return targets[i].gvr.String() < targets[j].gvr.String() })
	for _, t := range targets {
		left, fins, err := c.deleteResource(ctx, namespace, t.gvr, t.collection)
		name := t.gvr.GroupResource().String()
		if err != nil {
			res.deleteFailures = append(res.deleteFailures, fmt.Sprintf("%s: %v", name, err))
		}
		if left > 0 {
			res.remaining[name] += left
		}
		for f, n := range fins {
			res.finalizers[f] += n
		}
	}
	return res
}

// deleteResource deletes every object of gvr in namespace and reports how
// many remain (for example held by finalizers) and which finalizers hold them.
func (c *Controller) deleteResource(ctx context.Context, namespace string, gvr schema.GroupVersionResource, collection bool) (int, map[string]int, error) {
	api := c.metadata.Resource(gvr).Namespace(namespace)
	background := metav1.DeletePropagationBackground
	if collection {
		err := api.DeleteCollection(ctx, metav1.DeleteOptions{PropagationPolicy: &background}, metav1.ListOptions{})
		switch {
		case err == nil:
		case apierrors.IsMethodNotSupported(err) || apierrors.IsNotFound(err):
			collection = false // fall back to deleting one by one
		default:
			return 0, nil, fmt.Errorf("deleting collection: %w", err)
		}
	}
	list, err := api.List(ctx, metav1.ListOptions{})
	if apierrors.IsNotFound(err) || apierrors.IsMethodNotSupported(err) {
		return 0, nil, nil
	}
	if err != nil {
		return 0, nil, fmt.Errorf("listing: %w", err)
	}
	if !collection {
		var errs []error
		left := list.Items[:0:0]
		for _, item := range list.Items {
			if item.DeletionTimestamp != nil {
				left = append(left, item)
				continue
			}
			uid := item.UID
			err := api.Delete(ctx, item.Name, metav1.DeleteOptions{
				PropagationPolicy: &background,
				Preconditions:     &metav1.Preconditions{UID: &uid},
			})
			switch {
			case err == nil && len(item.Finalizers) == 0:
				// gone
			case err == nil || apierrors.IsConflict(err):
				left = append(left, item)
			case apierrors.IsNotFound(err):
			default:
				errs = append(errs, fmt.Errorf("deleting %s: %w", item.Name, err))
				left = append(left, item)
			}
		}
		list.Items = left
		if len(errs) > 0 {
			return len(left), finalizerCounts(list.Items), errors.Join(errs...)
		}
	}
	return len(list.Items), finalizerCounts(list.Items), nil
}

func finalizerCounts(items []metav1.PartialObjectMetadata) map[string]int {
	out := map[string]int{}
	for _, it := range items {
		for _, f := range it.Finalizers {
			out[f]++
		}
	}
	return out
}

// conditionsFor renders a pass as the five namespace deletion conditions.
func conditionsFor(r result) []corev1.NamespaceCondition {
	cond := func(t corev1.NamespaceConditionType, bad bool, okReason, okMsg, badReason, badMsg string) corev1.NamespaceCondition {
		if bad {
			return corev1.NamespaceCondition{Type: t, Status: corev1.ConditionTrue, Reason: badReason, Message: badMsg}
		}
		return corev1.NamespaceCondition{Type: t, Status: corev1.ConditionFalse, Reason: okReason, Message: okMsg}
	}
	discMsg := ""
	if r.discoveryErr != nil {
		discMsg = "Discovery failed for some groups: " + r.discoveryErr.Error()
	}
	sort.Strings(r.parseFailures)
	sort.Strings(r.deleteFailures)
	var remain []string
	for _, k := range slices.Sorted(maps.Keys(r.remaining)) {
		remain = append(remain, fmt.Sprintf("%s has %d resource instances", k, r.remaining[k]))
	}
	var fins []string
	for _, k := range slices.Sorted(maps.Keys(r.finalizers)) {
		fins = append(fins, fmt.Sprintf("%s in %d resource instances", k, r.finalizers[k]))
	}
	return []corev1.NamespaceCondition{
		cond(corev1.NamespaceDeletionDiscoveryFailure, r.discoveryErr != nil,
			reasonDiscovered, "All resources successfully discovered", reasonDiscoveryFailed, discMsg),
		cond(corev1.NamespaceDeletionGVParsingFailure, len(r.parseFailures) > 0,
			reasonParsed, "All legacy kube types successfully parsed", reasonParseFailed,
			fmt.Sprintf("Failed to parse group versions: %s", strings.Join(r.parseFailures, ", "))),
		cond(corev1.NamespaceDeletionContentFailure, len(r.deleteFailures) > 0,
			reasonContentDeleted, "All content successfully deleted, may be waiting on finalization", reasonDeletionFailed,
			fmt.Sprintf("Failed to delete all resource types, %d remaining: %s", len(r.deleteFailures), strings.Join(r.deleteFailures, ", "))),
		cond(corev1.NamespaceContentRemaining, len(r.remaining) > 0,
			reasonContentRemoved, "All content successfully removed", reasonResourcesRemain,
			"Some resources are remaining: "+strings.Join(remain, ", ")),
		cond(corev1.NamespaceFinalizersRemaining, len(r.finalizers) > 0,
			reasonNoFinalizers, "All content-preserving finalizers finished", reasonFinalizersRemain,
			"Some content in the namespace has finalizers remaining: "+strings.Join(fins, ", ")),
	}
}

func conditionsChanged(cur, want []corev1.NamespaceCondition) bool {
	for _, w := range want {
		i := slices.IndexFunc(cur, func(c corev1.NamespaceCondition) bool { return c.Type == w.Type })
		if i < 0 || cur[i].Status != w.Status || cur[i].Reason != w.Reason || cur[i].Message != w.Message {
			return true
		}
	}
	return false
}

// mergeConditions replaces the managed conditions, keeping lastTransitionTime
// when the status did not change, and leaves other conditions alone.
func mergeConditions(cur, want []corev1.NamespaceCondition, now metav1.Time) []corev1.NamespaceCondition {
	out := slices.Clone(cur)
	for _, w := range want {
		i := slices.IndexFunc(out, func(c corev1.NamespaceCondition) bool { return c.Type == w.Type })
		w.LastTransitionTime = now
		if i < 0 {
			out = append(out, w)
			continue
		}
		if out[i].Status == w.Status {
			w.LastTransitionTime = out[i].LastTransitionTime
		}
		out[i] = w
	}
	return out
}
