package cli_test

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"skiff.dev/skiff/internal/cli"
	"skiff.dev/skiff/test/integration/framework"
)

// The shared informers' typed accessors list and watch the API server's
// stores in memory (no LIST or WATCH request reaches the handler), keep
// the accessors' indexers, and go through the client again with
// SKIFF_INPROCESS_INFORMERS=http; an informer a component registers itself
// through InformerFor keeps the component's constructor.
func TestSharedInformersListAndWatchLocally(t *testing.T) {
	c := framework.Start(t, framework.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rc, err := c.Server.InProcessConfig()
	if err != nil {
		t.Fatal(err)
	}
	podRequests := func() float64 {
		counts, err := framework.RequestCounts(ctx, c.Client)
		if err != nil {
			t.Fatal(err)
		}
		n := 0.0
		for _, rc := range counts {
			if rc.Resource == "pods" && (rc.Verb == "LIST" || rc.Verb == "WATCH") {
				n += rc.Count
			}
		}
		return n
	}
	for _, mode := range []string{"local", "http"} {
		t.Run(mode, func(t *testing.T) {
			t.Setenv("SKIFF_INPROCESS_INFORMERS", mode)
			before := podRequests()
			owner, stop := context.WithCancel(ctx)
			defer stop()
			f, err := cli.TakeSharedInformers()(owner, c.Server, rc, "test")
			if err != nil {
				t.Fatal(err)
			}
			inf := f.Core().V1().Pods().Informer()
			if _, ok := inf.GetIndexer().GetIndexers()[cache.NamespaceIndex]; !ok {
				t.Fatalf("pod informer indexers %v: no namespace index", inf.GetIndexer().GetIndexers())
			}
			idle := &cache.ListWatch{
				ListWithContextFunc: func(context.Context, metav1.ListOptions) (runtime.Object, error) {
					return &corev1.SecretList{}, nil
				},
				WatchFuncWithContext: func(context.Context, metav1.ListOptions) (watch.Interface, error) {
					return watch.NewFake(), nil
				},
			}
			own := cache.NewSharedIndexInformer(idle, &corev1.Secret{}, 0, nil)
			if got := f.InformerFor(&corev1.Secret{}, func(kubernetes.Interface, time.Duration) cache.SharedIndexInformer { return own }); got != own {
				t.Fatal("InformerFor did not keep the component's own constructor")
			}
			f.Start(ctx.Done())
			if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
				t.Fatal("pod informer did not sync")
			}
			name := "p" + mode
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "i"}}}}
			if _, err := c.Client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(30 * time.Second)
			for {
				if o, ok, _ := inf.GetStore().GetByKey("default/" + name); ok {
					if p := o.(*corev1.Pod); p.Kind != "" || len(p.ManagedFields) == 0 {
						t.Fatalf("informer pod: kind %q, %d managedFields entries; want what a client decodes (no kind, the server's managedFields)", p.Kind, len(p.ManagedFields))
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("created pod never reached the informer")
				}
				time.Sleep(10 * time.Millisecond)
			}
			// A watch is counted when it ends.
			stop()
			deadline = time.Now().Add(3 * time.Second)
			for time.Now().Before(deadline) {
				if podRequests() > before {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			requests := podRequests() - before
			switch {
			case mode == "local" && requests != 0:
				t.Fatalf("%v pod LIST/WATCH requests reached the API server from local informers", requests)
			case mode == "http" && requests == 0:
				t.Fatal("no pod LIST/WATCH request reached the API server with SKIFF_INPROCESS_INFORMERS=http")
			}
		})
	}
	t.Setenv("SKIFF_INPROCESS_INFORMERS", "bogus")
	if _, err := cli.TakeSharedInformers()(ctx, c.Server, rc, "test"); err == nil {
		t.Fatal("SKIFF_INPROCESS_INFORMERS=bogus accepted")
	}
}
