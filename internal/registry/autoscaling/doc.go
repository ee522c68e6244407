// Package autoscaling holds the registry descriptors for
// horizontalpodautoscalers in autoscaling/v2 (the storage version) and
// autoscaling/v1 (served from the same storage).
//
// Contract: Resources returns the v2 descriptor and the v1 one, whose
// StorageResource is the v2 GVR and whose ToStorage/FromStorage convert by
// hand. As upstream does, v1's targetCPUUtilizationPercentage is a v2
// Resource cpu Utilization metric (and currentCPUUtilizationPercentage its
// status), v2 behavior is carried in the autoscaling.alpha.kubernetes.io/
// behavior annotation and status conditions in .../conditions, both in the
// JSON form upstream uses. Deviation: the other v2 metrics (and their
// current values) are carried in autoscaling.skiff.dev/metrics and
// autoscaling.skiff.dev/current-metrics annotations holding v2 JSON,
// instead of upstream's autoscaling/v1 MetricSpec JSON in
// autoscaling.alpha.kubernetes.io/metrics; v2 -> v1 -> v2 is lossless.
package autoscaling
