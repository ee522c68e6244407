// Package controllers benchmarks the control plane end to end, as issue 4
// asks: an in-process skiff server (embedded etcd without fsync) running
// the controller manager and the scheduler, hollow nodes reporting bound
// pods Running, and one large Deployment. The clock starts when the
// Deployment is created and stops when the last pod is Running (seen by a
// pod informer in the benchmark); pods/s is replicas divided by that time.
// A rolling update of the Deployment (25%/25%) is then timed until the
// Deployment reports every replica updated and available and no old pod is
// left.
//
//	go test ./bench/controllers -run XXX -bench . -benchtime 1x -timeout 60m \
//	    -args -nodes 1000 -replicas 10000
//
// Add -cpuprofile cpu.out to profile the whole process (API server, etcd,
// controllers, scheduler, hollow nodes and the benchmark's informer), or
// -up-cpuprofile up.out for the scale-up phase alone; -rollout=false skips
// the rolling update. The table reports, besides all Running, when the
// last pod was created and when the last was bound (spec.nodeName set),
// each as pods/s from the Deployment's creation.
package controllers

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"skiff.dev/skiff/internal/controller"
	"skiff.dev/skiff/internal/cputime"
	"skiff.dev/skiff/internal/hollow"
	"skiff.dev/skiff/test/integration/framework"
)

var (
	numNodes     = flag.Int("nodes", 1000, "hollow nodes")
	numReplicas  = flag.Int("replicas", 10000, "replicas of the Deployment")
	hollowWork   = flag.Int("hollow-workers", 32, "hollow pod status workers")
	verifyList   = flag.Bool("verify-list", false, "print quorum-list counts beside the watch's in the progress lines")
	progressInt  = flag.Duration("progress", 10*time.Second, "interval of the progress lines")
	separateConn = flag.Bool("separate-conn", false, "the hollow nodes (and TestWatchLag's informer) get their own client connection")
	dumpDir      = flag.String("dump-dir", "", "write a goroutine dump there at every progress line (for stalls)")
	rollout      = flag.Bool("rollout", true, "time the rolling update v1 -> v2 after the scale-up")
	upProfile    = flag.String("up-cpuprofile", "", "write a CPU profile of the scale-up alone (Deployment created to all pods Running) to this file")
)

// requestCodes sums apiserver_request_total by response code from /metrics.
func requestCodes(ctx context.Context, client kubernetes.Interface) map[string]float64 {
	raw, err := client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(raw), "\n") {
		if !strings.HasPrefix(line, "apiserver_request_total{") {
			continue
		}
		i := strings.Index(line, `code="`)
		j := strings.LastIndexByte(line, ' ')
		if i < 0 || j < 0 {
			continue
		}
		code := line[i+6:]
		code = code[:strings.IndexByte(code, '"')]
		v, _ := strconv.ParseFloat(line[j+1:], 64)
		out[code] += v
	}
	return out
}

// requestsByKind sums apiserver_request_total by verb, resource and
// subresource ("create pods/binding"), to show how many API calls of each
// kind a phase cost per pod.
func requestsByKind(ctx context.Context, client kubernetes.Interface) map[string]float64 {
	counts, err := framework.RequestCounts(ctx, client)
	if err != nil {
		return nil
	}
	out := map[string]float64{}
	for _, c := range counts {
		k := c.Verb + " " + c.Resource
		if c.Subresource != "" {
			k += "/" + c.Subresource
		}
		if c.Code != "" && c.Code[0] != '2' {
			k += " (" + c.Code + ")" // failed requests shown apart
		}
		out[k] += c.Count
	}
	return out
}

// printRequests prints the requests made between two requestsByKind
// snapshots, per pod, most frequent first.
func printRequests(before, after map[string]float64, pods int) {
	type kv struct {
		k string
		v float64
	}
	var rows []kv
	total := 0.0
	for k, v := range after {
		if d := v - before[k]; d > 0 {
			rows = append(rows, kv{k, d})
			total += d
		}
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].v > rows[j].v })
	fmt.Printf("API requests during the scale-up: %.0f (%.2f per pod)\n", total, total/float64(pods))
	for _, r := range rows {
		if r.v/float64(pods) >= 0.005 {
			fmt.Printf("  %-40s %8.0f %6.3f/pod\n", r.k, r.v, r.v/float64(pods))
		}
	}
}

// runDelay is how long the process's threads have waited on a CPU run
// queue (Linux schedstat): time the process was ready to run but the
// machine, not the process, was busy.
func runDelay() time.Duration {
	tasks, _ := filepath.Glob("/proc/self/task/*/schedstat")
	var total int64
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) >= 2 {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			total += n
		}
	}
	return time.Duration(total)
}

// tracker follows the benchmark Deployment's pods: when each was first
// seen, bound and Running.
type tracker struct {
	mu                      sync.Mutex
	created, bound, running map[string]time.Time
	image                   map[string]string
	liveByImage             map[string]int
	firstCreate, lastCreate time.Time
	lastBound, lastRunning  time.Time
	changed                 chan struct{}
}

func newTracker() *tracker {
	return &tracker{created: map[string]time.Time{}, bound: map[string]time.Time{}, running: map[string]time.Time{},
		image: map[string]string{}, liveByImage: map[string]int{}, changed: make(chan struct{}, 1)}
}

func (tr *tracker) observe(p *v1.Pod, deleted bool) {
	now := time.Now()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	k := p.Name
	img := p.Spec.Containers[0].Image
	if deleted {
		if _, ok := tr.image[k]; ok {
			tr.liveByImage[tr.image[k]]--
			delete(tr.image, k)
		}
	} else {
		if _, ok := tr.image[k]; !ok {
			tr.image[k] = img
			tr.liveByImage[img]++
		}
		if _, ok := tr.created[k]; !ok {
			tr.created[k] = now
			tr.lastCreate = now
			if tr.firstCreate.IsZero() {
				tr.firstCreate = now
			}
		}
		if _, ok := tr.bound[k]; !ok && p.Spec.NodeName != "" {
			tr.bound[k] = now
			tr.lastBound = now
		}
		if _, ok := tr.running[k]; !ok && p.Status.Phase == v1.PodRunning {
			tr.running[k] = now
			tr.lastRunning = now
		}
	}
	select {
	case tr.changed <- struct{}{}:
	default:
	}
}

func (tr *tracker) waitUntil(ctx context.Context, timeout time.Duration, cond func() bool) error {
	deadline := time.After(timeout)
	for {
		tr.mu.Lock()
		ok := cond()
		tr.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-tr.changed:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			return fmt.Errorf("timed out after %v", timeout)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func BenchmarkDeploymentEndToEnd(b *testing.B) {
	for i := 0; i < b.N; i++ {
		run(b)
	}
}

func run(b *testing.B) {
	c := framework.Start(b, framework.Options{ControllerManager: true, Scheduler: true})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := c.Client

	hclient := client
	if *separateConn {
		rc := rest.CopyConfig(c.Config)
		rc.Proxy = http.ProxyFromEnvironment
		hclient = kubernetes.NewForConfigOrDie(rc)
	}
	h := hollow.New(hclient, hollow.Options{Count: *numNodes, Workers: *hollowWork})
	hdone := make(chan error, 1)
	go func() { hdone <- h.Run(ctx) }()
	defer func() { cancel(); <-hdone }()
	regStart := time.Now()
	for {
		l, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{ResourceVersion: "0"})
		if err == nil && len(l.Items) >= *numNodes {
			break
		}
		if time.Since(regStart) > 5*time.Minute {
			b.Fatalf("nodes not registered after 5m")
		}
		time.Sleep(200 * time.Millisecond)
	}
	b.Logf("%d hollow nodes registered in %v", *numNodes, time.Since(regStart).Round(time.Millisecond))
	// A steady cluster: every node heartbeating through its Lease before
	// the Deployment is created, so the scale-up does not also carry the
	// nodes' first Lease creations (a kubelet creates its Lease at start).
	for {
		l, err := client.CoordinationV1().Leases(v1.NamespaceNodeLease).List(ctx, metav1.ListOptions{ResourceVersion: "0"})
		if err == nil && len(l.Items) >= *numNodes {
			break
		}
		if time.Since(regStart) > 5*time.Minute {
			b.Fatalf("node leases not created after 5m")
		}
		time.Sleep(200 * time.Millisecond)
	}
	b.Logf("%d node leases created %v after the registration began", *numNodes, time.Since(regStart).Round(time.Millisecond))

	tr := newTracker()
	// The observer sends the requests a typed pod informer on "default"
	// sends, but its watch decodes only what the tracker reads
	// (hollow.PodSummary): the measuring harness's CPU and heap stay out
	// of the way of the cluster it measures.
	coreRC := controller.CoreREST(client)
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return client.CoreV1().Pods("default").List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			if coreRC == nil {
				return client.CoreV1().Pods("default").Watch(ctx, o)
			}
			return hollow.WatchPods(ctx, coreRC, "default", o, hollow.PodSummary)
		},
	}
	inf := cache.NewSharedIndexInformer(cache.ToListWatcherWithWatchListSemantics(lw, client), &v1.Pod{}, 0, cache.Indexers{})
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { tr.observe(o.(*v1.Pod), false) },
		UpdateFunc: func(_, o any) { tr.observe(o.(*v1.Pod), false) },
		DeleteFunc: func(o any) {
			if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
				o = t.Obj
			}
			if p, ok := o.(*v1.Pod); ok {
				tr.observe(p, true)
			}
		},
	}); err != nil {
		b.Fatalf("adding handler: %v", err)
	}
	go inf.RunWithContext(ctx)
	cache.WaitForCacheSync(ctx.Done(), inf.HasSynced)

	n := int32(*numReplicas)
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "bench"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &n,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "bench"}},
			Template: v1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "bench"}},
				Spec:       v1.PodSpec{Containers: []v1.Container{{Name: "app", Image: "bench:v1"}}},
			},
		},
	}
	if *upProfile != "" {
		f, err := os.Create(*upProfile)
		if err != nil {
			b.Fatalf("creating profile: %v", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatalf("starting CPU profile (not with -test.cpuprofile): %v", err)
		}
	}
	reqs0 := requestsByKind(ctx, client)
	cpu0, wait0 := cputime.Process(), runDelay()
	start := time.Now()
	b.ResetTimer()
	if _, err := client.AppsV1().Deployments("default").Create(ctx, d, metav1.CreateOptions{}); err != nil {
		b.Fatalf("creating deployment: %v", err)
	}
	total := int(n)
	go func() {
		// Progress, so a slow run can be told from a stuck one.
		t := time.NewTicker(*progressInt)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			tr.mu.Lock()
			fmt.Printf("%s %6.1fs cpu %v runq-wait %v watch: created %d bound %d running %d", time.Now().Format("15:04:05.000"), time.Since(start).Seconds(),
				(cputime.Process() - cpu0).Round(100*time.Millisecond), (runDelay() - wait0).Round(100*time.Millisecond), len(tr.created), len(tr.bound), len(tr.running))
			tr.mu.Unlock()
			if *verifyList {
				// A quorum list tells lost watch events from a stuck pipeline.
				lrv := ""
				if l, err := client.CoreV1().Pods("default").List(ctx, metav1.ListOptions{}); err == nil {
					lrv = l.ResourceVersion
					nb, nr := 0, 0
					for _, p := range l.Items {
						if p.Spec.NodeName != "" {
							nb++
						}
						if p.Status.Phase == v1.PodRunning {
							nr++
						}
					}
					fmt.Printf(" | list: pods %d bound %d running %d", len(l.Items), nb, nr)
				}
				// resourceVersion=0 is served from the watch cache: ahead of
				// the informer means the HTTP watch path lags, behind the
				// quorum list means the cache lags etcd.
				if l, err := client.CoreV1().Pods("default").List(ctx, metav1.ListOptions{ResourceVersion: "0"}); err == nil {
					fmt.Printf(" | cache: pods %d rv %s (quorum rv %s)", len(l.Items), l.ResourceVersion, lrv)
				}
			}
			if codes := requestCodes(ctx, client); codes != nil {
				fmt.Printf(" | codes %v", codes)
			}
			fmt.Println()
			if *dumpDir != "" {
				if f, err := os.Create(filepath.Join(*dumpDir, fmt.Sprintf("goroutines-%04.0fs.txt", time.Since(start).Seconds()))); err == nil {
					pprof.Lookup("goroutine").WriteTo(f, 1)
					f.Close()
				}
			}
		}
	}()
	err := tr.waitUntil(ctx, 30*time.Minute, func() bool { return len(tr.running) >= total })
	tr.mu.Lock()
	created, bound, running := len(tr.created), len(tr.bound), len(tr.running)
	lastCreate, lastBound, lastRunning, firstCreate := tr.lastCreate, tr.lastBound, tr.lastRunning, tr.firstCreate
	tr.mu.Unlock()
	if err != nil {
		b.Fatalf("waiting for %d running pods: %v (created %d, bound %d, running %d)", total, err, created, bound, running)
	}
	upTime := lastRunning.Sub(start)
	upCPU := cputime.Process() - cpu0
	upWait := runDelay() - wait0
	if *upProfile != "" {
		pprof.StopCPUProfile()
	}
	reqs1 := requestsByKind(ctx, client)
	b.ReportMetric(float64(total)/upTime.Seconds(), "pods-running/s")
	b.ReportMetric(float64(upCPU.Microseconds())/1000/float64(total), "cpu-ms/pod")
	printUp := func() {
		fmt.Printf("\n%d hollow nodes, Deployment of %d replicas\n", *numNodes, total)
		fmt.Printf("| phase                          | time      | pods/s | process CPU |\n")
		fmt.Printf("|--------------------------------|----------:|-------:|------------:|\n")
		fmt.Printf("| first pod created              | %9v |        |             |\n", firstCreate.Sub(start).Round(time.Millisecond))
		fmt.Printf("| all pods created               | %9v | %6.0f |             |\n", lastCreate.Sub(start).Round(time.Millisecond), float64(total)/lastCreate.Sub(start).Seconds())
		fmt.Printf("| all pods bound                 | %9v | %6.0f |             |\n", lastBound.Sub(start).Round(time.Millisecond), float64(total)/lastBound.Sub(start).Seconds())
		fmt.Printf("| all pods Running               | %9v | %6.0f | %11v |\n", upTime.Round(time.Millisecond), float64(total)/upTime.Seconds(), upCPU.Round(time.Second))
		fmt.Printf("(to Running: CPU %.2f ms per pod; threads waited %v on the machine's run queues)\n", float64(upCPU.Microseconds())/1000/float64(total), upWait.Round(100*time.Millisecond))
		printRequests(reqs0, reqs1, total)
		// Per pod, under this load: what the scheduler and the hollow
		// kubelets add after the ReplicaSet controller created the pod.
		lat := map[string][]time.Duration{}
		tr.mu.Lock()
		for k, ct := range tr.created {
			bt, ok := tr.bound[k]
			if !ok {
				continue
			}
			lat["created -> bound"] = append(lat["created -> bound"], bt.Sub(ct))
			if rt, ok := tr.running[k]; ok {
				lat["bound -> Running"] = append(lat["bound -> Running"], rt.Sub(bt))
			}
		}
		tr.mu.Unlock()
		stageLatencies("Per-pod latency during the scale-up (seen by the benchmark's pod watch)", []string{"created -> bound", "bound -> Running"}, lat)
	}
	if !*rollout {
		b.StopTimer()
		printUp()
		return
	}

	// Rolling update to v2, complete when the Deployment says so and no
	// v1 pod is left.
	cpu1 := cputime.Process()
	rollStart := time.Now()
	for attempt := 0; ; attempt++ {
		cur, err := client.AppsV1().Deployments("default").Get(ctx, "bench", metav1.GetOptions{})
		if err != nil {
			b.Fatalf("getting deployment: %v", err)
		}
		cur.Spec.Template.Spec.Containers[0].Image = "bench:v2"
		if _, err = client.AppsV1().Deployments("default").Update(ctx, cur, metav1.UpdateOptions{}); err == nil {
			break
		} else if attempt > 10 {
			b.Fatalf("updating deployment: %v", err)
		}
	}
	deadline := time.Now().Add(30 * time.Minute)
	for {
		cur, err := client.AppsV1().Deployments("default").Get(ctx, "bench", metav1.GetOptions{})
		if err != nil {
			b.Fatalf("getting deployment: %v", err)
		}
		s := cur.Status
		tr.mu.Lock()
		oldLeft := tr.liveByImage["bench:v1"]
		tr.mu.Unlock()
		if s.ObservedGeneration >= cur.Generation && s.UpdatedReplicas == n && s.AvailableReplicas == n && s.Replicas == n && oldLeft == 0 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("rolling update not complete after 30m: status %+v, %d v1 pods left", s, oldLeft)
		}
		time.Sleep(100 * time.Millisecond)
	}
	rollTime := time.Since(rollStart)
	rollCPU := cputime.Process() - cpu1
	b.StopTimer()

	b.ReportMetric(float64(total)/rollTime.Seconds(), "pods-rolled/s")
	printUp()
	fmt.Printf("| rolling update v1 -> v2 done   | %9v | %6.0f | %11v |\n", rollTime.Round(time.Millisecond), float64(total)/rollTime.Seconds(), rollCPU.Round(time.Second))
}
