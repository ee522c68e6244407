package replicaset

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sort"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	appsinformers "k8s.io/client-go/informers/apps/v1"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"

	"skiff.dev/skiff/internal/controller"
)

// BurstReplicas is the default cap on creations or deletions per sync.
const BurstReplicas = 500

// PodUpdateBatchPeriod is the default for Config.PodUpdateBatchPeriod.
const PodUpdateBatchPeriod = 100 * time.Millisecond

// Config tunes a Controller; the zero value is usable.
type Config struct {
	// BurstReplicas caps pod creations/deletions per sync (default 500).
	BurstReplicas int
	// Clock drives availability and expectations (default: real clock).
	Clock clock.Clock
	// PodControl overrides how pods are created and deleted (default: the
	// API through the client, events through the recorder).
	PodControl controller.PodControl
	// PodUpdateBatchPeriod delays the sync a pod's status change triggers,
	// so that the changes of many pods (a node agent reporting each of
	// 500 new pods Running) make one sync instead of one each: every sync
	// costs O(pods of the ReplicaSet) and may write status. Creations,
	// deletions, label and owner changes still sync at once. Default
	// PodUpdateBatchPeriod; negative: no batching.
	PodUpdateBatchPeriod time.Duration
}

// Controller keeps the pods of ReplicaSets (or ReplicationControllers).
type Controller struct {
	name         string
	ad           adapter
	client       kubernetes.Interface
	podIndexer   cache.Indexer
	podControl   controller.PodControl
	expectations *controller.Expectations
	queue        workqueue.TypedRateLimitingInterface[string]
	clock        clock.Clock
	logger       *slog.Logger
	burst        int
	updateBatch  time.Duration
	synced       []cache.InformerSynced
}

// NewReplicaSetController returns the controller for apps/v1 ReplicaSets.
func NewReplicaSetController(cfg Config, client kubernetes.Interface, rsInformer appsinformers.ReplicaSetInformer, podInformer coreinformers.PodInformer, recorder record.EventRecorder, logger *slog.Logger) (*Controller, error) {
	return newController("replicaset", cfg, client, newRSAdapter(client, rsInformer), podInformer, recorder, logger)
}

// NewReplicationManager returns the controller for v1 ReplicationControllers.
func NewReplicationManager(cfg Config, client kubernetes.Interface, rcInformer coreinformers.ReplicationControllerInformer, podInformer coreinformers.PodInformer, recorder record.EventRecorder, logger *slog.Logger) (*Controller, error) {
	return newController("replicationcontroller", cfg, client, newRCAdapter(client, rcInformer), podInformer, recorder, logger)
}

func newController(name string, cfg Config, client kubernetes.Interface, ad adapter, podInformer coreinformers.PodInformer, recorder record.EventRecorder, logger *slog.Logger) (*Controller, error) {
	if logger == nil {
		logger = slog.Default()
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.BurstReplicas <= 0 {
		cfg.BurstReplicas = BurstReplicas
	}
	if cfg.PodUpdateBatchPeriod == 0 {
		cfg.PodUpdateBatchPeriod = PodUpdateBatchPeriod
	}
	if cfg.PodControl == nil {
		cfg.PodControl = controller.RealPodControl{Client: client, Recorder: recorder}
	}
	c := &Controller{
		name:         name,
		ad:           ad,
		client:       client,
		podIndexer:   podInformer.Informer().GetIndexer(),
		podControl:   cfg.PodControl,
		expectations: controller.NewExpectations(cfg.Clock),
		queue:        controller.NewQueue(name),
		clock:        cfg.Clock,
		logger:       logger.With("controller", name),
		burst:        cfg.BurstReplicas,
		updateBatch:  cfg.PodUpdateBatchPeriod,
	}
	if err := controller.AddControllerUIDIndex(podInformer.Informer()); err != nil {
		return nil, err
	}
	if _, err := ad.informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueueOwner,
		UpdateFunc: c.updateOwner,
		DeleteFunc: c.deleteOwner,
	}); err != nil {
		return nil, fmt.Errorf("adding %s event handler: %w", name, err)
	}
	if _, err := podInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.addPod,
		UpdateFunc: c.updatePod,
		DeleteFunc: c.deletePod,
	}); err != nil {
		return nil, fmt.Errorf("adding %s pod event handler: %w", name, err)
	}
	c.synced = []cache.InformerSynced{ad.informer().HasSynced, podInformer.Informer().HasSynced}
	return c, nil
}

// Queue exposes the work queue (tests and the controller manager's metrics).
func (c *Controller) Queue() workqueue.TypedRateLimitingInterface[string] { return c.queue }

// Expectations exposes the controller's expectations to tests.
func (c *Controller) Expectations() *controller.Expectations { return c.expectations }

// Run waits for the caches and runs workers until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) error {
	defer c.queue.ShutDown()
	c.logger.Info("starting controller", "workers", workers)
	if !controller.WaitForSync(ctx, c.synced...) {
		return fmt.Errorf("waiting for %s caches: %w", c.name, ctx.Err())
	}
	controller.RunWorkers(ctx, c.logger, c.queue, workers, c.Sync)
	return nil
}

func (c *Controller) enqueueOwner(obj any) { controller.Enqueue(c.queue, c.logger, obj) }

func (c *Controller) updateOwner(oldObj, newObj any) {
	oldRS, ok1 := c.ad.toRS(oldObj)
	newRS, ok2 := c.ad.toRS(newObj)
	if ok1 && ok2 && oldRS.UID != newRS.UID {
		c.deleteOwner(oldObj)
	}
	c.enqueueOwner(newObj)
}

func (c *Controller) deleteOwner(obj any) {
	key, err := controller.KeyFor(obj)
	if err != nil {
		return
	}
	c.expectations.Delete(key)
	c.queue.Add(key)
}

func podFrom(obj any) (*v1.Pod, bool) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	p, ok := obj.(*v1.Pod)
	return p, ok
}

// resolve returns the owner named by ref if it is one of ours.
func (c *Controller) resolve(ns string, ref *metav1.OwnerReference) *appsv1.ReplicaSet {
	if ref == nil || ref.Kind != c.ad.kind().Kind {
		return nil
	}
	rs, err := c.ad.get(ns, ref.Name)
	if err != nil || rs.UID != ref.UID {
		return nil
	}
	return rs
}

// ownersOf returns the owners whose selector matches an orphan pod.
func (c *Controller) ownersOf(p *v1.Pod) []*appsv1.ReplicaSet {
	all, err := c.ad.list(p.Namespace)
	if err != nil {
		return nil
	}
	var out []*appsv1.ReplicaSet
	for _, rs := range all {
		sel, err := metav1.LabelSelectorAsSelector(rs.Spec.Selector)
		if err != nil || sel.Empty() {
			continue
		}
		if sel.Matches(labels.Set(p.Labels)) {
			out = append(out, rs)
		}
	}
	return out
}

func rsKey(rs *appsv1.ReplicaSet) string { return rs.Namespace + "/" + rs.Name }
func podKey(p *v1.Pod) string            { return p.Namespace + "/" + p.Name }

func (c *Controller) addPod(obj any) {
	p, ok := podFrom(obj)
	if !ok {
		return
	}
	if p.DeletionTimestamp != nil {
		c.deletePod(p)
		return
	}
	if ref := metav1.GetControllerOf(p); ref != nil {
		if rs := c.resolve(p.Namespace, ref); rs != nil {
			key := rsKey(rs)
			c.expectations.CreationObserved(key)
			if c.updateBatch >= 0 && !c.expectations.Satisfied(key) {
				// More of this sync's creations are still to be seen:
				// until the last one is, a sync can only recount the
				// status, and one sync per new pod costs O(pods) each
				// (quadratic over a 10,000-pod scale-up). The last
				// creation observed syncs at once.
				c.queue.AddAfter(key, c.updateBatch)
			} else {
				c.queue.Add(key)
			}
		}
		return
	}
	for _, rs := range c.ownersOf(p) {
		c.queue.Add(rsKey(rs))
	}
}

func (c *Controller) updatePod(oldObj, newObj any) {
	oldPod, ok1 := podFrom(oldObj)
	cur, ok2 := podFrom(newObj)
	if !ok1 || !ok2 || cur.ResourceVersion == oldPod.ResourceVersion && cur.ResourceVersion != "" {
		return
	}
	labelsChanged := !reflect.DeepEqual(cur.Labels, oldPod.Labels)
	if cur.DeletionTimestamp != nil {
		c.deletePod(cur)
		if labelsChanged {
			c.deletePod(oldPod)
		}
		return
	}
	curRef, oldRef := metav1.GetControllerOf(cur), metav1.GetControllerOf(oldPod)
	refChanged := !reflect.DeepEqual(curRef, oldRef)
	if refChanged && oldRef != nil {
		if rs := c.resolve(oldPod.Namespace, oldRef); rs != nil {
			c.queue.Add(rsKey(rs))
		}
	}
	if curRef != nil {
		rs := c.resolve(cur.Namespace, curRef)
		if rs == nil {
			return
		}
		if labelsChanged || refChanged || c.updateBatch < 0 {
			c.queue.Add(rsKey(rs))
		} else {
			// A status change: only the ReplicaSet's status can follow
			// from it, and a short delay lets one sync cover many pods.
			c.queue.AddAfter(rsKey(rs), c.updateBatch)
		}
		if !controller.IsPodReady(oldPod) && controller.IsPodReady(cur) && rs.Spec.MinReadySeconds > 0 {
			// Re-check once the pod has been ready long enough to count as available.
			c.queue.AddAfter(rsKey(rs), time.Duration(rs.Spec.MinReadySeconds)*time.Second+time.Second)
		}
		return
	}
	if labelsChanged || refChanged {
		for _, rs := range c.ownersOf(cur) {
			c.queue.Add(rsKey(rs))
		}
	}
}

func (c *Controller) deletePod(obj any) {
	p, ok := podFrom(obj)
	if !ok {
		return
	}
	ref := metav1.GetControllerOf(p)
	rs := c.resolve(p.Namespace, ref)
	if rs == nil {
		return
	}
	c.expectations.DeletionObserved(rsKey(rs), podKey(p))
	c.queue.Add(rsKey(rs))
}

// Sync converges the ReplicaSet named by key.
func (c *Controller) Sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil // a malformed key never becomes valid
	}
	rs, err := c.ad.get(ns, name)
	if apierrors.IsNotFound(err) {
		c.expectations.Delete(key)
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading %s %s: %w", c.name, key, err)
	}
	needsSync := c.expectations.Satisfied(key)
	selector, err := metav1.LabelSelectorAsSelector(rs.Spec.Selector)
	if err != nil {
		c.logger.Error("invalid selector", "key", key, "err", err)
		return nil
	}
	// Only our pods and the orphans matter to the claim below: pods of
	// other controllers are never touched.
	owned, orphans, err := controller.PodsControlledOrOrphaned(c.podIndexer, ns, rs.UID)
	if err != nil {
		return err
	}
	ref := &controller.RefManager{
		Controller: rs,
		Kind:       c.ad.kind(),
		Selector:   selector,
		CanAdopt: controller.FreshCanAdopt(rs.UID, func(ctx context.Context) (metav1.Object, error) {
			return c.ad.fresh(ctx, ns, name)
		}),
	}
	pods, err := ref.ClaimIndexedPods(ctx, controller.FilterActivePods(owned), controller.FilterActivePods(orphans), c.podControl)
	if err != nil {
		return fmt.Errorf("claiming pods for %s: %w", key, err)
	}

	var manageErr error
	var diff int
	if needsSync && rs.DeletionTimestamp == nil {
		diff, manageErr = c.manageReplicas(ctx, pods, rs)
	}
	now := c.clock.Now()
	next := c.status(rs, pods, manageErr, diff, now)
	updated := rs
	if !reflect.DeepEqual(rs.Status, next) {
		cp := rs.DeepCopy()
		cp.Status = next
		updated, err = c.ad.updateStatus(ctx, cp)
		if err != nil {
			return err
		}
	}
	if manageErr == nil && updated.Spec.MinReadySeconds > 0 {
		if wait, ok := nextAvailable(pods, updated.Spec.MinReadySeconds, now); ok {
			c.queue.AddAfter(key, wait)
		}
	}
	return manageErr
}

// selectorRequiresTemplate reports whether every pod matching rs's
// selector carries all of its template's labels: each template label is
// one of the selector's matchLabels with the same value.
func selectorRequiresTemplate(rs *appsv1.ReplicaSet) bool {
	if rs.Spec.Selector == nil {
		return false
	}
	for k, v := range rs.Spec.Template.Labels {
		if w, ok := rs.Spec.Selector.MatchLabels[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// nextAvailable returns the shortest wait until a ready pod becomes available.
func nextAvailable(pods []*v1.Pod, minReady int32, now time.Time) (time.Duration, bool) {
	var best time.Duration
	found := false
	for _, p := range pods {
		if d, ok := controller.UntilAvailable(p, minReady, now); ok && (!found || d < best) {
			best, found = d, true
		}
	}
	return best, found
}

// manageReplicas creates or deletes pods so that len(pods) moves towards
// spec.replicas. It returns the difference it acted on (negative: too few).
func (c *Controller) manageReplicas(ctx context.Context, pods []*v1.Pod, rs *appsv1.ReplicaSet) (int, error) {
	key := rsKey(rs)
	want := int(*rs.Spec.Replicas)
	diff := len(pods) - want
	owner := c.ad.eventObject(rs)
	switch {
	case diff < 0:
		n := min(-diff, c.burst)
		c.expectations.ExpectCreations(key, n)
		cref := controller.NewControllerRef(rs, c.ad.kind())
		ok, err := controller.SlowStartBatch(n, 1, func() error {
			err := c.podControl.CreatePod(ctx, rs.Namespace, &rs.Spec.Template, owner, cref)
			if err != nil && apierrors.HasStatusCause(err, v1.NamespaceTerminatingCause) {
				return nil // nothing can be created in a dying namespace; do not retry
			}
			return err
		})
		// The informer will never report the creations that were not issued
		// or failed, so stop waiting for them.
		for i := ok; i < n; i++ {
			c.expectations.CreationObserved(key)
		}
		return diff, err
	case diff > 0:
		n := min(diff, c.burst)
		victims := append([]*v1.Pod(nil), pods...)
		sort.Sort(controller.ActivePods(victims))
		victims = victims[:n]
		keys := make([]string, len(victims))
		for i, p := range victims {
			keys[i] = podKey(p)
		}
		c.expectations.ExpectDeletions(key, keys)
		var mu sync.Mutex
		var errs []error
		var wg sync.WaitGroup
		for _, p := range victims {
			wg.Go(func() {
				if err := c.podControl.DeletePod(ctx, p.Namespace, p.Name, owner); err != nil {
					c.expectations.DeletionObserved(key, podKey(p))
					if !apierrors.IsNotFound(err) {
						mu.Lock()
						errs = append(errs, err)
						mu.Unlock()
					}
				}
			})
		}
		wg.Wait()
		return diff, errors.Join(errs...)
	}
	return 0, nil
}

// status computes the status rs should report.
func (c *Controller) status(rs *appsv1.ReplicaSet, pods []*v1.Pod, manageErr error, diff int, now time.Time) appsv1.ReplicaSetStatus {
	st := *rs.Status.DeepCopy()
	st.Replicas = int32(len(pods))
	st.FullyLabeledReplicas, st.ReadyReplicas, st.AvailableReplicas = 0, 0, 0
	// pods all match the selector; when the selector requires every
	// template label (a Deployment's ReplicaSets, most others), they are
	// all fully labeled and the per-pod check is skipped.
	allLabeled := selectorRequiresTemplate(rs)
	tpl := labels.Set(rs.Spec.Template.Labels).AsSelectorPreValidated()
	for _, p := range pods {
		if allLabeled || tpl.Matches(labels.Set(p.Labels)) {
			st.FullyLabeledReplicas++
		}
		if controller.IsPodReady(p) {
			st.ReadyReplicas++
			if controller.IsPodAvailable(p, rs.Spec.MinReadySeconds, now) {
				st.AvailableReplicas++
			}
		}
	}
	st.ObservedGeneration = rs.Generation
	failure := -1
	for i, cnd := range st.Conditions {
		if cnd.Type == appsv1.ReplicaSetReplicaFailure {
			failure = i
		}
	}
	switch {
	case manageErr != nil && failure < 0:
		reason := "FailedCreate"
		if diff > 0 {
			reason = "FailedDelete"
		}
		st.Conditions = append(st.Conditions, appsv1.ReplicaSetCondition{
			Type: appsv1.ReplicaSetReplicaFailure, Status: v1.ConditionTrue,
			LastTransitionTime: metav1.NewTime(now), Reason: reason, Message: manageErr.Error(),
		})
	case manageErr == nil && failure >= 0:
		st.Conditions = append(st.Conditions[:failure:failure], st.Conditions[failure+1:]...)
		if len(st.Conditions) == 0 {
			st.Conditions = nil
		}
	}
	return st
}
