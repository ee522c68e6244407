package apiserver

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/applyconfigurations"
	"k8s.io/client-go/kubernetes/scheme"

	"skiff.dev/skiff/internal/cputime"
	"skiff.dev/skiff/internal/registry"
	"skiff.dev/skiff/internal/registry/core"
	"skiff.dev/skiff/internal/registry/generic"
)

// The handler benchmarks measure the API server's own CPU per request on
// the controllers benchmark's hot writes (pod create, binding, status
// update), over in-memory storage (no etcd): decoding, negotiation,
// filters, the generic store's work and encoding. Each request runs on a
// goroutine of its own, as net/http's HTTP/2 server runs it, so the cost
// of growing fresh stacks is counted. cpu-us/op is the process's CPU time
// (getrusage) per request, far less distorted by a loaded machine than
// ns/op. Run:
//
//	go test ./internal/apiserver -run '^$' -bench Handler -benchtime 20000x -count 3

const benchProtobuf = "application/vnd.kubernetes.protobuf"

type handlerBench struct {
	h   http.Handler
	enc runtime.Encoder
	dec runtime.Decoder
}

func newHandlerBench(b *testing.B) *handlerBench {
	b.Helper()
	sch := registry.NewScheme()
	fms := generic.NewFieldManagers(sch, applyconfigurations.NewTypeConverter(sch))
	var stores []*generic.Store
	mems := map[string]*memStorage{}
	for _, r := range core.Resources() {
		gvr := r.StorageGVR()
		mem := mems[gvr.String()]
		if mem == nil {
			mem = newMemStorage()
			mems[gvr.String()] = mem
		}
		st := generic.NewStore(r, mem, "/registry/"+gvr.Group+"/"+gvr.Resource)
		st.FieldManagers = fms
		stores = append(stores, st)
	}
	s, err := New(Config{
		Scheme: sch, Stores: stores, Extra: &PodSubresources{},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		b.Fatal(err)
	}
	info, ok := runtime.SerializerInfoForMediaType(scheme.Codecs.SupportedMediaTypes(), benchProtobuf)
	if !ok {
		b.Fatal("no protobuf serializer")
	}
	return &handlerBench{
		h:   s.Handler(),
		enc: scheme.Codecs.EncoderForVersion(info.Serializer, corev1.SchemeGroupVersion),
		dec: scheme.Codecs.UniversalDeserializer(),
	}
}

// do sends obj as client-go does (protobuf) on a new goroutine and fails
// unless the answer has status want.
func (hb *handlerBench) do(b *testing.B, method, path string, obj runtime.Object, want int) []byte {
	var body bytes.Buffer
	if err := hb.enc.Encode(obj, &body); err != nil {
		b.Error(err)
		return nil
	}
	r := httptest.NewRequest(method, "https://127.0.0.1"+path, &body)
	r.Header.Set("Content-Type", benchProtobuf)
	r.Header.Set("Accept", benchProtobuf+", */*")
	r.Header.Set("User-Agent", "handler-bench/v0.0.0 (linux/amd64) kubernetes/$Format")
	w := httptest.NewRecorder()
	var wg sync.WaitGroup
	wg.Go(func() { hb.h.ServeHTTP(w, r) })
	wg.Wait()
	if w.Code != want {
		b.Errorf("%s %s: %d, want %d: %s", method, path, w.Code, want, w.Body.String())
	}
	return w.Body.Bytes()
}

// measureHandler runs op(i) for i in [0, b.N) from 20 goroutines and
// reports process CPU per op.
func measureHandler(b *testing.B, op func(i int)) {
	b.Helper()
	b.SetParallelism(10)
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	start := cputime.Process()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			op(int(next.Add(1) - 1))
		}
	})
	b.StopTimer()
	b.ReportMetric(float64((cputime.Process()-start).Microseconds())/float64(b.N), "cpu-us/op")
}

func handlerBenchPod(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "bench", Labels: map[string]string{"app": "bench", "pod-template-hash": "5d8f7c9b6"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "bench-5d8f7c9b6", UID: "8a4b2c1e-0000-4000-8000-000000000001", Controller: ptrTo(true), BlockOwnerDeletion: ptrTo(true)}}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "bench:v1"}}},
	}
}

func ptrTo[T any](v T) *T { return &v }

func (hb *handlerBench) createPods(b *testing.B, prefix string, n int) []*corev1.Pod {
	b.Helper()
	out := make([]*corev1.Pod, n)
	for i := range out {
		raw := hb.do(b, "POST", "/api/v1/namespaces/bench/pods", handlerBenchPod(fmt.Sprintf("%s-%d", prefix, i)), http.StatusCreated)
		obj, _, err := hb.dec.Decode(raw, nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		out[i] = obj.(*corev1.Pod)
	}
	return out
}

func BenchmarkHandlerPodCreate(b *testing.B) {
	hb := newHandlerBench(b)
	run := fmt.Sprint(time.Now().UnixNano())
	measureHandler(b, func(i int) {
		hb.do(b, "POST", "/api/v1/namespaces/bench/pods", handlerBenchPod(fmt.Sprintf("c-%s-%d", run, i)), http.StatusCreated)
	})
}

func BenchmarkHandlerPodBinding(b *testing.B) {
	hb := newHandlerBench(b)
	pods := hb.createPods(b, fmt.Sprintf("b-%d", time.Now().UnixNano()), b.N)
	measureHandler(b, func(i int) {
		p := pods[i]
		binding := &corev1.Binding{
			ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, UID: p.UID},
			Target:     corev1.ObjectReference{Kind: "Node", Name: "node-1"},
		}
		hb.do(b, "POST", "/api/v1/namespaces/bench/pods/"+p.Name+"/binding", binding, http.StatusCreated)
	})
}

func BenchmarkHandlerPodStatusUpdate(b *testing.B) {
	hb := newHandlerBench(b)
	pods := hb.createPods(b, fmt.Sprintf("s-%d", time.Now().UnixNano()), b.N)
	now := metav1.NewTime(time.Now().Truncate(time.Second))
	measureHandler(b, func(i int) {
		p := pods[i].DeepCopy()
		p.Status = corev1.PodStatus{
			Phase: corev1.PodRunning, HostIP: "10.0.0.1", PodIP: fmt.Sprintf("10.1.%d.%d", i/250%250, i%250+1), StartTime: &now,
			Conditions: []corev1.PodCondition{
				{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
				{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
			},
			ContainerStatuses: []corev1.ContainerStatus{{
				Name: "app", Ready: true, Image: "bench:v1", ImageID: "sha256:abc", ContainerID: "containerd://" + p.Name,
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
			}},
		}
		hb.do(b, "PUT", "/api/v1/namespaces/bench/pods/"+p.Name+"/status", p, http.StatusOK)
	})
}
