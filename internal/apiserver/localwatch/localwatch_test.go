package localwatch_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"skiff.dev/skiff/internal/apiserver/localwatch"
	"skiff.dev/skiff/test/integration/framework"
)

// recorder keeps what an informer's handlers saw, in order.
type recorder struct {
	mu     sync.Mutex
	events []event
}

type event struct {
	what string // "ADD ns/name rv", "UPDATE ns/name rv->rv", "DELETE ns/name rv"
	obj  runtime.Object
}

func key(o any) string {
	if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
		return d.Key + "(unknown)"
	}
	m, _ := meta.Accessor(o)
	return m.GetNamespace() + "/" + m.GetName() + " " + m.GetResourceVersion()
}

func (r *recorder) add(what string, obj any) {
	o, _ := obj.(runtime.Object)
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		o, _ = d.Obj.(runtime.Object)
	}
	if o != nil {
		o = o.DeepCopyObject()
	}
	r.mu.Lock()
	r.events = append(r.events, event{what, o})
	r.mu.Unlock()
}

func (r *recorder) handlers() cache.ResourceEventHandlerFuncs {
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { r.add("ADD "+key(obj), obj) },
		UpdateFunc: func(old, obj any) {
			r.add("UPDATE "+key(obj)+" from "+key(old), obj)
		},
		DeleteFunc: func(obj any) { r.add("DELETE "+key(obj), obj) },
	}
}

func (r *recorder) snapshot() []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]event(nil), r.events...)
}

// gatedLW wraps a ListerWatcher so a test can cut its watches (as a
// dropped stream) and hold back the re-watches; it counts the 410s its
// watches got.
type gatedLW struct {
	inner cache.ListerWatcherWithContext
	mu    sync.Mutex
	gate  chan struct{} // nil: open
	live  []*cuttable
	gone  int
}

type cuttable struct {
	watch.Interface
	out  chan watch.Event
	once sync.Once
	cut  chan struct{}
}

func (c *cuttable) ResultChan() <-chan watch.Event { return c.out }

func (g *gatedLW) List(opts metav1.ListOptions) (runtime.Object, error) {
	return g.ListWithContext(context.Background(), opts)
}

func (g *gatedLW) Watch(opts metav1.ListOptions) (watch.Interface, error) {
	return g.WatchWithContext(context.Background(), opts)
}

func (g *gatedLW) ListWithContext(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
	return g.inner.ListWithContext(ctx, opts)
}

func (g *gatedLW) WatchWithContext(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	g.mu.Lock()
	gate := g.gate
	g.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	w, err := g.inner.WatchWithContext(ctx, opts)
	if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
		g.mu.Lock()
		g.gone++
		g.mu.Unlock()
	}
	if err != nil {
		return nil, err
	}
	c := &cuttable{Interface: w, out: make(chan watch.Event), cut: make(chan struct{})}
	go func() {
		defer close(c.out)
		for {
			select {
			case ev, ok := <-w.ResultChan():
				if !ok {
					return
				}
				select {
				case c.out <- ev:
				case <-c.cut:
					w.Stop()
					return
				}
			case <-c.cut:
				w.Stop()
				return
			}
		}
	}()
	g.mu.Lock()
	g.live = append(g.live, c)
	g.mu.Unlock()
	return c, nil
}

// cutAndHold ends every open watch and holds new ones until release.
func (g *gatedLW) cutAndHold() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.gate = make(chan struct{})
	for _, c := range g.live {
		c.once.Do(func() { close(c.cut) })
	}
	g.live = nil
}

func (g *gatedLW) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.gate != nil {
		close(g.gate)
		g.gate = nil
	}
}

func (g *gatedLW) gones() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.gone
}

// pair is one informer over HTTP and one over the local source, same
// options.
type pair struct {
	name            string
	opts            func(*metav1.ListOptions)
	http, local     *gatedLW
	httpInf, locInf cache.SharedIndexInformer
	httpRec, locRec *recorder
}

func tweaked(lw cache.ListerWatcherWithContext, tweak func(*metav1.ListOptions)) cache.ListerWatcherWithContext {
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			tweak(&o)
			return lw.ListWithContext(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			tweak(&o)
			return lw.WatchWithContext(ctx, o)
		},
	}
}

func newPair(t *testing.T, ctx context.Context, name string, obj runtime.Object, httpLW cache.ListerWatcherWithContext, src *localwatch.Source, tweak func(*metav1.ListOptions)) *pair {
	t.Helper()
	local, ok := src.ListerWatcher(obj, "")
	if !ok {
		t.Fatalf("no local ListerWatcher for %T", obj)
	}
	p := &pair{name: name, opts: tweak,
		http:    &gatedLW{inner: tweaked(httpLW, tweak)},
		local:   &gatedLW{inner: tweaked(local.(cache.ListerWatcherWithContext), tweak)},
		httpRec: &recorder{}, locRec: &recorder{}}
	p.httpInf = cache.NewSharedIndexInformer(p.http, obj, 0, cache.Indexers{})
	p.locInf = cache.NewSharedIndexInformer(p.local, obj, 0, cache.Indexers{})
	if _, err := p.httpInf.AddEventHandler(p.httpRec.handlers()); err != nil {
		t.Fatal(err)
	}
	if _, err := p.locInf.AddEventHandler(p.locRec.handlers()); err != nil {
		t.Fatal(err)
	}
	go p.httpInf.RunWithContext(ctx)
	go p.locInf.RunWithContext(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), p.httpInf.HasSynced, p.locInf.HasSynced) {
		t.Fatalf("%s: informers did not sync", name)
	}
	return p
}

// storeState is an informer store's keys and resourceVersions, sorted.
func storeState(inf cache.SharedIndexInformer) []string {
	var out []string
	for _, o := range inf.GetStore().List() {
		out = append(out, key(o))
	}
	sort.Strings(out)
	return out
}

// settle waits until both informers of every pair hold what a fresh
// list with the pair's options returns.
func settle(t *testing.T, ctx context.Context, list func(context.Context, metav1.ListOptions) (runtime.Object, error), pairs ...*pair) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, p := range pairs {
		for {
			o := metav1.ListOptions{}
			p.opts(&o)
			l, err := list(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			items, _ := meta.ExtractList(l)
			var want []string
			for _, it := range items {
				want = append(want, key(it))
			}
			sort.Strings(want)
			h, lo := storeState(p.httpInf), storeState(p.locInf)
			if reflect.DeepEqual(h, want) && reflect.DeepEqual(lo, want) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: informers did not settle:\n want %v\n http %v\nlocal %v", p.name, want, h, lo)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// sameEvents compares what the two informers of p saw: the same events
// with equal objects; in the same order in [from, to), as sets before
// from and after to (the initial list and a relist hand out their
// objects in map order).
func sameEvents(t *testing.T, p *pair, from, to int) {
	t.Helper()
	h, l := p.httpRec.snapshot(), p.locRec.snapshot()
	if len(h) != len(l) {
		t.Fatalf("%s: %d events over HTTP, %d local:\n http %v\nlocal %v", p.name, len(h), len(l), whats(h), whats(l))
	}
	to = min(to, len(h))
	from = min(from, to)
	for i := from; i < to; i++ {
		if h[i].what != l[i].what {
			t.Fatalf("%s: event %d over HTTP %q, local %q\n http %v\nlocal %v", p.name, i, h[i].what, l[i].what, whats(h), whats(l))
		}
		if !reflect.DeepEqual(h[i].obj, l[i].obj) {
			t.Fatalf("%s: event %d %q: objects differ:\n http %#v\nlocal %#v", p.name, i, h[i].what, h[i].obj, l[i].obj)
		}
	}
	sameSet(t, p.name, h[:from], l[:from])
	sameSet(t, p.name, h[to:], l[to:])
}

func sameSet(t *testing.T, name string, h, l []event) {
	t.Helper()
	set := func(es []event) map[string]runtime.Object {
		m := map[string]runtime.Object{}
		for _, e := range es {
			m[e.what] = e.obj
		}
		return m
	}
	hs, ls := set(h), set(l)
	if len(hs) != len(ls) {
		t.Fatalf("%s: unordered events differ:\n http %v\nlocal %v", name, whats(h), whats(l))
	}
	for w, o := range hs {
		lo, ok := ls[w]
		if !ok {
			t.Fatalf("%s: %q over HTTP only; local: %v", name, w, whats(l))
		}
		if !reflect.DeepEqual(o, lo) {
			t.Fatalf("%s: %q: objects differ:\n http %#v\nlocal %#v", name, w, o, lo)
		}
	}
}

func whats(es []event) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.what
	}
	return out
}

func testPod(name string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "localhost/skiff/testapp:v1"}}},
	}
}

// Informers listing and watching through a Source see what informers
// over the API server's HTTP path see, event for event and object for
// object (TypeMeta, managedFields included): creates, updates, deletes,
// pods entering and leaving label and field selectors, and a relist
// forced by a re-watch from a resourceVersion the watch cache no longer
// holds (410 Gone on both paths).
func TestLocalInformersMatchHTTP(t *testing.T) {
	c := framework.Start(t, framework.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rc, err := c.Server.InProcessConfig()
	if err != nil {
		t.Fatal(err)
	}
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	src, err := c.Server.LocalWatch()
	if err != nil {
		t.Fatal(err)
	}
	const ns = "lw"
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pods := kube.CoreV1().Pods(ns)
	cms := kube.CoreV1().ConfigMaps(ns)
	for _, n := range []string{"a", "b", "c", "filler"} {
		if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: n}, Data: map[string]string{"k": n}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"p1", "p2"} {
		if _, err := pods.Create(ctx, testPod(n, map[string]string{"tier": "web"}), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pods.Create(ctx, testPod("p3", map[string]string{"tier": "db"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	podsLW := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return kube.CoreV1().Pods(metav1.NamespaceAll).List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return kube.CoreV1().Pods(metav1.NamespaceAll).Watch(ctx, o)
		},
	}
	cmsLW := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return kube.CoreV1().ConfigMaps(metav1.NamespaceAll).List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return kube.CoreV1().ConfigMaps(metav1.NamespaceAll).Watch(ctx, o)
		},
	}
	inNS := func(o *metav1.ListOptions) { o.FieldSelector = "metadata.namespace=" + ns }
	all := newPair(t, ctx, "configmaps", &corev1.ConfigMap{}, cmsLW, src, inNS)
	web := newPair(t, ctx, "pods tier=web", &corev1.Pod{}, podsLW, src, func(o *metav1.ListOptions) { o.LabelSelector = "tier=web" })
	onN1 := newPair(t, ctx, "pods on n1", &corev1.Pod{}, podsLW, src, func(o *metav1.ListOptions) { o.FieldSelector = "spec.nodeName=n1" })
	listCMs := func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
		return kube.CoreV1().ConfigMaps(metav1.NamespaceAll).List(ctx, o)
	}
	listPods := func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
		return kube.CoreV1().Pods(metav1.NamespaceAll).List(ctx, o)
	}
	settle(t, ctx, listCMs, all)
	settle(t, ctx, listPods, web, onN1)
	initial := map[*pair]int{}
	for _, p := range []*pair{all, web, onN1} {
		sameEvents(t, p, 1<<30, 1<<30)
		initial[p] = len(p.httpRec.snapshot())
	}

	// Changes while watching.
	a, err := cms.Get(ctx, "a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a.Data["k"] = "a2"
	if _, err := cms.Update(ctx, a, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cms.Delete(ctx, "b", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "d"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// p1 leaves tier=web, p3 joins it; p2 is bound to n1 (enters the
	// field selector) and then updated.
	for name, tier := range map[string]string{"p1": "api", "p3": "web"} {
		patch := fmt.Sprintf(`{"metadata":{"labels":{"tier":%q}}}`, tier)
		if _, err := pods.Patch(ctx, name, "application/merge-patch+json", []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := pods.Bind(ctx, &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: "p2"}, Target: corev1.ObjectReference{Kind: "Node", Name: "n1"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p2, err := pods.Get(ctx, "p2", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p2.Status.Phase = corev1.PodRunning
	if _, err := pods.UpdateStatus(ctx, p2, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	settle(t, ctx, listCMs, all)
	settle(t, ctx, listPods, web, onN1)
	ordered := map[*pair]int{}
	for _, p := range []*pair{all, web, onN1} {
		sameEvents(t, p, initial[p], 1<<30)
		ordered[p] = len(p.httpRec.snapshot())
	}
	if got := len(web.locRec.snapshot()); got < 4 {
		t.Fatalf("tier=web informers saw %d events, want the 2 initial adds, p1's delete and p3's add at least", got)
	}

	// A relist: the streams drop, changes happen, then more than the watch
	// cache's event buffer (10,000) passes before the informers re-watch
	// from the last resourceVersion they saw: 410 Gone on both paths.
	for _, p := range []*pair{all, web, onN1} {
		p.http.cutAndHold()
		p.local.cutAndHold()
	}
	a, err = cms.Get(ctx, "a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a.Labels = map[string]string{"x": "y"}
	if _, err := cms.Update(ctx, a, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cms.Delete(ctx, "c", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "e"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := pods.Delete(ctx, "p2", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		t.Fatal(err)
	}
	if _, err := pods.Create(ctx, testPod("p4", map[string]string{"tier": "web"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	overflow(t, ctx, c, "/registry/configmaps/"+ns+"/filler", "/registry/pods/"+ns+"/p3")
	for _, p := range []*pair{all, web, onN1} {
		p.http.release()
		p.local.release()
	}
	settle(t, ctx, listCMs, all)
	settle(t, ctx, listPods, web, onN1)
	for _, p := range []*pair{all, web, onN1} {
		if p.http.gones() == 0 || p.local.gones() == 0 {
			t.Fatalf("%s: 410s over HTTP %d, local %d: the re-watch did not find its resourceVersion gone", p.name, p.http.gones(), p.local.gones())
		}
		sameEvents(t, p, initial[p], ordered[p])
	}
}

// overflow writes each key's current bytes back more times than the
// watch cache's event buffer holds (one buffer per resource) (straight to etcd: the fastest writes), so
// the revisions the informers last saw leave the buffer.
func overflow(t *testing.T, ctx context.Context, c *framework.Cluster, keys ...string) {
	t.Helper()
	etcd := c.Server.EtcdClient()
	for _, k := range keys {
		resp, err := etcd.Get(ctx, k)
		if err != nil || len(resp.Kvs) != 1 {
			t.Fatalf("reading %s from etcd: %v (%d keys)", k, err, len(resp.Kvs))
		}
		val := string(resp.Kvs[0].Value)
		for i := 0; i < 10100; i++ {
			if _, err := etcd.Put(ctx, k, val); err != nil {
				t.Fatalf("writing %s: %v", k, err)
			}
		}
	}
}

// The local path refuses what the HTTP path refuses, with the same
// status, and ends its watches when the source closes.
func TestLocalOptionsAndClose(t *testing.T) {
	c := framework.Start(t, framework.Options{})
	ctx := context.Background()
	rc, err := c.Server.InProcessConfig()
	if err != nil {
		t.Fatal(err)
	}
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	src := localwatch.New(nil)
	if _, ok := src.ListerWatcher(&corev1.Pod{}, ""); ok {
		t.Fatal("a source without stores serves pods")
	}
	src, err = c.Server.LocalWatch()
	if err != nil {
		t.Fatal(err)
	}
	lw, ok := src.ListerWatcher(&corev1.Pod{}, "default")
	if !ok {
		t.Fatal("no pods ListerWatcher")
	}
	lwc := lw.(cache.ListerWatcherWithContext)
	bad := []struct {
		name  string
		opts  metav1.ListOptions
		watch bool
	}{
		{"label selector", metav1.ListOptions{LabelSelector: "a in (b"}, false},
		{"field selector", metav1.ListOptions{FieldSelector: "spec.nodeName"}, true},
		{"unknown field", metav1.ListOptions{FieldSelector: "spec.nope=x"}, false},
		{"rvm without rv", metav1.ListOptions{ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan}, false},
		{"exact 0", metav1.ListOptions{ResourceVersion: "0", ResourceVersionMatch: metav1.ResourceVersionMatchExact}, false},
		{"watch rvm", metav1.ListOptions{ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan}, true},
		{"initial events without rvm", metav1.ListOptions{SendInitialEvents: ptr.To(true)}, true},
		{"bad rv", metav1.ListOptions{ResourceVersion: "x"}, false},
	}
	for _, b := range bad {
		var lerr, herr error
		if b.watch {
			if w, err := lwc.WatchWithContext(ctx, b.opts); err == nil {
				w.Stop()
			} else {
				lerr = err
			}
			if w, err := kube.CoreV1().Pods("default").Watch(ctx, b.opts); err == nil {
				w.Stop()
			} else {
				herr = err
			}
		} else {
			_, lerr = lwc.ListWithContext(ctx, b.opts)
			_, herr = kube.CoreV1().Pods("default").List(ctx, b.opts)
		}
		if herr == nil {
			t.Fatalf("%s: the HTTP path accepted %+v", b.name, b.opts)
		}
		if lerr == nil {
			t.Fatalf("%s: the local path accepted %+v (HTTP: %v)", b.name, b.opts, herr)
		}
		if apierrors.ReasonForError(lerr) != apierrors.ReasonForError(herr) || status(lerr) != status(herr) {
			t.Fatalf("%s: local %v (%s %d), HTTP %v (%s %d)", b.name, lerr, apierrors.ReasonForError(lerr), status(lerr), herr, apierrors.ReasonForError(herr), status(herr))
		}
	}

	// A list is the caller's own: changing it changes nothing another
	// list returns.
	if _, err := kube.CoreV1().Pods("default").Create(ctx, testPod("own", map[string]string{"k": "v"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	l1, err := lwc.ListWithContext(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pl := l1.(*corev1.PodList)
	if len(pl.Items) != 1 || pl.ResourceVersion == "" || pl.Kind != "" || pl.Items[0].Kind != "" {
		t.Fatalf("list: %d items, resourceVersion %q, kinds %q/%q", len(pl.Items), pl.ResourceVersion, pl.Kind, pl.Items[0].Kind)
	}
	pl.Items[0].Labels["k"] = "changed"
	pl.Items[0].Spec.Containers[0].Image = "changed"
	l2, err := lwc.ListWithContext(ctx, metav1.ListOptions{ResourceVersion: "0"})
	if err != nil {
		t.Fatal(err)
	}
	if p := l2.(*corev1.PodList).Items[0]; p.Labels["k"] != "v" || p.Spec.Containers[0].Image == "changed" {
		t.Fatalf("a list's pod aliases the cache: labels %v image %q", p.Labels, p.Spec.Containers[0].Image)
	}

	// Watches end when the source closes; later calls fail.
	w, err := lwc.WatchWithContext(ctx, metav1.ListOptions{ResourceVersion: "0"})
	if err != nil {
		t.Fatal(err)
	}
	ev := <-w.ResultChan()
	if ev.Type != watch.Added || ev.Object.(*corev1.Pod).Labels["k"] != "v" {
		t.Fatalf("first event %v %#v", ev.Type, ev.Object)
	}
	ev.Object.(*corev1.Pod).Labels["k"] = "changed by a watcher"
	w2, err := lwc.WatchWithContext(ctx, metav1.ListOptions{ResourceVersion: "0"})
	if err != nil {
		t.Fatal(err)
	}
	if ev := <-w2.ResultChan(); ev.Object.(*corev1.Pod).Labels["k"] != "v" {
		t.Fatalf("a watch event's pod aliases another's: labels %v", ev.Object.(*corev1.Pod).Labels)
	}
	w2.Stop()
	src.Close()
	select {
	case _, ok := <-w.ResultChan():
		if ok {
			t.Fatal("an event after the source closed")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("watch still open 10s after the source closed")
	}
	if _, err := lwc.WatchWithContext(ctx, metav1.ListOptions{}); !apierrors.IsServiceUnavailable(err) {
		t.Fatalf("watch after close: %v, want 503", err)
	}
	if _, err := lwc.ListWithContext(ctx, metav1.ListOptions{}); !apierrors.IsServiceUnavailable(err) {
		t.Fatalf("list after close: %v, want 503", err)
	}
}

func status(err error) int32 {
	var s apierrors.APIStatus
	if errors.As(err, &s) {
		return s.Status().Code
	}
	return 0
}
