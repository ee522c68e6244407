// Package e2e benchmarks the scheduler end to end through the API, the way
// kube-scheduler was measured for issue 3: an in-process skiff API server
// (embedded etcd), hollow nodes registered and pending pods created first,
// then the scheduler started; the clock runs from the scheduler's start
// until the last pod is bound (seen through a pod watch). pods/s is pods
// divided by that time.
//
//	go test ./bench/scheduler/e2e -run XXX -bench . -benchtime 1x -timeout 60m \
//	    -args -nodes 5000 -pods 10000
package e2e

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"skiff.dev/skiff/internal/cputime"
	"skiff.dev/skiff/internal/hollow"
	"skiff.dev/skiff/internal/scheduler"
	"skiff.dev/skiff/test/integration/framework"
)

var (
	numNodes = flag.Int("nodes", 5000, "hollow nodes to register")
	numPods  = flag.Int("pods", 10000, "pending pods to schedule")
	numZones = flag.Int("zones", 10, "zones the nodes are spread over")
	creators = flag.Int("creators", 16, "goroutines creating pods")
	logs     = flag.Bool("logs", false, "send the scheduler's logs to stderr")
	dump     = flag.String("goroutines", "", "write a goroutine profile here every 10 s (debugging stalls)")
	// The side-by-side mode (bench/scheduler/sidebyside.sh): a cluster
	// already running elsewhere, and the scheduler as an external command
	// started when the clock starts, so skiff and kube-scheduler are
	// measured the same way.
	kubeconfig   = flag.String("kubeconfig", "", "use the cluster in this kubeconfig instead of an in-process skiff API server")
	schedulerCmd = flag.String("scheduler-cmd", "", "with -kubeconfig: shell command that runs the scheduler under test (killed at the end)")
)

func registerNodes(b *testing.B, client kubernetes.Interface) {
	b.Helper()
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, *numZones)
	per := *numNodes / *numZones
	for z := 0; z < *numZones; z++ {
		count := per
		if z == *numZones-1 {
			count = *numNodes - per*(*numZones-1)
		}
		nodes := hollow.New(client, hollow.Options{Count: count, Prefix: fmt.Sprintf("z%d-node-", z),
			Labels: map[string]string{v1.LabelTopologyZone: fmt.Sprintf("zone-%d", z)}})
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := nodes.Register(ctx); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatalf("registering hollow nodes: %v", err)
	}
}

func createPods(b *testing.B, client kubernetes.Interface) {
	b.Helper()
	ctx := context.Background()
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Pointer[error]
	for w := 0; w < *creators; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= *numPods || firstErr.Load() != nil {
					return
				}
				p := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pod-%d", i), Labels: map[string]string{"app": "bench"}},
					Spec: v1.PodSpec{Containers: []v1.Container{{Name: "c", Image: "registry.k8s.io/pause:3.10",
						Resources: v1.ResourceRequirements{Requests: v1.ResourceList{
							v1.ResourceCPU: resource.MustParse("100m"), v1.ResourceMemory: resource.MustParse("500Mi")}}}}}}
				if _, err := client.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
					err = fmt.Errorf("creating pod %d: %w", i, err)
					firstErr.CompareAndSwap(nil, &err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := firstErr.Load(); err != nil {
		b.Fatal(*err)
	}
}

func BenchmarkSchedulingBasicE2E(b *testing.B) {
	for i := 0; i < b.N; i++ {
		runOnce(b)
	}
}

func runOnce(b *testing.B) {
	var cfg *rest.Config
	if *kubeconfig != "" {
		var err error
		if cfg, err = clientcmd.BuildConfigFromFlags("", *kubeconfig); err != nil {
			b.Fatalf("loading -kubeconfig: %v", err)
		}
	} else {
		cfg = rest.CopyConfig(framework.Start(b, framework.Options{}).Config)
	}
	cfg.QPS, cfg.Burst = -1, 1000 // client-side limits lifted, as for kube-scheduler
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ensureDefaultServiceAccount(b, client)
	t0 := time.Now()
	registerNodes(b, client)
	b.Logf("registered %d nodes in %v", *numNodes, time.Since(t0).Round(time.Millisecond))
	if n := untaintNotReady(b, client); n > 0 {
		b.Logf("removed the not-ready taint that admission put on %d nodes", n)
	}
	t0 = time.Now()
	createPods(b, client)
	b.Logf("created %d pods in %v", *numPods, time.Since(t0).Round(time.Millisecond))

	// Count bound pods from a watch, as a test harness would.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var bound atomic.Int64
	done := make(chan struct{})
	watchFactory := informers.NewSharedInformerFactory(client, 0)
	podInf := watchFactory.Core().V1().Pods().Informer()
	seen := sync.Map{}
	onPod := func(obj any) {
		p, ok := obj.(*v1.Pod)
		if !ok || p.Spec.NodeName == "" {
			return
		}
		if _, dup := seen.LoadOrStore(p.UID, true); !dup && bound.Add(1) == int64(*numPods) {
			close(done)
		}
	}
	if _, err := podInf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: onPod, UpdateFunc: func(_, o any) { onPod(o) }}); err != nil {
		b.Fatal(err)
	}
	watchFactory.Start(ctx.Done())
	cache.WaitForCacheSync(ctx.Done(), podInf.HasSynced)

	schedFactory := informers.NewSharedInformerFactory(client, 0)
	logger := slog.New(slog.DiscardHandler)
	if *logs {
		logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	var run func()
	var ext *exec.Cmd
	if *schedulerCmd != "" {
		ext = exec.Command("/bin/sh", "-c", "exec "+*schedulerCmd)
		ext.Stdout, ext.Stderr = io.Discard, io.Discard
		if *logs {
			ext.Stdout, ext.Stderr = os.Stderr, os.Stderr
		}
		run = func() {
			if err := ext.Start(); err != nil {
				b.Errorf("starting -scheduler-cmd: %v", err)
			}
		}
		defer func() {
			if ext.Process != nil {
				_ = ext.Process.Kill()
				_ = ext.Wait()
			}
		}()
	} else {
		s, err := scheduler.New(scheduler.Config{}, client, schedFactory, logger)
		if err != nil {
			b.Fatal(err)
		}
		run = func() { go func() { _ = s.Run(ctx) }() }
	}
	cpu0 := cputime.Process()
	start := time.Now()
	b.ResetTimer()
	run()
	progress := time.NewTicker(10 * time.Second)
	defer progress.Stop()
wait:
	for {
		select {
		case <-done:
			break wait
		case <-progress.C:
			if *dump != "" {
				if f, err := os.Create(*dump); err == nil {
					_ = pprof.Lookup("goroutine").WriteTo(f, 1)
					f.Close()
				}
			}
			b.Logf("%v: %d/%d pods bound", time.Since(start).Round(time.Second), bound.Load(), *numPods)
		case <-time.After(30 * time.Minute):
			b.Fatalf("only %d/%d pods bound after 30 minutes", bound.Load(), *numPods)
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	cpu := cputime.Process() - cpu0
	if ext != nil && ext.Process != nil {
		cpu = processCPU(ext.Process.Pid)
	}
	b.ReportMetric(float64(*numPods)/elapsed.Seconds(), "pods/s")
	b.ReportMetric(cpu.Seconds()/elapsed.Seconds(), "cpu-cores")
	b.Logf("%d nodes, %d pods: all bound in %v (%.0f pods/s), process CPU %v", *numNodes, *numPods,
		elapsed.Round(time.Millisecond), float64(*numPods)/elapsed.Seconds(), cpu.Round(time.Millisecond))
}

// untaintNotReady removes the node.kubernetes.io/not-ready taint that
// upstream's TaintNodesByCondition admission puts on every new node (its
// node lifecycle controller would clear it; neither cluster runs one here,
// so both schedulers see the same untainted nodes).
func untaintNotReady(b *testing.B, client kubernetes.Interface) int {
	b.Helper()
	ctx := context.Background()
	nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		b.Fatalf("listing nodes: %v", err)
	}
	var todo []v1.Node
	for _, n := range nodes.Items {
		for _, t := range n.Spec.Taints {
			if t.Key == v1.TaintNodeNotReady {
				todo = append(todo, n)
				break
			}
		}
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < *creators; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(todo) {
					return
				}
				n := todo[i].DeepCopy()
				kept := n.Spec.Taints[:0]
				for _, t := range n.Spec.Taints {
					if t.Key != v1.TaintNodeNotReady {
						kept = append(kept, t)
					}
				}
				n.Spec.Taints = kept
				if _, err := client.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
					b.Errorf("untainting node %s: %v", n.Name, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return len(todo)
}

// processCPU is the user+system CPU time of another process so far, from
// /proc/PID/stat (clock ticks of 1/100 s on Linux).
func processCPU(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// ensureDefaultServiceAccount creates default/default when no controller
// manager runs to make it (upstream's ServiceAccount admission refuses pods
// without it).
func ensureDefaultServiceAccount(b *testing.B, client kubernetes.Interface) {
	b.Helper()
	sa := &v1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: "default"}}
	if _, err := client.CoreV1().ServiceAccounts("default").Create(context.Background(), sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		b.Fatalf("creating the default service account: %v", err)
	}
}
