package defaultbinder

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"

	"skiff.dev/skiff/internal/scheduler/framework"
)

type request struct{ method, path, query, contentType, body string }

// TestBindSendsTheTypedClientsRequest: the binder's direct POST is, on
// the wire, the typed client's Pods(ns).Bind with empty CreateOptions, and
// a server error comes back as an Error status naming the pod.
func TestBindSendsTheTypedClientsRequest(t *testing.T) {
	var mu sync.Mutex
	var got []request
	status := http.StatusCreated
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, request{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("Content-Type"), string(b)})
		code := status
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		if code == http.StatusCreated {
			_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Success","code":201}`))
		} else {
			_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Conflict","code":409,"message":"pod p is already assigned"}`))
		}
	}))
	t.Cleanup(srv.Close)
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: "p", UID: "u1"}}
	b := &DefaultBinder{h: &framework.BasicHandle{Client: cs}}
	if st := b.Bind(context.Background(), nil, pod, "n1"); !st.IsSuccess() {
		t.Fatalf("bind: %v", st.AsError())
	}
	binding := &v1.Binding{ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: "p", UID: "u1"}, Target: v1.ObjectReference{Kind: "Node", Name: "n1"}}
	if err := cs.CoreV1().Pods("ns1").Bind(context.Background(), binding, metav1.CreateOptions{}); err != nil {
		t.Fatalf("typed bind: %v", err)
	}
	if len(got) != 2 || got[0] != got[1] {
		t.Fatalf("binder sent %+v, typed client %+v", got[0], got[len(got)-1])
	}
	if got[0].method != http.MethodPost || got[0].path != "/api/v1/namespaces/ns1/pods/p/binding" {
		t.Fatalf("binder sent %s %s", got[0].method, got[0].path)
	}
	status = http.StatusConflict
	st := b.Bind(context.Background(), nil, pod, "n1")
	if st.Code() != framework.Error || st.AsError() == nil {
		t.Fatalf("conflict: status %v", st)
	}
	if msg := st.AsError().Error(); msg != "binding pod ns1/p to n1: pod p is already assigned" {
		t.Fatalf("conflict message %q", msg)
	}
}

// TestBindWithFakeClient: a clientset without a REST client (the fake)
// gets the typed call.
func TestBindWithFakeClient(t *testing.T) {
	cs := fake.NewSimpleClientset()
	var bound *v1.Binding
	cs.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() == "binding" {
			bound = a.(k8stesting.CreateAction).GetObject().(*v1.Binding)
		}
		return true, nil, nil
	})
	b := &DefaultBinder{h: &framework.BasicHandle{Client: cs}}
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: "p", UID: "u1"}}
	if st := b.Bind(context.Background(), nil, pod, "n1"); !st.IsSuccess() {
		t.Fatalf("bind: %v", st.AsError())
	}
	if bound == nil || bound.Name != "p" || bound.Target.Name != "n1" || bound.UID != "u1" {
		t.Fatalf("bound %+v", bound)
	}
}

// TestBindingJSONMatchesCodec: the hand-built body is byte for byte what
// the client's JSON codec writes for the same Binding, including empty
// fields (omitted) and strings JSON would escape (no fast body: the
// object goes through the codec).
func TestBindingJSONMatchesCodec(t *testing.T) {
	codec := scheme.Codecs.LegacyCodec(v1.SchemeGroupVersion)
	for _, tc := range []struct {
		ns, name, uid, node string
		fast                bool
	}{
		{"ns1", "p", "u1", "n1", true},
		{"default", "bench-5d8f7c9b4-00001", "0b6a2f0e-3c1d-4e8b-9a55-7f0d6c2b9e11", "hollow-node-17", true},
		{"kube-system", "a.b_c:d", "", "n.example.com", true},
		{"", "p", "u", "n", true},
		{"ns", "", "", "", true},
		{"ns", "p<>&", "u", "n", false},
		{"ns", `p"q`, "u", "n", false},
		{"ns", "p", "u\\", "n", false},
		{"ns", "p", "u", "nöde", false},
		{"ns", "p", "u", "n\n", false},
	} {
		b := &v1.Binding{ObjectMeta: metav1.ObjectMeta{Namespace: tc.ns, Name: tc.name, UID: types.UID(tc.uid)},
			Target: v1.ObjectReference{Kind: "Node", Name: tc.node}}
		want, err := runtime.Encode(codec, b.DeepCopy())
		if err != nil {
			t.Fatal(err)
		}
		got := bindingJSON(b)
		if (got != nil) != tc.fast {
			t.Fatalf("%+v: fast body %q, want fast %v", tc, got, tc.fast)
		}
		if got != nil && string(got) != string(want) {
			t.Fatalf("%+v:\n got %q\nwant %q", tc, got, want)
		}
	}
}

// TestBindSendsEscapedNamesThroughTheCodec: a binding whose strings need
// escaping still goes out as the typed client sends it.
func TestBindSendsEscapedNamesThroughTheCodec(t *testing.T) {
	var mu sync.Mutex
	var got []request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, request{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("Content-Type"), string(b)})
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Success","code":201}`))
	}))
	t.Cleanup(srv.Close)
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: "p", UID: "u<1>"}}
	b := &DefaultBinder{h: &framework.BasicHandle{Client: cs}}
	if st := b.Bind(context.Background(), nil, pod, "n&1"); !st.IsSuccess() {
		t.Fatalf("bind: %v", st.AsError())
	}
	binding := &v1.Binding{ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: "p", UID: "u<1>"}, Target: v1.ObjectReference{Kind: "Node", Name: "n&1"}}
	if err := cs.CoreV1().Pods("ns1").Bind(context.Background(), binding, metav1.CreateOptions{}); err != nil {
		t.Fatalf("typed bind: %v", err)
	}
	if len(got) != 2 || got[0] != got[1] {
		t.Fatalf("binder sent %+v, typed client %+v", got[0], got[len(got)-1])
	}
}

// BenchmarkBindingBody: the body bytes of one bind, built directly and
// through the client's codec.
func BenchmarkBindingBody(b *testing.B) {
	binding := &v1.Binding{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "bench-5d8f7c9b4-00001", UID: "0b6a2f0e-3c1d-4e8b-9a55-7f0d6c2b9e11"},
		Target: v1.ObjectReference{Kind: "Node", Name: "hollow-node-17"}}
	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if bindingJSON(binding) == nil {
				b.Fatal("no body")
			}
		}
	})
	b.Run("codec", func(b *testing.B) {
		codec := scheme.Codecs.LegacyCodec(v1.SchemeGroupVersion)
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := runtime.Encode(codec, binding); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkPost is one binding against a server answering 201 with a
// Status: Do (the answer read into a new slice) against post (drained).
// The server's own allocations are in both.
// go test ./internal/scheduler/plugins/defaultbinder -run XXX -bench Post -benchmem
func BenchmarkPost(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","code":201}`))
	}))
	defer srv.Close()
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: srv.URL, QPS: -1})
	if err != nil {
		b.Fatal(err)
	}
	h := &framework.BasicHandle{Client: cs}
	binding := &v1.Binding{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web-5d8f7c9b4-x7k2p", UID: "0b3c1f0e-5f7a-4c1e-9d57-3b0f2f8f6c11"},
		Target: v1.ObjectReference{Kind: "Node", Name: "hollow-node-17"}}
	ctx := context.Background()
	b.Run("Do", func(b *testing.B) {
		b.ReportAllocs()
		rc := cs.CoreV1().RESTClient().(*rest.RESTClient)
		for i := 0; i < b.N; i++ {
			if err := rc.Post().Namespace(binding.Namespace).Resource("pods").Name(binding.Name).SubResource("binding").
				SetHeader("Content-Type", "application/json").Body(bindingJSON(binding)).Do(ctx).Error(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("post", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if err := post(ctx, h, binding); err != nil {
				b.Fatal(err)
			}
		}
	})
}
