// Package podautoscaler is skiff's HorizontalPodAutoscaler controller
// (autoscaling/v2). Every sync period it reads the target's scale
// subresource, asks a MetricsClient for the resource usage of the pods the
// scale selector matches, computes a replica count with upstream's
// algorithm and writes it back through the scale subresource.
//
// The pipeline, each stage a pure function of its inputs:
//
//	scale + pods + PodMetrics ──calculator──▶ proposal per metric ──max──▶ recommendation
//	recommendation ──stabilisation window──▶ stabilised ──policies / min / max──▶ desired
//
// calculator (replicas.go) applies the 10% tolerance and upstream's rules
// for pods without metrics (0% on scale-up, 100% of the request on
// scale-down) and for pods not yet ready (ignored, or counted as 0% on a
// scale-up; CPU samples taken during the 5 minute initialisation period or
// before a pod's first readiness within 30 s are not trusted). history
// (behavior.go) remembers recent recommendations and scale events per HPA:
// the stabilisation windows take the highest (scale-down) or lowest
// (scale-up) recommendation of the window, and Pods/Percent policies bound
// the change per period. Without spec.behavior the upstream defaults apply:
// a 5 minute scale-down window and a scale-up limit of max(2×current, 4).
//
// Contract: the controller only reads HPAs and pods from informer caches;
// it writes the target's scale subresource and the HPA status subresource,
// and emits upstream's events (SuccessfulRescale, FailedGetScale,
// FailedGetResourceMetric, FailedComputeMetricsReplicas, ...) and
// conditions (AbleToScale, ScalingActive, ScalingLimited). Only Resource
// metrics (cpu, memory; Utilization and AverageValue) are supported; other
// metric source types report InvalidMetricSourceType. The clock is
// injected, so windows and policy periods are testable without sleeping.
package podautoscaler
