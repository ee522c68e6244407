package replicaset

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"sort"
	"sync"
	"sync/atomic"
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
	tally        *podTally
	// noTally makes every sync walk the pods (benchmarks compare);
	// verifyTally makes every sync that used the tally also walk them and
	// fail if the two disagree (unit tests).
	noTally, verifyTally bool
	fastSyncs            atomic.Int64 // syncs that read the tally
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
		tally:        newPodTally(),
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
	podReg, err := podInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.addPod,
		UpdateFunc: c.updatePod,
		DeleteFunc: c.deletePod,
	})
	if err != nil {
		return nil, fmt.Errorf("adding %s pod event handler: %w", name, err)
	}
	// The handler's own HasSynced: the tally must hold the initial list
	// before a sync reads it, and the informer's store is filled earlier.
	c.synced = []cache.InformerSynced{ad.informer().HasSynced, podReg.HasSynced}
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
	if c.ad.isEcho(newObj) {
		// Our own status write coming back: the sync that wrote it saw
		// everything up to then, and every later pod event enqueues a
		// sync of its own. Syncing on the echo as well made each write
		// trigger the next as soon as the informer delivered it (one
		// status write per round trip during a scale-up).
		return
	}
	c.enqueueOwner(newObj)
}

func (c *Controller) deleteOwner(obj any) {
	key, err := controller.KeyFor(obj)
	if err != nil {
		return
	}
	c.expectations.Delete(key)
	c.ad.forget(key)
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
	c.tally.observe(p)
	if p.DeletionTimestamp != nil {
		c.podGone(p)
		return
	}
	if ref := metav1.GetControllerOfNoCopy(p); ref != nil {
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
	labelsChanged := !sameLabels(cur.Labels, oldPod.Labels)
	factsChanged := labelsChanged || !sameTallyFacts(oldPod, cur)
	if factsChanged {
		c.tally.observe(cur)
	}
	if cur.DeletionTimestamp != nil {
		c.podGone(cur)
		if labelsChanged {
			c.podGone(oldPod)
		}
		return
	}
	curRef, oldRef := metav1.GetControllerOfNoCopy(cur), metav1.GetControllerOfNoCopy(oldPod)
	refChanged := !sameRef(curRef, oldRef)
	if !factsChanged && !refChanged {
		// Nothing a sync reads of the pod changed (its labels, owner,
		// whether it is active, ready and since when): the binding to a
		// node, container states. A sync now would write what the last
		// one did; a later sync (a scale-down choosing victims by node
		// and restarts) reads the pod as it is then.
		return
	}
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
	c.tally.forget(p)
	c.podGone(p)
}

// podGone observes the deletion of p (removed, or being deleted).
func (c *Controller) podGone(p *v1.Pod) {
	ref := metav1.GetControllerOfNoCopy(p)
	rs := c.resolve(p.Namespace, ref)
	if rs == nil {
		return
	}
	c.expectations.DeletionObserved(rsKey(rs), podKey(p))
	c.queue.Add(rsKey(rs))
}

// sameLabels is reflect.DeepEqual for label maps (nil differs from
// empty), without reflection: it runs on every pod update.
func sameLabels(a, b map[string]string) bool {
	return (a == nil) == (b == nil) && maps.Equal(a, b)
}

// sameRef is reflect.DeepEqual for owner references.
func sameRef(a, b *metav1.OwnerReference) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.APIVersion == b.APIVersion && a.Kind == b.Kind && a.Name == b.Name && a.UID == b.UID &&
		sameBool(a.Controller, b.Controller) && sameBool(a.BlockOwnerDeletion, b.BlockOwnerDeletion)
}

func sameBool(a, b *bool) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
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
		c.ad.forget(key)
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
	manage := needsSync && rs.DeletionTimestamp == nil
	if sum, next, ok := c.fastSummary(rs, selector, manage); ok {
		c.fastSyncs.Add(1)
		if c.verifyTally {
			if err := c.verify(rs, selector, sum, next); err != nil {
				return err
			}
		}
		var manageErr error
		var diff int
		if manage {
			diff, manageErr = c.manageReplicas(ctx, rs, int(sum.replicas), nil)
		}
		updated, err := c.writeStatus(ctx, rs, sum, manageErr, diff)
		if err != nil {
			return err
		}
		if manageErr == nil && updated.Spec.MinReadySeconds == rs.Spec.MinReadySeconds && next.waiting {
			c.queue.AddAfter(key, next.next)
		}
		return manageErr
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
	if manage {
		diff, manageErr = c.manageReplicas(ctx, rs, len(pods), pods)
	}
	now := c.clock.Now()
	updated, err := c.writeStatus(ctx, rs, summarize(rs, pods, now), manageErr, diff)
	if err != nil {
		return err
	}
	if manageErr == nil && updated.Spec.MinReadySeconds > 0 {
		if wait, ok := nextAvailable(pods, updated.Spec.MinReadySeconds, now); ok {
			c.queue.AddAfter(key, wait)
		}
	}
	return manageErr
}

// podSummary is what a ReplicaSet's status counts of its pods.
type podSummary struct {
	replicas, fullyLabeled, ready, available int32
}

// fastSummary returns the summary of rs's pods from the tally, and when
// the next one becomes available under minReadySeconds, when the sync
// needs nothing else of them: no pod to release or orphan to adopt, and
// no pod to delete (victims are chosen from the pods themselves); manage
// says whether the sync may create or delete.
func (c *Controller) fastSummary(rs *appsv1.ReplicaSet, sel labels.Selector, manage bool) (podSummary, avail, bool) {
	if c.noTally {
		return podSummary{}, avail{}, false
	}
	n, av, adoptable := c.tally.summary(rs, sel, c.clock.Now())
	if rs.DeletionTimestamp == nil && (adoptable || n.mismatched > 0) {
		return podSummary{}, avail{}, false
	}
	if manage && int(n.replicas) > int(*rs.Spec.Replicas) {
		return podSummary{}, avail{}, false
	}
	return podSummary{replicas: n.replicas, fullyLabeled: n.fullyLabeled, ready: n.ready, available: av.n}, av, true
}

// verify checks a tally summary against a walk of the indexer's pods
// (the full path without its writes): tests run every sync this way.
func (c *Controller) verify(rs *appsv1.ReplicaSet, sel labels.Selector, got podSummary, next avail) error {
	owned, orphans, err := controller.PodsControlledOrOrphaned(c.podIndexer, rs.Namespace, rs.UID)
	if err != nil {
		return err
	}
	var pods []*v1.Pod
	for _, p := range controller.FilterActivePods(owned) {
		if sel.Matches(labels.Set(p.Labels)) {
			pods = append(pods, p)
		} else if rs.DeletionTimestamp == nil {
			return fmt.Errorf("pod tally of %s took the fast path with pod %s to release", rsKey(rs), p.Name)
		}
	}
	if rs.DeletionTimestamp == nil {
		for _, p := range controller.FilterActivePods(orphans) {
			if sel.Matches(labels.Set(p.Labels)) {
				return fmt.Errorf("pod tally of %s took the fast path with orphan %s to adopt", rsKey(rs), p.Name)
			}
		}
	}
	now := c.clock.Now()
	if want := summarize(rs, pods, now); got != want {
		return fmt.Errorf("pod tally of %s: %+v, the pods say %+v", rsKey(rs), got, want)
	}
	var want avail
	if rs.Spec.MinReadySeconds > 0 {
		want.next, want.waiting = nextAvailable(pods, rs.Spec.MinReadySeconds, now)
	}
	if next.waiting != want.waiting || next.next != want.next {
		return fmt.Errorf("pod tally of %s: next available in %v (%v), the pods say %v (%v)", rsKey(rs), next.next, next.waiting, want.next, want.waiting)
	}
	return nil
}

// writeStatus computes rs's status and writes it if it changed; it
// returns the ReplicaSet as last written (rs if nothing was).
func (c *Controller) writeStatus(ctx context.Context, rs *appsv1.ReplicaSet, sum podSummary, manageErr error, diff int) (*appsv1.ReplicaSet, error) {
	next := c.status(rs, sum, manageErr, diff, c.clock.Now())
	if reflect.DeepEqual(rs.Status, next) {
		return rs, nil
	}
	cp := rs.DeepCopy()
	cp.Status = next
	return c.ad.updateStatus(ctx, cp)
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

// manageReplicas creates or deletes pods so that have, the number of pods
// rs claims, moves towards spec.replicas. pods are those pods; only
// deletions (have above spec.replicas) need them. It returns the
// difference it acted on (negative: too few).
func (c *Controller) manageReplicas(ctx context.Context, rs *appsv1.ReplicaSet, have int, pods []*v1.Pod) (int, error) {
	key := rsKey(rs)
	want := int(*rs.Spec.Replicas)
	diff := have - want
	owner := c.ad.eventObject(rs)
	switch {
	case diff < 0:
		n := min(-diff, c.burst)
		c.expectations.ExpectCreations(key, n)
		cref := controller.NewControllerRef(rs, c.ad.kind())
		// The n pods are the same request: encoded once.
		create := controller.PodCreator(c.podControl, rs.Namespace, &rs.Spec.Template, owner, cref)
		ok, err := controller.SlowStartBatch(n, 1, func() error {
			err := create(ctx)
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

// summarize counts pods (the pods rs claims) as rs's status reports them.
func summarize(rs *appsv1.ReplicaSet, pods []*v1.Pod, now time.Time) podSummary {
	sum := podSummary{replicas: int32(len(pods))}
	// pods all match the selector; when the selector requires every
	// template label (a Deployment's ReplicaSets, most others), they are
	// all fully labeled and the per-pod check is skipped.
	allLabeled := selectorRequiresTemplate(rs)
	tpl := labels.Set(rs.Spec.Template.Labels).AsSelectorPreValidated()
	for _, p := range pods {
		if allLabeled || tpl.Matches(labels.Set(p.Labels)) {
			sum.fullyLabeled++
		}
		if controller.IsPodReady(p) {
			sum.ready++
			if controller.IsPodAvailable(p, rs.Spec.MinReadySeconds, now) {
				sum.available++
			}
		}
	}
	return sum
}

// status computes the status rs should report.
func (c *Controller) status(rs *appsv1.ReplicaSet, sum podSummary, manageErr error, diff int, now time.Time) appsv1.ReplicaSetStatus {
	st := *rs.Status.DeepCopy()
	st.Replicas, st.FullyLabeledReplicas, st.ReadyReplicas, st.AvailableReplicas = sum.replicas, sum.fullyLabeled, sum.ready, sum.available
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
