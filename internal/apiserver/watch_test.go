package apiserver

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
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
		"protobuf": {mc: mediaChoice{info: s.neg.byType[mediaProtobuf]}, streamEnc: s.neg.byType[mediaProtobuf].StreamSerializer.Serializer},
		"partial":  {mc: mediaChoice{info: s.neg.byType[mediaJSON], kind: outputPartialMetadata}},
	}
	r := httptest.NewRequest("GET", "/api/v1/pods?watch=true", nil)
	for round := 0; round < 2; round++ {
		for name, f := range formats {
			for _, et := range []watch.EventType{watch.Added, watch.Modified, watch.Deleted} {
				var scratch bytes.Buffer
				got, err := s.encodeWatchEvent(r, &f, st, watch.Event{Type: et, Object: pod}, false, &scratch)
				if err != nil {
					t.Fatal(err)
				}
				want := slowWatchEvent(t, f, et, pod)
				if !bytes.Equal(got, want) {
					t.Fatalf("round %d %s %s:\n got %q\nwant %q", round, name, et, got, want)
				}
			}
		}
	}
	// A JSON line carries its type and the object.
	var scratch bytes.Buffer
	f := formats["json"]
	line, _ := s.encodeWatchEvent(r, &f, st, watch.Event{Type: watch.Deleted, Object: pod}, false, &scratch)
	var ev struct {
		Type   string
		Object corev1.Pod
	}
	if err := json.Unmarshal(line, &ev); err != nil || ev.Type != "DELETED" || ev.Object.Name != "p" || ev.Object.Spec.NodeName != "n1" {
		t.Fatalf("JSON event %q: %+v %v", line, ev, err)
	}
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
// "shared" encodes the event once (encodeWatchEvent); "perWatcher" shares
// only the object's bytes and frames the event for each watcher, as
// before.
func BenchmarkWatchEventFanout(b *testing.B) {
	s := newPanickyServer(&testing.T{})
	st := s.Store(corev1.SchemeGroupVersion, "pods")
	f := watchFormat{mc: mediaChoice{info: s.neg.byType[mediaProtobuf]}, streamEnc: s.neg.byType[mediaProtobuf].StreamSerializer.Serializer}
	r := httptest.NewRequest("GET", "/api/v1/pods?watch=true", nil)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", ResourceVersion: "7", Labels: map[string]string{"app": "bench"}},
		Spec:       corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "app", Image: "bench:v1"}}},
	}
	const watchers = 5
	run := func(b *testing.B, send func(ev watch.Event, scratch *bytes.Buffer)) {
		var scratch bytes.Buffer
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			ev := watch.Event{Type: watch.Modified, Object: pod.DeepCopy()}
			for w := 0; w < watchers; w++ {
				send(ev, &scratch)
			}
		}
	}
	b.Run("shared", func(b *testing.B) {
		run(b, func(ev watch.Event, scratch *bytes.Buffer) {
			if _, err := s.encodeWatchEvent(r, &f, st, ev, false, scratch); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("perWatcher", func(b *testing.B) {
		run(b, func(ev watch.Event, scratch *bytes.Buffer) {
			raw, err := s.encodeWatchObject(r, f.mc, st, ev, false)
			if err != nil {
				b.Fatal(err)
			}
			scratch.Reset()
			if err := f.frame(scratch, ev.Type, raw); err != nil {
				b.Fatal(err)
			}
		})
	})
}
