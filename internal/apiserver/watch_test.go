package apiserver

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"

	"skiff.dev/skiff/internal/registry"
	"skiff.dev/skiff/internal/registry/core"
	"skiff.dev/skiff/internal/registry/generic"
	"skiff.dev/skiff/internal/storage"
)

// Watch events encoded once and shared are, byte for byte, what
// encoding the object and then the event for each watcher gives, for
// every event type and format, and a watcher with another format or
// event type never gets another's bytes.
func TestEncodeWatchEventShared(t *testing.T) {
	s := newPanickyServer(t)
	st := s.Store(corev1.SchemeGroupVersion, "pods")
	pod := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", ResourceVersion: "7", Labels: map[string]string{"a": "b"}},
		Spec:       corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "c", Image: "i"}}},
	}
	formats := map[string]watchFormat{
		"json":     {mc: mediaChoice{info: s.neg.byType[mediaJSON]}},
		"protobuf": protobufWatchFormat(s),
		"partial":  {mc: mediaChoice{info: s.neg.byType[mediaJSON], kind: outputPartialMetadata}},
	}
	r := httptest.NewRequest("GET", "/api/v1/pods?watch=true", nil)
	for round := 0; round < 2; round++ {
		for name, f := range formats {
			for _, et := range []watch.EventType{watch.Added, watch.Modified, watch.Deleted} {
				var b bytes.Buffer
				b.WriteString("before")
				if err := s.appendWatchEvent(r, &f, st, watch.Event{Type: et, Object: pod}, false, &b); err != nil {
					t.Fatal(err)
				}
				got, want := b.Bytes(), append([]byte("before"), slowFramedEvent(t, f, et, pod)...)
				if !bytes.Equal(got, want) {
					t.Fatalf("round %d %s %s:\n got %q\nwant %q", round, name, et, got, want)
				}
			}
		}
	}
	// A JSON line carries its type and the object.
	var b bytes.Buffer
	f := formats["json"]
	_ = s.appendWatchEvent(r, &f, st, watch.Event{Type: watch.Deleted, Object: pod}, false, &b)
	line := b.Bytes()
	var ev struct {
		Type   string
		Object corev1.Pod
	}
	if err := json.Unmarshal(line, &ev); err != nil || ev.Type != "DELETED" || ev.Object.Name != "p" || ev.Object.Spec.NodeName != "n1" {
		t.Fatalf("JSON event %q: %+v %v", line, ev, err)
	}
}

func protobufWatchFormat(s *Server) watchFormat {
	info := s.neg.byType[mediaProtobuf]
	return watchFormat{mc: mediaChoice{info: info}, streamEnc: info.StreamSerializer.Serializer, framer: info.StreamSerializer.Framer}
}

// slowFramedEvent is slowWatchEvent framed as the stream carries it.
func slowFramedEvent(t *testing.T, f watchFormat, et watch.EventType, obj runtime.Object) []byte {
	raw := slowWatchEvent(t, f, et, obj)
	if f.streamEnc == nil {
		return raw
	}
	var b bytes.Buffer
	if _, err := f.framer.NewFrameWriter(&b).Write(raw); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// slowWatchEvent is the event encoded from scratch, without the cache.
func slowWatchEvent(t *testing.T, f watchFormat, et watch.EventType, obj runtime.Object) []byte {
	t.Helper()
	var o runtime.Object = obj
	if f.mc.kind == outputPartialMetadata {
		p, err := toPartial(obj)
		if err != nil {
			t.Fatal(err)
		}
		o = p
	}
	var raw bytes.Buffer
	if err := f.mc.info.Serializer.Encode(o, &raw); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if f.streamEnc != nil {
		if err := f.streamEnc.Encode(&metav1.WatchEvent{Type: string(et), Object: runtime.RawExtension{Raw: raw.Bytes()}}, &out); err != nil {
			t.Fatal(err)
		}
		return out.Bytes()
	}
	out.WriteString(`{"type":"` + string(et) + `","object":`)
	out.Write(bytes.TrimRight(raw.Bytes(), "\n"))
	out.WriteString("}\n")
	return out.Bytes()
}

// BenchmarkWatchEventFanout is one pod event sent to 5 protobuf watchers:
// the object is encoded once and each watcher frames the event into its
// stream's buffer.
func BenchmarkWatchEventFanout(b *testing.B) {
	s := newPanickyServer(&testing.T{})
	st := s.Store(corev1.SchemeGroupVersion, "pods")
	f := protobufWatchFormat(s)
	r := httptest.NewRequest("GET", "/api/v1/pods?watch=true", nil)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", ResourceVersion: "7", Labels: map[string]string{"app": "bench"}},
		Spec:       corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "app", Image: "bench:v1"}}},
	}
	const watchers = 5
	var bufs [watchers]bytes.Buffer
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		ev := watch.Event{Type: watch.Modified, Object: pod.DeepCopy()}
		for w := range bufs {
			bufs[w].Reset()
			if err := s.appendWatchEvent(r, &f, st, ev, false, &bufs[w]); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// watchStorage is memStorage whose watches are w, fed by the test.
type watchStorage struct {
	*memStorage
	w *watch.FakeWatcher
}

func (m watchStorage) Watch(context.Context, string, storage.WatchOptions) (watch.Interface, error) {
	return m.w, nil
}

// countingWriter counts the writes and flushes a handler makes.
type countingWriter struct {
	*httptest.ResponseRecorder
	writes, flushes int
}

func (c *countingWriter) Write(b []byte) (int, error) {
	c.writes++
	return c.ResponseRecorder.Write(b)
}

func (c *countingWriter) Flush() {
	c.flushes++
	c.ResponseRecorder.Flush()
}

// A watch stream writes the events that are waiting when it wakes up as
// one batch (one write, one flush), and the stream is byte for byte the
// events encoded one by one, in order, in JSON and in framed protobuf;
// a batch stops growing at maxWatchBatch bytes.
func TestServeWatchBatchesWaitingEvents(t *testing.T) {
	for _, tc := range []struct {
		name, accept string
		events       int
		padding      int // bytes of annotation per pod
		maxWrites    int // batches written, at most
	}{
		{"json", "application/json", 40, 0, 1},
		{"protobuf", mediaProtobuf + ";stream=watch", 40, 0, 1},
		{"json/large", "application/json", 40, 8 << 10, 40 * (8 << 10) / maxWatchBatch * 2},
		{"protobuf/large", mediaProtobuf + ";stream=watch", 40, 8 << 10, 40 * (8 << 10) / maxWatchBatch * 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fw := watch.NewFakeWithChanSize(tc.events, false)
			sch := registry.NewScheme()
			var stores []*generic.Store
			for _, r := range core.Resources() {
				gvr := r.StorageGVR()
				var si storage.Interface = newMemStorage()
				if gvr.Resource == "pods" {
					si = watchStorage{newMemStorage(), fw}
				}
				stores = append(stores, generic.NewStore(r, si, "/registry/"+gvr.Group+"/"+gvr.Resource))
			}
			s, err := New(Config{Scheme: sch, Stores: stores, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			types := []watch.EventType{watch.Added, watch.Modified, watch.Deleted}
			var evs []watch.Event
			for i := range tc.events {
				pod := &corev1.Pod{
					TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
					ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p%d", i), Namespace: "ns", ResourceVersion: fmt.Sprint(10 + i)},
					Spec:       corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "c", Image: "i"}}},
				}
				if tc.padding > 0 {
					pod.Annotations = map[string]string{"pad": strings.Repeat("x", tc.padding)}
				}
				ev := watch.Event{Type: types[i%len(types)], Object: pod}
				if i == tc.events/2 {
					bm := &corev1.Pod{TypeMeta: pod.TypeMeta, ObjectMeta: metav1.ObjectMeta{ResourceVersion: fmt.Sprint(10 + i)}}
					ev = watch.Event{Type: watch.Bookmark, Object: bm}
				}
				evs = append(evs, ev)
				fw.Action(ev.Type, ev.Object)
			}
			fw.Stop() // the stream ends after the events waiting
			r := httptest.NewRequest("GET", "/api/v1/namespaces/ns/pods?watch=true&allowWatchBookmarks=true", nil)
			r.Header.Set("Accept", tc.accept)
			rec := &countingWriter{ResponseRecorder: httptest.NewRecorder()}
			s.Handler().ServeHTTP(rec, r)
			if rec.Code != http.StatusOK {
				t.Fatalf("watch: %d %s", rec.Code, rec.Body.String())
			}
			f := watchFormat{mc: mediaChoice{info: s.neg.byType[mediaJSON]}}
			if strings.HasPrefix(tc.accept, mediaProtobuf) {
				f = protobufWatchFormat(s)
			}
			var want bytes.Buffer
			for _, ev := range evs {
				raw := slowWatchEvent(t, f, ev.Type, ev.Object)
				if f.streamEnc != nil {
					// The length-delimited framer, by hand.
					var n [4]byte
					binary.BigEndian.PutUint32(n[:], uint32(len(raw)))
					want.Write(n[:])
				}
				want.Write(raw)
			}
			if got := rec.Body.Bytes(); !bytes.Equal(got, want.Bytes()) {
				t.Fatalf("stream differs from the events encoded one by one:\n got %d bytes %q\nwant %d bytes %q", len(got), trunc(got), want.Len(), trunc(want.Bytes()))
			}
			if rec.writes > tc.maxWrites {
				t.Errorf("%d events (%d bytes) written in %d writes, want at most %d", len(evs), want.Len(), rec.writes, tc.maxWrites)
			}
			if rec.flushes > rec.writes+1 { // +1: the headers
				t.Errorf("%d flushes for %d writes", rec.flushes, rec.writes)
			}
		})
	}
}

func trunc(b []byte) []byte {
	if len(b) > 300 {
		return b[:300]
	}
	return b
}

// An event that fails to encode ends the stream after the events before
// it in its batch, which are still sent.
func TestServeWatchSendsBatchBeforeEncodeError(t *testing.T) {
	fw := watch.NewFakeWithChanSize(10, false)
	var stores []*generic.Store
	for _, r := range core.Resources() {
		gvr := r.StorageGVR()
		var si storage.Interface = newMemStorage()
		if gvr.Resource == "pods" {
			si = watchStorage{newMemStorage(), fw}
		}
		stores = append(stores, generic.NewStore(r, si, "/registry/"+gvr.Group+"/"+gvr.Resource))
	}
	s, err := New(Config{Scheme: registry.NewScheme(), Stores: stores, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	f := protobufWatchFormat(s)
	var want bytes.Buffer
	for i := range 3 {
		pod := &corev1.Pod{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p%d", i), Namespace: "ns", ResourceVersion: fmt.Sprint(10 + i)},
		}
		fw.Add(pod)
		want.Write(slowFramedEvent(t, f, watch.Added, pod))
	}
	// Not a protobuf message: the protobuf serializer refuses it.
	fw.Add(&unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Pod", "metadata": map[string]any{"name": "bad"}}})
	fw.Add(&corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, ObjectMeta: metav1.ObjectMeta{Name: "after", Namespace: "ns", ResourceVersion: "20"}})
	r := httptest.NewRequest("GET", "/api/v1/namespaces/ns/pods?watch=true", nil)
	r.Header.Set("Accept", mediaProtobuf+";stream=watch")
	rec := httptest.NewRecorder()
	done := make(chan struct{})
	go func() { s.Handler().ServeHTTP(rec, r); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the stream did not end at the event it could not encode")
	}
	if !bytes.Equal(rec.Body.Bytes(), want.Bytes()) {
		t.Fatalf("stream: got %d bytes, want the %d bytes of the 3 events before the bad one", rec.Body.Len(), want.Len())
	}
}
