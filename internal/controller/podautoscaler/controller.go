package podautoscaler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	autoscalinginformers "k8s.io/client-go/informers/autoscaling/v2"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	autoscalinglisters "k8s.io/client-go/listers/autoscaling/v2"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/scale"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"

	"skiff.dev/skiff/internal/controller"
)

// Upstream's defaults (kube-controller-manager flags).
const (
	// DefaultSyncPeriod is --horizontal-pod-autoscaler-sync-period.
	DefaultSyncPeriod = 15 * time.Second
	// DefaultDownscaleStabilization is
	// --horizontal-pod-autoscaler-downscale-stabilization.
	DefaultDownscaleStabilization = 5 * time.Minute
)

// Config tunes a Controller. Scales, Mapper and Metrics are required; the
// rest defaults to upstream's values.
type Config struct {
	// Clock drives windows, policy periods and timestamps (default: real).
	Clock clock.Clock
	// SyncPeriod is how often every HPA is reconciled.
	SyncPeriod time.Duration
	// DownscaleStabilization is the scale-down window of HPAs that do not
	// set one.
	DownscaleStabilization time.Duration
	// Tolerance is the relative change below which nothing is done
	// (default 0.1; set a negative value for none).
	Tolerance float64
	// CPUInitializationPeriod and InitialReadinessDelay decide which CPU
	// samples of starting pods are trusted.
	CPUInitializationPeriod, InitialReadinessDelay time.Duration

	// Scales reads and writes the scale subresource of targets.
	Scales scale.ScalesGetter
	// Mapper maps a target's kind to its resource.
	Mapper meta.RESTMapper
	// Metrics is the source of resource metrics.
	Metrics MetricsClient
}

// Controller reconciles HorizontalPodAutoscalers.
type Controller struct {
	client     kubernetes.Interface
	hpaLister  autoscalinglisters.HorizontalPodAutoscalerLister
	podLister  corelisters.PodLister
	scales     scale.ScalesGetter
	mapper     meta.RESTMapper
	metrics    MetricsClient
	recorder   record.EventRecorder
	queue      workqueue.TypedRateLimitingInterface[string]
	clock      clock.Clock
	logger     *slog.Logger
	synced     []cache.InformerSynced
	calc       calculator
	history    *history
	syncPeriod time.Duration
	downWindow time.Duration
}

// New returns an HPA controller fed by the given informers.
func New(cfg Config, client kubernetes.Interface, hpas autoscalinginformers.HorizontalPodAutoscalerInformer, pods coreinformers.PodInformer, recorder record.EventRecorder, logger *slog.Logger) (*Controller, error) {
	if cfg.Scales == nil || cfg.Mapper == nil || cfg.Metrics == nil {
		return nil, errors.New("building hpa controller: scale client, REST mapper and metrics client are required")
	}
	if logger == nil {
		logger = slog.Default()
	}
	if recorder == nil {
		recorder = &record.FakeRecorder{}
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.SyncPeriod <= 0 {
		cfg.SyncPeriod = DefaultSyncPeriod
	}
	if cfg.DownscaleStabilization == 0 {
		cfg.DownscaleStabilization = DefaultDownscaleStabilization
	}
	switch {
	case cfg.Tolerance == 0:
		cfg.Tolerance = DefaultTolerance
	case cfg.Tolerance < 0:
		cfg.Tolerance = 0
	}
	if cfg.CPUInitializationPeriod == 0 {
		cfg.CPUInitializationPeriod = DefaultCPUInitializationPeriod
	}
	if cfg.InitialReadinessDelay == 0 {
		cfg.InitialReadinessDelay = DefaultInitialReadinessDelay
	}
	c := &Controller{
		client: client, hpaLister: hpas.Lister(), podLister: pods.Lister(),
		scales: cfg.Scales, mapper: cfg.Mapper, metrics: cfg.Metrics, recorder: recorder,
		queue: controller.NewQueue("horizontalpodautoscaler"), clock: cfg.Clock,
		logger:  logger.With("controller", "horizontalpodautoscaling"),
		calc:    calculator{tolerance: cfg.Tolerance, cpuInitializationPeriod: cfg.CPUInitializationPeriod, readinessDelay: cfg.InitialReadinessDelay},
		history: newHistory(), syncPeriod: cfg.SyncPeriod, downWindow: cfg.DownscaleStabilization,
	}
	if _, err := hpas.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueue,
		UpdateFunc: func(_, n any) { c.enqueue(n) },
		DeleteFunc: c.enqueue,
	}); err != nil {
		return nil, fmt.Errorf("adding hpa event handler: %w", err)
	}
	c.synced = []cache.InformerSynced{hpas.Informer().HasSynced, pods.Informer().HasSynced}
	return c, nil
}

// NewScaleClient returns a scale client for any resource with a scale
// subresource, and the discovery-backed REST mapper it resolves kinds with.
// It talks through kube's connection.
func NewScaleClient(kube kubernetes.Interface, disc discovery.DiscoveryInterface, mapper meta.RESTMapper) scale.ScalesGetter {
	return scale.New(kube.AutoscalingV1().RESTClient(), mapper, dynamic.LegacyAPIPathResolverFunc, scale.NewDiscoveryScaleKindResolver(disc))
}

// Run waits for the caches and runs workers until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) error {
	defer c.queue.ShutDown()
	c.logger.Info("starting controller", "workers", workers)
	if !controller.WaitForSync(ctx, c.synced...) {
		return fmt.Errorf("waiting for hpa caches: %w", ctx.Err())
	}
	controller.RunWorkers(ctx, c.logger, c.queue, workers, c.Sync)
	return nil
}

func (c *Controller) enqueue(obj any) { controller.Enqueue(c.queue, c.logger, obj) }

// Sync reconciles the HPA named by key and schedules its next resync.
func (c *Controller) Sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	shared, err := c.hpaLister.HorizontalPodAutoscalers(ns).Get(name)
	if apierrors.IsNotFound(err) {
		c.history.forget(key)
		return nil
	}
	if err != nil {
		return fmt.Errorf("getting hpa %s: %w", key, err)
	}
	// Metrics move without any event, so every HPA is polled.
	c.queue.AddAfter(key, c.syncPeriod)
	return c.reconcile(ctx, key, shared.DeepCopy())
}

func (c *Controller) reconcile(ctx context.Context, key string, hpa *autoscalingv2.HorizontalPodAutoscaler) error {
	now := c.clock.Now()
	original := hpa.Status.DeepCopy()
	ref := hpa.Spec.ScaleTargetRef
	reference := fmt.Sprintf("%s/%s/%s", ref.Kind, hpa.Namespace, ref.Name)

	sc, gr, err := c.getScale(ctx, hpa)
	if err != nil {
		c.recorder.Event(hpa, v1.EventTypeWarning, "FailedGetScale", err.Error())
		c.setCondition(hpa, autoscalingv2.AbleToScale, v1.ConditionFalse, "FailedGetScale", "the HPA controller was unable to get the target's current scale: %v", err)
		if uerr := c.updateStatusIfNeeded(ctx, original, hpa); uerr != nil {
			c.logger.Error("updating hpa status", "hpa", key, "err", uerr)
		}
		return fmt.Errorf("getting scale subresource of %s: %w", reference, err)
	}
	c.setCondition(hpa, autoscalingv2.AbleToScale, v1.ConditionTrue, "SucceededGetScale", "the HPA controller was able to get the target's current scale")
	current := sc.Spec.Replicas
	c.history.seed(key, current, now)

	minReplicas := int32(1)
	if hpa.Spec.MinReplicas != nil {
		minReplicas = *hpa.Spec.MinReplicas
	}
	var (
		desired  int32
		reason   string
		statuses []autoscalingv2.MetricStatus
		rescale  = true
	)
	switch {
	case current == 0 && minReplicas != 0:
		// A target scaled to zero by hand opts out of autoscaling.
		rescale = false
		c.setCondition(hpa, autoscalingv2.ScalingActive, v1.ConditionFalse, "ScalingDisabled", "scaling is disabled since the replica count of the target is zero")
	case current > hpa.Spec.MaxReplicas:
		reason, desired = "Current number of replicas above Spec.MaxReplicas", hpa.Spec.MaxReplicas
	case current < minReplicas:
		reason, desired = "Current number of replicas below Spec.MinReplicas", minReplicas
	default:
		proposal, metricName, sts, err := c.replicasForMetrics(ctx, now, hpa, sc)
		statuses = sts
		if err != nil && proposal == -1 {
			c.setStatus(hpa, current, hpa.Status.DesiredReplicas, statuses, false)
			if uerr := c.updateStatusIfNeeded(ctx, original, hpa); uerr != nil {
				c.logger.Error("updating hpa status", "hpa", key, "err", uerr)
			}
			c.recorder.Event(hpa, v1.EventTypeWarning, "FailedComputeMetricsReplicas", err.Error())
			return fmt.Errorf("computing replicas for %s: %w", reference, err)
		}
		if err != nil {
			// Some metrics failed, but the valid ones ask for a scale-up:
			// act on them, as upstream.
			c.logger.Info("some hpa metrics are invalid", "hpa", key, "err", err)
		}
		rescaleMetric := ""
		if proposal > desired {
			desired, rescaleMetric = proposal, metricName
		}
		switch {
		case desired > current:
			reason = rescaleMetric + " above target"
		case desired < current:
			reason = "All metrics below target"
		}
		var n normalized
		if hpa.Spec.Behavior == nil {
			n = c.history.normalize(key, now, c.downWindow, current, desired, minReplicas, hpa.Spec.MaxReplicas)
		} else {
			n = c.history.normalizeWithBehavior(key, now, withDefaults(hpa.Spec.Behavior, c.downWindow), current, desired, minReplicas, hpa.Spec.MaxReplicas)
		}
		c.setCondition(hpa, autoscalingv2.AbleToScale, conditionStatus(n.ableToScale.status), n.ableToScale.reason, "%s", n.ableToScale.message)
		c.setCondition(hpa, autoscalingv2.ScalingLimited, conditionStatus(n.limited.status), n.limited.reason, "%s", n.limited.message)
		desired = n.replicas
		rescale = desired != current
	}

	if rescale {
		sc.Spec.Replicas = desired
		if _, err := c.scales.Scales(hpa.Namespace).Update(ctx, gr, sc, metav1.UpdateOptions{}); err != nil {
			c.recorder.Eventf(hpa, v1.EventTypeWarning, "FailedRescale", "New size: %d; reason: %s; error: %v", desired, reason, err)
			c.setCondition(hpa, autoscalingv2.AbleToScale, v1.ConditionFalse, "FailedUpdateScale", "the HPA controller was unable to update the target scale: %v", err)
			c.setStatus(hpa, current, hpa.Status.DesiredReplicas, statuses, false)
			if uerr := c.updateStatusIfNeeded(ctx, original, hpa); uerr != nil {
				c.logger.Error("updating hpa status", "hpa", key, "err", uerr)
			}
			return fmt.Errorf("updating scale of %s: %w", reference, err)
		}
		c.setCondition(hpa, autoscalingv2.AbleToScale, v1.ConditionTrue, "SucceededRescale", "the HPA controller was able to update the target scale to %d", desired)
		c.recorder.Eventf(hpa, v1.EventTypeNormal, "SuccessfulRescale", "New size: %d; reason: %s", desired, reason)
		if hpa.Spec.Behavior != nil {
			c.history.storeScaleEvent(key, now, withDefaults(hpa.Spec.Behavior, c.downWindow), current, desired)
		}
		c.logger.Info("rescaled target", "hpa", key, "target", reference, "from", current, "to", desired, "reason", reason)
	} else {
		desired = current
	}
	c.setStatus(hpa, current, desired, statuses, rescale)
	return c.updateStatusIfNeeded(ctx, original, hpa)
}

// getScale reads the target's scale subresource, trying each resource the
// kind maps to (a kind may be served by several versions or groups).
func (c *Controller) getScale(ctx context.Context, hpa *autoscalingv2.HorizontalPodAutoscaler) (*autoscalingv1.Scale, schema.GroupResource, error) {
	ref := hpa.Spec.ScaleTargetRef
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	if err != nil {
		return nil, schema.GroupResource{}, fmt.Errorf("invalid API version in scale target reference: %w", err)
	}
	gk := schema.GroupKind{Group: gv.Group, Kind: ref.Kind}
	mappings, err := c.mapper.RESTMappings(gk)
	if meta.IsNoMatchError(err) {
		// A kind registered since discovery was cached (a new CRD).
		if r, ok := c.mapper.(meta.ResettableRESTMapper); ok {
			r.Reset()
			mappings, err = c.mapper.RESTMappings(gk)
		}
	}
	if err != nil {
		return nil, schema.GroupResource{}, fmt.Errorf("unable to determine resource for scale target reference: %w", err)
	}
	if len(mappings) == 0 {
		return nil, schema.GroupResource{}, errors.New("unrecognized resource")
	}
	var firstErr error
	for _, m := range mappings {
		gr := m.Resource.GroupResource()
		sc, err := c.scales.Scales(hpa.Namespace).Get(ctx, gr, ref.Name, metav1.GetOptions{})
		if err == nil {
			return sc, gr, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return nil, schema.GroupResource{}, firstErr
}

// replicasForMetrics computes a proposal per metric and returns the
// largest. It returns -1 when no proposal can be trusted: every metric
// failed, or some failed and the rest would scale down.
func (c *Controller) replicasForMetrics(ctx context.Context, now time.Time, hpa *autoscalingv2.HorizontalPodAutoscaler, sc *autoscalingv1.Scale) (int32, string, []autoscalingv2.MetricStatus, error) {
	selector, err := c.parseSelector(hpa, sc.Status.Selector)
	if err != nil {
		return -1, "", nil, err
	}
	specs := hpa.Spec.Metrics
	statuses := make([]autoscalingv2.MetricStatus, len(specs))
	var (
		replicas   int32
		metricName string
		invalid    int
		firstErr   error
		firstCond  autoscalingv2.HorizontalPodAutoscalerCondition
	)
	for i, spec := range specs {
		n, name, cond, err := c.replicasForMetric(ctx, now, hpa, spec, sc.Spec.Replicas, selector, &statuses[i])
		if err != nil {
			if invalid == 0 {
				firstErr, firstCond = err, cond
			}
			invalid++
			continue
		}
		if replicas == 0 || n > replicas {
			replicas, metricName = n, name
		}
	}
	if firstErr != nil {
		firstErr = fmt.Errorf("invalid metrics (%d invalid out of %d), first error is: %w", invalid, len(specs), firstErr)
	}
	if invalid >= len(specs) || (invalid > 0 && replicas < sc.Spec.Replicas) {
		c.setCondition(hpa, firstCond.Type, firstCond.Status, firstCond.Reason, "%s", firstCond.Message)
		return -1, "", statuses, firstErr
	}
	c.setCondition(hpa, autoscalingv2.ScalingActive, v1.ConditionTrue, "ValidMetricFound", "the HPA was able to successfully calculate a replica count from %s", metricName)
	return replicas, metricName, statuses, firstErr
}

func (c *Controller) parseSelector(hpa *autoscalingv2.HorizontalPodAutoscaler, s string) (labels.Selector, error) {
	if s == "" {
		msg := "selector is required"
		c.recorder.Event(hpa, v1.EventTypeWarning, "SelectorRequired", msg)
		c.setCondition(hpa, autoscalingv2.ScalingActive, v1.ConditionFalse, "InvalidSelector", "the HPA target's scale is missing a selector")
		return nil, errors.New(msg)
	}
	sel, err := labels.Parse(s)
	if err != nil {
		msg := fmt.Sprintf("couldn't convert selector into a corresponding internal selector object: %v", err)
		c.recorder.Event(hpa, v1.EventTypeWarning, "InvalidSelector", msg)
		c.setCondition(hpa, autoscalingv2.ScalingActive, v1.ConditionFalse, "InvalidSelector", "%s", msg)
		return nil, fmt.Errorf("parsing scale selector %q: %w", s, err)
	}
	return sel, nil
}

// replicasForMetric computes one metric's proposal and fills its status;
// on failure it also returns the ScalingActive condition to report.
func (c *Controller) replicasForMetric(ctx context.Context, now time.Time, hpa *autoscalingv2.HorizontalPodAutoscaler, spec autoscalingv2.MetricSpec, current int32, selector labels.Selector, status *autoscalingv2.MetricStatus) (int32, string, autoscalingv2.HorizontalPodAutoscalerCondition, error) {
	var (
		name      v1.ResourceName
		target    autoscalingv2.MetricTarget
		container string
		failure   string
	)
	switch {
	case spec.Type == autoscalingv2.ResourceMetricSourceType && spec.Resource != nil:
		name, target, failure = spec.Resource.Name, spec.Resource.Target, "FailedGetResourceMetric"
	case spec.Type == autoscalingv2.ContainerResourceMetricSourceType && spec.ContainerResource != nil:
		name, target, container, failure = spec.ContainerResource.Name, spec.ContainerResource.Target, spec.ContainerResource.Container, "FailedGetContainerResourceMetric"
	default:
		err := fmt.Errorf("unsupported metric source type %q", spec.Type)
		return 0, "", c.unableToCompute(hpa, "InvalidMetricSourceType", err), err
	}
	n, metricName, value, err := c.resourceReplicas(ctx, now, hpa.Namespace, current, name, container, target, selector)
	if err != nil {
		err = fmt.Errorf("failed to get %s resource metric value: %w", name, err)
		return 0, "", c.unableToCompute(hpa, failure, err), err
	}
	if container == "" {
		*status = autoscalingv2.MetricStatus{Type: autoscalingv2.ResourceMetricSourceType,
			Resource: &autoscalingv2.ResourceMetricStatus{Name: name, Current: value}}
	} else {
		*status = autoscalingv2.MetricStatus{Type: autoscalingv2.ContainerResourceMetricSourceType,
			ContainerResource: &autoscalingv2.ContainerResourceMetricStatus{Name: name, Container: container, Current: value}}
	}
	return n, metricName, autoscalingv2.HorizontalPodAutoscalerCondition{}, nil
}

// resourceReplicas fetches the usage and the pods and runs the calculator.
func (c *Controller) resourceReplicas(ctx context.Context, now time.Time, namespace string, current int32, name v1.ResourceName, container string, target autoscalingv2.MetricTarget, selector labels.Selector) (int32, string, autoscalingv2.MetricValueStatus, error) {
	var none autoscalingv2.MetricValueStatus
	if target.AverageValue == nil && target.AverageUtilization == nil {
		return 0, "", none, errors.New("invalid resource metric source: neither an average utilization target nor an average value (usage) target was set")
	}
	what := fmt.Sprintf("failed to get %s utilization", name)
	if target.AverageValue != nil {
		what = fmt.Sprintf("failed to get %s usage", name)
	}
	metrics, _, err := c.metrics.GetResourceMetric(ctx, name, namespace, selector, container)
	if err != nil {
		return 0, "", none, fmt.Errorf("%s: unable to get metrics for resource %s: %w", what, name, err)
	}
	pods, err := c.podLister.Pods(namespace).List(selector)
	if err != nil {
		return 0, "", none, fmt.Errorf("%s: unable to get pods while calculating replica count: %w", what, err)
	}
	if target.AverageValue != nil {
		n, avg, err := c.calc.averageValueReplicas(now, current, target.AverageValue.MilliValue(), name, pods, metrics)
		if err != nil {
			return 0, "", none, fmt.Errorf("%s: %w", what, err)
		}
		return n, fmt.Sprintf("%s resource", name), autoscalingv2.MetricValueStatus{AverageValue: resource.NewMilliQuantity(avg, resource.DecimalSI)}, nil
	}
	p, err := c.calc.utilizationReplicas(now, current, *target.AverageUtilization, name, container, pods, metrics)
	if err != nil {
		return 0, "", none, fmt.Errorf("%s: %w", what, err)
	}
	utilization := p.utilization
	return p.replicas, fmt.Sprintf("%s resource utilization (percentage of request)", name),
		autoscalingv2.MetricValueStatus{AverageUtilization: &utilization, AverageValue: resource.NewMilliQuantity(p.rawAverage, resource.DecimalSI)}, nil
}

// unableToCompute records a warning event and returns the ScalingActive
// condition for a metric that could not be evaluated.
func (c *Controller) unableToCompute(hpa *autoscalingv2.HorizontalPodAutoscaler, reason string, err error) autoscalingv2.HorizontalPodAutoscalerCondition {
	c.recorder.Event(hpa, v1.EventTypeWarning, reason, err.Error())
	return autoscalingv2.HorizontalPodAutoscalerCondition{
		Type: autoscalingv2.ScalingActive, Status: v1.ConditionFalse, Reason: reason,
		Message: fmt.Sprintf("the HPA was unable to compute the replica count: %v", err),
	}
}

func (c *Controller) setStatus(hpa *autoscalingv2.HorizontalPodAutoscaler, current, desired int32, metrics []autoscalingv2.MetricStatus, rescaled bool) {
	generation := hpa.Generation
	hpa.Status = autoscalingv2.HorizontalPodAutoscalerStatus{
		ObservedGeneration: &generation,
		CurrentReplicas:    current,
		DesiredReplicas:    desired,
		LastScaleTime:      hpa.Status.LastScaleTime,
		CurrentMetrics:     metrics,
		Conditions:         hpa.Status.Conditions,
	}
	if rescaled {
		now := metav1.NewTime(c.clock.Now())
		hpa.Status.LastScaleTime = &now
	}
}

// setCondition sets a condition, moving its transition time only when its
// status changes.
func (c *Controller) setCondition(hpa *autoscalingv2.HorizontalPodAutoscaler, t autoscalingv2.HorizontalPodAutoscalerConditionType, status v1.ConditionStatus, reason, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	for i := range hpa.Status.Conditions {
		cond := &hpa.Status.Conditions[i]
		if cond.Type != t {
			continue
		}
		if cond.Status != status {
			cond.LastTransitionTime = metav1.NewTime(c.clock.Now())
		}
		cond.Status, cond.Reason, cond.Message = status, reason, msg
		return
	}
	hpa.Status.Conditions = append(hpa.Status.Conditions, autoscalingv2.HorizontalPodAutoscalerCondition{
		Type: t, Status: status, Reason: reason, Message: msg, LastTransitionTime: metav1.NewTime(c.clock.Now()),
	})
}

func (c *Controller) updateStatusIfNeeded(ctx context.Context, old *autoscalingv2.HorizontalPodAutoscalerStatus, hpa *autoscalingv2.HorizontalPodAutoscaler) error {
	if equality.Semantic.DeepEqual(old, &hpa.Status) {
		return nil
	}
	if _, err := c.client.AutoscalingV2().HorizontalPodAutoscalers(hpa.Namespace).UpdateStatus(ctx, hpa, metav1.UpdateOptions{}); err != nil {
		c.recorder.Event(hpa, v1.EventTypeWarning, "FailedUpdateStatus", err.Error())
		return fmt.Errorf("updating status of hpa %s/%s: %w", hpa.Namespace, hpa.Name, err)
	}
	return nil
}

func conditionStatus(b bool) v1.ConditionStatus {
	if b {
		return v1.ConditionTrue
	}
	return v1.ConditionFalse
}
