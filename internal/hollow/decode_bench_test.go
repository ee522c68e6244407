package hollow

import (
	"bufio"
	"bytes"
	"io"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/apimachinery/pkg/runtime/serializer/streaming"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/scheme"
	restclientwatch "k8s.io/client-go/rest/watch"
)

// watchStream is n MODIFIED events of pod as the API server frames them.
func watchStream(b *testing.B, pod *v1.Pod, n int) []byte {
	var out bytes.Buffer
	enc := streaming.NewEncoder(protobuf.LengthDelimitedFramer.NewFrameWriter(&out), protobuf.NewRawSerializer(scheme.Scheme, scheme.Scheme))
	p := pod.DeepCopy()
	p.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}
	var obj bytes.Buffer
	if err := protobuf.NewSerializer(scheme.Scheme, scheme.Scheme).Encode(p, &obj); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if err := enc.Encode(&metav1.WatchEvent{Type: string(watch.Modified), Object: runtime.RawExtension{Raw: obj.Bytes()}}); err != nil {
			b.Fatal(err)
		}
	}
	return out.Bytes()
}

// BenchmarkWatchDecode: CPU and allocations per watch event of a
// replica's pod (as the benchmark's pods look once bound: managedFields
// of three managers), decoded as the typed client does, into the hollow's
// stored form, and into the observer's summary.
func BenchmarkWatchDecode(b *testing.B) {
	pod := richPod()
	mf := pod.ManagedFields[0]
	for _, m := range []string{"kube-scheduler", "hollow"} {
		e := *mf.DeepCopy()
		e.Manager = m
		pod.ManagedFields = append(pod.ManagedFields, e)
	}
	const n = 1000
	stream := watchStream(b, pod, n)
	run := func(b *testing.B, newDecoder func(io.Reader) watch.Decoder) {
		b.ReportAllocs()
		for i := 0; i < b.N; {
			d := newDecoder(bytes.NewReader(stream))
			for j := 0; j < n && i < b.N; j, i = j+1, i+1 {
				if _, _, err := d.Decode(); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	b.Run("typed", func(b *testing.B) {
		run(b, func(r io.Reader) watch.Decoder {
			return restclientwatch.NewDecoder(streaming.NewDecoder(protobuf.LengthDelimitedFramer.NewFrameReader(io.NopCloser(r)),
				protobuf.NewRawSerializer(scheme.Scheme, scheme.Scheme)), runtime.WithoutVersionDecoder{Decoder: protobuf.NewSerializer(scheme.Scheme, scheme.Scheme)})
		})
	})
	b.Run("stored", func(b *testing.B) {
		run(b, func(r io.Reader) watch.Decoder {
			return &podStream{body: io.NopCloser(r), r: bufio.NewReaderSize(r, 32<<10), decode: decodeStoredPod}
		})
	})
	b.Run("summary", func(b *testing.B) {
		run(b, func(r io.Reader) watch.Decoder {
			return &podStream{body: io.NopCloser(r), r: bufio.NewReaderSize(r, 32<<10), decode: PodSummary}
		})
	})
}

// BenchmarkStatusBody: building a status PUT body from the whole pod
// (the serializer) and from the stored form's bytes.
func BenchmarkStatusBody(b *testing.B) {
	pod := richPod()
	wire, _ := pod.Marshal()
	obj, _ := decodeStoredPod(watch.Modified, wire)
	sp := obj.(*storedPod)
	b.Run("whole", func(b *testing.B) {
		b.ReportAllocs()
		alloc := new(runtime.Allocator)
		p := pod.DeepCopy()
		p.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}
		for i := 0; i < b.N; i++ {
			var w lastWrite
			if err := podProtobuf.EncodeWithAllocator(p, &w, alloc); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("stored", func(b *testing.B) {
		b.ReportAllocs()
		alloc := new(runtime.Allocator)
		for i := 0; i < b.N; i++ {
			if _, err := encodeWithStatus(alloc, sp.metaSpec, &sp.Status); err != nil {
				b.Fatal(err)
			}
		}
	})
}
