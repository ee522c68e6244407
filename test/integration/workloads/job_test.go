package workloads

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"skiff.dev/skiff/test/integration/framework"
)

func TestIndexedJobCompletes(t *testing.T) {
	c, _, ctx := start(t, 2)
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "idx", Namespace: "default"},
		Spec: batchv1.JobSpec{
			Completions:    ptr.To[int32](4),
			Parallelism:    ptr.To[int32](2),
			CompletionMode: ptr.To(batchv1.IndexedCompletion),
			Template: v1.PodTemplateSpec{Spec: v1.PodSpec{RestartPolicy: v1.RestartPolicyNever,
				Containers: []v1.Container{{Name: "c", Image: "busybox"}}}},
		},
	}
	if _, err := c.Client.BatchV1().Jobs("default").Create(ctx, job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	succeedPods(ctx, t, c.Client, "default", "job-name=idx")
	waitFor(t, 60*time.Second, "indexed job complete", func() (bool, error) {
		j, err := c.Client.BatchV1().Jobs("default").Get(ctx, "idx", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return hasJobCondition(j, batchv1.JobComplete), fmt.Errorf("status %+v", j.Status)
	})
	j, _ := c.Client.BatchV1().Jobs("default").Get(ctx, "idx", metav1.GetOptions{})
	if j.Status.Succeeded != 4 || j.Status.CompletedIndexes != "0-3" || j.Status.CompletionTime == nil {
		t.Fatalf("status = %+v", j.Status)
	}
	pods, _ := c.Client.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "job-name=idx"})
	seen := map[string]bool{}
	for _, p := range pods.Items {
		if slices.Contains(p.Finalizers, batchv1.JobTrackingFinalizer) {
			t.Errorf("pod %s still has the tracking finalizer", p.Name)
		}
		i := p.Annotations[batchv1.JobCompletionIndexAnnotation]
		seen[i] = true
		if p.Spec.Hostname != "idx-"+i {
			t.Errorf("pod %s hostname %q", p.Name, p.Spec.Hostname)
		}
	}
	if len(seen) != 4 {
		t.Fatalf("indexes seen: %v (pods %v)", seen, podNames(pods.Items))
	}
}

const parallelJob = `apiVersion: batch/v1
kind: Job
metadata:
  name: par
spec:
  parallelism: 3
  completions: 6
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: c
        image: busybox
        command: ["true"]
`

func TestKubectlJobParallelism(t *testing.T) {
	bins := framework.KubectlBinaries()
	if len(bins) == 0 {
		t.Skip("no kubectl binaries installed")
	}
	c, _, ctx := start(t, 3)
	for v, bin := range bins {
		t.Run(v, func(t *testing.T) {
			ns := "par-" + strings.ReplaceAll(v, ".", "-")
			if out, err := c.Kubectl(t, bin, "", "create", "namespace", ns); err != nil {
				t.Fatalf("create namespace: %v\n%s", err, out)
			}
			if out, err := c.Kubectl(t, bin, parallelJob, "-n", ns, "apply", "-f", "-"); err != nil {
				t.Fatalf("apply: %v\n%s", err, out)
			}
			// Never more than parallelism active pods.
			maxActive := 0
			done := make(chan struct{})
			go func() {
				defer close(done)
				for ctx.Err() == nil {
					j, err := c.Client.BatchV1().Jobs(ns).Get(ctx, "par", metav1.GetOptions{})
					if err == nil {
						maxActive = max(maxActive, int(j.Status.Active))
						if hasJobCondition(j, batchv1.JobComplete) {
							return
						}
					}
					time.Sleep(50 * time.Millisecond)
				}
			}()
			succeedPods(ctx, t, c.Client, ns, "job-name=par")
			if out, err := c.Kubectl(t, bin, "", "-n", ns, "wait", "--for=condition=complete", "--timeout=50s", "job/par"); err != nil {
				j, _ := c.Client.BatchV1().Jobs(ns).Get(ctx, "par", metav1.GetOptions{})
				t.Fatalf("wait: %v\n%s\nstatus %+v", err, out, j.Status)
			}
			<-done
			out, err := c.Kubectl(t, bin, "", "-n", ns, "get", "job", "par", "-o", "jsonpath={.status.succeeded} {.status.failed}")
			if err != nil || strings.TrimSpace(out) != "6" {
				t.Fatalf("succeeded: %q %v", out, err)
			}
			if maxActive > 3 {
				t.Fatalf("saw %d active pods, parallelism is 3", maxActive)
			}
			out, _ = c.Kubectl(t, bin, "", "-n", ns, "get", "jobs")
			if !strings.Contains(out, "6/6") {
				t.Fatalf("kubectl get jobs:\n%s", out)
			}
		})
	}
}

func hasJobCondition(j *batchv1.Job, t batchv1.JobConditionType) bool {
	for _, c := range j.Status.Conditions {
		if c.Type == t && c.Status == v1.ConditionTrue {
			return true
		}
	}
	return false
}
