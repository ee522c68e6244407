package main

// Server CPU per request on the hot write paths, without the client: the
// benchmarks call the API server's full HTTP handler (filters,
// authentication, negotiation, decoding, the store, admission, embedded
// etcd) in process with the protobuf bodies client-go sends, from many
// goroutines at once, and report the process's CPU time (getrusage) per
// request as cpu-us/op. TLS and the client's own work are not included;
// everything the server does after reading a request is. Run:
//
//	go test ./bench/apiserver -run '^$' -bench Handler -benchtime 3000x
//
// The numbers are CPU time, so they are far less distorted by other load
// on the machine than wall-clock throughput.

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/scheme"

	"skiff.dev/skiff/internal/cputime"
	"skiff.dev/skiff/test/integration/framework"
)

const protobufType = "application/vnd.kubernetes.protobuf"

type handlerBench struct {
	h     http.Handler
	chain []*x509.Certificate
	enc   runtime.Encoder
}

func newHandlerBench(b *testing.B) *handlerBench {
	b.Helper()
	c := framework.Start(b, framework.Options{})
	pair, err := tls.X509KeyPair(c.Server.PKI().AdminCertPEM, c.Server.PKI().AdminKeyPEM)
	if err != nil {
		b.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		b.Fatal(err)
	}
	info, ok := runtime.SerializerInfoForMediaType(scheme.Codecs.SupportedMediaTypes(), protobufType)
	if !ok {
		b.Fatal("no protobuf serializer")
	}
	hb := &handlerBench{
		h:     c.Server.API().Handler(),
		chain: []*x509.Certificate{leaf},
		enc:   scheme.Codecs.EncoderForVersion(info.Serializer, corev1.SchemeGroupVersion),
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "bench"}}
	hb.do(b, "POST", "/api/v1/namespaces", ns, http.StatusCreated)
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}
	hb.do(b, "POST", "/api/v1/namespaces/bench/serviceaccounts", sa, http.StatusCreated)
	waitIdle(b)
	return hb
}

// waitIdle waits for the server's start-up work (the OpenAPI documents are
// built in the background after /readyz) to finish, so it is not counted
// as CPU of the requests measured: until the process uses less than 10% of
// a core over 200 ms.
func waitIdle(b *testing.B) {
	b.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		t0 := cputime.Process()
		time.Sleep(200 * time.Millisecond)
		if cputime.Process()-t0 < 20*time.Millisecond {
			return
		}
	}
	b.Log("server still busy after 60s; measuring anyway")
}

// do sends obj (protobuf) and fails unless the answer has status want.
func (hb *handlerBench) do(b *testing.B, method, path string, obj runtime.Object, want int) []byte {
	var body bytes.Buffer
	if err := hb.enc.Encode(obj, &body); err != nil {
		b.Error(err)
		return nil
	}
	r := httptest.NewRequest(method, "https://127.0.0.1"+path, &body)
	r.TLS = &tls.ConnectionState{PeerCertificates: hb.chain}
	r.Header.Set("Content-Type", protobufType)
	r.Header.Set("Accept", protobufType+", application/json")
	r.Header.Set("User-Agent", "bench/apiserver")
	w := httptest.NewRecorder()
	hb.h.ServeHTTP(w, r)
	if w.Code != want {
		b.Errorf("%s %s: %d, want %d: %s", method, path, w.Code, want, w.Body.String())
	}
	return w.Body.Bytes()
}

// measure runs op(i) for i in [0, b.N) from 100 goroutines (on 2 cores,
// like the create scenario's 100 clients) and reports CPU per op.
func measure(b *testing.B, op func(i int)) {
	b.Helper()
	b.SetParallelism(50)
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

func benchPodObject(name string) *corev1.Pod {
	p := smallPod(name)
	p.Namespace = "bench"
	return p
}

func BenchmarkHandlerPodCreate(b *testing.B) {
	hb := newHandlerBench(b)
	run := fmt.Sprint(time.Now().UnixNano())
	measure(b, func(i int) {
		hb.do(b, "POST", "/api/v1/namespaces/bench/pods", benchPodObject(fmt.Sprintf("c-%s-%d", run, i)), http.StatusCreated)
	})
}

// createPods makes n pods outside the measurement and returns them as
// stored (with resourceVersions).
func createPods(b *testing.B, hb *handlerBench, prefix string, n int) []*corev1.Pod {
	b.Helper()
	out := make([]*corev1.Pod, n)
	dec := scheme.Codecs.UniversalDeserializer()
	for i := range out {
		raw := hb.do(b, "POST", "/api/v1/namespaces/bench/pods", benchPodObject(fmt.Sprintf("%s-%d", prefix, i)), http.StatusCreated)
		obj, _, err := dec.Decode(raw, nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		out[i] = obj.(*corev1.Pod)
	}
	return out
}

func BenchmarkHandlerPodBinding(b *testing.B) {
	hb := newHandlerBench(b)
	pods := createPods(b, hb, fmt.Sprintf("b-%d", time.Now().UnixNano()), b.N)
	waitIdle(b)
	measure(b, func(i int) {
		p := pods[i]
		binding := &corev1.Binding{
			ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, UID: p.UID},
			Target:     corev1.ObjectReference{Kind: "Node", Name: "node-1"},
		}
		hb.do(b, "POST", "/api/v1/namespaces/bench/pods/"+p.Name+"/binding", binding, http.StatusCreated)
	})
}

// The hollow nodes' and kubelets' write: the whole pod back with a Running
// status, through PUT .../status with the resourceVersion it read.
func BenchmarkHandlerPodStatusUpdate(b *testing.B) {
	hb := newHandlerBench(b)
	pods := createPods(b, hb, fmt.Sprintf("s-%d", time.Now().UnixNano()), b.N)
	waitIdle(b)
	now := metav1.NewTime(time.Now().Truncate(time.Second))
	measure(b, func(i int) {
		p := pods[i].DeepCopy()
		p.Status = corev1.PodStatus{
			Phase:     corev1.PodRunning,
			HostIP:    "10.0.0.1",
			PodIP:     fmt.Sprintf("10.1.%d.%d", i/250%250, i%250+1),
			StartTime: &now,
			Conditions: []corev1.PodCondition{
				{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
				{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
				{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: now},
				{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
			},
			ContainerStatuses: []corev1.ContainerStatus{{
				Name: "c", Ready: true, Image: "registry.k8s.io/pause:3.10", ImageID: "sha256:abc",
				ContainerID: "containerd://" + p.Name,
				State:       corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
			}},
		}
		hb.do(b, "PUT", "/api/v1/namespaces/bench/pods/"+p.Name+"/status", p, http.StatusOK)
	})
}
