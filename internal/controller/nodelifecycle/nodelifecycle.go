// Package nodelifecycle watches node heartbeats and evicts pods from nodes
// that are gone.
//
// Contract:
//   - A node whose Lease in kube-node-lease (or Ready heartbeat) has not been
//     seen to change for GracePeriod, measured on the injected clock from the
//     moment this controller observed the last change, gets every condition set
//     to Unknown (reason NodeStatusUnknown) and its pods' Ready condition set to
//     False. Remote timestamps are never compared with the local clock.
//   - Taints follow the Ready condition: Unknown -> node.kubernetes.io/unreachable,
//     False -> node.kubernetes.io/not-ready, each as NoExecute and NoSchedule;
//     plus the NoSchedule taints for unschedulable and pressure conditions. They
//     are removed when the condition clears.
//   - A pod on a node with NoExecute taints is deleted when its tolerations run
//     out: at once without a matching toleration, after tolerationSeconds
//     counted from the taint's timeAdded otherwise, never for tolerations
//     without tolerationSeconds. Deadlines wait in a timed queue driven by the
//     same clock.
package nodelifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	coordlisters "k8s.io/client-go/listers/coordination/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"

	"skiff.dev/skiff/internal/controller"
)

// Defaults as upstream's kube-controller-manager.
const (
	DefaultGracePeriod   = 50 * time.Second
	DefaultMonitorPeriod = 5 * time.Second
	LeaseNamespace       = corev1.NamespaceNodeLease

	reasonUnknown      = "NodeStatusUnknown"
	messageUnknown     = "Kubelet stopped posting node status."
	reasonNeverUpdated = "NodeStatusNeverUpdated"
	messageNever       = "Kubelet never posted node status."

	podNodeIndex = "skiff-nodelifecycle-node"
)

// monitoredConditions are the kubelet-posted conditions set to Unknown when
// the kubelet goes silent.
var monitoredConditions = []corev1.NodeConditionType{
	corev1.NodeReady, corev1.NodeMemoryPressure, corev1.NodeDiskPressure, corev1.NodePIDPressure,
}

// Config tunes the controller; zero values mean the defaults.
type Config struct {
	GracePeriod   time.Duration
	MonitorPeriod time.Duration
	Clock         clock.WithTicker
}

// Controller monitors node health, taints nodes and evicts pods.
type Controller struct {
	cfg         Config
	client      kubernetes.Interface
	nodeLister  corelisters.NodeLister
	leaseLister coordlisters.LeaseLister
	podLister   corelisters.PodLister
	podIndexer  cache.Indexer
	synced      []cache.InformerSynced
	nodeQueue   workqueue.TypedRateLimitingInterface[string]
	evictQueue  workqueue.TypedRateLimitingInterface[string]
	timed       *timedQueue
	wake        chan struct{}
	logger      *slog.Logger

	mu     sync.Mutex
	health map[string]*nodeHealth
}

// nodeHealth is what we last observed of a node's heartbeats, in local time.
type nodeHealth struct {
	probeTime  time.Time // local time of the last observed heartbeat change
	leaseRenew time.Time // lease spec.renewTime last observed
	heartbeat  time.Time // Ready condition lastHeartbeatTime last observed
}

// New returns a node lifecycle controller.
func New(cfg Config, client kubernetes.Interface, factory informers.SharedInformerFactory, logger *slog.Logger) (*Controller, error) {
	if cfg.GracePeriod == 0 {
		cfg.GracePeriod = DefaultGracePeriod
	}
	if cfg.MonitorPeriod == 0 {
		cfg.MonitorPeriod = DefaultMonitorPeriod
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if logger == nil {
		logger = slog.Default()
	}
	nodes := factory.Core().V1().Nodes()
	leases := factory.Coordination().V1().Leases()
	pods := factory.Core().V1().Pods()
	c := &Controller{
		cfg:         cfg,
		client:      client,
		nodeLister:  nodes.Lister(),
		leaseLister: leases.Lister(),
		podLister:   pods.Lister(),
		podIndexer:  pods.Informer().GetIndexer(),
		synced:      []cache.InformerSynced{nodes.Informer().HasSynced, leases.Informer().HasSynced, pods.Informer().HasSynced},
		nodeQueue:   controller.NewQueue("nodelifecycle-nodes"),
		evictQueue:  controller.NewQueue("nodelifecycle-evictions"),
		timed:       newTimedQueue(),
		wake:        make(chan struct{}, 1),
		logger:      logger.With("controller", "nodelifecycle"),
		health:      map[string]*nodeHealth{},
	}
	err := pods.Informer().AddIndexers(cache.Indexers{podNodeIndex: func(obj any) ([]string, error) {
		if p, ok := obj.(*corev1.Pod); ok && p.Spec.NodeName != "" {
			return []string{p.Spec.NodeName}, nil
		}
		return nil, nil
	}})
	if err != nil {
		return nil, fmt.Errorf("adding pod node index: %w", err)
	}
	if _, err := nodes.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { controller.Enqueue(c.nodeQueue, c.logger, obj); c.enqueuePodsOn(obj) },
		UpdateFunc: func(oldObj, newObj any) {
			controller.Enqueue(c.nodeQueue, c.logger, newObj)
			o, n := oldObj.(*corev1.Node), newObj.(*corev1.Node)
			if !equality.Semantic.DeepEqual(o.Spec.Taints, n.Spec.Taints) {
				c.enqueuePodsOn(n)
			}
		},
		DeleteFunc: func(obj any) { controller.Enqueue(c.nodeQueue, c.logger, obj) },
	}); err != nil {
		return nil, fmt.Errorf("adding node event handler: %w", err)
	}
	if _, err := leases.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.onLease,
		UpdateFunc: func(_, obj any) { c.onLease(obj) },
	}); err != nil {
		return nil, fmt.Errorf("adding lease event handler: %w", err)
	}
	// Only what syncPod reads of a pod (its node, tolerations, deletion)
	// can change its eviction: the status updates of every pod in the
	// cluster (most of its events) need not go through the queue.
	if _, err := pods.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if p, ok := obj.(*corev1.Pod); !ok || p.Spec.NodeName != "" {
				controller.Enqueue(c.evictQueue, c.logger, obj)
			}
		},
		UpdateFunc: func(oldObj, obj any) {
			if evictionInputsChanged(oldObj, obj) {
				controller.Enqueue(c.evictQueue, c.logger, obj)
			}
		},
		DeleteFunc: func(obj any) { controller.Enqueue(c.evictQueue, c.logger, obj) },
	}); err != nil {
		return nil, fmt.Errorf("adding pod event handler: %w", err)
	}
	return c, nil
}

// evictionInputsChanged reports whether an update may change what syncPod
// decides for the pod. A pod without a node needs no sync on add: it can
// have no eviction scheduled (one of an earlier pod of the same name was
// cancelled by that pod's delete event).
func evictionInputsChanged(oldObj, obj any) bool {
	o, ok1 := oldObj.(*corev1.Pod)
	n, ok2 := obj.(*corev1.Pod)
	if !ok1 || !ok2 {
		return true
	}
	return o.UID != n.UID || o.Spec.NodeName != n.Spec.NodeName ||
		(o.DeletionTimestamp == nil) != (n.DeletionTimestamp == nil) ||
		!sameTolerations(o.Spec.Tolerations, n.Spec.Tolerations)
}

func sameTolerations(a, b []corev1.Toleration) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := &a[i], &b[i]
		if x.Key != y.Key || x.Operator != y.Operator || x.Value != y.Value || x.Effect != y.Effect ||
			(x.TolerationSeconds == nil) != (y.TolerationSeconds == nil) ||
			x.TolerationSeconds != nil && *x.TolerationSeconds != *y.TolerationSeconds {
			return false
		}
	}
	return true
}

func (c *Controller) onLease(obj any) {
	if l, ok := obj.(*coordinationv1.Lease); ok && l.Namespace == LeaseNamespace {
		c.nodeQueue.Add(l.Name)
	}
}

func (c *Controller) enqueuePodsOn(obj any) {
	node, ok := obj.(*corev1.Node)
	if !ok {
		return
	}
	for _, p := range c.podsOn(node.Name) {
		c.evictQueue.Add(p.Namespace + "/" + p.Name)
	}
}

func (c *Controller) podsOn(node string) []*corev1.Pod {
	objs, err := c.podIndexer.ByIndex(podNodeIndex, node)
	if err != nil {
		utilruntime.HandleError(err)
		return nil
	}
	out := make([]*corev1.Pod, 0, len(objs))
	for _, o := range objs {
		out = append(out, o.(*corev1.Pod))
	}
	return out
}

// Run monitors nodes and evicts pods until ctx is done.
func (c *Controller) Run(ctx context.Context, workers int) error {
	defer utilruntime.HandleCrash()
	if !controller.WaitForSync(ctx, c.synced...) {
		return errors.New("waiting for node, lease and pod caches to sync")
	}
	var wg sync.WaitGroup
	wg.Go(func() { c.monitor(ctx) })
	wg.Go(func() { c.runTimer(ctx) })
	wg.Go(func() { controller.RunWorkers(ctx, c.logger, c.evictQueue, workers, c.syncPod) })
	controller.RunWorkers(ctx, c.logger, c.nodeQueue, workers, c.syncNode)
	wg.Wait()
	return nil
}

// monitor re-checks every node each MonitorPeriod: staleness comes from time
// passing, which no informer event reports.
func (c *Controller) monitor(ctx context.Context) {
	t := c.cfg.Clock.NewTicker(c.cfg.MonitorPeriod)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
		nodes, err := c.nodeLister.List(labels.Everything())
		if err != nil {
			utilruntime.HandleError(err)
			continue
		}
		for _, n := range nodes {
			c.nodeQueue.Add(n.Name)
		}
	}
}

// runTimer moves due evictions into the eviction queue.
func (c *Controller) runTimer(ctx context.Context) {
	for {
		c.fireDue()
		wait := time.Second
		if next, ok := c.timed.Next(); ok {
			wait = min(wait, max(next.Sub(c.cfg.Clock.Now()), time.Millisecond))
		}
		t := c.cfg.Clock.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		case <-c.wake:
			t.Stop()
		}
	}
}

func (c *Controller) fireDue() {
	for _, k := range c.timed.PopDue(c.cfg.Clock.Now()) {
		c.evictQueue.Add(k)
	}
}

// observe records heartbeats and reports whether the node is past its grace period.
func (c *Controller) observe(node *corev1.Node, lease *coordinationv1.Lease) bool {
	now := c.cfg.Clock.Now()
	var renew, hb time.Time
	if lease != nil && lease.Spec.RenewTime != nil {
		renew = lease.Spec.RenewTime.Time
	}
	if rc := condition(node, corev1.NodeReady); rc != nil {
		hb = rc.LastHeartbeatTime.Time
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	h := c.health[node.Name]
	if h == nil {
		// First sight (or a restart): give the node a full grace period.
		h = &nodeHealth{probeTime: now, leaseRenew: renew, heartbeat: hb}
		c.health[node.Name] = h
	}
	if !renew.Equal(h.leaseRenew) || !hb.Equal(h.heartbeat) {
		h.probeTime, h.leaseRenew, h.heartbeat = now, renew, hb
	}
	return now.Sub(h.probeTime) > c.cfg.GracePeriod
}

// syncNode converges one node's conditions and taints and marks its pods not
// ready when it is unreachable.
func (c *Controller) syncNode(ctx context.Context, name string) error {
	node, err := c.nodeLister.Get(name)
	if apierrors.IsNotFound(err) {
		c.mu.Lock()
		delete(c.health, name)
		c.mu.Unlock()
		return nil
	}
	if err != nil {
		return fmt.Errorf("getting node %s: %w", name, err)
	}
	lease, err := c.leaseLister.Leases(LeaseNamespace).Get(name)
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("getting lease for node %s: %w", name, err)
	}
	if apierrors.IsNotFound(err) {
		lease = nil
	}
	stale := c.observe(node, lease)
	now := metav1.NewTime(c.cfg.Clock.Now())

	if stale {
		updated := node.DeepCopy()
		if markUnknown(updated, now) {
			node, err = c.client.CoreV1().Nodes().UpdateStatus(ctx, updated, metav1.UpdateOptions{})
			if err != nil {
				return fmt.Errorf("marking node %s status unknown: %w", name, err)
			}
			c.logger.Info("node stopped posting status", "node", name)
		}
	}
	if rc := condition(node, corev1.NodeReady); stale && (rc == nil || rc.Status == corev1.ConditionUnknown) {
		if err := c.markPodsNotReady(ctx, name, now); err != nil {
			return err
		}
	}

	taints, changed := reconcileTaints(node.Spec.Taints, desiredTaints(node), now.Time)
	if changed {
		updated := node.DeepCopy()
		updated.Spec.Taints = taints
		if _, err := c.client.CoreV1().Nodes().Update(ctx, updated, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("updating taints of node %s: %w", name, err)
		}
	}
	return nil
}

// markUnknown sets the kubelet-posted conditions to Unknown; it reports
// whether anything changed.
func markUnknown(node *corev1.Node, now metav1.Time) bool {
	changed := false
	for _, t := range monitoredConditions {
		cond := condition(node, t)
		if cond == nil {
			node.Status.Conditions = append(node.Status.Conditions, corev1.NodeCondition{
				Type: t, Status: corev1.ConditionUnknown, Reason: reasonNeverUpdated, Message: messageNever,
				LastHeartbeatTime: node.CreationTimestamp, LastTransitionTime: now,
			})
			changed = true
			continue
		}
		if cond.Status != corev1.ConditionUnknown {
			cond.Status = corev1.ConditionUnknown
			cond.Reason = reasonUnknown
			cond.Message = messageUnknown
			cond.LastTransitionTime = now
			changed = true
		}
	}
	return changed
}

// markPodsNotReady flips the Ready condition of the node's pods to False, as
// the kubelet that would do so is unreachable.
func (c *Controller) markPodsNotReady(ctx context.Context, node string, now metav1.Time) error {
	var errs []error
	for _, p := range c.podsOn(node) {
		if p.DeletionTimestamp != nil {
			continue
		}
		i := slices.IndexFunc(p.Status.Conditions, func(c corev1.PodCondition) bool { return c.Type == corev1.PodReady })
		if i < 0 || p.Status.Conditions[i].Status == corev1.ConditionFalse {
			continue
		}
		u := p.DeepCopy()
		u.Status.Conditions[i].Status = corev1.ConditionFalse
		u.Status.Conditions[i].LastTransitionTime = now
		if _, err := c.client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, u, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("marking pod %s/%s not ready: %w", p.Namespace, p.Name, err))
		}
	}
	return errors.Join(errs...)
}

// syncPod deletes the pod if its node's NoExecute taints are no longer
// tolerated, or schedules a re-check for when they stop being.
func (c *Controller) syncPod(ctx context.Context, key string) error {
	namespace, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return fmt.Errorf("splitting key %q: %w", key, err)
	}
	pod, err := c.podLister.Pods(namespace).Get(name)
	if apierrors.IsNotFound(err) {
		c.timed.Cancel(key)
		return nil
	}
	if err != nil {
		return fmt.Errorf("getting pod %s: %w", key, err)
	}
	if pod.Spec.NodeName == "" || pod.DeletionTimestamp != nil {
		c.timed.Cancel(key)
		return nil
	}
	node, err := c.nodeLister.Get(pod.Spec.NodeName)
	if apierrors.IsNotFound(err) {
		c.timed.Cancel(key)
		return nil
	}
	if err != nil {
		return fmt.Errorf("getting node %s: %w", pod.Spec.NodeName, err)
	}
	now := c.cfg.Clock.Now()
	deadline, evict := evictionDeadline(pod.Spec.Tolerations, node.Spec.Taints, now)
	if !evict {
		c.timed.Cancel(key)
		return nil
	}
	if deadline.After(now) {
		c.timed.Schedule(key, deadline)
		select {
		case c.wake <- struct{}{}:
		default:
		}
		return nil
	}
	c.timed.Cancel(key)
	uid := pod.UID
	err = c.client.CoreV1().Pods(namespace).Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("evicting pod %s: %w", key, err)
	}
	c.logger.Info("evicted pod from tainted node", "pod", key, "node", node.Name)
	return nil
}
