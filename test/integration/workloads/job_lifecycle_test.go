package workloads

import (
	"context"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func simpleJob(name string, mutate func(*batchv1.Job)) *batchv1.Job {
	j := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: batchv1.JobSpec{
			Completions: ptr.To[int32](2),
			Parallelism: ptr.To[int32](2),
			Template: v1.PodTemplateSpec{Spec: v1.PodSpec{RestartPolicy: v1.RestartPolicyNever,
				Containers: []v1.Container{{Name: "c", Image: "busybox"}}}},
		},
	}
	mutate(j)
	return j
}

func TestJobSuspendResumeAndTTL(t *testing.T) {
	c, _, ctx := start(t, 2)
	jobs := c.Client.BatchV1().Jobs("default")
	pods := c.Client.CoreV1().Pods("default")
	_, err := jobs.Create(ctx, simpleJob("sus", func(j *batchv1.Job) {
		j.Spec.Suspend = ptr.To(true)
		j.Spec.TTLSecondsAfterFinished = ptr.To[int32](0)
	}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "Suspended condition", func() (bool, error) {
		j, err := jobs.Get(ctx, "sus", metav1.GetOptions{})
		return err == nil && hasJobCondition(j, batchv1.JobSuspended), err
	})
	if l, _ := pods.List(ctx, metav1.ListOptions{LabelSelector: "job-name=sus"}); len(l.Items) != 0 {
		t.Fatalf("suspended job has %d pods", len(l.Items))
	}
	j, _ := jobs.Get(ctx, "sus", metav1.GetOptions{})
	j.Spec.Suspend = ptr.To(false)
	if _, err := jobs.Update(ctx, j, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "two running pods", func() (bool, error) {
		l, err := pods.List(ctx, metav1.ListOptions{LabelSelector: "job-name=sus"})
		if err != nil {
			return false, err
		}
		n := 0
		for _, p := range l.Items {
			if p.Status.Phase == v1.PodRunning {
				n++
			}
		}
		return n == 2, nil
	})
	// Suspending again removes the running pods without counting failures.
	j, _ = jobs.Get(ctx, "sus", metav1.GetOptions{})
	j.Spec.Suspend = ptr.To(true)
	if _, err := jobs.Update(ctx, j, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "pods gone after suspend", func() (bool, error) {
		l, err := pods.List(ctx, metav1.ListOptions{LabelSelector: "job-name=sus"})
		return err == nil && len(l.Items) == 0, err
	})
	if j, _ := jobs.Get(ctx, "sus", metav1.GetOptions{}); j.Status.Failed != 0 || j.Status.Active != 0 {
		t.Fatalf("status after suspend = %+v", j.Status)
	}
	// Resume and finish: ttlSecondsAfterFinished=0 deletes the job.
	j, _ = jobs.Get(ctx, "sus", metav1.GetOptions{})
	j.Spec.Suspend = ptr.To(false)
	if _, err := jobs.Update(ctx, j, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	succeedPods(ctx, t, c.Client, "default", "job-name=sus")
	waitFor(t, 60*time.Second, "finished job deleted by its ttl", func() (bool, error) {
		_, err := jobs.Get(context.Background(), "sus", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
}

func TestJobPodFailurePolicyFailsJob(t *testing.T) {
	c, _, ctx := start(t, 1)
	jobs := c.Client.BatchV1().Jobs("default")
	_, err := jobs.Create(ctx, simpleJob("pfp", func(j *batchv1.Job) {
		j.Spec.Completions, j.Spec.Parallelism = ptr.To[int32](1), ptr.To[int32](1)
		j.Spec.PodFailurePolicy = &batchv1.PodFailurePolicy{Rules: []batchv1.PodFailurePolicyRule{{
			Action:      batchv1.PodFailurePolicyActionFailJob,
			OnExitCodes: &batchv1.PodFailurePolicyOnExitCodesRequirement{Operator: batchv1.PodFailurePolicyOnExitCodesOpIn, Values: []int32{42}},
		}}}
	}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var pod *v1.Pod
	waitFor(t, 30*time.Second, "running pod", func() (bool, error) {
		l, err := c.Client.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "job-name=pfp"})
		if err != nil || len(l.Items) != 1 || l.Items[0].Status.Phase != v1.PodRunning {
			return false, err
		}
		pod = &l.Items[0]
		return true, nil
	})
	pod.Status.Phase = v1.PodFailed
	pod.Status.ContainerStatuses[0].State = v1.ContainerState{Terminated: &v1.ContainerStateTerminated{ExitCode: 42, FinishedAt: metav1.Now()}}
	if _, err := c.Client.CoreV1().Pods("default").UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "Failed condition", func() (bool, error) {
		j, err := jobs.Get(ctx, "pfp", metav1.GetOptions{})
		return err == nil && hasJobCondition(j, batchv1.JobFailed) && hasJobCondition(j, batchv1.JobFailureTarget), err
	})
	j, _ := jobs.Get(ctx, "pfp", metav1.GetOptions{})
	if j.Status.Failed != 1 || j.Status.Conditions[len(j.Status.Conditions)-1].Reason != batchv1.JobReasonPodFailurePolicy {
		t.Fatalf("status = %+v", j.Status)
	}
}
