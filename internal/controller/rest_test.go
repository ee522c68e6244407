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
