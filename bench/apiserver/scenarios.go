package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// sentAnnotation carries the writer's clock at send time, so watchers can
// measure delivery latency without a side channel.
const sentAnnotation = "bench.skiff.dev/sent-unix-nano"

// result is one row of the output table: skiff's value and, with
// -upstream, upstream's value and the load when it was measured.
type result struct {
	scenario, metric, value, target, load string
	upstream, upLoad                      string
}

// target is a running API server a scenario talks to.
type target interface {
	restConfig() (*rest.Config, error)
	// cpuTime is the CPU the server has used so far (an error when it
	// cannot be told apart from the benchmark's own, in process).
	cpuTime() (time.Duration, error)
}

// newClientset builds a clientset with its own TCP connection: client-go
// shares transports between identical configs, and a custom Dial opts out
// of that cache, so N clients really are N connections as N processes
// would be.
func newClientset(base *rest.Config) (*kubernetes.Clientset, error) {
	cfg := rest.CopyConfig(base)
	cfg.QPS, cfg.Burst = -1, 0
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	cfg.Dial = d.DialContext
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("building clientset: %w", err)
	}
	return cs, nil
}

func smallPod(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "bench"}},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "c", Image: "registry.k8s.io/pause:3.10"}},
		},
	}
}

// ensureNamespace creates ns and its default ServiceAccount: upstream's
// ServiceAccount admission refuses pods until that exists, and with no
// controller manager running nothing else creates it. Skiff gets the same
// object so both servers store and admit the same pods.
func ensureNamespace(ctx context.Context, cs kubernetes.Interface, ns string) error {
	_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", ns, err)
	}
	_, err = cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating service account %s/default: %w", ns, err)
	}
	return nil
}

// createLoad creates total pods in ns from clients concurrent clientsets
// and returns throughput and per-request latencies.
func createLoad(ctx context.Context, t target, ns string, clients, total int) (float64, durations, error) {
	base, err := t.restConfig()
	if err != nil {
		return 0, nil, err
	}
	css := make([]*kubernetes.Clientset, clients)
	for i := range css {
		if css[i], err = newClientset(base); err != nil {
			return 0, nil, err
		}
	}
	if err := ensureNamespace(ctx, css[0], ns); err != nil {
		return 0, nil, err
	}
	// Warm every connection (TLS handshake, HTTP/2 settings) outside the
	// measurement.
	for _, cs := range css {
		if _, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil {
			return 0, nil, fmt.Errorf("warming client: %w", err)
		}
	}
	var next atomic.Int64
	lats := make([]durations, clients)
	errs := make([]error, clients)
	var wg sync.WaitGroup
	start := time.Now()
	for i, cs := range css {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n := next.Add(1)
				if n > int64(total) {
					return
				}
				t0 := time.Now()
				_, err := cs.CoreV1().Pods(ns).Create(ctx, smallPod("p-"+strconv.FormatInt(n, 10)), metav1.CreateOptions{})
				if err != nil {
					errs[i] = fmt.Errorf("creating pod %d: %w", n, err)
					return
				}
				lats[i] = append(lats[i], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	wall := time.Since(start)
	var all durations
	for i := range lats {
		if errs[i] != nil {
			return 0, nil, errs[i]
		}
		all = append(all, lats[i]...)
	}
	return float64(total) / wall.Seconds(), all, nil
}

// listTimes lists every pod in ns reps times per variant and returns the
// median wall time and response size. The client reads the raw body and
// does not decode it, so the number is the server's work plus transfer.
func listTimes(ctx context.Context, t target, ns string, reps int) ([]result, error) {
	base, err := t.restConfig()
	if err != nil {
		return nil, err
	}
	cs, err := newClientset(base)
	if err != nil {
		return nil, err
	}
	var out []result
	for _, v := range []struct{ rv, accept, label string }{
		{"", "application/json", `rv="" json`},
		{"0", "application/json", `rv="0" json`},
		{"", "application/vnd.kubernetes.protobuf", `rv="" protobuf`},
		{"0", "application/vnd.kubernetes.protobuf", `rv="0" protobuf`},
	} {
		var ts durations
		var size int
		for i := 0; i < reps; i++ {
			req := cs.CoreV1().RESTClient().Get().Namespace(ns).Resource("pods").SetHeader("Accept", v.accept)
			if v.rv != "" {
				req = req.Param("resourceVersion", v.rv)
			}
			t0 := time.Now()
			body, err := req.DoRaw(ctx)
			if err != nil {
				return nil, fmt.Errorf("listing pods (%s): %w", v.label, err)
			}
			ts = append(ts, time.Since(t0))
			size = len(body)
		}
		out = append(out, result{scenario: "list", metric: fmt.Sprintf("LIST pods %s", v.label), value: fmt.Sprintf("%s (%.1f MB)", ms(ts.median()), float64(size)/1e6), load: loadAvg()})
	}
	return out, nil
}

// watchLatency opens watchers watches on ns, creates pods at rate per
// second for dur, and measures delivery latency from the writer's send
// time (an annotation) to each watcher's receive time.
func watchLatency(ctx context.Context, t target, ns string, watchers, rate int, dur time.Duration) (durations, int, error) {
	base, err := t.restConfig()
	if err != nil {
		return nil, 0, err
	}
	writer, err := newClientset(base)
	if err != nil {
		return nil, 0, err
	}
	if err := ensureNamespace(ctx, writer, ns); err != nil {
		return nil, 0, err
	}
	list, err := writer.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{Limit: 1})
	if err != nil {
		return nil, 0, fmt.Errorf("listing pods: %w", err)
	}
	total := rate * int(dur/time.Second)
	wctx, cancel := context.WithTimeout(ctx, dur+60*time.Second)
	defer cancel()
	lats := make([]durations, watchers)
	got := make([]int, watchers)
	var wg sync.WaitGroup
	for i := 0; i < watchers; i++ {
		cs, err := newClientset(base)
		if err != nil {
			return nil, 0, err
		}
		w, err := cs.CoreV1().Pods(ns).Watch(wctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
		if err != nil {
			return nil, 0, fmt.Errorf("starting watch %d: %w", i, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer w.Stop()
			for ev := range w.ResultChan() {
				now := time.Now()
				if ev.Type != watch.Added {
					continue
				}
				p, ok := ev.Object.(*corev1.Pod)
				if !ok {
					continue
				}
				sent, err := strconv.ParseInt(p.Annotations[sentAnnotation], 10, 64)
				if err != nil {
					continue
				}
				lats[i] = append(lats[i], now.Sub(time.Unix(0, sent)))
				got[i]++
				if got[i] == total {
					return
				}
			}
		}()
	}
	interval := time.Second / time.Duration(rate)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for n := 0; n < total; n++ {
		<-tick.C
		p := smallPod("w-" + strconv.Itoa(n))
		p.Annotations = map[string]string{sentAnnotation: strconv.FormatInt(time.Now().UnixNano(), 10)}
		if _, err := writer.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			return nil, 0, fmt.Errorf("creating pod %d: %w", n, err)
		}
	}
	wg.Wait()
	var all durations
	missed := 0
	for i := range lats {
		all = append(all, lats[i]...)
		missed += total - got[i]
	}
	return all, missed, nil
}

// coldStarts starts n fresh servers and then restarts the last one on its
// existing data dir, returning the times to /readyz 200.
func coldStarts(ctx context.Context, bin, work string, n int, env []string) (durations, time.Duration, error) {
	var fresh durations
	var last string
	for i := 0; i < n; i++ {
		dir := filepath.Join(work, fmt.Sprintf("start-%d", i))
		_ = os.RemoveAll(dir)
		p, err := startServer(ctx, bin, dir, false, env)
		if err != nil {
			return nil, 0, err
		}
		fresh = append(fresh, p.readyIn)
		p.stop()
		last = dir
	}
	var restart durations
	for i := 0; i < n; i++ {
		p, err := startServer(ctx, bin, last, false, env)
		if err != nil {
			return nil, 0, err
		}
		restart = append(restart, p.readyIn)
		p.stop()
	}
	return fresh, restart.median(), nil
}

// rss is a process's resident memory in KiB: the total, and its anonymous
// (heap, stacks) and file-backed (mostly the mapped skiff binary) parts.
type rss struct{ total, anon, file int64 }

func (r rss) String() string {
	return fmt.Sprintf("%.0f MB (anon %.0f, file %.0f)", float64(r.total)/1024, float64(r.anon)/1024, float64(r.file)/1024)
}

// idleRSS starts a server, waits idle, and reads its resident memory.
func idleRSS(ctx context.Context, bin, dir string, apiOnly bool, idle time.Duration, env []string) (rss, error) {
	_ = os.RemoveAll(dir)
	p, err := startServer(ctx, bin, dir, apiOnly, env)
	if err != nil {
		return rss{}, err
	}
	defer p.stop()
	select {
	case <-time.After(idle):
	case <-ctx.Done():
		return rss{}, ctx.Err()
	}
	return readRSS(p.cmd.Process.Pid)
}
