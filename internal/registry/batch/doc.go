// Package batch holds the registry descriptors for the batch/v1 API group:
// jobs and cronjobs.
//
// Contract: Resources returns one *registry.Resource per resource with pure
// hooks mirroring upstream's batch/v1 defaulters, pkg/apis/batch/validation
// and pkg/registry/batch/*/strategy.go. Notably, PrepareForCreate of jobs
// generates the controller-uid selector and the job-name/controller-uid pod
// template labels (both legacy and batch.kubernetes.io/ forms) unless
// spec.manualSelector is true; it needs metadata.uid, which the generic REST
// code assigns before calling it, and Validate must run after it. CronJob
// schedules are checked by a small standard-cron parser (ParseSchedule) that
// accepts what upstream's robfig/cron standard parser accepts: five fields,
// names for months and weekdays, ranges, steps, lists and the @-macros.
package batch
