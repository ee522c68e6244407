package cronjob

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	ktypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	core "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

type fixture struct {
	t        *testing.T
	client   *fake.Clientset
	factory  informers.SharedInformerFactory
	c        *Controller
	clock    *clocktesting.FakeClock
	recorder *record.FakeRecorder
}

func newFixture(t *testing.T, now time.Time, objs ...runtime.Object) *fixture {
	t.Helper()
	client := fake.NewClientset(objs...)
	factory := informers.NewSharedInformerFactory(client, 0)
	clk := clocktesting.NewFakeClock(now)
	rec := record.NewFakeRecorder(100)
	c, err := New(Config{Clock: clk}, client, factory.Batch().V1().CronJobs(), factory.Batch().V1().Jobs(), rec, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, client: client, factory: factory, c: c, clock: clk, recorder: rec}
	f.refresh()
	return f
}

func (f *fixture) refresh() {
	f.t.Helper()
	ctx := context.Background()
	cjs, _ := f.client.BatchV1().CronJobs("").List(ctx, metav1.ListOptions{})
	jobs, _ := f.client.BatchV1().Jobs("").List(ctx, metav1.ListOptions{})
	var a, b []any
	for i := range cjs.Items {
		a = append(a, &cjs.Items[i])
	}
	for i := range jobs.Items {
		b = append(b, &jobs.Items[i])
	}
	if err := f.factory.Batch().V1().CronJobs().Informer().GetIndexer().Replace(a, ""); err != nil {
		f.t.Fatal(err)
	}
	if err := f.factory.Batch().V1().Jobs().Informer().GetIndexer().Replace(b, ""); err != nil {
		f.t.Fatal(err)
	}
	f.client.ClearActions()
}

// sync runs one sync and returns the requeue delay.
func (f *fixture) sync() *time.Duration {
	f.t.Helper()
	cj, err := f.c.cjLister.CronJobs("default").Get("cj")
	if err != nil {
		f.t.Fatal(err)
	}
	after, err := f.c.sync(context.Background(), cj.DeepCopy())
	if err != nil {
		f.t.Fatalf("sync: %v", err)
	}
	return after
}

func (f *fixture) writes() []string {
	var out []string
	for _, a := range f.client.Actions() {
		v := a.GetVerb()
		if v == "list" || v == "watch" || v == "get" {
			continue
		}
		s := v + " " + a.GetResource().Resource
		if a.GetSubresource() != "" {
			s += "/" + a.GetSubresource()
		}
		switch a := a.(type) {
		case core.CreateAction:
			if m, ok := a.GetObject().(metav1.Object); ok && a.GetSubresource() == "" {
				s += " " + m.GetName()
			}
		case core.DeleteAction:
			s += " " + a.GetName()
		}
		out = append(out, s)
	}
	return out
}

func (f *fixture) expectWrites(want ...string) {
	f.t.Helper()
	if got := f.writes(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		f.t.Fatalf("writes:\n got  %q\n want %q", got, want)
	}
}

func (f *fixture) cronJob() *batchv1.CronJob {
	cj, err := f.client.BatchV1().CronJobs("default").Get(context.Background(), "cj", metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	return cj
}

func newCronJob(schedule string, mutate ...func(*batchv1.CronJob)) *batchv1.CronJob {
	cj := &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Name: "cj", Namespace: "default", UID: "cj-uid", CreationTimestamp: metav1.NewTime(t0)},
		Spec: batchv1.CronJobSpec{
			Schedule:          schedule,
			ConcurrencyPolicy: batchv1.AllowConcurrent,
			JobTemplate: batchv1.JobTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "cj"}},
				Spec: batchv1.JobSpec{Template: v1.PodTemplateSpec{Spec: v1.PodSpec{RestartPolicy: v1.RestartPolicyNever,
					Containers: []v1.Container{{Name: "c", Image: "busybox"}}}}},
			},
		},
	}
	for _, m := range mutate {
		m(cj)
	}
	return cj
}

func minutes(t time.Time) string { return fmt.Sprint(t.Unix() / 60) }

func TestFiresOnInjectedClock(t *testing.T) {
	f := newFixture(t, t0.Add(30*time.Second), newCronJob("*/1 * * * *"))
	after := f.sync()
	f.expectWrites()
	if after == nil || *after != 30*time.Second+100*time.Millisecond {
		t.Fatalf("requeue after %v", after)
	}
	f.clock.Step(30 * time.Second)
	f.sync()
	name := "cj-" + minutes(t0.Add(time.Minute))
	f.expectWrites("create jobs "+name, "update cronjobs/status")
	j, err := f.client.BatchV1().Jobs("default").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if j.Annotations[batchv1.CronJobScheduledTimestampAnnotation] != "2026-01-01T00:01:00Z" || j.Labels["app"] != "cj" ||
		metav1.GetControllerOf(j).UID != "cj-uid" {
		t.Fatalf("job = %+v", j.ObjectMeta)
	}
	st := f.cronJob().Status
	if len(st.Active) != 1 || st.Active[0].Name != name || !st.LastScheduleTime.Time.Equal(t0.Add(time.Minute)) {
		t.Fatalf("status = %+v", st)
	}
	// The same activation is never started twice.
	f.refresh()
	f.sync()
	f.expectWrites()
}

func activeJob(name string, start time.Time) *batchv1.Job {
	return &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: ktypes.UID("uid-" + name),
		CreationTimestamp: metav1.NewTime(start),
		OwnerReferences:   []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "CronJob", Name: "cj", UID: "cj-uid", Controller: ptr.To(true)}}},
		Status: batchv1.JobStatus{StartTime: &metav1.Time{Time: start}}}
}

func finishedJob(name string, start time.Time, cond batchv1.JobConditionType) *batchv1.Job {
	j := activeJob(name, start)
	j.Status.Conditions = []batchv1.JobCondition{{Type: cond, Status: v1.ConditionTrue}}
	if cond == batchv1.JobComplete {
		j.Status.CompletionTime = &metav1.Time{Time: start.Add(10 * time.Second)}
	}
	return j
}

func TestConcurrencyPolicies(t *testing.T) {
	running := activeJob("cj-old", t0)
	withActive := func(p batchv1.ConcurrencyPolicy) func(*batchv1.CronJob) {
		return func(cj *batchv1.CronJob) {
			cj.Spec.ConcurrencyPolicy = p
			cj.Status.Active = []v1.ObjectReference{{Kind: "Job", Name: "cj-old", Namespace: "default", UID: "uid-cj-old", APIVersion: "batch/v1"}}
			cj.Status.LastScheduleTime = &metav1.Time{Time: t0}
		}
	}
	next := "cj-" + minutes(t0.Add(time.Minute))

	f := newFixture(t, t0.Add(time.Minute), newCronJob("*/1 * * * *", withActive(batchv1.ForbidConcurrent)), running)
	f.sync()
	f.expectWrites()

	f = newFixture(t, t0.Add(time.Minute), newCronJob("*/1 * * * *", withActive(batchv1.AllowConcurrent)), running)
	f.sync()
	f.expectWrites("create jobs "+next, "update cronjobs/status")
	if n := len(f.cronJob().Status.Active); n != 2 {
		t.Fatalf("active = %d", n)
	}

	f = newFixture(t, t0.Add(time.Minute), newCronJob("*/1 * * * *", withActive(batchv1.ReplaceConcurrent)), running)
	f.sync()
	f.expectWrites("delete jobs cj-old", "create jobs "+next, "update cronjobs/status")
	if a := f.cronJob().Status.Active; len(a) != 1 || a[0].Name != next {
		t.Fatalf("active = %+v", a)
	}
}

func TestManyMissedStartsOnlyMostRecent(t *testing.T) {
	now := t0.Add(5*time.Hour + 30*time.Second)
	f := newFixture(t, now, newCronJob("*/1 * * * *", func(cj *batchv1.CronJob) {
		cj.Status.LastScheduleTime = &metav1.Time{Time: t0}
	}))
	f.sync()
	f.expectWrites("create jobs cj-"+minutes(t0.Add(5*time.Hour)), "update cronjobs/status")
	if ev := <-f.recorder.Events; !strings.Contains(ev, "TooManyMissedTimes") {
		t.Fatalf("event = %q", ev)
	}
}

func TestStartingDeadline(t *testing.T) {
	// Hourly; the controller was down at 01:00 and comes back at 01:05.
	now := t0.Add(time.Hour + 5*time.Minute)
	f := newFixture(t, now, newCronJob("0 * * * *", func(cj *batchv1.CronJob) {
		cj.Spec.StartingDeadlineSeconds = ptr.To[int64](60)
		cj.Status.LastScheduleTime = &metav1.Time{Time: t0}
	}))
	after := f.sync()
	f.expectWrites()
	if *after != 55*time.Minute+100*time.Millisecond {
		t.Fatalf("requeue after %v", *after)
	}
	// Within the deadline it starts.
	f = newFixture(t, t0.Add(time.Hour+30*time.Second), newCronJob("0 * * * *", func(cj *batchv1.CronJob) {
		cj.Spec.StartingDeadlineSeconds = ptr.To[int64](60)
		cj.Status.LastScheduleTime = &metav1.Time{Time: t0}
	}))
	f.sync()
	f.expectWrites("create jobs cj-"+minutes(t0.Add(time.Hour)), "update cronjobs/status")
}

func TestSuspend(t *testing.T) {
	f := newFixture(t, t0.Add(time.Hour), newCronJob("*/1 * * * *", func(cj *batchv1.CronJob) { cj.Spec.Suspend = ptr.To(true) }))
	if after := f.sync(); after != nil {
		t.Fatalf("suspended cronjob requeued for %v", *after)
	}
	f.expectWrites()
}

func TestTimeZone(t *testing.T) {
	// 09:00 in Tokyo is 00:00 UTC.
	f := newFixture(t, t0.Add(time.Second), newCronJob("0 9 * * *", func(cj *batchv1.CronJob) {
		cj.Spec.TimeZone = ptr.To("Asia/Tokyo")
		cj.CreationTimestamp = metav1.NewTime(t0.Add(-time.Hour))
	}))
	f.sync()
	f.expectWrites("create jobs cj-"+minutes(t0), "update cronjobs/status")
	j, _ := f.client.BatchV1().Jobs("default").Get(context.Background(), "cj-"+minutes(t0), metav1.GetOptions{})
	if a := j.Annotations[batchv1.CronJobScheduledTimestampAnnotation]; a != "2026-01-01T09:00:00+09:00" {
		t.Fatalf("scheduled timestamp %q", a)
	}
}

func TestHistoryLimitsAndLastSuccess(t *testing.T) {
	var objs []runtime.Object
	objs = append(objs, newCronJob("0 0 1 1 *", func(cj *batchv1.CronJob) {
		cj.Spec.SuccessfulJobsHistoryLimit = ptr.To[int32](2)
		cj.Spec.FailedJobsHistoryLimit = ptr.To[int32](1)
		cj.Status.LastScheduleTime = &metav1.Time{Time: t0}
		cj.Status.Active = []v1.ObjectReference{{Kind: "Job", Name: "ok-3", UID: "uid-ok-3"}, {Kind: "Job", Name: "gone", UID: "uid-gone"}}
	}))
	for i := 1; i <= 3; i++ {
		objs = append(objs, finishedJob(fmt.Sprintf("ok-%d", i), t0.Add(time.Duration(i)*time.Minute), batchv1.JobComplete))
		objs = append(objs, finishedJob(fmt.Sprintf("bad-%d", i), t0.Add(time.Duration(i)*time.Minute), batchv1.JobFailed))
	}
	objs = append(objs, activeJob("running", t0))
	f := newFixture(t, t0.Add(time.Hour), objs...)
	f.sync()
	f.expectWrites("delete jobs ok-1", "delete jobs bad-1", "delete jobs bad-2", "update cronjobs/status")
	st := f.cronJob().Status
	if len(st.Active) != 1 || st.Active[0].Name != "running" || !st.LastSuccessfulTime.Time.Equal(t0.Add(3*time.Minute+10*time.Second)) {
		t.Fatalf("status = %+v", st)
	}
}
