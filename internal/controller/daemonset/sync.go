package daemonset

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/cache"

	"skiff.dev/skiff/internal/controller"
	"skiff.dev/skiff/internal/controller/history"
)

// Sync converges the DaemonSet named by key.
func (c *Controller) Sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	shared, err := c.dsLister.DaemonSets(ns).Get(name)
	if apierrors.IsNotFound(err) {
		c.expectations.Delete(key)
		return nil
	}
	if err != nil {
		return fmt.Errorf("getting daemonset %s: %w", key, err)
	}
	ds := shared.DeepCopy()
	sel, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
	if err != nil || sel.Empty() {
		return nil
	}
	all, err := c.podLister.Pods(ns).List(labels.Everything())
	if err != nil {
		return fmt.Errorf("listing pods of daemonset %s: %w", key, err)
	}
	m := &controller.RefManager{Controller: ds, Kind: dsKind, Selector: sel,
		CanAdopt: controller.FreshCanAdopt(ds.UID, func(ctx context.Context) (metav1.Object, error) {
			return c.client.AppsV1().DaemonSets(ns).Get(ctx, name, metav1.GetOptions{})
		})}
	pods, err := m.ClaimPods(ctx, all, controller.RealPodControl{Client: c.client, Recorder: c.recorder})
	if err != nil {
		return fmt.Errorf("claiming pods of daemonset %s: %w", key, err)
	}
	nodes, err := c.nodeLister.List(labels.Everything())
	if err != nil {
		return fmt.Errorf("listing nodes: %w", err)
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Name < nodes[j].Name })

	revs, err := history.List(c.revLister, ns, sel, ds.UID)
	if err != nil {
		return err
	}
	data, err := history.TemplatePatch(&ds.Spec.Template)
	if err != nil {
		return err
	}
	collisions := int32(0)
	if ds.Status.CollisionCount != nil {
		collisions = *ds.Status.CollisionCount
	}
	cur, revs, err := history.Current(ctx, c.client, ds, dsKind, ds.Spec.Template.Labels, data, revs, &collisions)
	if err != nil {
		return fmt.Errorf("recording revision of daemonset %s: %w", key, err)
	}
	hash := history.HashOf(cur)

	byNode := map[string][]*v1.Pod{}
	for _, p := range pods {
		if n := targetNode(p); n != "" {
			byNode[n] = append(byNode[n], p)
		}
	}
	var syncErr error
	if ds.DeletionTimestamp == nil && c.expectations.Satisfied(key) {
		syncErr = c.manage(ctx, key, ds, nodes, byNode, hash)
	}
	live := map[string]bool{cur.Name: true}
	for _, p := range pods {
		live[ds.Name+"-"+p.Labels[appsv1.ControllerRevisionHashLabelKey]] = true
	}
	limit := int32(10)
	if ds.Spec.RevisionHistoryLimit != nil {
		limit = *ds.Spec.RevisionHistoryLimit
	}
	truncErr := history.Truncate(ctx, c.client, revs, live, limit)
	statusErr := c.updateStatus(ctx, ds, nodes, byNode, hash, collisions)
	return errors.Join(syncErr, truncErr, statusErr)
}

func isTerminal(p *v1.Pod) bool {
	return p.Status.Phase == v1.PodFailed || p.Status.Phase == v1.PodSucceeded
}

func (c *Controller) available(ds *appsv1.DaemonSet, p *v1.Pod) bool {
	return p.DeletionTimestamp == nil && controller.IsPodAvailable(p, ds.Spec.MinReadySeconds, c.clock.Now())
}

// manage computes the pods to create and delete on every node and applies
// them.
func (c *Controller) manage(ctx context.Context, key string, ds *appsv1.DaemonSet, nodes []*v1.Node, byNode map[string][]*v1.Pod, hash string) error {
	var create []string
	var del []*v1.Pod
	known := map[string]bool{}
	rolling := ds.Spec.UpdateStrategy.Type != appsv1.OnDeleteDaemonSetStrategyType
	maxSurge, maxUnavailable := c.rollingLimits(ds, nodes)
	for _, n := range nodes {
		known[n.Name] = true
		pl := placementOn(ds, n)
		var alive []*v1.Pod
		for _, p := range byNode[n.Name] {
			switch {
			case p.DeletionTimestamp != nil:
			case isTerminal(p):
				del = append(del, p) // replaced below on a later sync
			default:
				alive = append(alive, p)
			}
		}
		switch {
		case !pl.shouldContinue:
			del = append(del, alive...)
		case pl.shouldRun && len(alive) == 0 && !hasTerminating(byNode[n.Name]):
			create = append(create, n.Name)
		case len(alive) > 1:
			// Keep the oldest pod (or, mid-surge, one old and one new).
			sort.Slice(alive, func(i, j int) bool { return alive[i].CreationTimestamp.Before(&alive[j].CreationTimestamp) })
			if rolling && maxSurge > 0 && len(alive) == 2 && (alive[0].Labels[appsv1.ControllerRevisionHashLabelKey] == hash) != (alive[1].Labels[appsv1.ControllerRevisionHashLabelKey] == hash) {
				break
			}
			del = append(del, alive[1:]...)
		}
	}
	// Pods pinned to nodes that no longer exist.
	for node, ps := range byNode {
		if !known[node] {
			for _, p := range ps {
				if p.DeletionTimestamp == nil {
					del = append(del, p)
				}
			}
		}
	}
	if rolling && len(create) == 0 && len(del) == 0 {
		create, del = c.rollingUpdate(ds, nodes, byNode, hash, maxSurge, maxUnavailable)
	}
	return c.apply(ctx, key, ds, create, del, hash)
}

func hasTerminating(ps []*v1.Pod) bool {
	for _, p := range ps {
		if p.DeletionTimestamp != nil && !isTerminal(p) {
			return true
		}
	}
	return false
}

func (c *Controller) rollingLimits(ds *appsv1.DaemonSet, nodes []*v1.Node) (surge, unavailable int) {
	desired := 0
	for _, n := range nodes {
		if placementOn(ds, n).shouldRun {
			desired++
		}
	}
	unavailable = 1
	if ru := ds.Spec.UpdateStrategy.RollingUpdate; ru != nil {
		if ru.MaxSurge != nil {
			surge, _ = intstr.GetScaledValueFromIntOrPercent(ru.MaxSurge, desired, true)
		}
		if ru.MaxUnavailable != nil {
			unavailable, _ = intstr.GetScaledValueFromIntOrPercent(ru.MaxUnavailable, desired, true)
		}
	}
	if surge == 0 && unavailable == 0 {
		unavailable = 1
	}
	return surge, unavailable
}

// rollingUpdate picks the next old pods to replace. Without surge an old
// pod is deleted (its node then gets a new pod) while fewer than
// maxUnavailable nodes lack an available pod; with surge a new pod is
// started beside the old one on up to maxSurge nodes, and the old pod goes
// once the new one is available.
func (c *Controller) rollingUpdate(ds *appsv1.DaemonSet, nodes []*v1.Node, byNode map[string][]*v1.Pod, hash string, maxSurge, maxUnavailable int) ([]string, []*v1.Pod) {
	var create []string
	var del []*v1.Pod
	unavailable, surging := 0, 0
	type nodeState struct {
		name     string
		old, new *v1.Pod
	}
	var states []nodeState
	for _, n := range nodes {
		if !placementOn(ds, n).shouldRun {
			continue
		}
		st := nodeState{name: n.Name}
		for _, p := range byNode[n.Name] {
			if p.DeletionTimestamp != nil || isTerminal(p) {
				continue
			}
			if p.Labels[appsv1.ControllerRevisionHashLabelKey] == hash {
				st.new = p
			} else {
				st.old = p
			}
		}
		switch {
		case st.new != nil && st.old != nil:
			surging++
			if !c.available(ds, st.new) {
				unavailable++
			}
		case st.new != nil && !c.available(ds, st.new):
			unavailable++
		case st.old != nil && !c.available(ds, st.old):
			unavailable++
		case st.old == nil && st.new == nil:
			unavailable++
		}
		states = append(states, st)
	}
	for _, st := range states {
		switch {
		case st.old == nil:
		case st.new != nil:
			if c.available(ds, st.new) {
				del = append(del, st.old)
			}
		case !c.available(ds, st.old):
			// An unavailable old pod costs nothing to replace.
			del = append(del, st.old)
		case maxSurge > 0:
			if surging < maxSurge {
				surging++
				create = append(create, st.name)
			}
		default:
			if unavailable < maxUnavailable {
				unavailable++
				del = append(del, st.old)
			}
		}
	}
	return create, del
}

func (c *Controller) apply(ctx context.Context, key string, ds *appsv1.DaemonSet, create []string, del []*v1.Pod, hash string) error {
	if len(create) > c.burst {
		create = create[:c.burst]
	}
	if len(del) > c.burst {
		del = del[:c.burst]
	}
	var errs []error
	if len(del) > 0 {
		keys := make([]string, len(del))
		for i, p := range del {
			keys[i] = p.Namespace + "/" + p.Name
		}
		c.expectations.ExpectDeletions(key, keys)
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, p := range del {
			wg.Go(func() {
				err := c.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{})
				if err == nil {
					c.recorder.Eventf(ds, v1.EventTypeNormal, controller.SuccessfulDeletePodReason, "Deleted pod: %v", p.Name)
					return
				}
				c.expectations.DeletionObserved(key, p.Namespace+"/"+p.Name)
				if apierrors.IsNotFound(err) {
					return
				}
				c.recorder.Eventf(ds, v1.EventTypeWarning, controller.FailedDeletePodReason, "Error deleting: %v", err)
				mu.Lock()
				errs = append(errs, fmt.Errorf("deleting pod %s/%s: %w", p.Namespace, p.Name, err))
				mu.Unlock()
			})
		}
		wg.Wait()
		return errors.Join(errs...)
	}
	if len(create) == 0 {
		return nil
	}
	c.expectations.ExpectCreations(key, len(create))
	var next sync.Mutex
	i := 0
	ok, err := controller.SlowStartBatch(len(create), 1, func() error {
		next.Lock()
		node := create[i]
		i++
		next.Unlock()
		pod := newPod(ds, node, hash)
		created, err := c.client.CoreV1().Pods(ds.Namespace).Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			c.recorder.Eventf(ds, v1.EventTypeWarning, controller.FailedCreatePodReason, "Error creating: %v", err)
			return fmt.Errorf("creating pod of daemonset %s for node %s: %w", key, node, err)
		}
		c.recorder.Eventf(ds, v1.EventTypeNormal, controller.SuccessfulCreatePodReason, "Created pod: %v", created.Name)
		return nil
	})
	for j := ok; j < len(create); j++ {
		c.expectations.CreationObserved(key)
	}
	return err
}

// newPod builds ds's pod for node, left to the scheduler.
func newPod(ds *appsv1.DaemonSet, node, hash string) *v1.Pod {
	pod := controller.PodFromTemplate(&ds.Spec.Template, ds, controller.NewControllerRef(ds, dsKind))
	if pod.Labels == nil {
		pod.Labels = map[string]string{}
	}
	pod.Labels[appsv1.ControllerRevisionHashLabelKey] = hash
	pod.Labels["pod-template-generation"] = fmt.Sprint(ds.Generation) // deprecated, still set upstream
	addTolerations(&pod.Spec)
	pinToNode(&pod.Spec, node)
	return pod
}

func (c *Controller) updateStatus(ctx context.Context, ds *appsv1.DaemonSet, nodes []*v1.Node, byNode map[string][]*v1.Pod, hash string, collisions int32) error {
	st := appsv1.DaemonSetStatus{ObservedGeneration: ds.Generation, CollisionCount: &collisions, Conditions: ds.Status.Conditions}
	now := c.clock.Now()
	for _, n := range nodes {
		pl := placementOn(ds, n)
		var running []*v1.Pod
		for _, p := range byNode[n.Name] {
			if p.DeletionTimestamp == nil && !isTerminal(p) {
				running = append(running, p)
			}
		}
		if pl.shouldRun {
			st.DesiredNumberScheduled++
		}
		if len(running) == 0 {
			if pl.shouldRun {
				st.NumberUnavailable++
			}
			continue
		}
		if !pl.shouldRun {
			st.NumberMisscheduled++
			continue
		}
		st.CurrentNumberScheduled++
		sort.Slice(running, func(i, j int) bool { return running[i].CreationTimestamp.Before(&running[j].CreationTimestamp) })
		p := running[0]
		for _, q := range running {
			if q.Labels[appsv1.ControllerRevisionHashLabelKey] == hash {
				p = q
			}
		}
		if controller.IsPodReady(p) {
			st.NumberReady++
		}
		if controller.IsPodAvailable(p, ds.Spec.MinReadySeconds, now) {
			st.NumberAvailable++
		} else {
			st.NumberUnavailable++
			if d, ok := controller.UntilAvailable(p, ds.Spec.MinReadySeconds, now); ok {
				c.queue.AddAfter(ds.Namespace+"/"+ds.Name, d+10*time.Millisecond)
			}
		}
		if p.Labels[appsv1.ControllerRevisionHashLabelKey] == hash {
			st.UpdatedNumberScheduled++
		}
	}
	if equality.Semantic.DeepEqual(ds.Status, st) {
		return nil
	}
	d := ds.DeepCopy()
	d.Status = st
	dsClient := c.client.AppsV1().DaemonSets(d.Namespace)
	_, err := dsClient.UpdateStatus(ctx, d, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) {
		// The cache lags behind our last status write. Retry once on the
		// live object, as upstream does: a failed sync would go back to
		// the queue with exponential back-off, and once pod events stop
		// the status could then stay stale for minutes.
		fresh, gerr := dsClient.Get(ctx, d.Name, metav1.GetOptions{})
		if gerr != nil {
			return fmt.Errorf("getting daemonset %s/%s for its status: %w", d.Namespace, d.Name, gerr)
		}
		if fresh.UID != ds.UID || fresh.Generation != ds.Generation {
			return fmt.Errorf("updating status of daemonset %s/%s: %w", d.Namespace, d.Name, err)
		}
		st.Conditions = fresh.Status.Conditions
		fresh.Status = st
		_, err = dsClient.UpdateStatus(ctx, fresh, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("updating status of daemonset %s/%s: %w", d.Namespace, d.Name, err)
	}
	return nil
}
