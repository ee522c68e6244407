package batch

import (
	"fmt"
	"math"
	"strconv"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"skiff.dev/skiff/internal/registry"
	"skiff.dev/skiff/internal/registry/core"
	"skiff.dev/skiff/internal/registry/printing"
)

// Legacy (unprefixed) labels upstream still writes beside the
// batch.kubernetes.io/ ones.
const (
	legacyJobNameLabel       = "job-name"
	legacyControllerUIDLabel = "controller-uid"
)

func jobs() *registry.Resource {
	return &registry.Resource{
		GroupVersion: batchv1.SchemeGroupVersion,
		Resource:     "jobs", Singular: "job", Kind: "Job", ListKind: "JobList",
		Namespaced: true, Categories: []string{"all"},
		New:     func() runtime.Object { return &batchv1.Job{} },
		NewList: func() runtime.Object { return &batchv1.JobList{} },
		Default: func(obj runtime.Object) {
			if j, ok := obj.(*batchv1.Job); ok {
				defaultJob(j)
			}
		},
		PrepareForCreate: func(obj runtime.Object) {
			j, ok := obj.(*batchv1.Job)
			if !ok {
				return
			}
			j.Status = batchv1.JobStatus{}
			if j.Spec.ManualSelector == nil || !*j.Spec.ManualSelector {
				generateSelector(j)
			}
		},
		PrepareForUpdate: func(obj, old runtime.Object) {
			n, ok1 := obj.(*batchv1.Job)
			o, ok2 := old.(*batchv1.Job)
			if ok1 && ok2 {
				n.Status = o.Status
			}
		},
		PrepareForStatusUpdate: func(obj, old runtime.Object) {
			n, ok1 := obj.(*batchv1.Job)
			o, ok2 := old.(*batchv1.Job)
			if ok1 && ok2 {
				n.Spec = o.Spec
			}
		},
		Validate: func(obj runtime.Object) field.ErrorList { return validateJob(obj.(*batchv1.Job)) },
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			return validateJobUpdate(obj.(*batchv1.Job), old.(*batchv1.Job))
		},
		ValidateStatusUpdate: func(obj, _ runtime.Object) field.ErrorList { return validateJobStatus(&obj.(*batchv1.Job).Status) },
		Subresources:         []string{"status"},
		TableColumns: append(append([]metav1.TableColumnDefinition{
			printing.NameColumn(),
			printing.Column("Status", "string", "Status of the job."),
			printing.Column("Completions", "string", "The completion status of the job as <successful>/<desired> or <successful>/1 of <parallelism>."),
			printing.Column("Duration", "string", "Time required to complete the job."),
			printing.AgeColumn(),
		}, printing.ContainerColumns()...), printing.Wide("Selector", "string", "A label query over pods that should match the pod count.")),
		TableRow: func(obj runtime.Object) []interface{} { return jobRow(obj.(*batchv1.Job), time.Now()) },
		SelectableFields: func(obj runtime.Object) fields.Set {
			return fields.Set{"status.successful": strconv.Itoa(int(obj.(*batchv1.Job).Status.Succeeded))}
		},
	}
}

func defaultJob(j *batchv1.Job) {
	s := &j.Spec
	if s.Completions == nil && s.Parallelism == nil {
		s.Completions, s.Parallelism = int32Ptr(1), int32Ptr(1)
	}
	if s.Parallelism == nil {
		s.Parallelism = int32Ptr(1)
	}
	if s.BackoffLimit == nil {
		if s.BackoffLimitPerIndex != nil {
			s.BackoffLimit = int32Ptr(math.MaxInt32)
		} else {
			s.BackoffLimit = int32Ptr(6)
		}
	}
	if len(j.Labels) == 0 && s.Template.Labels != nil {
		j.Labels = make(map[string]string, len(s.Template.Labels))
		for k, v := range s.Template.Labels {
			j.Labels[k] = v
		}
	}
	if s.CompletionMode == nil {
		m := batchv1.NonIndexedCompletion
		s.CompletionMode = &m
	}
	if s.Suspend == nil {
		f := false
		s.Suspend = &f
	}
	if s.ManualSelector == nil {
		f := false
		s.ManualSelector = &f
	}
	if s.PodFailurePolicy != nil {
		for _, rule := range s.PodFailurePolicy.Rules {
			for i := range rule.OnPodConditions {
				if rule.OnPodConditions[i].Status == "" {
					rule.OnPodConditions[i].Status = corev1.ConditionTrue
				}
			}
		}
	}
	if s.PodReplacementPolicy == nil {
		p := batchv1.TerminatingOrFailed
		if s.PodFailurePolicy != nil {
			p = batchv1.Failed
		}
		s.PodReplacementPolicy = &p
	}
	core.DefaultPodTemplateSpec(&s.Template)
}

// generateSelector adds the job-name and controller-uid labels to the pod
// template (user-set values win, validation then rejects conflicts) and
// selects on the controller-uid.
func generateSelector(j *batchv1.Job) {
	t := &j.Spec.Template
	if t.Labels == nil {
		t.Labels = map[string]string{}
	}
	for _, k := range []string{legacyJobNameLabel, batchv1.JobNameLabel} {
		if _, ok := t.Labels[k]; !ok {
			t.Labels[k] = j.Name
		}
	}
	for _, k := range []string{legacyControllerUIDLabel, batchv1.ControllerUidLabel} {
		if _, ok := t.Labels[k]; !ok {
			t.Labels[k] = string(j.UID)
		}
	}
	if j.Spec.Selector == nil {
		j.Spec.Selector = &metav1.LabelSelector{}
	}
	if j.Spec.Selector.MatchLabels == nil {
		j.Spec.Selector.MatchLabels = map[string]string{}
	}
	if _, ok := j.Spec.Selector.MatchLabels[batchv1.ControllerUidLabel]; !ok {
		j.Spec.Selector.MatchLabels[batchv1.ControllerUidLabel] = string(j.UID)
	}
}

func validateJob(j *batchv1.Job) field.ErrorList {
	errs := validateGeneratedSelector(j)
	return append(errs, validateJobSpec(&j.Spec, field.NewPath("spec"), true)...)
}

func validateGeneratedSelector(j *batchv1.Job) field.ErrorList {
	if (j.Spec.ManualSelector != nil && *j.Spec.ManualSelector) || j.Spec.Selector == nil {
		return nil
	}
	var errs field.ErrorList
	if j.UID == "" {
		errs = append(errs, field.Required(field.NewPath("metadata", "uid"), ""))
	}
	mp := field.NewPath("spec", "template", "metadata", "labels")
	for _, kv := range [][2]string{{legacyControllerUIDLabel, string(j.UID)}, {legacyJobNameLabel, j.Name},
		{batchv1.ControllerUidLabel, string(j.UID)}, {batchv1.JobNameLabel, j.Name}} {
		v, ok := j.Spec.Template.Labels[kv[0]]
		switch {
		case !ok:
			errs = append(errs, field.Required(mp.Key(kv[0]), kv[1]))
		case v != kv[1]:
			errs = append(errs, field.Invalid(mp.Key(kv[0]), j.Spec.Template.Labels, fmt.Sprintf("must be '%s'", kv[1])))
		}
	}
	expected := labels.Set{legacyControllerUIDLabel: string(j.UID), batchv1.ControllerUidLabel: string(j.UID)}
	if sel, err := metav1.LabelSelectorAsSelector(j.Spec.Selector); err == nil && !sel.Matches(expected) {
		errs = append(errs, field.Invalid(field.NewPath("spec", "selector"), j.Spec.Selector, "`selector` not auto-generated"))
	}
	return errs
}

// validateJobSpec checks a job spec; requireSelector is false for the job
// templates of CronJobs, whose selector is always generated.
func validateJobSpec(s *batchv1.JobSpec, p *field.Path, requireSelector bool) field.ErrorList {
	var errs field.ErrorList
	for _, f := range []struct {
		name string
		v    *int32
	}{{"parallelism", s.Parallelism}, {"completions", s.Completions}, {"backoffLimit", s.BackoffLimit},
		{"ttlSecondsAfterFinished", s.TTLSecondsAfterFinished}, {"backoffLimitPerIndex", s.BackoffLimitPerIndex},
		{"maxFailedIndexes", s.MaxFailedIndexes}} {
		if f.v != nil {
			errs = append(errs, apimachineryvalidation.ValidateNonnegativeField(int64(*f.v), p.Child(f.name))...)
		}
	}
	if s.ActiveDeadlineSeconds != nil {
		errs = append(errs, apimachineryvalidation.ValidateNonnegativeField(*s.ActiveDeadlineSeconds, p.Child("activeDeadlineSeconds"))...)
	}
	if s.CompletionMode != nil {
		switch *s.CompletionMode {
		case batchv1.NonIndexedCompletion:
		case batchv1.IndexedCompletion:
			if s.Completions == nil {
				errs = append(errs, field.Required(p.Child("completions"), fmt.Sprintf("when completion mode is %s", batchv1.IndexedCompletion)))
			}
		default:
			errs = append(errs, field.NotSupported(p.Child("completionMode"), *s.CompletionMode,
				[]string{string(batchv1.NonIndexedCompletion), string(batchv1.IndexedCompletion)}))
		}
	}
	indexed := s.CompletionMode != nil && *s.CompletionMode == batchv1.IndexedCompletion
	if s.BackoffLimitPerIndex != nil && !indexed {
		errs = append(errs, field.Invalid(p.Child("backoffLimitPerIndex"), *s.BackoffLimitPerIndex,
			fmt.Sprintf("requires completion mode %s", batchv1.IndexedCompletion)))
	}
	if s.MaxFailedIndexes != nil && s.BackoffLimitPerIndex == nil {
		errs = append(errs, field.Required(p.Child("backoffLimitPerIndex"), "when maxFailedIndexes is specified"))
	}
	if s.PodReplacementPolicy != nil {
		switch *s.PodReplacementPolicy {
		case batchv1.TerminatingOrFailed:
			if s.PodFailurePolicy != nil {
				errs = append(errs, field.NotSupported(p.Child("podReplacementPolicy"), *s.PodReplacementPolicy, []string{string(batchv1.Failed)}))
			}
		case batchv1.Failed:
		default:
			errs = append(errs, field.NotSupported(p.Child("podReplacementPolicy"), *s.PodReplacementPolicy,
				[]string{string(batchv1.TerminatingOrFailed), string(batchv1.Failed)}))
		}
	}
	if s.Selector == nil {
		if requireSelector {
			errs = append(errs, field.Required(p.Child("selector"), ""))
		}
	} else {
		errs = append(errs, metav1validation.ValidateLabelSelector(s.Selector, metav1validation.LabelSelectorValidationOptions{}, p.Child("selector"))...)
		if sel, err := metav1.LabelSelectorAsSelector(s.Selector); err == nil && !sel.Matches(labels.Set(s.Template.Labels)) {
			errs = append(errs, field.Invalid(p.Child("template", "metadata", "labels"), s.Template.Labels, "`selector` does not match template `labels`"))
		}
	}
	errs = append(errs, core.ValidatePodTemplateSpec(&s.Template, p.Child("template"))...)
	rp := p.Child("template", "spec", "restartPolicy")
	switch {
	case s.PodFailurePolicy != nil && s.Template.Spec.RestartPolicy != corev1.RestartPolicyNever:
		errs = append(errs, field.Invalid(rp, s.Template.Spec.RestartPolicy, fmt.Sprintf("only %q is supported when podFailurePolicy is specified", corev1.RestartPolicyNever)))
	case s.Template.Spec.RestartPolicy != corev1.RestartPolicyOnFailure && s.Template.Spec.RestartPolicy != corev1.RestartPolicyNever:
		errs = append(errs, field.NotSupported(rp, s.Template.Spec.RestartPolicy,
			[]string{string(corev1.RestartPolicyOnFailure), string(corev1.RestartPolicyNever)}))
	}
	return errs
}

func validateJobUpdate(n, o *batchv1.Job) field.ErrorList {
	p := field.NewPath("spec")
	errs := apimachineryvalidation.ValidateImmutableField(n.Spec.Selector, o.Spec.Selector, p.Child("selector"))
	// Elastic indexed jobs may change completions together with parallelism.
	elastic := n.Spec.CompletionMode != nil && *n.Spec.CompletionMode == batchv1.IndexedCompletion &&
		n.Spec.Completions != nil && n.Spec.Parallelism != nil && *n.Spec.Completions == *n.Spec.Parallelism &&
		o.Spec.Completions != nil && o.Spec.Parallelism != nil && *o.Spec.Completions == *o.Spec.Parallelism
	if !elastic {
		errs = append(errs, apimachineryvalidation.ValidateImmutableField(n.Spec.Completions, o.Spec.Completions, p.Child("completions"))...)
	}
	errs = append(errs, apimachineryvalidation.ValidateImmutableField(n.Spec.CompletionMode, o.Spec.CompletionMode, p.Child("completionMode"))...)
	errs = append(errs, apimachineryvalidation.ValidateImmutableField(n.Spec.PodFailurePolicy, o.Spec.PodFailurePolicy, p.Child("podFailurePolicy"))...)
	errs = append(errs, apimachineryvalidation.ValidateImmutableField(n.Spec.BackoffLimitPerIndex, o.Spec.BackoffLimitPerIndex, p.Child("backoffLimitPerIndex"))...)
	errs = append(errs, apimachineryvalidation.ValidateImmutableField(n.Spec.ManualSelector, o.Spec.ManualSelector, p.Child("manualSelector"))...)

	// The pod template is immutable, except that a suspended job that has
	// never started may change its scheduling directives (and its labels
	// and annotations), as upstream allows.
	oldTmpl := o.Spec.Template.DeepCopy()
	suspended := n.Spec.Suspend != nil && *n.Spec.Suspend
	if suspended && o.Status.StartTime == nil {
		oldTmpl.Labels = n.Spec.Template.Labels
		oldTmpl.Annotations = n.Spec.Template.Annotations
		oldTmpl.Spec.NodeSelector = n.Spec.Template.Spec.NodeSelector
		oldTmpl.Spec.Tolerations = n.Spec.Template.Spec.Tolerations
		oldTmpl.Spec.Affinity = n.Spec.Template.Spec.Affinity
		oldTmpl.Spec.SchedulingGates = n.Spec.Template.Spec.SchedulingGates
	}
	if !apiequality.Semantic.DeepEqual(&n.Spec.Template, oldTmpl) {
		errs = append(errs, field.Invalid(p.Child("template"), n.Spec.Template, "field is immutable"))
	}
	return errs
}

func validateJobStatus(s *batchv1.JobStatus) field.ErrorList {
	p := field.NewPath("status")
	var errs field.ErrorList
	for _, f := range []struct {
		name string
		v    int32
	}{{"active", s.Active}, {"succeeded", s.Succeeded}, {"failed", s.Failed}} {
		errs = append(errs, apimachineryvalidation.ValidateNonnegativeField(int64(f.v), p.Child(f.name))...)
	}
	if s.Ready != nil {
		errs = append(errs, apimachineryvalidation.ValidateNonnegativeField(int64(*s.Ready), p.Child("ready"))...)
	}
	if s.Terminating != nil {
		errs = append(errs, apimachineryvalidation.ValidateNonnegativeField(int64(*s.Terminating), p.Child("terminating"))...)
	}
	if s.StartTime != nil && s.CompletionTime != nil && s.CompletionTime.Before(s.StartTime) {
		errs = append(errs, field.Invalid(p.Child("completionTime"), s.CompletionTime, "completionTime cannot be set before startTime"))
	}
	return errs
}

func hasJobCondition(j *batchv1.Job, t batchv1.JobConditionType) bool {
	for _, c := range j.Status.Conditions {
		if c.Type == t && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

func jobStatus(j *batchv1.Job) string {
	switch {
	case hasJobCondition(j, batchv1.JobComplete):
		return "Complete"
	case hasJobCondition(j, batchv1.JobFailed):
		return "Failed"
	case j.DeletionTimestamp != nil:
		return "Terminating"
	case hasJobCondition(j, batchv1.JobSuspended):
		return "Suspended"
	case hasJobCondition(j, batchv1.JobFailureTarget):
		return "FailureTarget"
	case hasJobCondition(j, batchv1.JobSuccessCriteriaMet):
		return "SuccessCriteriaMet"
	}
	return "Running"
}

func jobRow(j *batchv1.Job, now time.Time) []interface{} {
	var completions string
	switch {
	case j.Spec.Completions != nil:
		completions = fmt.Sprintf("%d/%d", j.Status.Succeeded, *j.Spec.Completions)
	case j.Spec.Parallelism != nil && *j.Spec.Parallelism > 1:
		completions = fmt.Sprintf("%d/1 of %d", j.Status.Succeeded, *j.Spec.Parallelism)
	default:
		completions = fmt.Sprintf("%d/1", j.Status.Succeeded)
	}
	var dur string
	switch {
	case j.Status.StartTime == nil:
	case j.Status.CompletionTime == nil:
		dur = duration.HumanDuration(now.Sub(j.Status.StartTime.Time))
	default:
		dur = duration.HumanDuration(j.Status.CompletionTime.Sub(j.Status.StartTime.Time))
	}
	names, images := printing.ContainerCells(j.Spec.Template.Spec.Containers)
	return []interface{}{j.Name, jobStatus(j), completions, dur, printing.AgeAt(j.CreationTimestamp, now),
		names, images, metav1.FormatLabelSelector(j.Spec.Selector)}
}

func int32Ptr(i int32) *int32 { return &i }
