// Package resourcequota computes what objects count against a ResourceQuota
// (usage.go, shared with the ResourceQuota admission plugin) and runs the
// controller that recomputes every quota's status from the cluster:
// status.hard = spec.hard and status.used = the sum of Usage over the
// namespace's objects the quota tracks, for the names in spec.hard.
//
// Admission charges creates to status.used as they happen; the controller
// is what gives usage back: it resyncs a namespace's quotas when pods,
// services, claims, config maps, secrets or replication controllers are
// deleted (or pods finish), and every quota periodically, which also
// catches count/<resource>.<group> quotas on any other resource (listed
// through the metadata client and a discovery RESTMapper).
//
// Contract: sync(namespace/name) is level-triggered and writes status only
// when it changed.
package resourcequota

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"

	"skiff.dev/skiff/internal/controller"
)

// Config tunes the controller.
type Config struct {
	Clock clock.WithTicker
	// ResyncPeriod is how often every quota is recomputed (default 30 s).
	ResyncPeriod time.Duration
	// Metadata and Mapper count resources without a typed lister
	// (count/deployments.apps); nil leaves those at their admission-charged
	// values.
	Metadata metadata.Interface
	Mapper   meta.RESTMapper
}

// Controller recomputes ResourceQuota status.
type Controller struct {
	cfg    Config
	client kubernetes.Interface
	logger *slog.Logger
	queue  workqueue.TypedRateLimitingInterface[string]
	synced []cache.InformerSynced

	quotas  corelisters.ResourceQuotaLister
	pods    corelisters.PodLister
	svcs    corelisters.ServiceLister
	pvcs    corelisters.PersistentVolumeClaimLister
	cms     corelisters.ConfigMapLister
	secrets corelisters.SecretLister
	rcs     corelisters.ReplicationControllerLister
}

// New returns the controller, adding handlers to the factory's informers.
func New(cfg Config, client kubernetes.Interface, f informers.SharedInformerFactory, logger *slog.Logger) (*Controller, error) {
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.ResyncPeriod <= 0 {
		cfg.ResyncPeriod = 30 * time.Second
	}
	if logger == nil {
		logger = slog.Default()
	}
	core := f.Core().V1()
	c := &Controller{
		cfg: cfg, client: client, logger: logger.With("controller", "resourcequota"),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "resourcequota", Clock: cfg.Clock}),
		quotas: core.ResourceQuotas().Lister(), pods: core.Pods().Lister(), svcs: core.Services().Lister(),
		pvcs: core.PersistentVolumeClaims().Lister(), cms: core.ConfigMaps().Lister(), secrets: core.Secrets().Lister(),
		rcs: core.ReplicationControllers().Lister(),
	}
	if _, err := core.ResourceQuotas().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(o any) { controller.Enqueue(c.queue, c.logger, o) },
		UpdateFunc: func(o, n any) {
			// Our own status writes come back here; only spec changes matter.
			if !apiequality.Semantic.DeepEqual(o.(*corev1.ResourceQuota).Spec, n.(*corev1.ResourceQuota).Spec) {
				controller.Enqueue(c.queue, c.logger, n)
			}
		},
	}); err != nil {
		return nil, fmt.Errorf("adding quota event handler: %w", err)
	}
	replenish := cache.ResourceEventHandlerFuncs{DeleteFunc: c.replenish}
	for _, inf := range []cache.SharedIndexInformer{core.Services().Informer(), core.PersistentVolumeClaims().Informer(),
		core.ConfigMaps().Informer(), core.Secrets().Informer(), core.ReplicationControllers().Informer()} {
		if _, err := inf.AddEventHandler(replenish); err != nil {
			return nil, fmt.Errorf("adding replenishment handler: %w", err)
		}
		c.synced = append(c.synced, inf.HasSynced)
	}
	if _, err := core.Pods().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(o, n any) {
			if PodCounts(o.(*corev1.Pod)) && !PodCounts(n.(*corev1.Pod)) {
				c.replenish(n)
			}
		},
		DeleteFunc: c.replenish,
	}); err != nil {
		return nil, fmt.Errorf("adding pod replenishment handler: %w", err)
	}
	c.synced = append(c.synced, core.ResourceQuotas().Informer().HasSynced, core.Pods().Informer().HasSynced)
	return c, nil
}

// Run recomputes quotas until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) error {
	if !controller.WaitForSync(ctx, c.synced...) {
		return fmt.Errorf("waiting for resourcequota informers: %w", ctx.Err())
	}
	controller.RunWorkers(ctx, c.logger, c.queue, workers, c.Sync)
	return nil
}

func (c *Controller) replenish(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return
	}
	qs, err := c.quotas.ResourceQuotas(m.GetNamespace()).List(labels.Everything())
	if err != nil {
		return
	}
	for _, q := range qs {
		c.queue.Add(q.Namespace + "/" + q.Name)
	}
}

// Sync recomputes one quota's status and schedules the next resync.
func (c *Controller) Sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return fmt.Errorf("parsing key %q: %w", key, err)
	}
	q, err := c.quotas.ResourceQuotas(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("getting quota %s: %w", key, err)
	}
	used, err := c.usage(ctx, q)
	if err != nil {
		return fmt.Errorf("computing usage of quota %s: %w", key, err)
	}
	st := corev1.ResourceQuotaStatus{Hard: q.Spec.Hard.DeepCopy(), Used: used}
	if !apiequality.Semantic.DeepEqual(q.Status, st) {
		n := q.DeepCopy()
		n.Status = st
		if _, err := c.client.CoreV1().ResourceQuotas(ns).UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("updating status of quota %s: %w", key, err)
		}
	}
	c.queue.AddAfter(key, c.cfg.ResyncPeriod)
	return nil
}

// usage sums what the namespace's objects use of the names in spec.hard;
// every hard name gets an entry (zero when nothing uses it).
func (c *Controller) usage(ctx context.Context, q *corev1.ResourceQuota) (corev1.ResourceList, error) {
	used := corev1.ResourceList{}
	for k := range q.Spec.Hard {
		used[k] = *resource.NewQuantity(0, resource.DecimalSI)
	}
	add := func(gr schema.GroupResource, objs []runtime.Object) {
		for _, o := range objs {
			if !Matches(q, o) {
				continue
			}
			addTo(used, Mask(Usage(gr, o), q.Spec.Hard))
		}
	}
	ns := q.Namespace
	for _, gr := range trackedResources(q.Spec.Hard) {
		var objs []runtime.Object
		var err error
		switch {
		case gr.Group == "" && gr.Resource == "pods":
			objs, err = list(c.pods.Pods(ns).List(labels.Everything()))
		case gr.Group == "" && gr.Resource == "services":
			objs, err = list(c.svcs.Services(ns).List(labels.Everything()))
		case gr.Group == "" && gr.Resource == "persistentvolumeclaims":
			objs, err = list(c.pvcs.PersistentVolumeClaims(ns).List(labels.Everything()))
		case gr.Group == "" && gr.Resource == "configmaps":
			objs, err = list(c.cms.ConfigMaps(ns).List(labels.Everything()))
		case gr.Group == "" && gr.Resource == "secrets":
			objs, err = list(c.secrets.Secrets(ns).List(labels.Everything()))
		case gr.Group == "" && gr.Resource == "replicationcontrollers":
			objs, err = list(c.rcs.ReplicationControllers(ns).List(labels.Everything()))
		case gr.Group == "" && gr.Resource == "resourcequotas":
			objs, err = list(c.quotas.ResourceQuotas(ns).List(labels.Everything()))
		default:
			objs, err = c.listMetadata(ctx, gr, ns)
			if err != nil {
				// Unknown or unlistable: keep what admission charged.
				c.logger.Info("cannot count resource", "resource", gr.String(), "namespace", ns, "err", err)
				name := CountName(gr)
				if v, ok := q.Status.Used[name]; ok {
					used[name] = v.DeepCopy()
				}
				continue
			}
		}
		if err != nil {
			return nil, fmt.Errorf("listing %s: %w", gr, err)
		}
		add(gr, objs)
	}
	return used, nil
}

func list[T runtime.Object](items []T, err error) ([]runtime.Object, error) {
	if err != nil {
		return nil, err
	}
	out := make([]runtime.Object, len(items))
	for i, it := range items {
		out[i] = it
	}
	return out, nil
}

func (c *Controller) listMetadata(ctx context.Context, gr schema.GroupResource, ns string) ([]runtime.Object, error) {
	if c.cfg.Metadata == nil || c.cfg.Mapper == nil {
		return nil, fmt.Errorf("no metadata client")
	}
	gvr, err := c.cfg.Mapper.ResourceFor(gr.WithVersion(""))
	if err != nil {
		return nil, fmt.Errorf("mapping %s: %w", gr, err)
	}
	l, err := c.cfg.Metadata.Resource(gvr).Namespace(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", gvr, err)
	}
	out := make([]runtime.Object, len(l.Items))
	for i := range l.Items {
		out[i] = &l.Items[i]
	}
	return out, nil
}

// trackedResources returns the resources whose objects the hard names
// depend on.
func trackedResources(hard corev1.ResourceList) []schema.GroupResource {
	seen := map[schema.GroupResource]bool{}
	var out []schema.GroupResource
	addGR := func(gr schema.GroupResource) {
		if !seen[gr] {
			seen[gr] = true
			out = append(out, gr)
		}
	}
	for k := range hard {
		name := string(k)
		for legacy, n := range legacyCounts {
			if k == n {
				addGR(schema.GroupResource{Resource: legacy})
			}
		}
		switch {
		case strings.HasPrefix(name, "count/"):
			rest := strings.TrimPrefix(name, "count/")
			r, g, _ := strings.Cut(rest, ".")
			addGR(schema.GroupResource{Group: g, Resource: r})
		case name == "cpu" || name == "memory" || strings.HasPrefix(name, "requests.") && name != "requests.storage" || strings.HasPrefix(name, "limits."):
			addGR(schema.GroupResource{Resource: "pods"})
		case strings.HasPrefix(name, "services."):
			addGR(schema.GroupResource{Resource: "services"})
		case name == "requests.storage" || strings.Contains(name, ".storageclass.storage.k8s.io/"):
			addGR(schema.GroupResource{Resource: "persistentvolumeclaims"})
		}
	}
	return out
}
