// Package garbagecollector deletes objects whose owners are gone, following
// metadata.ownerReferences across every resource the API server serves.
//
// How it works:
//   - Discovery lists every resource that supports list, watch and delete
//     (events excepted); each gets a metadata-only informer ("monitor"),
//     or the caller's shared typed informer when Config.Shared has one
//     (the controller manager's pods, nodes, leases, replicasets).
//     Discovery is repeated every ResyncPeriod to pick up new resources.
//     Updates that change no owner, deletion, finalizer or identity never
//     reach the graph.
//   - Monitor events feed one goroutine that maintains the owner -> dependents
//     graph keyed by UID (graph.go, no I/O). Owners only known from a
//     reference become "virtual" nodes that a worker verifies with a GET.
//   - attemptToDelete workers decide per object, always from a live GET:
//     all owners absent (or UID mismatch) -> delete it with a UID
//     precondition; some owners alive -> patch away only the dangling
//     references; an owner deleting in the foreground -> delete it (in the
//     foreground if it has dependents itself). An owner with the
//     foregroundDeletion finalizer loses it once no dependent with
//     blockOwnerDeletion=true remains.
//   - attemptToOrphan workers handle owners with the orphan finalizer: remove
//     their reference from every dependent, then remove the finalizer.
package garbagecollector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
)

// DefaultResyncPeriod is how often resources are re-discovered.
const DefaultResyncPeriod = 30 * time.Second

// ignoredResources are never garbage collected, as upstream.
var ignoredResources = sets.New(
	schema.GroupResource{Resource: "events"},
	schema.GroupResource{Group: "events.k8s.io", Resource: "events"},
)

// Config tunes the collector; zero values mean defaults.
type Config struct {
	ResyncPeriod time.Duration
	Clock        clock.WithTicker
	// Shared are running informers of typed objects the collector watches
	// through instead of a metadata informer of its own (the controller
	// manager's pod informer: one pod watch less, whose events the API
	// server encodes and the client decodes once per pod change). The
	// caller starts and stops them.
	Shared map[schema.GroupVersionResource]cache.SharedIndexInformer
}

type mapping struct {
	gvr        schema.GroupVersionResource
	namespaced bool
}

type monitor struct {
	informer cache.SharedIndexInformer
	stop     chan struct{} // nil: a shared informer, not ours to stop
	reg      cache.ResourceEventHandlerRegistration
}

func (m *monitor) close() {
	if m.stop != nil {
		close(m.stop)
		return
	}
	_ = m.informer.RemoveEventHandler(m.reg)
}

// Controller is the garbage collector.
type Controller struct {
	cfg       Config
	metadata  metadata.Interface
	discovery discovery.DiscoveryInterface
	logger    *slog.Logger

	graph    *graph
	events   workqueue.TypedInterface[*event]
	toDelete workqueue.TypedRateLimitingInterface[*node]
	toOrphan workqueue.TypedRateLimitingInterface[*node]
	absent   *absentCache

	mu       sync.RWMutex
	mappings map[schema.GroupVersionKind]mapping
	monitors map[schema.GroupVersionResource]*monitor
}

// New returns a garbage collector reading through metadataClient and finding
// resources with disco.
func New(cfg Config, metadataClient metadata.Interface, disco discovery.DiscoveryInterface, logger *slog.Logger) (*Controller, error) {
	if cfg.ResyncPeriod == 0 {
		cfg.ResyncPeriod = DefaultResyncPeriod
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if logger == nil {
		logger = slog.Default()
	}
	if metadataClient == nil || disco == nil {
		return nil, errors.New("garbage collector needs a metadata and a discovery client")
	}
	c := &Controller{
		cfg:       cfg,
		metadata:  metadataClient,
		discovery: disco,
		logger:    logger.With("controller", "garbagecollector"),
		events:    workqueue.NewTyped[*event](),
		toDelete: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[*node](),
			workqueue.TypedRateLimitingQueueConfig[*node]{Name: "garbage_collector_attempt_to_delete"}),
		toOrphan: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[*node](),
			workqueue.TypedRateLimitingQueueConfig[*node]{Name: "garbage_collector_attempt_to_orphan"}),
		absent:   newAbsentCache(4096),
		mappings: map[schema.GroupVersionKind]mapping{},
		monitors: map[schema.GroupVersionResource]*monitor{},
	}
	c.graph = newGraph(
		func(n *node) { c.toDelete.Add(n) },
		func(n *node) { c.toOrphan.Add(n) },
		c.absent.add,
	)
	return c, nil
}

// Run discovers resources, starts monitors and workers, and re-discovers
// every ResyncPeriod until ctx is done.
func (c *Controller) Run(ctx context.Context, workers int) error {
	defer utilruntime.HandleCrash()
	defer c.toDelete.ShutDown()
	defer c.toOrphan.ShutDown()
	defer c.events.ShutDown()
	defer c.stopMonitors()
	if workers < 1 {
		workers = 1
	}
	if err := c.resync(); err != nil {
		c.logger.Warn("initial discovery incomplete", "err", err)
	}
	// Act only once the graph has seen the existing objects, or after a
	// bounded wait so that one broken resource cannot stall collection.
	syncCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	if !cache.WaitForCacheSync(syncCtx.Done(), c.monitorsSynced()...) {
		c.logger.Warn("not all monitors synced, starting anyway")
	}
	cancel()

	var wg sync.WaitGroup
	wg.Go(func() {
		for c.processGraphChange() {
		}
	})
	for range workers {
		wg.Go(func() {
			for c.processAttemptToDelete(ctx) {
			}
		})
		wg.Go(func() {
			for c.processAttemptToOrphan(ctx) {
			}
		})
	}
	t := c.cfg.Clock.NewTicker(c.cfg.ResyncPeriod)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			c.toDelete.ShutDown()
			c.toOrphan.ShutDown()
			c.events.ShutDown()
			wg.Wait()
			return nil
		case <-t.C():
			if err := c.resync(); err != nil {
				c.logger.Warn("re-discovery incomplete", "err", err)
			}
		}
	}
}

// resync refreshes the kind -> resource mappings and starts or stops
// monitors to match what the server serves.
func (c *Controller) resync() error {
	var errs []error
	_, all, err := c.discovery.ServerGroupsAndResources()
	if err != nil && !discovery.IsGroupDiscoveryFailedError(err) {
		return fmt.Errorf("discovering resources: %w", err)
	} else if err != nil {
		errs = append(errs, err)
	}
	mappings := map[schema.GroupVersionKind]mapping{}
	for _, l := range all {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			continue
		}
		for _, r := range l.APIResources {
			if strings.Contains(r.Name, "/") {
				continue
			}
			mappings[gv.WithKind(r.Kind)] = mapping{gvr: gv.WithResource(r.Name), namespaced: r.Namespaced}
		}
	}
	preferred, err := discovery.ServerPreferredResources(c.discovery)
	if err != nil && !discovery.IsGroupDiscoveryFailedError(err) {
		return fmt.Errorf("discovering preferred resources: %w", err)
	} else if err != nil {
		errs = append(errs, err)
	}
	want := map[schema.GroupVersionResource]schema.GroupVersionKind{}
	for _, l := range preferred {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			continue
		}
		for _, r := range l.APIResources {
			if strings.Contains(r.Name, "/") {
				continue
			}
			verbs := sets.New(r.Verbs...)
			gvr := gv.WithResource(r.Name)
			if !verbs.HasAll("list", "watch", "delete") || ignoredResources.Has(gvr.GroupResource()) {
				continue
			}
			want[gvr] = gv.WithKind(r.Kind)
		}
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	c.mappings = mappings
	for gvr, gvk := range want {
		if _, ok := c.monitors[gvr]; ok {
			continue
		}
		m, err := c.startMonitorLocked(gvr, gvk)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		c.monitors[gvr] = m
		c.logger.Debug("monitoring resource", "resource", gvr.String())
	}
	for gvr, m := range c.monitors {
		if _, ok := want[gvr]; !ok {
			m.close()
			delete(c.monitors, gvr)
		}
	}
	return errors.Join(errs...)
}

func (c *Controller) startMonitorLocked(gvr schema.GroupVersionResource, gvk schema.GroupVersionKind) (*monitor, error) {
	inf, shared := c.cfg.Shared[gvr]
	if !shared {
		inf = metadatainformer.NewFilteredMetadataInformer(c.metadata, gvr, metav1.NamespaceAll, 0, cache.Indexers{}, nil).Informer()
	}
	send := func(typ eventType, obj any) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		if o := asMetadata(obj); o != nil {
			c.events.Add(&event{typ: typ, gvk: gvk, obj: o})
		}
	}
	reg, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { send(addEvent, obj) },
		UpdateFunc: func(oldObj, obj any) {
			if graphInputsChanged(oldObj, obj) {
				send(updateEvent, obj)
			}
		},
		DeleteFunc: func(obj any) { send(deleteEvent, obj) },
	})
	if err != nil {
		return nil, fmt.Errorf("adding handler for %s: %w", gvr, err)
	}
	m := &monitor{informer: inf, reg: reg}
	if !shared {
		m.stop = make(chan struct{})
		go inf.Run(m.stop)
	}
	return m, nil
}

// asMetadata returns the metadata of an informer object: the object itself
// from a metadata informer, its ObjectMeta (shared, never modified) from a
// typed one.
func asMetadata(obj any) *metav1.PartialObjectMetadata {
	switch o := obj.(type) {
	case *metav1.PartialObjectMetadata:
		return o
	case metav1.ObjectMetaAccessor:
		if m, ok := o.GetObjectMeta().(*metav1.ObjectMeta); ok {
			return &metav1.PartialObjectMetadata{ObjectMeta: *m}
		}
	}
	return nil
}

// objectMeta returns the metadata of an informer object in place (shared,
// never modified), or nil.
func objectMeta(obj any) *metav1.ObjectMeta {
	switch o := obj.(type) {
	case *metav1.PartialObjectMetadata:
		return &o.ObjectMeta
	case metav1.ObjectMetaAccessor:
		if m, ok := o.GetObjectMeta().(*metav1.ObjectMeta); ok {
			return m
		}
	}
	return nil
}

// graphInputsChanged reports whether an update can change the graph or
// start work: owners, deletion, finalizers (or identity). Most updates
// (status) change none, and the graph then has nothing to do, as
// upstream's collector, which acts on owner changes and on transitions.
func graphInputsChanged(oldObj, obj any) bool {
	// objectMeta, not asMetadata: this runs on every update of every
	// watched object, and asMetadata copies a typed object's metadata.
	o, n := objectMeta(oldObj), objectMeta(obj)
	if o == nil || n == nil {
		return true
	}
	return o.UID != n.UID || o.Name != n.Name || o.Namespace != n.Namespace ||
		(o.DeletionTimestamp == nil) != (n.DeletionTimestamp == nil) ||
		!slices.Equal(o.Finalizers, n.Finalizers) ||
		!sameOwners(o.OwnerReferences, n.OwnerReferences)
}

func sameOwners(a, b []metav1.OwnerReference) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := &a[i], &b[i]
		if x.APIVersion != y.APIVersion || x.Kind != y.Kind || x.Name != y.Name || x.UID != y.UID ||
			!sameBool(x.Controller, y.Controller) || !sameBool(x.BlockOwnerDeletion, y.BlockOwnerDeletion) {
			return false
		}
	}
	return true
}

func sameBool(a, b *bool) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func (c *Controller) monitorsSynced() []cache.InformerSynced {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []cache.InformerSynced
	for _, m := range c.monitors {
		out = append(out, m.reg.HasSynced)
	}
	return out
}

func (c *Controller) stopMonitors() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for gvr, m := range c.monitors {
		m.close()
		delete(c.monitors, gvr)
	}
}

func (c *Controller) processGraphChange() bool {
	ev, quit := c.events.Get()
	if quit {
		return false
	}
	defer c.events.Done(ev)
	c.graph.processEvent(ev)
	return true
}

func (c *Controller) processAttemptToDelete(ctx context.Context) bool {
	n, quit := c.toDelete.Get()
	if quit {
		return false
	}
	defer c.toDelete.Done(n)
	if err := c.attemptToDelete(ctx, n); err != nil {
		c.logger.Info("garbage collecting object failed, retrying", "object", n.identity.String(), "err", err)
		c.toDelete.AddRateLimited(n)
		return true
	}
	c.toDelete.Forget(n)
	return true
}

func (c *Controller) processAttemptToOrphan(ctx context.Context) bool {
	n, quit := c.toOrphan.Get()
	if quit {
		return false
	}
	defer c.toOrphan.Done(n)
	if err := c.attemptToOrphan(ctx, n); err != nil {
		c.logger.Info("orphaning dependents failed, retrying", "object", n.identity.String(), "err", err)
		c.toOrphan.AddRateLimited(n)
		return true
	}
	c.toOrphan.Forget(n)
	return true
}

// mappingFor finds the resource of an apiVersion/kind pair.
func (c *Controller) mappingFor(apiVersion, kind string) (mapping, error) {
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil {
		return mapping{}, fmt.Errorf("parsing apiVersion %q: %w", apiVersion, err)
	}
	c.mu.RLock()
	m, ok := c.mappings[gv.WithKind(kind)]
	c.mu.RUnlock()
	if !ok {
		return mapping{}, fmt.Errorf("no resource serves kind %s in %s", kind, apiVersion)
	}
	return m, nil
}

func (c *Controller) resource(ref objectRef) (metadata.ResourceInterface, error) {
	m, err := c.mappingFor(ref.APIVersion, ref.Kind)
	if err != nil {
		return nil, err
	}
	if m.namespaced {
		return c.metadata.Resource(m.gvr).Namespace(ref.Namespace), nil
	}
	return c.metadata.Resource(m.gvr), nil
}

// getLive fetches ref; absent is true when it does not exist or its UID differs.
func (c *Controller) getLive(ctx context.Context, ref objectRef) (obj *metav1.PartialObjectMetadata, absent bool, err error) {
	api, err := c.resource(ref)
	if err != nil {
		return nil, false, err
	}
	obj, err = api.Get(ctx, ref.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("getting %s: %w", ref, err)
	}
	if obj.UID != ref.UID {
		return nil, true, nil
	}
	return obj, false, nil
}

func (c *Controller) enqueueVirtualDelete(ref objectRef) {
	gv, _ := schema.ParseGroupVersion(ref.APIVersion)
	c.events.Add(&event{typ: deleteEvent, virtual: true, gvk: gv.WithKind(ref.Kind), obj: &metav1.PartialObjectMetadata{
		ObjectMeta: metav1.ObjectMeta{Name: ref.Name, Namespace: ref.Namespace, UID: ref.UID},
	}})
}

// attemptToDelete decides whether n should go, following upstream's rules.
func (c *Controller) attemptToDelete(ctx context.Context, n *node) error {
	s := c.graph.snapshot(n)
	latest, absent, err := c.getLive(ctx, s.identity)
	if err != nil {
		return err
	}
	if absent {
		if s.virtual {
			// A virtual owner proven absent: the graph drops it and
			// re-examines its dependents. Real objects get their delete
			// event from their monitor.
			c.absent.add(s.identity.UID)
			c.enqueueVirtualDelete(s.identity)
		}
		return nil
	}
	if s.virtual {
		return nil // it exists; its monitor will report it
	}
	if s.deletingDependents {
		return c.processDeletingDependents(ctx, s)
	}
	if latest.DeletionTimestamp != nil {
		return nil
	}
	refs := latest.OwnerReferences
	if len(refs) == 0 {
		return nil
	}
	var solid, dangling, waiting []metav1.OwnerReference
	for _, ref := range refs {
		state, err := c.ownerState(ctx, ref, latest.Namespace)
		if err != nil {
			return err
		}
		switch state {
		case ownerAbsent:
			dangling = append(dangling, ref)
		case ownerWaiting:
			waiting = append(waiting, ref)
		default:
			solid = append(solid, ref)
		}
	}
	switch {
	case len(solid) > 0:
		if len(dangling)+len(waiting) == 0 {
			return nil
		}
		// Other owners keep it alive: drop only the references to owners
		// that are gone or deleting.
		return c.patchOwnerRefs(ctx, s.identity, latest, solid)
	case len(waiting) > 0 && len(s.dependents) > 0:
		// An owner waits for us and we have dependents of our own: delete
		// in the foreground so they go first.
		return c.deleteObject(ctx, s.identity, metav1.DeletePropagationForeground)
	default:
		policy := metav1.DeletePropagationBackground
		switch {
		case hasFinalizer(latest, metav1.FinalizerOrphanDependents):
			policy = metav1.DeletePropagationOrphan
		case hasFinalizer(latest, metav1.FinalizerDeleteDependents):
			policy = metav1.DeletePropagationForeground
		}
		return c.deleteObject(ctx, s.identity, policy)
	}
}

type ownerStatus int

const (
	ownerSolid ownerStatus = iota
	ownerAbsent
	ownerWaiting // being deleted in the foreground, waiting for its dependents
)

func (c *Controller) ownerState(ctx context.Context, ref metav1.OwnerReference, namespace string) (ownerStatus, error) {
	if c.absent.has(ref.UID) {
		return ownerAbsent, nil
	}
	owner, absent, err := c.getLive(ctx, objectRef{APIVersion: ref.APIVersion, Kind: ref.Kind, Name: ref.Name, UID: ref.UID, Namespace: namespace})
	if err != nil {
		return ownerSolid, err
	}
	if absent {
		c.absent.add(ref.UID)
		return ownerAbsent, nil
	}
	if owner.DeletionTimestamp != nil && hasFinalizer(owner, metav1.FinalizerDeleteDependents) {
		return ownerWaiting, nil
	}
	return ownerSolid, nil
}

// processDeletingDependents removes the foregroundDeletion finalizer once no
// blocking dependent is left, and otherwise pushes the blockers along.
func (c *Controller) processDeletingDependents(ctx context.Context, s snapshot) error {
	if len(s.blocking) == 0 {
		return c.removeFinalizer(ctx, s.identity, metav1.FinalizerDeleteDependents)
	}
	for _, d := range s.blocking {
		if !c.graph.snapshot(d).deletingDependents {
			c.toDelete.Add(d)
		}
	}
	return nil
}

// attemptToOrphan removes n from its dependents' owner references and then
// drops its orphan finalizer.
func (c *Controller) attemptToOrphan(ctx context.Context, n *node) error {
	s := c.graph.snapshot(n)
	var errs []error
	for _, d := range s.dependents {
		ds := c.graph.snapshot(d)
		latest, absent, err := c.getLive(ctx, ds.identity)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if absent {
			continue
		}
		keep := slices.DeleteFunc(slices.Clone(latest.OwnerReferences), func(r metav1.OwnerReference) bool {
			return r.UID == s.identity.UID
		})
		if len(keep) == len(latest.OwnerReferences) {
			continue
		}
		if err := c.patchOwnerRefs(ctx, ds.identity, latest, keep); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return c.removeFinalizer(ctx, s.identity, metav1.FinalizerOrphanDependents)
}

func (c *Controller) deleteObject(ctx context.Context, ref objectRef, policy metav1.DeletionPropagation) error {
	api, err := c.resource(ref)
	if err != nil {
		return err
	}
	uid := ref.UID
	err = api.Delete(ctx, ref.Name, metav1.DeleteOptions{
		Preconditions:     &metav1.Preconditions{UID: &uid},
		PropagationPolicy: &policy,
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("deleting %s: %w", ref, err)
	}
	c.logger.Info("garbage collected object", "object", ref.String(), "propagation", string(policy))
	return nil
}

// patchOwnerRefs replaces latest's owner references with keep. The patch
// carries the UID (a precondition the API server enforces) and the
// resourceVersion, so a concurrent change makes it fail and retry rather than
// lose someone else's reference.
func (c *Controller) patchOwnerRefs(ctx context.Context, ref objectRef, latest *metav1.PartialObjectMetadata, keep []metav1.OwnerReference) error {
	return c.patchMeta(ctx, ref, map[string]any{
		"ownerReferences": keep,
		"uid":             latest.UID,
		"resourceVersion": latest.ResourceVersion,
	})
}

func (c *Controller) removeFinalizer(ctx context.Context, ref objectRef, finalizer string) error {
	latest, absent, err := c.getLive(ctx, ref)
	if err != nil || absent {
		return err
	}
	if !hasFinalizer(latest, finalizer) {
		return nil
	}
	keep := slices.DeleteFunc(slices.Clone(latest.Finalizers), func(f string) bool { return f == finalizer })
	return c.patchMeta(ctx, ref, map[string]any{
		"finalizers":      keep,
		"uid":             latest.UID,
		"resourceVersion": latest.ResourceVersion,
	})
}

func (c *Controller) patchMeta(ctx context.Context, ref objectRef, meta map[string]any) error {
	api, err := c.resource(ref)
	if err != nil {
		return err
	}
	for k, v := range meta {
		if s, ok := v.(string); ok && s == "" {
			delete(meta, k) // unknown resourceVersion: no concurrency guard
		} else if s, ok := v.(types.UID); ok && s == "" {
			delete(meta, k)
		}
	}
	body, err := json.Marshal(map[string]any{"metadata": meta})
	if err != nil {
		return fmt.Errorf("encoding patch for %s: %w", ref, err)
	}
	_, err = api.Patch(ctx, ref.Name, types.MergePatchType, body, metav1.PatchOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("patching %s: %w", ref, err)
	}
	return nil
}

// absentCache remembers owner UIDs known not to exist. UIDs are never
// reused, so entries never go stale; the size bound only limits memory.
type absentCache struct {
	mu    sync.Mutex
	max   int
	set   map[types.UID]struct{}
	order []types.UID
}

func newAbsentCache(max int) *absentCache {
	return &absentCache{max: max, set: map[types.UID]struct{}{}}
}

func (a *absentCache) add(uid types.UID) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.set[uid]; ok {
		return
	}
	if len(a.order) >= a.max {
		delete(a.set, a.order[0])
		a.order = a.order[1:]
	}
	a.set[uid] = struct{}{}
	a.order = append(a.order, uid)
}

func (a *absentCache) has(uid types.UID) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.set[uid]
	return ok
}
