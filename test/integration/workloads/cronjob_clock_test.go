package workloads

import (
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	clocktesting "k8s.io/utils/clock/testing"

	"skiff.dev/skiff/internal/controller/cronjob"
	"skiff.dev/skiff/test/integration/framework"
)

// TestKubectlCronJobFiresOnInjectedClock runs a second CronJob controller
// on a fake clock beside the cluster's own (real-clock) one. The schedule
// fires on January 1st, which the real clock does not reach during the
// test; the fake clock is set just past it, so only the test's controller
// fires, and the Job it creates is run by the cluster's Job controller.
func TestKubectlCronJobFiresOnInjectedClock(t *testing.T) {
	bins := framework.KubectlBinaries()
	if len(bins) == 0 {
		t.Skip("no kubectl binaries installed")
	}
	c, _, ctx := start(t, 1)
	now := time.Now().UTC()
	fire := time.Date(now.Year()+1, 1, 1, 0, 0, 0, 0, time.UTC)
	clk := clocktesting.NewFakeClock(fire.Add(-30 * time.Second))
	factory := informers.NewSharedInformerFactory(c.Client, 0)
	ctrl, err := cronjob.New(cronjob.Config{Clock: clk}, c.Client, factory.Batch().V1().CronJobs(), factory.Batch().V1().Jobs(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	factory.Start(ctx.Done())
	go func() { _ = ctrl.Run(ctx, 1) }()

	for v, bin := range bins {
		t.Run(v, func(t *testing.T) {
			ns := "cjclock-" + strings.ReplaceAll(v, ".", "-")
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
			clk.SetTime(fire.Add(-30 * time.Second))
			kubectl(yearly, "apply", "-f", "-")
			time.Sleep(300 * time.Millisecond)
			if out := kubectl("", "get", "jobs", "-o", "name"); strings.TrimSpace(out) != "" {
				t.Fatalf("fired early: %s", out)
			}
			// Past the activation: the controller's requeue (30 s away on
			// the fake clock) is brought forward by the CronJob update below.
			clk.SetTime(fire.Add(30 * time.Second))
			kubectl("", "annotate", "cronjob/report", "poke=1", "--overwrite")
			name := "report-" + strconv.FormatInt(fire.Unix()/60, 10)
			succeedPods(ctx, t, c.Client, ns, "job-name="+name)
			waitFor(t, 30*time.Second, "job "+name, func() (bool, error) {
				_, err := c.Client.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
				return err == nil, err
			})
			kubectl("", "wait", "--for=condition=complete", "--timeout=50s", "job/"+name)
			j, _ := c.Client.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
			if a := j.Annotations["batch.kubernetes.io/cronjob-scheduled-timestamp"]; a != fire.Format(time.RFC3339) {
				t.Fatalf("scheduled timestamp %q", a)
			}
			waitFor(t, 30*time.Second, "lastSuccessfulTime", func() (bool, error) {
				cj, err := c.Client.BatchV1().CronJobs(ns).Get(ctx, "report", metav1.GetOptions{})
				return err == nil && cj.Status.LastSuccessfulTime != nil && len(cj.Status.Active) == 0 &&
					cj.Status.LastScheduleTime != nil && cj.Status.LastScheduleTime.Time.Equal(fire), err
			})
			out := kubectl("", "get", "cronjob", "report")
			if !strings.Contains(out, "report") {
				t.Fatalf("kubectl get cronjob:\n%s", out)
			}
		})
	}
}
