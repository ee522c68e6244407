package workloads

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"skiff.dev/skiff/test/integration/framework"
)

// A schedule that never fires during the test: the controller must leave
// it alone, and `kubectl create job --from=cronjob/x` must produce a Job the
// Job controller runs to completion.
const yearly = `apiVersion: batch/v1
kind: CronJob
metadata:
  name: report
spec:
  schedule: "0 0 1 1 *"
  jobTemplate:
    metadata:
      labels:
        app: report
    spec:
      template:
        spec:
          restartPolicy: Never
          containers:
          - name: c
            image: busybox
`

func TestKubectlCreateJobFromCronJob(t *testing.T) {
	bins := framework.KubectlBinaries()
	if len(bins) == 0 {
		t.Skip("no kubectl binaries installed")
	}
	c, _, ctx := start(t, 1)
	for v, bin := range bins {
		t.Run(v, func(t *testing.T) {
			ns := "cj-" + strings.ReplaceAll(v, ".", "-")
			kubectl := func(stdin string, args ...string) string {
				t.Helper()
				out, err := c.Kubectl(t, bin, stdin, append([]string{"-n", ns}, args...)...)
				if err != nil {
					t.Fatalf("kubectl %v: %v\n%s", args, err, out)
				}
				return out
			}
			if out, err := c.Kubectl(t, bin, "", "create", "namespace", ns); err != nil {
				t.Fatalf("create namespace: %v\n%s", err, out)
			}
			kubectl(yearly, "apply", "-f", "-")
			kubectl("", "create", "job", "manual", "--from=cronjob/report")
			succeedPods(ctx, t, c.Client, ns, "job-name=manual")
			kubectl("", "wait", "--for=condition=complete", "--timeout=50s", "job/manual")
			j, err := c.Client.BatchV1().Jobs(ns).Get(ctx, "manual", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if j.Status.Succeeded != 1 || j.Annotations["cronjob.kubernetes.io/instantiate"] != "manual" {
				t.Fatalf("job = %+v %+v", j.Annotations, j.Status)
			}
			// The CronJob itself has not fired.
			time.Sleep(500 * time.Millisecond)
			jobs, _ := c.Client.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{})
			for _, x := range jobs.Items {
				if x.Name != "manual" {
					t.Fatalf("unexpected job %s", x.Name)
				}
			}
			cj, _ := c.Client.BatchV1().CronJobs(ns).Get(ctx, "report", metav1.GetOptions{})
			if cj.Status.LastScheduleTime != nil {
				t.Fatalf("cronjob fired: %+v", cj.Status)
			}
		})
	}
}
