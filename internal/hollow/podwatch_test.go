package hollow

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/apimachinery/pkg/runtime/serializer/streaming"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"

	"skiff.dev/skiff/internal/controller"
)

// watchEvents are what the fake API server streams: pods with every kind
// of field the summary skips (managedFields, labels, owner references,
// several containers, a full status), a deleted pod, a bookmark and an
// ERROR event carrying a Status.
func watchEvents() []watch.Event {
	now := metav1.NewTime(time.Unix(1700000000, 0))
	grace := int64(30)
	full := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "default", UID: "u-1", ResourceVersion: "41", GenerateName: "web-",
			Labels: map[string]string{"app": "web"}, Annotations: map[string]string{"a": "b"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web", UID: "rs"}},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager", Operation: metav1.ManagedFieldsOperationUpdate,
				APIVersion: "v1", Time: &now, FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:metadata":{}}`)}}},
			CreationTimestamp: now},
		Spec: v1.PodSpec{NodeName: "hollow-node-7", SchedulerName: "default-scheduler",
			Containers: []v1.Container{{Name: "app", Image: "bench:v1", Args: []string{"x"}}, {Name: "side", Image: "side:v2"}}},
		Status: v1.PodStatus{Phase: v1.PodRunning, PodIP: "10.0.7.2", Conditions: []v1.PodCondition{{Type: v1.PodReady, Status: v1.ConditionTrue}}},
	}
	pending := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-2", Namespace: "default", UID: "u-2", ResourceVersion: "40"},
		Spec: v1.PodSpec{Containers: []v1.Container{{Name: "app", Image: "bench:v1"}}}}
	deleted := full.DeepCopy()
	deleted.ResourceVersion = "42"
	deleted.DeletionTimestamp = &now
	deleted.DeletionGracePeriodSeconds = &grace
	bookmark := &v1.Pod{ObjectMeta: metav1.ObjectMeta{ResourceVersion: "43", Annotations: map[string]string{metav1.InitialEventsAnnotationKey: "true"}}}
	status := &metav1.Status{Status: metav1.StatusFailure, Code: 410, Reason: metav1.StatusReasonExpired, Message: "too old resource version"}
	return []watch.Event{{Type: watch.Added, Object: pending}, {Type: watch.Modified, Object: full}, {Type: watch.Deleted, Object: deleted},
		{Type: watch.Bookmark, Object: bookmark}, {Type: watch.Error, Object: status}}
}

// watchServer streams watchEvents to GET requests, as the API server
// does: protobuf (length-delimited WatchEvent frames whose objects are
// "k8s\x00" envelopes) or, with asJSON, JSON.
type watchServer struct {
	asJSON bool
	mu     sync.Mutex
	seen   []string
}

func (s *watchServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.seen = append(s.seen, r.Method+" "+r.URL.RequestURI()+" "+r.Header.Get("Accept"))
	s.mu.Unlock()
	var enc runtime.Encoder
	var frames interface{ Write([]byte) (int, error) }
	var embedded runtime.Encoder
	if s.asJSON {
		w.Header().Set("Content-Type", "application/json")
		embedded = json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme.Scheme, scheme.Scheme, json.SerializerOptions{})
		enc, frames = embedded, json.Framer.NewFrameWriter(w)
	} else {
		w.Header().Set("Content-Type", "application/vnd.kubernetes.protobuf;stream=watch")
		embedded = protobuf.NewSerializer(scheme.Scheme, scheme.Scheme)
		enc, frames = protobuf.NewRawSerializer(scheme.Scheme, scheme.Scheme), protobuf.LengthDelimitedFramer.NewFrameWriter(w)
	}
	out := streaming.NewEncoder(frames, enc)
	for _, e := range watchEvents() {
		obj := e.Object.DeepCopyObject()
		gvks, _, _ := scheme.Scheme.ObjectKinds(obj)
		obj.GetObjectKind().SetGroupVersionKind(gvks[0])
		var buf bytes.Buffer
		if err := embedded.Encode(obj, &buf); err != nil {
			panic(err)
		}
		if err := out.Encode(&metav1.WatchEvent{Type: string(e.Type), Object: runtime.RawExtension{Raw: buf.Bytes()}}); err != nil {
			return
		}
	}
	w.(http.Flusher).Flush()
}

// summarize is PodSummary's answer computed from the fully decoded pod.
func summarize(t watch.EventType, p *v1.Pod) *v1.Pod {
	out := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, UID: p.UID, ResourceVersion: p.ResourceVersion,
		DeletionTimestamp: p.DeletionTimestamp}, Spec: v1.PodSpec{NodeName: p.Spec.NodeName}, Status: v1.PodStatus{Phase: p.Status.Phase}}
	if t == watch.Bookmark {
		out.Annotations = p.Annotations
	}
	for _, c := range p.Spec.Containers {
		out.Spec.Containers = append(out.Spec.Containers, v1.Container{Name: c.Name, Image: c.Image})
	}
	return out
}

func collect(t *testing.T, w watch.Interface, n int) []watch.Event {
	t.Helper()
	defer w.Stop()
	var got []watch.Event
	timeout := time.After(10 * time.Second)
	for len(got) < n {
		select {
		case e, ok := <-w.ResultChan():
			if !ok {
				t.Fatalf("watch ended after %d events: %+v", len(got), got)
			}
			got = append(got, e)
		case <-timeout:
			t.Fatalf("only %d events", len(got))
		}
	}
	return got
}

// TestWatchPodsSummary: WatchPods sends the typed client's watch request
// (same URL and Accept header) and PodSummary yields exactly the fields
// it promises, equal to the full decoding's, for every event type; an
// ERROR event's Status comes through whole. Both with a protobuf and a
// JSON answer.
func TestWatchPodsSummary(t *testing.T) {
	for _, asJSON := range []bool{false, true} {
		srv := &watchServer{asJSON: asJSON}
		hs := httptest.NewServer(srv)
		client, err := kubernetes.NewForConfig(&rest.Config{Host: hs.URL})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		timeout := int64(300)
		opts := metav1.ListOptions{ResourceVersion: "39", AllowWatchBookmarks: true, TimeoutSeconds: &timeout, FieldSelector: "spec.nodeName!="}
		want := collect(t, mustWatch(t)(client.CoreV1().Pods("default").Watch(ctx, opts)), 5)
		got := collect(t, mustWatch(t)(WatchPods(ctx, controller.CoreREST(client), "default", opts, PodSummary)), 5)
		hs.Close()
		if len(srv.seen) != 2 || srv.seen[0] != srv.seen[1] {
			t.Fatalf("json=%v: requests differ: %q", asJSON, srv.seen)
		}
		for i := range want {
			if got[i].Type != want[i].Type {
				t.Fatalf("json=%v event %d: type %s, want %s", asJSON, i, got[i].Type, want[i].Type)
			}
			if want[i].Type == watch.Error {
				if !reflect.DeepEqual(got[i].Object, want[i].Object) {
					t.Fatalf("json=%v: error event %#v, want %#v", asJSON, got[i].Object, want[i].Object)
				}
				continue
			}
			w := summarize(want[i].Type, want[i].Object.(*v1.Pod))
			if g := got[i].Object.(*v1.Pod); !reflect.DeepEqual(g, w) {
				t.Fatalf("json=%v event %d: summary\n%#v\nwant\n%#v", asJSON, i, g, w)
			}
		}
	}
}

func mustWatch(t *testing.T) func(watch.Interface, error) watch.Interface {
	return func(w watch.Interface, err error) watch.Interface {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
}
