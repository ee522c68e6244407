// Package workloads benchmarks the DaemonSet and Job controllers end to
// end, as issue 5 asks: an in-process skiff server (embedded etcd without
// fsync) running the controller manager and the scheduler, with hollow
// nodes reporting bound pods Running and Ready.
//
// BenchmarkDaemonSetRollout registers -ds-nodes hollow nodes, creates a
// DaemonSet (RollingUpdate, maxUnavailable -ds-max-unavailable) and times
// it until status says desiredNumberScheduled = numberReady = nodes; it then
// changes the pod template and times the rolling update until
// updatedNumberScheduled = numberAvailable = numberReady = nodes.
//
// BenchmarkJobCompletions registers -job-nodes hollow nodes and creates a
// NonIndexed Job (-completions, -parallelism). Hollow nodes report its pods
// Running; a completer in the benchmark (a pod informer and -completers
// workers) then marks each Running pod Succeeded through pods/status with a
// terminated container, as a kubelet would when the container exits 0. The
// clock stops when the Job has the Complete condition.
//
// Benchmarks never run without -bench, so `go test ./...` skips them:
//
//	go test ./bench/workloads -run XXX -bench . -benchtime 1x -timeout 60m
//
// Add -cpuprofile cpu.out to profile the whole process (API server, etcd,
// controllers, scheduler, hollow nodes and the benchmark's own clients).
package workloads

import (
	"context"
	"flag"
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"skiff.dev/skiff/internal/cputime"
	"skiff.dev/skiff/internal/hollow"
	"skiff.dev/skiff/test/integration/framework"
)

var (
	dsNodes          = flag.Int("ds-nodes", 1000, "hollow nodes for the DaemonSet benchmark")
	dsMaxUnavailable = flag.String("ds-max-unavailable", "10%", "DaemonSet rollingUpdate.maxUnavailable")
	jobNodes         = flag.Int("job-nodes", 100, "hollow nodes for the Job benchmark")
	completions      = flag.Int("completions", 10000, "Job spec.completions")
	parallelism      = flag.Int("parallelism", 500, "Job spec.parallelism")
	hollowWorkers    = flag.Int("hollow-workers", 32, "hollow pod status workers")
	completers       = flag.Int("completers", 16, "workers marking Running Job pods Succeeded")
	phaseTimeout     = flag.Duration("phase-timeout", 30*time.Minute, "give up on a phase after this long")
)

func loadAvg() string {
	var si syscall.Sysinfo_t
	if err := syscall.Sysinfo(&si); err != nil {
		return "?"
	}
	const scale = 65536.0
	return fmt.Sprintf("%.1f %.1f %.1f", float64(si.Loads[0])/scale, float64(si.Loads[1])/scale, float64(si.Loads[2])/scale)
}

// startNodes starts a control plane and count hollow nodes and waits until
// every node is registered. The returned function stops the nodes.
func startNodes(b *testing.B, count int) (kubernetes.Interface, context.Context, func()) {
	c := framework.Start(b, framework.Options{ControllerManager: true, Scheduler: true})
	ctx, cancel := context.WithCancel(context.Background())
	client := c.Client
	h := hollow.New(client, hollow.Options{Count: count, Workers: *hollowWorkers})
	hdone := make(chan error, 1)
	go func() { hdone <- h.Run(ctx) }()
	stop := func() { cancel(); <-hdone }
	start := time.Now()
	for {
		l, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{ResourceVersion: "0"})
		if err == nil && len(l.Items) >= count {
			break
		}
		if time.Since(start) > 5*time.Minute {
			stop()
			b.Fatalf("nodes not registered after 5m")
		}
		time.Sleep(200 * time.Millisecond)
	}
	b.Logf("%d hollow nodes registered in %v", count, time.Since(start).Round(time.Millisecond))
	return client, ctx, stop
}

// poll calls cond every 100 ms until it holds, the phase times out or ctx
// ends.
func poll(ctx context.Context, what string, cond func() (bool, string, error)) error {
	deadline := time.Now().Add(*phaseTimeout)
	for {
		ok, state, err := cond()
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not done after %v: %s", what, *phaseTimeout, state)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

type row struct {
	phase string
	d     time.Duration
	pods  int
	cpu   time.Duration
}

func printTable(title string, rows []row) {
	fmt.Printf("\n%s (load average %s)\n", title, loadAvg())
	fmt.Printf("| phase                                 | time      | pods/s | process CPU |\n")
	fmt.Printf("|---------------------------------------|----------:|-------:|------------:|\n")
	for _, r := range rows {
		rate, cpu := "", ""
		if r.pods > 0 {
			rate = fmt.Sprintf("%.0f", float64(r.pods)/r.d.Seconds())
		}
		if r.cpu > 0 {
			cpu = r.cpu.Round(time.Second).String()
		}
		fmt.Printf("| %-37s | %9v | %6s | %11s |\n", r.phase, r.d.Round(time.Millisecond), rate, cpu)
	}
}

func BenchmarkDaemonSetRollout(b *testing.B) {
	for i := 0; i < b.N; i++ {
		runDaemonSet(b)
	}
}

func runDaemonSet(b *testing.B) {
	client, ctx, stop := startNodes(b, *dsNodes)
	defer stop()
	n := int32(*dsNodes)
	mu := intstr.Parse(*dsMaxUnavailable)
	zero := intstr.FromInt32(0)
	dsClient := client.AppsV1().DaemonSets("default")
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "bench"},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "bench"}},
			Template: v1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "bench"}},
				Spec:       v1.PodSpec{Containers: []v1.Container{{Name: "agent", Image: "bench:v1"}}},
			},
			UpdateStrategy: appsv1.DaemonSetUpdateStrategy{
				Type:          appsv1.RollingUpdateDaemonSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDaemonSet{MaxUnavailable: &mu, MaxSurge: &zero},
			},
		},
	}
	var rows []row
	cpu0 := cputime.Process()
	start := time.Now()
	b.ResetTimer()
	if _, err := dsClient.Create(ctx, ds, metav1.CreateOptions{}); err != nil {
		b.Fatalf("creating daemonset: %v", err)
	}
	var scheduledAt time.Duration
	err := poll(ctx, "daemonset rollout", func() (bool, string, error) {
		cur, err := dsClient.Get(ctx, "bench", metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		s := cur.Status
		if scheduledAt == 0 && s.CurrentNumberScheduled == n {
			scheduledAt = time.Since(start)
		}
		return s.ObservedGeneration >= cur.Generation && s.DesiredNumberScheduled == n && s.NumberReady == n, fmt.Sprintf("%+v", s), nil
	})
	if err != nil {
		b.Fatal(err)
	}
	upTime, upCPU := time.Since(start), cputime.Process()-cpu0
	rows = append(rows, row{"all daemon pods created", scheduledAt, int(n), 0},
		row{"desiredNumberScheduled = numberReady", upTime, int(n), upCPU})

	cpu1 := cputime.Process()
	rollStart := time.Now()
	for attempt := 0; ; attempt++ {
		cur, err := dsClient.Get(ctx, "bench", metav1.GetOptions{})
		if err != nil {
			b.Fatalf("getting daemonset: %v", err)
		}
		cur.Spec.Template.Spec.Containers[0].Image = "bench:v2"
		if _, err = dsClient.Update(ctx, cur, metav1.UpdateOptions{}); err == nil {
			break
		} else if attempt > 10 || !apierrors.IsConflict(err) {
			b.Fatalf("updating daemonset: %v", err)
		}
	}
	err = poll(ctx, "daemonset rolling update", func() (bool, string, error) {
		cur, err := dsClient.Get(ctx, "bench", metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		s := cur.Status
		return s.ObservedGeneration >= cur.Generation && s.UpdatedNumberScheduled == n && s.NumberAvailable == n &&
			s.NumberReady == n && s.CurrentNumberScheduled == n && s.NumberMisscheduled == 0, fmt.Sprintf("%+v", s), nil
	})
	if err != nil {
		b.Fatal(err)
	}
	rollTime, rollCPU := time.Since(rollStart), cputime.Process()-cpu1
	b.StopTimer()
	rows = append(rows, row{"rolling update (maxUnavailable " + *dsMaxUnavailable + ")", rollTime, int(n), rollCPU})
	b.ReportMetric(upTime.Seconds(), "s-rollout")
	b.ReportMetric(rollTime.Seconds(), "s-update")
	printTable(fmt.Sprintf("DaemonSet on %d hollow nodes", n), rows)
}

func BenchmarkJobCompletions(b *testing.B) {
	for i := 0; i < b.N; i++ {
		runJob(b)
	}
}

// completer marks Running pods of the benchmark Job Succeeded.
type completer struct {
	client kubernetes.Interface
	pods   cache.Indexer
	queue  workqueue.TypedInterface[string]
	done   atomic.Int64
}

func (c *completer) complete(ctx context.Context, key string) error {
	obj, ok, err := c.pods.GetByKey(key)
	if err != nil || !ok {
		return err
	}
	p := obj.(*v1.Pod)
	if p.Status.Phase != v1.PodRunning || p.DeletionTimestamp != nil {
		return nil
	}
	st := p.DeepCopy()
	now := metav1.Now()
	st.Status.Phase = v1.PodSucceeded
	for i := range st.Status.ContainerStatuses {
		cs := &st.Status.ContainerStatuses[i]
		started := cs.State.Running.StartedAt
		cs.State = v1.ContainerState{Terminated: &v1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed", StartedAt: started, FinishedAt: now, ContainerID: cs.ContainerID}}
		cs.Ready = false
		f := false
		cs.Started = &f
	}
	for i := range st.Status.Conditions {
		if t := st.Status.Conditions[i].Type; t == v1.PodReady || t == v1.ContainersReady {
			st.Status.Conditions[i].Status = v1.ConditionFalse
			st.Status.Conditions[i].Reason = "PodCompleted"
			st.Status.Conditions[i].LastTransitionTime = now
		}
	}
	_, err = c.client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, st, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil // gone, or changed: the informer brings the new version
	}
	if err == nil {
		c.done.Add(1)
	}
	return err
}

func (c *completer) run(ctx context.Context, b *testing.B, workers int) {
	for w := 0; w < workers; w++ {
		go func() {
			for {
				key, quit := c.queue.Get()
				if quit {
					return
				}
				if err := c.complete(ctx, key); err != nil && ctx.Err() == nil {
					b.Logf("completing pod %s: %v", key, err)
				}
				c.queue.Done(key)
			}
		}()
	}
}

func runJob(b *testing.B) {
	client, ctx, stop := startNodes(b, *jobNodes)
	defer stop()

	factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace("default"))
	inf := factory.Core().V1().Pods().Informer()
	comp := &completer{client: client, pods: inf.GetIndexer(), queue: workqueue.NewTyped[string]()}
	defer comp.queue.ShutDown()
	enqueue := func(o any) {
		if p, ok := o.(*v1.Pod); ok && p.Status.Phase == v1.PodRunning && p.DeletionTimestamp == nil {
			comp.queue.Add(p.Namespace + "/" + p.Name)
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueue, UpdateFunc: func(_, o any) { enqueue(o) },
	}); err != nil {
		b.Fatalf("adding handler: %v", err)
	}
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	comp.run(ctx, b, *completers)

	nc, np := int32(*completions), int32(*parallelism)
	backoff := int32(0)
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "bench"},
		Spec: batchv1.JobSpec{
			Completions: &nc, Parallelism: &np, BackoffLimit: &backoff,
			Template: v1.PodTemplateSpec{
				Spec: v1.PodSpec{RestartPolicy: v1.RestartPolicyNever, Containers: []v1.Container{{Name: "work", Image: "bench:v1"}}},
			},
		},
	}
	jobs := client.BatchV1().Jobs("default")
	cpu0 := cputime.Process()
	start := time.Now()
	b.ResetTimer()
	if _, err := jobs.Create(ctx, job, metav1.CreateOptions{}); err != nil {
		b.Fatalf("creating job: %v", err)
	}
	var rows []row
	step := 0 // tenths of the completions counted so far
	err := poll(ctx, "job", func() (bool, string, error) {
		cur, err := jobs.Get(ctx, "bench", metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		s := cur.Status
		for step < 9 && s.Succeeded >= nc*int32(step+1)/10 {
			step++
			done := int(nc * int32(step) / 10)
			rows = append(rows, row{fmt.Sprintf("%d%% of completions counted", step*10), time.Since(start), done, 0})
			fmt.Printf("%v: %d succeeded (load average %s)\n", time.Since(start).Round(time.Second), s.Succeeded, loadAvg())
		}
		for _, c := range s.Conditions {
			if c.Type == batchv1.JobFailed && c.Status == v1.ConditionTrue {
				return false, "", fmt.Errorf("job failed: %s: %s", c.Reason, c.Message)
			}
			if c.Type == batchv1.JobComplete && c.Status == v1.ConditionTrue {
				return true, "", nil
			}
		}
		return false, fmt.Sprintf("active %d succeeded %d failed %d, %d pods marked Succeeded", s.Active, s.Succeeded, s.Failed, comp.done.Load()), nil
	})
	if err != nil {
		printTable(fmt.Sprintf("Job of %d completions, parallelism %d, on %d hollow nodes (NOT complete)", nc, np, *jobNodes), rows)
		b.Fatal(err)
	}
	d, cpu := time.Since(start), cputime.Process()-cpu0
	b.StopTimer()
	cur, err := jobs.Get(ctx, "bench", metav1.GetOptions{})
	if err != nil {
		b.Fatalf("getting job: %v", err)
	}
	fmt.Printf("Job Complete with status.succeeded %d for completions %d (failed %d); pods marked Succeeded by the completer: %d\n",
		cur.Status.Succeeded, nc, cur.Status.Failed, comp.done.Load())
	// Every pod that ran to success is still there (the Job is not
	// deleted); more than the completions means surplus pods ran, counted
	// or not. Events cannot tell: the recorder's spam filter drops most of
	// a Job's events after thousands of "Created pod" ones.
	if pods, err := client.CoreV1().Pods("default").List(ctx, metav1.ListOptions{}); err == nil {
		succ, deleting := 0, 0
		for _, p := range pods.Items {
			if p.Status.Phase == v1.PodSucceeded {
				succ++
				if p.DeletionTimestamp != nil {
					deleting++
				}
			}
		}
		fmt.Printf("pods in phase Succeeded: %d (%d of them being deleted)\n", succ, deleting)
	}
	if cur.Status.Succeeded != nc {
		// Every completion is counted exactly once: more means pods were
		// replaced that had already finished, or counted twice.
		b.Errorf("status.succeeded = %d, want exactly the %d completions", cur.Status.Succeeded, nc)
	}
	rows = append(rows, row{"Job Complete", d, int(nc), cpu})
	b.ReportMetric(float64(nc)/d.Seconds(), "completions/s")
	printTable(fmt.Sprintf("Job of %d completions, parallelism %d, on %d hollow nodes", nc, np, *jobNodes), rows)
}
