package controllers

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"skiff.dev/skiff/test/integration/framework"
)

var lagPods = flag.Int("lag-pods", 2000, "TestWatchLag: pods to create")

// TestWatchLag creates pods from many goroutines and measures how long a
// pod informer takes to see each one after its create call returned.
func TestWatchLag(t *testing.T) {
	if testing.Short() {
		t.Skip()
	}
	c := framework.Start(t, framework.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rc := rest.CopyConfig(c.Config)
	if *separateConn {
		rc.Proxy = http.ProxyFromEnvironment // not cacheable: own transport and connection
	}
	wclient := kubernetes.NewForConfigOrDie(rc)
	var mu sync.Mutex
	created := map[string]time.Time{}
	seen := map[string]time.Time{}
	factory := informers.NewSharedInformerFactoryWithOptions(wclient, 0, informers.WithNamespace("default"))
	inf := factory.Core().V1().Pods().Informer()
	inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: func(o any) {
		mu.Lock()
		seen[o.(*v1.Pod).Name] = time.Now()
		mu.Unlock()
	}})
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	n := *lagPods
	var next atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < 32; w++ {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				p := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p-%d", i)},
					Spec: v1.PodSpec{Containers: []v1.Container{{Name: "app", Image: "x"}}}}
				if _, err := c.Client.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
					t.Errorf("create: %v", err)
					return
				}
				mu.Lock()
				created[p.Name] = time.Now()
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	createdIn := time.Since(start)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		mu.Lock()
		k := len(seen)
		mu.Unlock()
		if k >= n || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	var lags []time.Duration
	for k, ct := range created {
		if st, ok := seen[k]; ok {
			lags = append(lags, st.Sub(ct))
		}
	}
	sort.Slice(lags, func(i, j int) bool { return lags[i] < lags[j] })
	q := func(f float64) time.Duration { return lags[int(f*float64(len(lags)-1))].Round(time.Millisecond) }
	fmt.Printf("created %d in %v (%.0f/s), seen %d; lag p50 %v p90 %v p99 %v max %v\n", n, createdIn.Round(time.Millisecond),
		float64(n)/createdIn.Seconds(), len(seen), q(.5), q(.9), q(.99), q(1))
}
