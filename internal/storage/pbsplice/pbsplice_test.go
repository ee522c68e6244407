package pbsplice

import (
	"bytes"
	"encoding/binary"
	"math/rand"
	"reflect"
	"strconv"
	"strings"
	"testing"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/apitesting/fuzzer"
	metafuzzer "k8s.io/apimachinery/pkg/apis/meta/fuzzer"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/apimachinery/pkg/runtime/serializer/versioning"

	"skiff.dev/skiff/internal/cputime"
	"skiff.dev/skiff/internal/registry"
)

// codecs are skiff's two protobuf paths: the storage codec (what etcd
// holds, as internal/server builds it) and the API's encoder (what a
// protobuf client receives).
type codecs struct {
	scheme  *runtime.Scheme
	storage runtime.Codec
	api     runtime.Encoder
	factory serializer.CodecFactory
}

func newCodecs(t testing.TB) *codecs {
	scheme := registry.NewScheme()
	pb := protobuf.NewSerializer(scheme, scheme)
	f := serializer.NewCodecFactory(scheme)
	info, ok := runtime.SerializerInfoForMediaType(f.SupportedMediaTypes(), runtime.ContentTypeProtobuf)
	if !ok {
		t.Fatal("no protobuf serializer")
	}
	return &codecs{scheme: scheme, storage: versioning.NewDefaultingCodecForScheme(scheme, pb, pb, nil, nil), api: info.Serializer, factory: f}
}

// store encodes obj as etcd3 does: resourceVersion cleared.
func (c *codecs) store(t testing.TB, obj runtime.Object) []byte {
	t.Helper()
	obj.(metav1.Object).SetResourceVersion("")
	var b bytes.Buffer
	if err := c.storage.Encode(obj, &b); err != nil {
		t.Fatalf("storage encode %T: %v", obj, err)
	}
	return b.Bytes()
}

// load decodes stored as etcd3 does and sets resourceVersion rv.
func (c *codecs) load(t testing.TB, stored []byte, into runtime.Object, rv string) runtime.Object {
	t.Helper()
	obj, gvk, err := c.storage.Decode(stored, nil, into)
	if err != nil {
		t.Fatalf("storage decode %T: %v", into, err)
	}
	if gvk != nil && obj.GetObjectKind().GroupVersionKind().Empty() {
		obj.GetObjectKind().SetGroupVersionKind(*gvk)
	}
	obj.(metav1.Object).SetResourceVersion(rv)
	return obj
}

func (c *codecs) encode(t testing.TB, obj runtime.Object) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := c.api.Encode(obj, &b); err != nil {
		t.Fatalf("api encode %T: %v", obj, err)
	}
	return b.Bytes()
}

func randomRV(r *rand.Rand) string {
	switch r.Intn(5) {
	case 0:
		return ""
	case 1:
		return strconv.Itoa(r.Intn(10))
	case 2:
		return strconv.FormatInt(r.Int63(), 10)
	case 3:
		// Long enough to change the width of a length prefix.
		return strings.Repeat("7", 100+r.Intn(200))
	}
	return strconv.Itoa(1 + r.Intn(1<<20))
}

// spliceableKinds are the scheme's kinds whose Go type has ObjectMeta as
// field 1: every stored resource.
func spliceableKinds(c *codecs) []schema.GroupVersionKind {
	var out []schema.GroupVersionKind
	for gvk, typ := range c.scheme.AllKnownTypes() {
		if !strings.HasPrefix(typ.PkgPath(), "k8s.io/api/") || strings.HasSuffix(gvk.Kind, "List") {
			continue
		}
		obj, err := c.scheme.New(gvk)
		if err != nil || !metaIsField1(obj) {
			continue
		}
		out = append(out, gvk)
	}
	return out
}

// TestSpliceMatchesEncoder is the differential test: for random objects of
// every stored kind, splicing the stored bytes gives exactly what the API
// encoder writes for the object a read returns (decoded from the stored
// bytes) and for the object a write returns (the one that was encoded).
func TestSpliceMatchesEncoder(t *testing.T) {
	c := newCodecs(t)
	kinds := spliceableKinds(c)
	if len(kinds) < 20 {
		t.Fatalf("only %d spliceable kinds found: %v", len(kinds), kinds)
	}
	seed := rand.Int63()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewSource(seed))
	f := fuzzer.FuzzerFor(metafuzzer.Funcs, rand.NewSource(seed), c.factory).NilChance(0.2).NumElements(0, 3)
	n, refused := 0, 0
	for _, gvk := range kinds {
		for i := 0; i < 30; i++ {
			obj, _ := c.scheme.New(gvk)
			f.Fill(obj)
			obj.GetObjectKind().SetGroupVersionKind(schema.GroupVersionKind{})
			stored := c.store(t, obj)

			// A read: decoded from the stored bytes.
			into, _ := c.scheme.New(gvk)
			dec := c.load(t, stored, into, randomRV(r))
			want := c.encode(t, dec)
			got, ok := Splice(stored, dec)
			if !ok {
				// Refusing is right only when decoding changed the
				// object (a nil []byte map value comes back empty, and
				// is then written): the plain splice would differ.
				naive, _, shaped := splice(stored, dec.GetObjectKind().GroupVersionKind(), dec.(metav1.Object).GetResourceVersion())
				if !shaped || bytes.Equal(naive, want) {
					t.Fatalf("%v #%d: splice refused a decoded object it could splice (shape ok %v)", gvk, i, shaped)
				}
				refused++
				continue
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%v #%d (rv %q): splice differs from the encoder\n got %x\nwant %x", gvk, i, dec.(metav1.Object).GetResourceVersion(), got, want)
			}

			// A write: the encoded object, given its revision afterwards
			// and the kind the registry sets on what it returns.
			obj.(metav1.Object).SetResourceVersion(randomRV(r))
			obj.GetObjectKind().SetGroupVersionKind(gvk)
			want = c.encode(t, obj)
			got, ok = Splice(stored, obj)
			if !ok {
				t.Fatalf("%v #%d: splice refused the encoded object", gvk, i)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%v #%d: splice of the written object differs from the encoder\n got %x\nwant %x", gvk, i, got, want)
			}
			n++
		}
	}
	t.Logf("%d objects of %d kinds spliced, %d refused", n, len(kinds), refused)
	if refused > n/10 {
		t.Errorf("refused %d of %d objects", refused, n+refused)
	}
}

// TestSpliceLengthWidths grows an object across the sizes where the
// ObjectMeta, object and Raw length prefixes change width (127/128 and
// 16383/16384 bytes), with resourceVersions that push them over.
func TestSpliceLengthWidths(t *testing.T) {
	c := newCodecs(t)
	rvs := []string{"", "1", "1234567", strings.Repeat("9", 20), strings.Repeat("9", 130)}
	for _, base := range []int{0, 40, 100, 16250, 16330, 2097080} {
		if base > 1<<20 {
			rvs = []string{"", "12", strings.Repeat("9", 130)}
		}
		for extra := 0; extra < 60; extra++ {
			for _, rv := range rvs {
				pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns",
					Annotations: map[string]string{"a": strings.Repeat("x", base+extra)}}}
				stored := c.store(t, pod)
				dec := c.load(t, stored, &corev1.Pod{}, rv)
				want := c.encode(t, dec)
				got, ok := Splice(stored, dec)
				if !ok || !bytes.Equal(got, want) {
					t.Fatalf("annotation %d bytes, rv %q: ok=%v\n got %x\nwant %x", base+extra, rv, ok, got, want)
				}
			}
		}
	}
}

// appendField appends a length-delimited field to a protobuf message.
func appendField(b []byte, num int, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(num<<3|2))
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// rebuild encodes an Unknown around raw with the TypeMeta of stored.
func rebuild(t *testing.T, stored, raw []byte) []byte {
	tm, rest, ok := field(stored[4:], tagField1)
	if !ok {
		t.Fatal("no TypeMeta")
	}
	_ = rest
	out := append([]byte("k8s\x00"), 0)[:4]
	out = appendField(out, 1, tm)
	out = appendField(out, 2, raw)
	return append(out, tagField3, 0, tagField4, 0)
}

// TestSpliceRefusesUnknownFields: stored fields the Go type does not know
// are dropped by decoding, so the encoder would not write them; the
// splice must refuse rather than pass them on.
func TestSpliceRefusesUnknownFields(t *testing.T) {
	c := newCodecs(t)
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "l", Namespace: "ns"}}
	stored := c.store(t, lease)
	_, rest, _ := field(stored[4:], tagField1)
	raw, _, _ := field(rest, tagField2)
	meta, afterMeta, _ := field(raw, tagField1)

	cases := map[string][]byte{
		// Field 99 at the end of the Lease.
		"object": appendField(append([]byte(nil), raw...), 99, []byte("new")),
		// Field 99 at the end of ObjectMeta.
		"metadata": append(appendField(nil, 1, appendField(append([]byte(nil), meta...), 99, []byte("x"))), afterMeta...),
	}
	for name, raw := range cases {
		st := rebuild(t, stored, raw)
		dec := c.load(t, st, &coordinationv1.Lease{}, "5")
		if got, ok := Splice(st, dec); ok {
			t.Errorf("%s: spliced an object with an unknown field: %x (encoder: %x)", name, got, c.encode(t, dec))
		}
	}
	// The rebuilt encoding without extra fields is still accepted (the
	// refusals above are for the unknown fields, not the rebuild).
	st := rebuild(t, stored, raw)
	dec := c.load(t, st, &coordinationv1.Lease{}, "5")
	if got, ok := Splice(st, dec); !ok || !bytes.Equal(got, c.encode(t, dec)) {
		t.Errorf("rebuilt plain lease: ok=%v", ok)
	}
}

// TestSpliceRefusesOtherShapes: a different kind than the object's,
// content types, trailing bytes, truncations and non-object types.
func TestSpliceRefusesOtherShapes(t *testing.T) {
	c := newCodecs(t)
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n", Labels: map[string]string{"a": "b"}}}
	stored := c.store(t, node)
	dec := c.load(t, stored, &corev1.Node{}, "9")
	if _, ok := Splice(stored, dec); !ok {
		t.Fatal("refused a plain node")
	}

	other := dec.DeepCopyObject()
	other.GetObjectKind().SetGroupVersionKind(schema.GroupVersionKind{Group: "example.com", Version: "v1", Kind: "Node"})
	if _, ok := Splice(stored, other); ok {
		t.Error("spliced for an object of another group")
	}
	other.GetObjectKind().SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Nodes"))
	if _, ok := Splice(stored, other); ok {
		t.Error("spliced for an object of another kind")
	}
	withCT := append(append([]byte(nil), stored[:len(stored)-1]...), 0)
	withCT[len(withCT)-1] = 1
	withCT = append(withCT, 'x')
	if _, ok := Splice(withCT, dec); ok {
		t.Error("spliced an encoding with a content type")
	}
	if _, ok := Splice(append(append([]byte(nil), stored...), 0), dec); ok {
		t.Error("spliced an encoding with a trailing byte")
	}
	for i := 0; i < len(stored); i++ {
		if _, ok := Splice(stored[:i], dec); ok {
			t.Fatalf("spliced a truncation to %d of %d bytes", i, len(stored))
		}
	}
	// Random corruption never panics. (Bytes the marshaller cannot
	// have written are outside the contract: a corrupted tag can decode
	// to an object of the same size that encodes differently.)
	r := rand.New(rand.NewSource(1))
	for i := 0; i < 5000; i++ {
		b := append([]byte(nil), stored...)
		for j := 0; j < 1+r.Intn(3); j++ {
			b[r.Intn(len(b))] = byte(r.Intn(256))
		}
		_, _ = Splice(b, dec)
	}
	// Types without ObjectMeta as field 1 are refused.
	st := &metav1.Status{Status: "Success"}
	st.SetGroupVersionKind(schema.GroupVersionKind{Version: "v1", Kind: "Status"})
	var b bytes.Buffer
	_ = c.api.Encode(st, &b)
	if _, ok := Splice(b.Bytes(), st); ok {
		t.Error("spliced a Status")
	}
	if metaIsField1(&corev1.PodList{}) {
		t.Error("a list counted as an object with ObjectMeta")
	}
	if !metaIsField1(&corev1.Pod{}) || reflect.TypeOf(dec) != reflect.TypeOf(&corev1.Node{}) {
		t.Error("a pod is not spliceable")
	}
}

// BenchmarkPodEncoding compares the API encoder with the splice for a
// pod of the controller benchmark's shape.
func BenchmarkPodEncoding(b *testing.B) {
	c := newCodecs(b)
	pod := benchPod()
	stored := c.store(b, pod)
	dec := c.load(b, stored, &corev1.Pod{}, "123456")
	b.Run("encoder", func(b *testing.B) {
		b.ReportAllocs()
		defer reportCPU(b)()
		var buf bytes.Buffer
		for i := 0; i < b.N; i++ {
			buf.Reset()
			if err := c.api.Encode(dec, &buf); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("splice", func(b *testing.B) {
		b.ReportAllocs()
		defer reportCPU(b)()
		for i := 0; i < b.N; i++ {
			if _, ok := Splice(stored, dec); !ok {
				b.Fatal("refused")
			}
		}
	})
}

func benchPod() *corev1.Pod {
	tr := true
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "web-7d9f8c6b5d-x2k4p", GenerateName: "web-7d9f8c6b5d-", Namespace: "default",
			UID: "5f0c1a52-8c7e-4f3e-9a51-0d1f7b1e2c3a", CreationTimestamp: metav1.Unix(1700000000, 0),
			Labels: map[string]string{"app": "web", "pod-template-hash": "7d9f8c6b5d"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-7d9f8c6b5d",
				UID: "0b7f4a7e-1c2d-4e5f-8a9b-0c1d2e3f4a5b", Controller: &tr, BlockOwnerDeletion: &tr}},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager", Operation: metav1.ManagedFieldsOperationUpdate,
				APIVersion: "v1", FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:metadata":{"f:generateName":{},"f:labels":{".":{},"f:app":{},"f:pod-template-hash":{}},"f:ownerReferences":{".":{},"k:{\"uid\":\"0b7f4a7e-1c2d-4e5f-8a9b-0c1d2e3f4a5b\"}":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"app\"}":{".":{},"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:resources":{},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{}}},"f:dnsPolicy":{},"f:enableServiceLinks":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:terminationGracePeriodSeconds":{}}}`)}}},
		},
		Spec: corev1.PodSpec{
			NodeName:      "hollow-node-17",
			Containers:    []corev1.Container{{Name: "app", Image: "localhost/skiff/testapp:v1", ImagePullPolicy: corev1.PullIfNotPresent, TerminationMessagePath: "/dev/termination-log", TerminationMessagePolicy: corev1.TerminationMessageReadFile}},
			RestartPolicy: corev1.RestartPolicyAlways, DNSPolicy: corev1.DNSClusterFirst, SchedulerName: "default-scheduler",
		},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.3.4", HostIP: "10.1.0.17",
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Unix(1700000005, 0)}}},
	}
}

func BenchmarkPodSize(b *testing.B) {
	pod := benchPod()
	b.ReportAllocs()
	defer reportCPU(b)()
	for i := 0; i < b.N; i++ {
		_ = pod.Size()
	}
}

// reportCPU reports the process's CPU time per operation (user+system),
// which a machine loaded by others distorts far less than wall time.
func reportCPU(b *testing.B) func() {
	start := int64(cputime.Process())
	return func() {
		b.ReportMetric(float64(int64(cputime.Process())-start)/float64(b.N), "cpu-ns/op")
	}
}
