// Package disruption maintains the status of PodDisruptionBudgets, which the
// eviction subresource reads to decide whether a pod may be evicted.
//
// For every budget the controller computes, from its listers:
//   - expectedPods: the number of pods the budget's pods' controllers want
//     (the sum of the scales of the distinct controllers: a ReplicaSet owned
//     by a Deployment counts as the Deployment, StatefulSets and
//     ReplicationControllers by themselves), or simply the number of matching
//     pods when minAvailable is an integer;
//   - desiredHealthy: minAvailable (an integer, or a percentage of
//     expectedPods rounded up), or expectedPods - maxUnavailable (a
//     percentage rounded up);
//   - currentHealthy: matching pods that are Ready and not being deleted,
//     minus pods recorded in disruptedPods (evicted but not yet gone);
//   - disruptionsAllowed = max(0, currentHealthy - desiredHealthy), the
//     DisruptionAllowed condition and observedGeneration.
//
// disruptedPods entries are dropped once the pod is gone, being deleted, or
// the entry is older than DeletionTimeout (the eviction never happened);
// the budget is rechecked when the oldest entry expires. When the expected
// count cannot be computed (a pod without a known controller, with a
// policy that needs scale) the budget reports SyncFailed and allows no
// disruption, as upstream.
//
// Contract: sync(namespace/name) is level-triggered and writes the status
// subresource only when it changes.
package disruption

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	policylisters "k8s.io/client-go/listers/policy/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"

	"skiff.dev/skiff/internal/controller"
)

// DeletionTimeout is how long an eviction recorded in disruptedPods is
// trusted before the pod is counted again (upstream's value).
const DeletionTimeout = 2 * time.Minute

// Condition reasons, as upstream's policy/v1 constants.
const (
	reasonSufficient   = policyv1.SufficientPodsReason
	reasonInsufficient = policyv1.InsufficientPodsReason
	reasonSyncFailed   = policyv1.SyncFailedReason
)

// Config tunes the controller.
type Config struct {
	// Clock drives disruptedPods expiry and the recheck queue.
	Clock clock.WithTicker
}

// Controller keeps PodDisruptionBudget status up to date.
type Controller struct {
	client kubernetes.Interface
	clock  clock.Clock
	logger *slog.Logger

	pdbs policylisters.PodDisruptionBudgetLister
	// pdbStore is the budget informer's store, for the pod handlers:
	// one namespace index look-up, no allocation, when no budget is in
	// the pod's namespace (the common case, for every pod event).
	pdbStore cache.Indexer
	pods     corelisters.PodLister
	rss      appslisters.ReplicaSetLister
	deps     appslisters.DeploymentLister
	sets     appslisters.StatefulSetLister
	rcs      corelisters.ReplicationControllerLister
	synced   []cache.InformerSynced
	queue    workqueue.TypedRateLimitingInterface[string]
}

// New returns the controller, adding handlers to the factory's informers.
func New(cfg Config, client kubernetes.Interface, f informers.SharedInformerFactory, logger *slog.Logger) (*Controller, error) {
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if logger == nil {
		logger = slog.Default()
	}
	pdbInf := f.Policy().V1().PodDisruptionBudgets()
	podInf := f.Core().V1().Pods()
	rsInf := f.Apps().V1().ReplicaSets()
	depInf := f.Apps().V1().Deployments()
	setInf := f.Apps().V1().StatefulSets()
	rcInf := f.Core().V1().ReplicationControllers()
	c := &Controller{
		client: client, clock: cfg.Clock, logger: logger.With("controller", "disruption"),
		pdbs: pdbInf.Lister(), pdbStore: pdbInf.Informer().GetIndexer(), pods: podInf.Lister(), rss: rsInf.Lister(), deps: depInf.Lister(),
		sets: setInf.Lister(), rcs: rcInf.Lister(),
		synced: []cache.InformerSynced{pdbInf.Informer().HasSynced, podInf.Informer().HasSynced, rsInf.Informer().HasSynced,
			depInf.Informer().HasSynced, setInf.Informer().HasSynced, rcInf.Informer().HasSynced},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "disruption", Clock: cfg.Clock}),
	}
	if _, err := pdbInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { controller.Enqueue(c.queue, c.logger, o) },
		UpdateFunc: func(_, o any) { controller.Enqueue(c.queue, c.logger, o) },
		DeleteFunc: func(o any) { controller.Enqueue(c.queue, c.logger, o) },
	}); err != nil {
		return nil, fmt.Errorf("adding pdb event handler: %w", err)
	}
	if _, err := podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: c.onPod,
		UpdateFunc: func(o, n any) {
			c.onPod(n)
			if !labels.Equals(o.(*corev1.Pod).Labels, n.(*corev1.Pod).Labels) {
				c.onPod(o)
			}
		},
		DeleteFunc: c.onPod,
	}); err != nil {
		return nil, fmt.Errorf("adding pod event handler: %w", err)
	}
	// A controller's scale changes expectedPods of the budgets around it.
	scaleHandler := cache.ResourceEventHandlerFuncs{
		AddFunc:    c.onScaler,
		UpdateFunc: func(_, n any) { c.onScaler(n) },
		DeleteFunc: c.onScaler,
	}
	for _, inf := range []cache.SharedIndexInformer{rsInf.Informer(), depInf.Informer(), setInf.Informer(), rcInf.Informer()} {
		if _, err := inf.AddEventHandler(scaleHandler); err != nil {
			return nil, fmt.Errorf("adding controller event handler: %w", err)
		}
	}
	return c, nil
}

// Run syncs budgets until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) error {
	if !controller.WaitForSync(ctx, c.synced...) {
		return fmt.Errorf("waiting for disruption informers: %w", ctx.Err())
	}
	controller.RunWorkers(ctx, c.logger, c.queue, workers, c.Sync)
	return nil
}

func (c *Controller) onPod(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	c.budgetsFor(pod, func(pdb *policyv1.PodDisruptionBudget) { c.queue.Add(pdb.Namespace + "/" + pdb.Name) })
}

func (c *Controller) onScaler(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return
	}
	list, err := c.pdbs.PodDisruptionBudgets(m.GetNamespace()).List(labels.Everything())
	if err != nil {
		return
	}
	for _, pdb := range list {
		c.queue.Add(pdb.Namespace + "/" + pdb.Name)
	}
}

// budgetsFor calls fn with each budget of pod's namespace whose selector
// matches pod.
func (c *Controller) budgetsFor(pod *corev1.Pod, fn func(*policyv1.PodDisruptionBudget)) {
	objs, err := c.pdbStore.ByIndex(cache.NamespaceIndex, pod.Namespace)
	if err != nil {
		// A store without the namespace index: all of it, as the
		// listers do then.
		objs = c.pdbStore.List()
	}
	for _, o := range objs {
		pdb, ok := o.(*policyv1.PodDisruptionBudget)
		if !ok || pdb.Namespace != pod.Namespace {
			continue
		}
		sel, err := selectorOf(pdb)
		if err != nil || !sel.Matches(labels.Set(pod.Labels)) {
			continue
		}
		fn(pdb)
	}
}

// selectorOf follows policy/v1: a nil selector matches nothing, an empty
// one every pod in the namespace.
func selectorOf(pdb *policyv1.PodDisruptionBudget) (labels.Selector, error) {
	if pdb.Spec.Selector == nil {
		return labels.Nothing(), nil
	}
	return metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
}

// Sync recomputes the status of one budget.
func (c *Controller) Sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return fmt.Errorf("parsing key %q: %w", key, err)
	}
	pdb, err := c.pdbs.PodDisruptionBudgets(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("getting pdb %s: %w", key, err)
	}
	now := c.clock.Now()
	pods, err := c.matchingPods(pdb)
	if err != nil {
		return c.writeFailure(ctx, pdb, err)
	}
	expected, desired, err := c.expectedAndDesired(pdb, pods)
	if err != nil {
		c.logger.Info("cannot compute expected pods", "pdb", key, "err", err)
		return c.writeFailure(ctx, pdb, err)
	}
	disrupted, recheck := cleanDisrupted(pdb.Status.DisruptedPods, pods, now)
	healthy := countHealthy(pods, disrupted, now)
	st := computeStatus(pdb, expected, desired, healthy, disrupted, now)
	if err := c.writeStatus(ctx, pdb, st); err != nil {
		return err
	}
	if recheck != nil {
		c.queue.AddAfter(key, recheck.Sub(now))
	}
	return nil
}

func (c *Controller) matchingPods(pdb *policyv1.PodDisruptionBudget) ([]*corev1.Pod, error) {
	sel, err := selectorOf(pdb)
	if err != nil {
		return nil, fmt.Errorf("parsing selector: %w", err)
	}
	return c.pods.Pods(pdb.Namespace).List(sel)
}

// expectedAndDesired returns expectedPods and desiredHealthy.
func (c *Controller) expectedAndDesired(pdb *policyv1.PodDisruptionBudget, pods []*corev1.Pod) (int32, int32, error) {
	spec := pdb.Spec
	switch {
	case spec.MaxUnavailable != nil:
		expected, err := c.expectedScale(pods)
		if err != nil {
			return 0, 0, err
		}
		maxU, err := intstr.GetScaledValueFromIntOrPercent(spec.MaxUnavailable, int(expected), true)
		if err != nil {
			return 0, 0, fmt.Errorf("parsing maxUnavailable: %w", err)
		}
		return expected, max(0, expected-int32(maxU)), nil
	case spec.MinAvailable != nil && spec.MinAvailable.Type == intstr.Int:
		return int32(len(pods)), spec.MinAvailable.IntVal, nil
	case spec.MinAvailable != nil:
		expected, err := c.expectedScale(pods)
		if err != nil {
			return 0, 0, err
		}
		minA, err := intstr.GetScaledValueFromIntOrPercent(spec.MinAvailable, int(expected), true)
		if err != nil {
			return 0, 0, fmt.Errorf("parsing minAvailable: %w", err)
		}
		return expected, int32(minA), nil
	}
	// Neither is set: upstream defaults minAvailable to 1.
	return int32(len(pods)), 1, nil
}

// expectedScale sums the scale of the distinct controllers of pods.
func (c *Controller) expectedScale(pods []*corev1.Pod) (int32, error) {
	seen := map[types.UID]bool{}
	var total int32
	for _, pod := range pods {
		ref := metav1.GetControllerOf(pod)
		if ref == nil {
			return 0, fmt.Errorf("found no controller ref for pod %q", pod.Name)
		}
		uid, scale, err := c.scaleOf(pod.Namespace, ref)
		if err != nil {
			return 0, err
		}
		if seen[uid] {
			continue
		}
		seen[uid] = true
		total += scale
	}
	return total, nil
}

// scaleOf resolves a pod's controller to the object whose scale counts and
// returns its UID and desired replicas.
func (c *Controller) scaleOf(ns string, ref *metav1.OwnerReference) (types.UID, int32, error) {
	notFound := func(err error) error {
		return fmt.Errorf("getting %s %s/%s: %w", ref.Kind, ns, ref.Name, err)
	}
	switch ref.Kind {
	case "ReplicaSet":
		rs, err := c.rss.ReplicaSets(ns).Get(ref.Name)
		if err != nil || rs.UID != ref.UID {
			return "", 0, notFound(orMismatch(err))
		}
		if dref := metav1.GetControllerOf(rs); dref != nil && dref.Kind == "Deployment" {
			d, err := c.deps.Deployments(ns).Get(dref.Name)
			if err == nil && d.UID == dref.UID {
				return d.UID, replicas(d.Spec.Replicas), nil
			}
		}
		return rs.UID, replicas(rs.Spec.Replicas), nil
	case "StatefulSet":
		s, err := c.sets.StatefulSets(ns).Get(ref.Name)
		if err != nil || s.UID != ref.UID {
			return "", 0, notFound(orMismatch(err))
		}
		return s.UID, replicas(s.Spec.Replicas), nil
	case "ReplicationController":
		rc, err := c.rcs.ReplicationControllers(ns).Get(ref.Name)
		if err != nil || rc.UID != ref.UID {
			return "", 0, notFound(orMismatch(err))
		}
		return rc.UID, replicas(rc.Spec.Replicas), nil
	case "Deployment":
		d, err := c.deps.Deployments(ns).Get(ref.Name)
		if err != nil || d.UID != ref.UID {
			return "", 0, notFound(orMismatch(err))
		}
		return d.UID, replicas(d.Spec.Replicas), nil
	}
	return "", 0, fmt.Errorf("pod controller %s %s/%s has no known scale", ref.Kind, ns, ref.Name)
}

func orMismatch(err error) error {
	if err != nil {
		return err
	}
	return fmt.Errorf("uid mismatch")
}

func replicas(r *int32) int32 {
	if r == nil {
		return 1
	}
	return *r
}

// cleanDisrupted drops entries for pods that are gone, being deleted, or
// whose eviction is older than DeletionTimeout, and returns the earliest
// time a remaining entry expires.
func cleanDisrupted(in map[string]metav1.Time, pods []*corev1.Pod, now time.Time) (map[string]metav1.Time, *time.Time) {
	if len(in) == 0 {
		return nil, nil
	}
	byName := map[string]*corev1.Pod{}
	for _, p := range pods {
		byName[p.Name] = p
	}
	out := map[string]metav1.Time{}
	var recheck *time.Time
	for name, t := range in {
		p := byName[name]
		if p == nil || p.DeletionTimestamp != nil {
			continue
		}
		expiry := t.Add(DeletionTimeout)
		if !expiry.After(now) {
			continue
		}
		out[name] = t
		if recheck == nil || expiry.Before(*recheck) {
			e := expiry
			recheck = &e
		}
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, recheck
}

func countHealthy(pods []*corev1.Pod, disrupted map[string]metav1.Time, now time.Time) int32 {
	var n int32
	for _, p := range pods {
		if p.DeletionTimestamp != nil {
			continue
		}
		if _, ok := disrupted[p.Name]; ok {
			continue
		}
		if IsPodReady(p) {
			n++
		}
	}
	return n
}

// IsPodReady reports whether the pod's Ready condition is True.
func IsPodReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func computeStatus(pdb *policyv1.PodDisruptionBudget, expected, desired, healthy int32, disrupted map[string]metav1.Time, now time.Time) policyv1.PodDisruptionBudgetStatus {
	allowed := max(0, healthy-desired)
	if expected <= 0 {
		allowed = 0
	}
	st := policyv1.PodDisruptionBudgetStatus{
		ObservedGeneration: pdb.Generation,
		DisruptedPods:      disrupted,
		DisruptionsAllowed: allowed,
		CurrentHealthy:     healthy,
		DesiredHealthy:     desired,
		ExpectedPods:       expected,
		Conditions:         pdb.Status.Conditions,
	}
	cond := metav1.Condition{Type: policyv1.DisruptionAllowedCondition, Status: metav1.ConditionTrue, Reason: reasonSufficient}
	if allowed <= 0 {
		cond.Status, cond.Reason = metav1.ConditionFalse, reasonInsufficient
	}
	st.Conditions = setCondition(st.Conditions, cond, pdb.Generation, now)
	return st
}

func setCondition(in []metav1.Condition, c metav1.Condition, gen int64, now time.Time) []metav1.Condition {
	out := make([]metav1.Condition, 0, len(in)+1)
	c.ObservedGeneration = gen
	c.LastTransitionTime = metav1.NewTime(now.Truncate(time.Second))
	found := false
	for _, e := range in {
		if e.Type != c.Type {
			out = append(out, e)
			continue
		}
		found = true
		if e.Status == c.Status {
			c.LastTransitionTime = e.LastTransitionTime
		}
		out = append(out, c)
	}
	if !found {
		out = append(out, c)
	}
	return out
}

func (c *Controller) writeFailure(ctx context.Context, pdb *policyv1.PodDisruptionBudget, cause error) error {
	now := c.clock.Now()
	st := pdb.Status.DeepCopy()
	st.DisruptionsAllowed = 0
	st.ObservedGeneration = pdb.Generation
	st.Conditions = setCondition(st.Conditions, metav1.Condition{
		Type: policyv1.DisruptionAllowedCondition, Status: metav1.ConditionFalse, Reason: reasonSyncFailed, Message: cause.Error(),
	}, pdb.Generation, now)
	if err := c.writeStatus(ctx, pdb, *st); err != nil {
		return err
	}
	// Recheck later: the missing controller may appear.
	c.queue.AddAfter(pdb.Namespace+"/"+pdb.Name, 30*time.Second)
	return nil
}

func (c *Controller) writeStatus(ctx context.Context, pdb *policyv1.PodDisruptionBudget, st policyv1.PodDisruptionBudgetStatus) error {
	if apiequality.Semantic.DeepEqual(pdb.Status, st) {
		return nil
	}
	n := pdb.DeepCopy()
	n.Status = st
	if _, err := c.client.PolicyV1().PodDisruptionBudgets(n.Namespace).UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("updating status of pdb %s/%s: %w", n.Namespace, n.Name, err)
	}
	return nil
}
