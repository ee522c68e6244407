package batch

import (
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"skiff.dev/skiff/internal/registry"
)

func resource(t *testing.T, name string) *registry.Resource {
	t.Helper()
	for _, r := range Resources() {
		if r.Resource == name {
			return r
		}
	}
	t.Fatalf("no resource %q", name)
	return nil
}

func wantErrs(t *testing.T, errs field.ErrorList, want ...string) {
	t.Helper()
	got := map[string]bool{}
	for _, e := range errs {
		got[string(e.Type)+" "+e.Field] = true
	}
	for _, w := range want {
		if !got[w] {
			t.Errorf("missing error %q in %v", w, errs)
		}
	}
	if len(want) == 0 && len(errs) != 0 {
		t.Errorf("unexpected errors: %v", errs)
	}
}

func podTemplate() corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{Spec: corev1.PodSpec{
		RestartPolicy: corev1.RestartPolicyNever,
		Containers:    []corev1.Container{{Name: "c", Image: "busybox"}},
	}}
}

// created runs a job through the create path: default, prepare, validate.
func created(t *testing.T, mutate func(*batchv1.Job)) (*batchv1.Job, field.ErrorList) {
	r := resource(t, "jobs")
	j := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "pi", Namespace: "default", UID: "uid-1"}, Spec: batchv1.JobSpec{Template: podTemplate()}}
	if mutate != nil {
		mutate(j)
	}
	r.Default(j)
	r.PrepareForCreate(j)
	return j, r.Validate(j)
}

func TestJobDefaultsAndGeneratedSelector(t *testing.T) {
	j, errs := created(t, func(j *batchv1.Job) { j.Spec.Template.Labels = map[string]string{"app": "pi"} })
	wantErrs(t, errs)
	s := j.Spec
	if *s.Completions != 1 || *s.Parallelism != 1 || *s.BackoffLimit != 6 || *s.CompletionMode != batchv1.NonIndexedCompletion ||
		*s.Suspend || *s.ManualSelector || *s.PodReplacementPolicy != batchv1.TerminatingOrFailed {
		t.Errorf("bad defaults: %+v", s)
	}
	if j.Labels["app"] != "pi" {
		t.Errorf("job labels not defaulted from template: %v", j.Labels)
	}
	for k, v := range map[string]string{"controller-uid": "uid-1", "batch.kubernetes.io/controller-uid": "uid-1",
		"job-name": "pi", "batch.kubernetes.io/job-name": "pi"} {
		if j.Spec.Template.Labels[k] != v {
			t.Errorf("template label %s = %q, want %q", k, j.Spec.Template.Labels[k], v)
		}
	}
	if got := j.Spec.Selector.MatchLabels; len(got) != 1 || got["batch.kubernetes.io/controller-uid"] != "uid-1" {
		t.Errorf("selector = %v", got)
	}

	// Parallelism alone leaves completions unset.
	j2, _ := created(t, func(j *batchv1.Job) { j.Spec.Parallelism = int32Ptr(3) })
	if j2.Spec.Completions != nil || *j2.Spec.Parallelism != 3 {
		t.Errorf("parallel job defaults: %+v", j2.Spec)
	}
	j3, _ := created(t, func(j *batchv1.Job) { j.Spec.PodFailurePolicy = &batchv1.PodFailurePolicy{} })
	if *j3.Spec.PodReplacementPolicy != batchv1.Failed {
		t.Errorf("podReplacementPolicy with podFailurePolicy = %v", *j3.Spec.PodReplacementPolicy)
	}
}

func TestJobValidation(t *testing.T) {
	tr := true
	cases := []struct {
		name   string
		mutate func(*batchv1.Job)
		want   []string
	}{
		{"restartPolicy Always", func(j *batchv1.Job) { j.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyAlways },
			[]string{"FieldValueNotSupported spec.template.spec.restartPolicy"}},
		{"negative parallelism", func(j *batchv1.Job) { j.Spec.Parallelism = int32Ptr(-1) }, []string{"FieldValueInvalid spec.parallelism"}},
		{"negative backoff", func(j *batchv1.Job) { j.Spec.BackoffLimit = int32Ptr(-1) }, []string{"FieldValueInvalid spec.backoffLimit"}},
		{"bad completion mode", func(j *batchv1.Job) { m := batchv1.CompletionMode("Some"); j.Spec.CompletionMode = &m },
			[]string{"FieldValueNotSupported spec.completionMode"}},
		{"indexed without completions", func(j *batchv1.Job) {
			m := batchv1.IndexedCompletion
			j.Spec.CompletionMode, j.Spec.Parallelism = &m, int32Ptr(2)
		}, []string{"FieldValueRequired spec.completions"}},
		{"wrong job-name label", func(j *batchv1.Job) { j.Spec.Template.Labels = map[string]string{"job-name": "other"} },
			[]string{"FieldValueInvalid spec.template.metadata.labels[job-name]"}},
		{"foreign selector", func(j *batchv1.Job) {
			j.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"batch.kubernetes.io/controller-uid": "wrong"}}
		}, []string{"FieldValueInvalid spec.selector"}},
		{"manual selector missing", func(j *batchv1.Job) { j.Spec.ManualSelector = &tr }, []string{"FieldValueRequired spec.selector"}},
		{"manual selector mismatch", func(j *batchv1.Job) {
			j.Spec.ManualSelector = &tr
			j.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"a": "b"}}
		}, []string{"FieldValueInvalid spec.template.metadata.labels"}},
		{"podFailurePolicy needs Never", func(j *batchv1.Job) {
			j.Spec.PodFailurePolicy = &batchv1.PodFailurePolicy{}
			j.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyOnFailure
		}, []string{"FieldValueInvalid spec.template.spec.restartPolicy"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, errs := created(t, c.mutate)
			wantErrs(t, errs, c.want...)
		})
	}
	_, errs := created(t, func(j *batchv1.Job) {
		j.Spec.ManualSelector = &tr
		j.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"a": "b"}}
		j.Spec.Template.Labels = map[string]string{"a": "b"}
	})
	wantErrs(t, errs)
}

func TestJobUpdate(t *testing.T) {
	r := resource(t, "jobs")
	old, _ := created(t, nil)
	upd := old.DeepCopy()
	upd.Spec.Parallelism = int32Ptr(4)
	upd.Spec.ActiveDeadlineSeconds = new(int64)
	wantErrs(t, r.ValidateUpdate(upd, old))

	upd = old.DeepCopy()
	upd.Spec.Template.Spec.Containers[0].Image = "other"
	wantErrs(t, r.ValidateUpdate(upd, old), "FieldValueInvalid spec.template")

	upd = old.DeepCopy()
	upd.Spec.Completions = int32Ptr(5)
	wantErrs(t, r.ValidateUpdate(upd, old), "FieldValueInvalid spec.completions")

	upd = old.DeepCopy()
	upd.Spec.Selector.MatchLabels["x"] = "y"
	wantErrs(t, r.ValidateUpdate(upd, old), "FieldValueInvalid spec.selector")

	// A suspended, never-started job may change scheduling directives.
	tr := true
	old.Spec.Suspend = &tr
	upd = old.DeepCopy()
	upd.Spec.Template.Spec.NodeSelector = map[string]string{"zone": "a"}
	wantErrs(t, r.ValidateUpdate(upd, old))
	old.Status.StartTime = &metav1.Time{Time: time.Now()}
	wantErrs(t, r.ValidateUpdate(upd, old), "FieldValueInvalid spec.template")
}

func TestJobStatusAndFields(t *testing.T) {
	r := resource(t, "jobs")
	j, _ := created(t, nil)
	j.Status.Succeeded = 3
	if r.SelectableFields(j)["status.successful"] != "3" {
		t.Errorf("status.successful = %q", r.SelectableFields(j)["status.successful"])
	}
	old := j.DeepCopy()
	j.Status.Failed = -1
	wantErrs(t, r.ValidateStatusUpdate(j, old), "FieldValueInvalid status.failed")
	upd := old.DeepCopy()
	upd.Status.Succeeded = 9
	r.PrepareForUpdate(upd, old)
	if upd.Status.Succeeded != 3 {
		t.Errorf("main update changed status")
	}
}

func TestJobRow(t *testing.T) {
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *metav1.Time { t := metav1.NewTime(now.Add(-d)); return &t }
	base := func() *batchv1.Job {
		return &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "pi", CreationTimestamp: *at(10 * time.Minute)},
			Spec: batchv1.JobSpec{Completions: int32Ptr(3), Template: podTemplate(),
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"a": "b"}}}}
	}
	running := base()
	running.Status = batchv1.JobStatus{Succeeded: 1, StartTime: at(5 * time.Minute)}
	done := base()
	done.Status = batchv1.JobStatus{Succeeded: 3, StartTime: at(5 * time.Minute), CompletionTime: at(2 * time.Minute),
		Conditions: []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}}
	parallel := base()
	parallel.Spec.Completions, parallel.Spec.Parallelism = nil, int32Ptr(4)
	suspended := base()
	suspended.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobSuspended, Status: corev1.ConditionTrue}}
	cases := []struct {
		j    *batchv1.Job
		want []interface{}
	}{
		{running, []interface{}{"pi", "Running", "1/3", "5m", "10m", "c", "busybox", "a=b"}},
		{done, []interface{}{"pi", "Complete", "3/3", "3m", "10m", "c", "busybox", "a=b"}},
		{parallel, []interface{}{"pi", "Running", "0/1 of 4", "", "10m", "c", "busybox", "a=b"}},
		{suspended, []interface{}{"pi", "Suspended", "0/3", "", "10m", "c", "busybox", "a=b"}},
	}
	cols := len(resource(t, "jobs").TableColumns)
	for i, c := range cases {
		row := jobRow(c.j, now)
		if len(row) != cols {
			t.Errorf("case %d: %d cells for %d columns", i, len(row), cols)
		}
		for k := range c.want {
			if row[k] != c.want[k] {
				t.Errorf("case %d cell %d = %#v, want %#v", i, k, row[k], c.want[k])
			}
		}
	}
}

func TestCronJob(t *testing.T) {
	r := resource(t, "cronjobs")
	newCJ := func() *batchv1.CronJob {
		cj := &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Name: "hello", Namespace: "default"},
			Spec: batchv1.CronJobSpec{Schedule: "*/1 * * * *", JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: podTemplate()}}}}
		r.Default(cj)
		return cj
	}
	cj := newCJ()
	if cj.Spec.ConcurrencyPolicy != batchv1.AllowConcurrent || *cj.Spec.Suspend || *cj.Spec.SuccessfulJobsHistoryLimit != 3 || *cj.Spec.FailedJobsHistoryLimit != 1 {
		t.Fatalf("bad defaults: %+v", cj.Spec)
	}
	wantErrs(t, r.Validate(cj))
	utc, empty := "UTC", ""
	cases := []struct {
		name   string
		mutate func(*batchv1.CronJob)
		want   string
	}{
		{"no schedule", func(c *batchv1.CronJob) { c.Spec.Schedule = "" }, "FieldValueRequired spec.schedule"},
		{"bad schedule", func(c *batchv1.CronJob) { c.Spec.Schedule = "61 * * * *" }, "FieldValueInvalid spec.schedule"},
		{"TZ in schedule", func(c *batchv1.CronJob) { c.Spec.Schedule = "TZ=UTC * * * * *" }, "FieldValueInvalid spec.schedule"},
		{"empty time zone", func(c *batchv1.CronJob) { c.Spec.TimeZone = &empty }, "FieldValueInvalid spec.timeZone"},
		{"bad policy", func(c *batchv1.CronJob) { c.Spec.ConcurrencyPolicy = "Sometimes" }, "FieldValueNotSupported spec.concurrencyPolicy"},
		{"long name", func(c *batchv1.CronJob) { c.Name = strings.Repeat("a", 53) }, "FieldValueInvalid metadata.name"},
		{"selector given", func(c *batchv1.CronJob) {
			c.Spec.JobTemplate.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"a": "b"}}
		}, "FieldValueInvalid spec.jobTemplate.spec.selector"},
		{"restartPolicy Always", func(c *batchv1.CronJob) {
			c.Spec.JobTemplate.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyAlways
		},
			"FieldValueNotSupported spec.jobTemplate.spec.template.spec.restartPolicy"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			x := newCJ()
			c.mutate(x)
			wantErrs(t, r.Validate(x), c.want)
		})
	}
	cj.Spec.TimeZone = &utc
	wantErrs(t, r.Validate(cj))

	cj.CreationTimestamp = metav1.NewTime(time.Now().Add(-5 * time.Hour))
	cj.Status.Active = []corev1.ObjectReference{{Name: "a"}}
	row := r.TableRow(cj)
	want := []interface{}{"hello", "*/1 * * * *", "UTC", "False", int64(1), "<none>", "5h", "c", "busybox", "<none>"}
	if len(row) != len(r.TableColumns) || len(row) != len(want) {
		t.Fatalf("row %v", row)
	}
	for i := range want {
		if row[i] != want[i] {
			t.Errorf("cell %d (%s) = %#v, want %#v", i, r.TableColumns[i].Name, row[i], want[i])
		}
	}
}
