package controller

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"
)

// podServer is an API server that answers POST pods: it records what it
// received and answers with the pod named, or with fail when set.
type podServer struct {
	mu       sync.Mutex
	got      []*v1.Pod
	bodies   [][]byte
	requests []string // method, path?query, content type, accept
	fail     *apierrors.StatusError
}

func (s *podServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, r.Method+" "+r.URL.RequestURI()+" "+r.Header.Get("Content-Type")+" "+r.Header.Get("Accept"))
	body, _ := io.ReadAll(r.Body)
	s.bodies = append(s.bodies, body)
	obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(body, nil, nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	pod := obj.(*v1.Pod)
	s.got = append(s.got, pod.DeepCopy())
	mediaType := "application/json"
	if strings.HasPrefix(r.Header.Get("Accept"), "application/vnd.kubernetes.protobuf") {
		mediaType = "application/vnd.kubernetes.protobuf"
	}
	info, _ := runtime.SerializerInfoForMediaType(scheme.Codecs.SupportedMediaTypes(), mediaType)
	enc := scheme.Codecs.EncoderForVersion(info.Serializer, v1.SchemeGroupVersion)
	if s.fail != nil {
		st := s.fail.Status()
		st.TypeMeta = metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(int(st.Code))
		_ = json.NewEncoder(w).Encode(st)
		return
	}
	var answer runtime.Object
	code := http.StatusCreated
	{
		pod.Name = pod.GenerateName + "x7k2q"
		pod.UID = "uid-1"
		pod.ResourceVersion = "12"
		pod.Status.Phase = v1.PodPending
		answer = pod
	}
	w.Header().Set("Content-Type", mediaType)
	w.WriteHeader(code)
	_ = enc.Encode(answer, w)
}

func testTemplate() (*appsv1.ReplicaSet, *v1.PodTemplateSpec) {
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "web-abc", Namespace: "ns", UID: "rs-uid"}}
	tpl := &v1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}, Annotations: map[string]string{"a": "b"}, Finalizers: []string{"f"}},
		Spec: v1.PodSpec{Containers: []v1.Container{{Name: "c", Image: "img", Env: []v1.EnvVar{{Name: "K", Value: "V"}}}},
			NodeSelector: map[string]string{"disk": "ssd"}},
	}
	return rs, tpl
}

// TestCreatePodRequests: RealPodControl.CreatePod sends the request the
// typed client sends (same method, path, no query, content types, and a
// body that decodes to the same pod) whether it goes through the REST
// client (a real clientset) or the typed client (a fake one), reads the
// created name from the answer in protobuf and in JSON, and keeps the
// API's errors intact.
func TestCreatePodRequests(t *testing.T) {
	rs, tpl := testTemplate()
	ref := NewControllerRef(rs, appsv1.SchemeGroupVersion.WithKind("ReplicaSet"))
	want := PodFromTemplate(tpl, rs, ref)
	orig := tpl.DeepCopy()

	for _, contentType := range []string{"", "application/json"} {
		t.Run("config content type "+contentType, func(t *testing.T) {
			srv := &podServer{}
			hs := httptest.NewServer(srv)
			defer hs.Close()
			client, err := kubernetes.NewForConfig(&rest.Config{Host: hs.URL, ContentConfig: rest.ContentConfig{ContentType: contentType}})
			if err != nil {
				t.Fatal(err)
			}
			if CoreREST(client) == nil {
				t.Fatal("no REST client for a real clientset")
			}
			// What the typed client sends, for comparison.
			if _, err := client.CoreV1().Pods("ns").Create(context.Background(), PodFromTemplate(tpl, rs, ref), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			rec := record.NewFakeRecorder(10)
			pc := RealPodControl{Client: client, Recorder: rec}
			if err := pc.CreatePod(context.Background(), "ns", tpl, rs, ref); err != nil {
				t.Fatal(err)
			}
			if srv.requests[0] != srv.requests[1] {
				t.Errorf("request %q, the typed client sends %q", srv.requests[1], srv.requests[0])
			}
			if !bytes.Equal(srv.bodies[0], srv.bodies[1]) {
				t.Errorf("body %q, the typed client sends %q", srv.bodies[1], srv.bodies[0])
			}
			if got := srv.got[1]; got.GenerateName != "web-abc-" || got.Labels["app"] != "web" || got.Annotations["a"] != "b" ||
				len(got.OwnerReferences) != 1 || !apiequality.Semantic.DeepEqual(got.OwnerReferences[0], *ref) || got.Spec.Containers[0].Env[0].Value != "V" {
				t.Errorf("server received %+v, want %+v", got, want)
			}
			if ev := <-rec.Events; ev != "Normal SuccessfulCreate Created pod: web-abc-x7k2q" {
				t.Errorf("event %q", ev)
			}

			srv.fail = apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "", nil)
			srv.fail.ErrStatus.Details.Causes = []metav1.StatusCause{{Type: v1.NamespaceTerminatingCause, Message: "ns is terminating"}}
			err = pc.CreatePod(context.Background(), "ns", tpl, rs, ref)
			if !apierrors.IsForbidden(err) || !apierrors.HasStatusCause(err, v1.NamespaceTerminatingCause) {
				t.Errorf("error %v, want the API's Forbidden with its cause", err)
			}
			select {
			case ev := <-rec.Events:
				t.Errorf("event %q for a terminating namespace", ev)
			default:
			}
		})
	}
	if !apiequality.Semantic.DeepEqual(tpl, orig) {
		t.Fatal("the template was modified")
	}

	// A fake clientset goes through the typed client.
	client := fake.NewClientset()
	if CoreREST(client) != nil {
		t.Fatal("a REST client for a fake clientset")
	}
	rec := record.NewFakeRecorder(10)
	if err := (RealPodControl{Client: client, Recorder: rec}).CreatePod(context.Background(), "ns", tpl, rs, ref); err != nil {
		t.Fatal(err)
	}
	l, _ := client.CoreV1().Pods("ns").List(context.Background(), metav1.ListOptions{})
	if len(l.Items) != 1 {
		t.Fatalf("fake API holds %d pods", len(l.Items))
	}
	got := &l.Items[0]
	got.TypeMeta, got.ManagedFields = metav1.TypeMeta{}, nil
	if !apiequality.Semantic.DeepEqual(got, want) {
		t.Fatalf("fake API holds %+v, want %+v", got, want)
	}
}

func TestObjectName(t *testing.T) {
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p-1", Namespace: "ns", Labels: map[string]string{"a": "b"},
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "m", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:spec":{}}`)}}}},
		Spec: v1.PodSpec{Containers: []v1.Container{{Name: "c", Image: "i"}}}}
	for _, mediaType := range []string{"application/json", "application/vnd.kubernetes.protobuf"} {
		info, _ := runtime.SerializerInfoForMediaType(scheme.Codecs.SupportedMediaTypes(), mediaType)
		raw, err := runtime.Encode(scheme.Codecs.EncoderForVersion(info.Serializer, v1.SchemeGroupVersion), pod)
		if err != nil {
			t.Fatal(err)
		}
		if name, err := objectName(raw); err != nil || name != "p-1" {
			t.Errorf("%s: %q, %v", mediaType, name, err)
		}
		if _, err := objectName(raw[:len(raw)/2]); err == nil {
			t.Errorf("%s: a truncated answer decoded", mediaType)
		}
	}
}

// TestPodCreatorRequests: the pods a PodCreator creates are sent with the
// body encoded once, and each request is byte for byte what
// RealPodControl.CreatePod and the typed client send, in both content
// types; events and errors are CreatePod's.
func TestPodCreatorRequests(t *testing.T) {
	rs, tpl := testTemplate()
	ref := NewControllerRef(rs, appsv1.SchemeGroupVersion.WithKind("ReplicaSet"))
	orig := tpl.DeepCopy()
	for _, contentType := range []string{"", "application/json"} {
		t.Run("config content type "+contentType, func(t *testing.T) {
			srv := &podServer{}
			hs := httptest.NewServer(srv)
			defer hs.Close()
			client, err := kubernetes.NewForConfig(&rest.Config{Host: hs.URL, ContentConfig: rest.ContentConfig{ContentType: contentType}})
			if err != nil {
				t.Fatal(err)
			}
			if encodePod(CoreREST(client), "ns", podSharingTemplate(tpl, rs, ref)) == nil {
				t.Fatal("the REST client's encoding of the pod could not be read: PodCreator encodes per pod")
			}
			if _, err := client.CoreV1().Pods("ns").Create(context.Background(), PodFromTemplate(tpl, rs, ref), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			rec := record.NewFakeRecorder(10)
			pc := RealPodControl{Client: client, Recorder: rec}
			if err := pc.CreatePod(context.Background(), "ns", tpl, rs, ref); err != nil {
				t.Fatal(err)
			}
			create := PodCreator(pc, "ns", tpl, rs, ref)
			var wg sync.WaitGroup
			for range 3 {
				wg.Go(func() {
					if err := create(context.Background()); err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
			if len(srv.requests) != 5 {
				t.Fatalf("%d requests, want 5", len(srv.requests))
			}
			for i := 1; i < 5; i++ {
				if srv.requests[i] != srv.requests[0] {
					t.Errorf("request %d %q, the typed client sends %q", i, srv.requests[i], srv.requests[0])
				}
				if !bytes.Equal(srv.bodies[i], srv.bodies[0]) {
					t.Errorf("body %d %q, the typed client sends %q", i, srv.bodies[i], srv.bodies[0])
				}
			}
			for range 4 {
				if ev := <-rec.Events; ev != "Normal SuccessfulCreate Created pod: web-abc-x7k2q" {
					t.Errorf("event %q", ev)
				}
			}

			srv.fail = apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "", nil)
			err = create(context.Background())
			if !apierrors.IsForbidden(err) {
				t.Errorf("error %v, want the API's Forbidden", err)
			}
			if ev := <-rec.Events; !strings.HasPrefix(ev, "Warning FailedCreate Error creating: ") {
				t.Errorf("event %q", ev)
			}
		})
	}
	if !apiequality.Semantic.DeepEqual(tpl, orig) {
		t.Fatal("the template was modified")
	}

	// A fake clientset (which does not generate names, so one pod):
	// CreatePod.
	client := fake.NewClientset()
	if err := PodCreator(RealPodControl{Client: client}, "ns", tpl, rs, ref)(context.Background()); err != nil {
		t.Fatal(err)
	}
	if l, _ := client.CoreV1().Pods("ns").List(context.Background(), metav1.ListOptions{}); len(l.Items) != 1 || l.Items[0].GenerateName != "web-abc-" {
		t.Fatalf("fake API holds %+v", l.Items)
	}
	noLabels := tpl.DeepCopy()
	noLabels.Labels = nil
	srv := httptest.NewServer(&podServer{})
	defer srv.Close()
	real, _ := kubernetes.NewForConfig(&rest.Config{Host: srv.URL})
	if err := PodCreator(RealPodControl{Client: real}, "ns", noLabels, rs, ref)(context.Background()); err == nil || !strings.Contains(err.Error(), "no labels") {
		t.Fatalf("error %v for a template without labels", err)
	}
}

// TestObjectNameProtobufWire: the name is read as decoding the answer's
// metadata would read it: a later metadata field overrides an earlier
// one's name (gogo-encoded metadata always carries a name, empty or not),
// no metadata is "".
func TestObjectNameProtobufWire(t *testing.T) {
	answer := func(metas ...*metav1.ObjectMeta) []byte {
		var obj []byte
		for _, m := range metas {
			b, err := m.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			obj = protowire.AppendTag(obj, 1, protowire.BytesType)
			obj = protowire.AppendBytes(obj, b)
		}
		obj = protowire.AppendTag(obj, 2, protowire.BytesType) // spec
		obj = protowire.AppendBytes(obj, nil)
		u := runtime.Unknown{TypeMeta: runtime.TypeMeta{APIVersion: "v1", Kind: "Pod"}, Raw: obj}
		b, err := u.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return append([]byte("k8s\x00"), b...)
	}
	for _, tc := range []struct {
		metas []*metav1.ObjectMeta
		want  string
	}{
		{nil, ""},
		{[]*metav1.ObjectMeta{{Namespace: "ns"}}, ""},
		{[]*metav1.ObjectMeta{{Name: "a", Labels: map[string]string{"x": "y"}}}, "a"},
		{[]*metav1.ObjectMeta{{Name: "a"}, {Name: "b"}}, "b"},
		{[]*metav1.ObjectMeta{{Name: "a"}, {Namespace: "ns"}}, ""},
	} {
		raw := answer(tc.metas...)
		if got, err := objectName(raw); err != nil || got != tc.want {
			t.Errorf("%v: %q, %v; want %q", tc.metas, got, err, tc.want)
		}
		// What decoding the metadata reads.
		var u runtime.Unknown
		var m metav1.PartialObjectMetadata
		if err := u.Unmarshal(raw[4:]); err != nil {
			t.Fatal(err)
		}
		if err := m.Unmarshal(u.Raw); err != nil || m.Name != tc.want {
			t.Errorf("%v: decoding reads %q, %v; the test wants %q", tc.metas, m.Name, err, tc.want)
		}
	}
}

// cannedPodAnswer answers every request with one encoded pod, as an API
// server would answer a create (with managed fields), in-process.
type cannedPodAnswer struct{ body []byte }

func (a cannedPodAnswer) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	return &http.Response{StatusCode: http.StatusCreated, Header: http.Header{"Content-Type": {"application/vnd.kubernetes.protobuf"}},
		Body: io.NopCloser(bytes.NewReader(a.body)), Request: r}, nil
}

// BenchmarkCreatePods is the client side of a ReplicaSet's pod creations
// (encoding, request, reading the answer's name, the event) per pod:
// through CreatePod, and through one PodCreator.
func BenchmarkCreatePods(b *testing.B) {
	rs, tpl := testTemplate()
	ref := NewControllerRef(rs, appsv1.SchemeGroupVersion.WithKind("ReplicaSet"))
	answer := PodFromTemplate(tpl, rs, ref)
	answer.Name, answer.UID, answer.ResourceVersion = "web-abc-x7k2q", "uid-1", "12"
	answer.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager", Operation: metav1.ManagedFieldsOperationUpdate,
		FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:metadata":{"f:generateName":{},"f:labels":{".":{},"f:app":{}},"f:ownerReferences":{".":{},"k:{\"uid\":\"rs-uid\"}":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"c\"}":{".":{},"f:image":{},"f:name":{}}}}}`)}}}
	info, _ := runtime.SerializerInfoForMediaType(scheme.Codecs.SupportedMediaTypes(), "application/vnd.kubernetes.protobuf")
	body, err := runtime.Encode(scheme.Codecs.EncoderForVersion(info.Serializer, v1.SchemeGroupVersion), answer)
	if err != nil {
		b.Fatal(err)
	}
	client, err := kubernetes.NewForConfig(&rest.Config{Host: "https://api.invalid", Transport: cannedPodAnswer{body}, QPS: -1})
	if err != nil {
		b.Fatal(err)
	}
	broadcaster := record.NewBroadcaster(record.WithContext(b.Context()))
	defer broadcaster.Shutdown()
	pc := RealPodControl{Client: client, Recorder: broadcaster.NewRecorder(scheme.Scheme, v1.EventSource{Component: "bench"})}
	b.Run("CreatePod", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := pc.CreatePod(b.Context(), "ns", tpl, rs, ref); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("PodCreator", func(b *testing.B) {
		b.ReportAllocs()
		create := PodCreator(pc, "ns", tpl, rs, ref)
		for b.Loop() {
			if err := create(b.Context()); err != nil {
				b.Fatal(err)
			}
		}
	})
}
