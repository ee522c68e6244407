package batch

import (
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"skiff.dev/skiff/internal/registry"
	"skiff.dev/skiff/internal/registry/core"
	"skiff.dev/skiff/internal/registry/printing"
)

// maxCronJobNameLength leaves room for the 11-character suffix the
// controller appends to job names.
const maxCronJobNameLength = 52

func cronJobs() *registry.Resource {
	return &registry.Resource{
		GroupVersion: batchv1.SchemeGroupVersion,
		Resource:     "cronjobs", Singular: "cronjob", Kind: "CronJob", ListKind: "CronJobList",
		Namespaced: true, ShortNames: []string{"cj"}, Categories: []string{"all"},
		New:     func() runtime.Object { return &batchv1.CronJob{} },
		NewList: func() runtime.Object { return &batchv1.CronJobList{} },
		Default: func(obj runtime.Object) {
			cj, ok := obj.(*batchv1.CronJob)
			if !ok {
				return
			}
			if cj.Spec.ConcurrencyPolicy == "" {
				cj.Spec.ConcurrencyPolicy = batchv1.AllowConcurrent
			}
			if cj.Spec.Suspend == nil {
				f := false
				cj.Spec.Suspend = &f
			}
			if cj.Spec.SuccessfulJobsHistoryLimit == nil {
				cj.Spec.SuccessfulJobsHistoryLimit = int32Ptr(3)
			}
			if cj.Spec.FailedJobsHistoryLimit == nil {
				cj.Spec.FailedJobsHistoryLimit = int32Ptr(1)
			}
			core.DefaultPodTemplateSpec(&cj.Spec.JobTemplate.Spec.Template)
		},
		PrepareForCreate: func(obj runtime.Object) {
			if cj, ok := obj.(*batchv1.CronJob); ok {
				cj.Status = batchv1.CronJobStatus{}
			}
		},
		PrepareForUpdate: func(obj, old runtime.Object) {
			n, ok1 := obj.(*batchv1.CronJob)
			o, ok2 := old.(*batchv1.CronJob)
			if ok1 && ok2 {
				n.Status = o.Status
			}
		},
		PrepareForStatusUpdate: func(obj, old runtime.Object) {
			n, ok1 := obj.(*batchv1.CronJob)
			o, ok2 := old.(*batchv1.CronJob)
			if ok1 && ok2 {
				n.Spec = o.Spec
			}
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			cj := obj.(*batchv1.CronJob)
			var errs field.ErrorList
			if len(cj.Name) > maxCronJobNameLength {
				errs = append(errs, field.Invalid(field.NewPath("metadata", "name"), cj.Name, "must be no more than 52 characters"))
			}
			return append(errs, validateCronJobSpec(&cj.Spec, field.NewPath("spec"))...)
		},
		Subresources: []string{"status"},
		TableColumns: append(append([]metav1.TableColumnDefinition{
			printing.NameColumn(),
			printing.Column("Schedule", "string", "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron."),
			printing.Column("Timezone", "string", "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones."),
			printing.Column("Suspend", "boolean", "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions."),
			printing.Column("Active", "integer", "A list of pointers to currently running jobs."),
			printing.Column("Last Schedule", "string", "Information when was the last time the job was successfully scheduled."),
			printing.AgeColumn(),
		}, printing.ContainerColumns()...), printing.Wide("Selector", "string", "A label query over pods that should match the pod count.")),
		TableRow: func(obj runtime.Object) []interface{} {
			cj := obj.(*batchv1.CronJob)
			last := "<none>"
			if cj.Status.LastScheduleTime != nil {
				last = printing.Age(*cj.Status.LastScheduleTime)
			}
			tz := "<none>"
			if cj.Spec.TimeZone != nil {
				tz = *cj.Spec.TimeZone
			}
			names, images := printing.ContainerCells(cj.Spec.JobTemplate.Spec.Template.Spec.Containers)
			return []interface{}{cj.Name, cj.Spec.Schedule, tz, printing.BoolPtr(cj.Spec.Suspend), int64(len(cj.Status.Active)),
				last, printing.Age(cj.CreationTimestamp), names, images, metav1.FormatLabelSelector(cj.Spec.JobTemplate.Spec.Selector)}
		},
	}
}

func validateCronJobSpec(s *batchv1.CronJobSpec, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if s.Schedule == "" {
		errs = append(errs, field.Required(p.Child("schedule"), ""))
	} else {
		if err := ParseSchedule(s.Schedule); err != nil {
			errs = append(errs, field.Invalid(p.Child("schedule"), s.Schedule, err.Error()))
		}
		if strings.Contains(s.Schedule, "TZ") {
			errs = append(errs, field.Invalid(p.Child("schedule"), s.Schedule, "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"))
		}
	}
	if s.TimeZone != nil {
		if *s.TimeZone == "" {
			errs = append(errs, field.Invalid(p.Child("timeZone"), *s.TimeZone, "timeZone must be nil or non-empty string"))
		} else if strings.EqualFold(*s.TimeZone, "local") {
			errs = append(errs, field.Invalid(p.Child("timeZone"), *s.TimeZone, "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones"))
		} else if _, err := time.LoadLocation(*s.TimeZone); err != nil {
			errs = append(errs, field.Invalid(p.Child("timeZone"), *s.TimeZone, err.Error()))
		}
	}
	if s.StartingDeadlineSeconds != nil {
		errs = append(errs, apimachineryvalidation.ValidateNonnegativeField(*s.StartingDeadlineSeconds, p.Child("startingDeadlineSeconds"))...)
	}
	switch s.ConcurrencyPolicy {
	case batchv1.AllowConcurrent, batchv1.ForbidConcurrent, batchv1.ReplaceConcurrent:
	case "":
		errs = append(errs, field.Required(p.Child("concurrencyPolicy"), ""))
	default:
		errs = append(errs, field.NotSupported(p.Child("concurrencyPolicy"), s.ConcurrencyPolicy,
			[]string{string(batchv1.AllowConcurrent), string(batchv1.ForbidConcurrent), string(batchv1.ReplaceConcurrent)}))
	}
	if s.SuccessfulJobsHistoryLimit != nil {
		errs = append(errs, apimachineryvalidation.ValidateNonnegativeField(int64(*s.SuccessfulJobsHistoryLimit), p.Child("successfulJobsHistoryLimit"))...)
	}
	if s.FailedJobsHistoryLimit != nil {
		errs = append(errs, apimachineryvalidation.ValidateNonnegativeField(int64(*s.FailedJobsHistoryLimit), p.Child("failedJobsHistoryLimit"))...)
	}
	jt := &s.JobTemplate.Spec
	jp := p.Child("jobTemplate", "spec")
	if jt.Selector != nil && (jt.ManualSelector == nil || !*jt.ManualSelector) {
		errs = append(errs, field.Invalid(jp.Child("selector"), jt.Selector, "`selector` will be auto-generated"))
	}
	return append(errs, validateJobSpec(jt, jp, false)...)
}
