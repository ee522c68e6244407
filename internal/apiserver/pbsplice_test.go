package apiserver

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/apimachinery/pkg/runtime/serializer/versioning"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"skiff.dev/skiff/internal/registry"
	"skiff.dev/skiff/internal/registry/coordination"
	"skiff.dev/skiff/internal/registry/core"
	"skiff.dev/skiff/internal/registry/generic"
	"skiff.dev/skiff/internal/storage"
	"skiff.dev/skiff/internal/storage/cacher"
	"skiff.dev/skiff/internal/storage/etcd3"
	"skiff.dev/skiff/internal/storage/storagetest"
)

// newCachedServer is a Server whose core and coordination resources are
// stored in etcd behind watch caches, as internal/server wires them.
func newCachedServer(t *testing.T) *Server {
	t.Helper()
	client := storagetest.StartEtcd(t)
	scheme := registry.NewScheme()
	pb := protobuf.NewSerializer(scheme, scheme)
	codec := versioning.NewDefaultingCodecForScheme(scheme, pb, pb, nil, nil)
	storages := map[string]storage.Interface{}
	var stores []*generic.Store
	for _, r := range append(core.Resources(), coordination.Resources()...) {
		gvr := r.StorageGVR()
		root := "/registry/" + gvr.Resource
		if gvr.Group != "" {
			root = "/registry/" + gvr.Group + "/" + gvr.Resource
		}
		stg := storages[root]
		if stg == nil {
			c, err := cacher.New(cacher.Config{
				Storage: etcd3.New(etcd3.Config{Client: client, Codec: codec, NewFunc: r.New}),
				Prefix:  root + "/", NewFunc: r.New,
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(c.Stop)
			<-c.Ready()
			storages[root], stg = c, c
		}
		stores = append(stores, generic.NewStore(r, stg, root))
	}
	s, err := New(Config{Scheme: scheme, Stores: stores, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func protobufClient(t *testing.T, url string) kubernetes.Interface {
	t.Helper()
	cfg := &rest.Config{Host: url, ContentConfig: rest.ContentConfig{ContentType: "application/vnd.kubernetes.protobuf",
		AcceptContentTypes: "application/vnd.kubernetes.protobuf,application/json"}}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// testPod is a pod whose metadata length prefix needs two bytes.
func testPod(i int) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprint("p", i), Namespace: "ns",
			Labels:      map[string]string{"app": "web", "i": fmt.Sprint(i)},
			Annotations: map[string]string{"pad": strings.Repeat("x", 60+i)}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "img",
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}}}}},
	}
}

// Splicing is byte-identical to encoding for the objects a server on the
// watch cache answers with: watch events, gets, and the responses of
// writes (creates, updates, status updates), and it does apply to them.
func TestSplicedResponsesMatchEncoder(t *testing.T) {
	s := newCachedServer(t)
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	cs := protobufClient(t, srv.URL)
	ctx := context.Background()
	st := s.Store(corev1.SchemeGroupVersion, "pods")
	w, err := st.Watch(ctx, "ns", generic.ListOptions{}, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	// Write responses: each is checked against the encoder as it is
	// written (verify), and spliced.
	spliceCounts.verify.Store(true)
	mismatches, written := spliceCounts.mismatches.Load(), spliceCounts.spliced.Load()
	const n = 20
	for i := range n {
		p, err := cs.CoreV1().Pods("ns").Create(ctx, testPod(i), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p.Status.Phase = corev1.PodRunning
		p.Status.PodIP = fmt.Sprint("10.0.0.", i)
		if _, err := cs.CoreV1().Pods("ns").UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cs.CoordinationV1().Leases("ns").Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "l", Namespace: "ns"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// A status update that changes nothing answers with the stored object.
	p1, err := cs.CoreV1().Pods("ns").Get(ctx, "p1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Pods("ns").UpdateStatus(ctx, p1, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	spliceCounts.verify.Store(false)
	if m := spliceCounts.mismatches.Load() - mismatches; m != 0 {
		t.Fatalf("%d spliced write responses differed from their encoding", m)
	}
	if got := spliceCounts.spliced.Load() - written; got < 2*n+2 {
		t.Fatalf("only %d of %d write responses were spliced", got, 2*n+3)
	}
	if err := cs.CoreV1().Pods("ns").Delete(ctx, "p0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	// Watch events: the spliced object is what the encoder writes.
	pbInfo := s.neg.byType[mediaProtobuf]
	mc := mediaChoice{info: pbInfo}
	before := spliceCounts.spliced.Load()
	r := httptest.NewRequest("GET", "/api/v1/pods?watch=true", nil)
	for i := 0; i < 2*n+1; i++ {
		var ev watch.Event
		select {
		case ev = <-w.ResultChan():
		case <-time.After(10 * time.Second):
			t.Fatalf("event %d: none in 10s", i)
		}
		var want bytes.Buffer
		if err := pbInfo.Serializer.Encode(ev.Object, &want); err != nil {
			t.Fatal(err)
		}
		watchEncodeCache = newEncodeCache(8192) // no earlier encoding
		got, err := s.encodeWatchObject(r, mc, st, ev, false)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("%s event %d: spliced\n%x\nencoder\n%x", ev.Type, i, got, want.Bytes())
		}
	}
	if got := spliceCounts.spliced.Load() - before; got < int64(n) {
		t.Fatalf("only %d of %d watch events were spliced", got, 2*n+1)
	}

	// Responses: the same requests with and without splicing give the
	// same bytes (and the splice is used).
	type req struct{ method, path, body string }
	get := func(path string) req { return req{"GET", path, ""} }
	reqs := []req{
		get("/api/v1/namespaces/ns/pods/p3"), get("/api/v1/nodes/n1"),
		get("/apis/coordination.k8s.io/v1/namespaces/ns/leases/l"),
		get("/api/v1/namespaces/ns/pods/p5?resourceVersion=0"),
	}
	do := func(rq req) []byte {
		hr, _ := http.NewRequest(rq.method, srv.URL+rq.path, strings.NewReader(rq.body))
		hr.Header.Set("Accept", mediaProtobuf)
		resp, err := http.DefaultClient.Do(hr)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s %s: %d %q", rq.method, rq.path, resp.StatusCode, b)
		}
		return b
	}
	before = spliceCounts.spliced.Load()
	for _, rq := range reqs {
		on := do(rq)
		spliceCounts.disabled.Store(true)
		off := do(rq)
		spliceCounts.disabled.Store(false)
		if !bytes.Equal(on, off) {
			t.Fatalf("%s: spliced\n%x\nencoded\n%x", rq.path, on, off)
		}
	}
	if got := spliceCounts.spliced.Load() - before; got != int64(len(reqs)) {
		t.Fatalf("%d of %d gets spliced", got, len(reqs))
	}
}

// A client-go informer speaking protobuf sees, object for object, what
// one speaking JSON sees (which never splices), across creates, status
// updates and deletes.
func TestProtobufInformerSeesEncodedObjects(t *testing.T) {
	s := newCachedServer(t)
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	pbc := protobufClient(t, srv.URL)
	jsc, err := kubernetes.NewForConfig(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	informer := func(cs kubernetes.Interface) cache.SharedIndexInformer {
		f := informers.NewSharedInformerFactory(cs, 0)
		inf := f.Core().V1().Pods().Informer()
		f.Start(ctx.Done())
		return inf
	}
	spliceCounts.verify.Store(true)
	defer spliceCounts.verify.Store(false)
	mismatches := spliceCounts.mismatches.Load()
	pbInf, jsInf := informer(pbc), informer(jsc)
	before := spliceCounts.spliced.Load()
	const n = 15
	for i := range n {
		p, err := pbc.CoreV1().Pods("ns").Create(ctx, testPod(i), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p.Status.Phase = corev1.PodPending
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now()}}
		if _, err := pbc.CoreV1().Pods("ns").UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < n; i += 3 {
		if err := pbc.CoreV1().Pods("ns").Delete(ctx, fmt.Sprint("p", i), metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	latest, err := jsc.CoreV1().Pods("ns").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		pbItems, jsItems := pbInf.GetStore().List(), jsInf.GetStore().List()
		same := len(pbItems) == len(latest.Items) && len(jsItems) == len(latest.Items)
		for _, o := range jsItems {
			p := o.(*corev1.Pod)
			q, ok, _ := pbInf.GetStore().Get(p)
			if !ok || !equality.Semantic.DeepEqual(p, q) || p.ResourceVersion != latestRV(latest, p.Name) {
				same = false
			}
		}
		if same {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("informers disagree: protobuf %d pods, json %d, list %d", len(pbItems), len(jsItems), len(latest.Items))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if spliceCounts.spliced.Load() == before {
		t.Fatal("the protobuf informer's watch never got a spliced object")
	}
	if m := spliceCounts.mismatches.Load() - mismatches; m != 0 {
		t.Fatalf("%d spliced objects differed from their encoding", m)
	}
}

func latestRV(l *corev1.PodList, name string) string {
	for _, p := range l.Items {
		if p.Name == name {
			return p.ResourceVersion
		}
	}
	return ""
}

var _ runtime.Object = (*corev1.Pod)(nil)

// The hand-built protobuf WatchEvent is the generated marshaller's, for
// every event type and object sizes around the length prefixes' widths.
func TestAppendWatchEventProtoMatchesEncoder(t *testing.T) {
	s := newPanickyServer(t)
	enc := s.neg.byType[mediaProtobuf].StreamSerializer.Serializer
	for _, typ := range []string{"ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR", "", strings.Repeat("T", 200)} {
		for _, n := range []int{0, 1, 120, 123, 124, 125, 126, 127, 128, 129, 130, 16370, 16380, 16383, 16384, 16390, 1 << 21} {
			raw := bytes.Repeat([]byte{0xab}, n)
			var want, got bytes.Buffer
			if err := enc.Encode(&metav1.WatchEvent{Type: typ, Object: runtime.RawExtension{Raw: raw}}, &want); err != nil {
				t.Fatal(err)
			}
			appendWatchEventProto(&got, typ, raw)
			if !bytes.Equal(got.Bytes(), want.Bytes()) {
				t.Fatalf("type %q, %d bytes: got %x..., want %x...", typ, n, got.Bytes()[:min(got.Len(), 16)], want.Bytes()[:min(want.Len(), 16)])
			}
		}
	}
}

// BenchmarkWatchEventFrame: the generated marshaller against the
// hand-built WatchEvent, for a pod-sized object.
func BenchmarkWatchEventFrame(b *testing.B) {
	s, err := New(Config{Scheme: registry.NewScheme(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	enc := s.neg.byType[mediaProtobuf].StreamSerializer.Serializer
	raw := bytes.Repeat([]byte{1}, 2200)
	b.Run("encoder", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			var buf bytes.Buffer
			if err := enc.Encode(&metav1.WatchEvent{Type: "MODIFIED", Object: runtime.RawExtension{Raw: raw}}, &buf); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("append", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			var buf bytes.Buffer
			appendWatchEventProto(&buf, "MODIFIED", raw)
		}
	})
}
