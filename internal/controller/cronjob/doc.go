// Package cronjob is skiff's CronJob controller.
//
// Each sync reconciles status.active with the Jobs the CronJob controls,
// records lastSuccessfulTime, trims finished Jobs to the history limits and,
// unless suspended, starts the Job of the most recent missed activation
// (only that one, however many were missed; more than 100 misses raise a
// TooManyMissedTimes warning, as upstream) if it is within
// startingDeadlineSeconds and the concurrencyPolicy allows. Jobs are named
// <cronjob>-<scheduled time in minutes since the epoch> so two controllers,
// or a retry, never start the same activation twice, and carry the
// batch.kubernetes.io/cronjob-scheduled-timestamp annotation. Schedules are
// parsed by internal/registry/batch and evaluated in spec.timeZone (default:
// the controller's local zone). Time comes from an injected clock; the key is
// requeued for the next activation.
package cronjob
