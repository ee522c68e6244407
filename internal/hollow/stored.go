package hollow

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
)

// storedPod is what the hollow nodes' pod informer holds. From a
// protobuf watch, Pod has only what SyncPod reads (namespace, name, UID,
// resourceVersion, deletion timestamp and grace period, node name, the
// containers' names and images, and the whole status) and metaSpec is the
// pod's metadata and spec fields exactly as the API server sent them: the
// status write sends them back byte for byte, so the pod's managedFields,
// labels, owner references and the rest of its spec are never decoded,
// kept as objects or re-encoded. With metaSpec nil (a list, a JSON watch,
// a fake clientset) Pod is the whole pod.
type storedPod struct {
	*v1.Pod
	metaSpec []byte
}

func (p *storedPod) DeepCopyObject() runtime.Object {
	// metaSpec is never written after decoding: shared.
	return &storedPod{Pod: p.Pod.DeepCopy(), metaSpec: p.metaSpec}
}

// storedPodList is a pod list as the informer's lister stores it.
type storedPodList struct {
	metav1.TypeMeta
	metav1.ListMeta
	Items []storedPod
}

func (l *storedPodList) DeepCopyObject() runtime.Object {
	out := &storedPodList{TypeMeta: l.TypeMeta, ListMeta: *l.ListMeta.DeepCopy(), Items: make([]storedPod, len(l.Items))}
	for i := range l.Items {
		out.Items[i] = *l.Items[i].DeepCopyObject().(*storedPod)
	}
	return out
}

func storedList(l *v1.PodList) *storedPodList {
	out := &storedPodList{TypeMeta: l.TypeMeta, ListMeta: l.ListMeta, Items: make([]storedPod, len(l.Items))}
	for i := range l.Items {
		out.Items[i].Pod = &l.Items[i]
	}
	return out
}

// decodeStoredPod is the hollow watch's PodDecoder. A pod encoded as the
// API server encodes one (metadata, spec, status: fields 1, 2, 3 in that
// order, each once) is read partly and keeps its metadata and spec bytes;
// any other encoding is decoded whole (metaSpec nil).
func decodeStoredPod(t watch.EventType, b []byte) (runtime.Object, error) {
	var meta, spec, status []byte
	statusAt, last, canonical := -1, protowire.Number(0), true
	for off := 0; off < len(b); {
		num, typ, l := protowire.ConsumeTag(b[off:])
		if l < 0 || typ != protowire.BytesType || num <= last || num > 3 {
			canonical = false
			break
		}
		v, m := protowire.ConsumeBytes(b[off+l:])
		if m < 0 {
			canonical = false
			break
		}
		switch num {
		case 1:
			meta = v
		case 2:
			spec = v
		case 3:
			status, statusAt = v, off
		}
		last = num
		off += l + m
	}
	pod := &v1.Pod{}
	if !canonical || meta == nil || statusAt < 0 {
		if err := pod.Unmarshal(b); err != nil {
			return nil, err
		}
		return &storedPod{Pod: pod}, nil
	}
	if err := readMeta(&pod.ObjectMeta, meta, t == watch.Bookmark, true); err != nil {
		return nil, err
	}
	if err := summarySpec(&pod.Spec, spec); err != nil {
		return nil, err
	}
	if err := pod.Status.Unmarshal(status); err != nil {
		return nil, fmt.Errorf("decoding pod status: %w", err)
	}
	return &storedPod{Pod: pod, metaSpec: append([]byte(nil), b[:statusAt]...)}, nil
}

// readMeta reads the metadata a PodSummary holds (name, namespace, uid,
// resourceVersion, deletionTimestamp; the annotations of a bookmark) and,
// with grace, deletionGracePeriodSeconds, which SyncPod also uses.
func readMeta(m *metav1.ObjectMeta, b []byte, annotations, grace bool) error {
	return eachField(b, "pod metadata", func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
		if typ == protowire.VarintType {
			if grace && num == 10 {
				g := int64(x)
				m.DeletionGracePeriodSeconds = &g
			}
			return nil
		}
		switch num {
		case 1:
			m.Name = string(v)
		case 3:
			m.Namespace = string(v)
		case 5:
			m.UID = types.UID(v)
		case 6:
			m.ResourceVersion = string(v)
		case 9:
			ts := &metav1.Time{}
			if err := ts.Unmarshal(v); err != nil {
				return fmt.Errorf("decoding deletionTimestamp: %w", err)
			}
			m.DeletionTimestamp = ts
		case 12:
			if annotations {
				k, _ := fieldBytes(v, 1)
				val, _ := fieldBytes(v, 2)
				if m.Annotations == nil {
					m.Annotations = map[string]string{}
				}
				m.Annotations[string(k)] = string(val)
			}
		}
		return nil
	})
}

// podEnvelope starts the protobuf of a Pod as the client's serializer
// writes it: the magic, then runtime.Unknown's TypeMeta {v1, Pod}; the
// Unknown's raw (field 2) follows, then its empty contentEncoding and
// contentType (fields 3 and 4), which Unknown always writes.
var podEnvelope = []byte("k8s\x00\x0a\x09\x0a\x02v1\x12\x03Pod")

var podEnvelopeTail = []byte{0x1a, 0x00, 0x22, 0x00}

// encodeWithStatus returns, in a buffer from alloc, the body the client's
// protobuf serializer writes for the pod whose metadata and spec are
// metaSpec and whose status is status.
func encodeWithStatus(alloc runtime.MemoryAllocator, metaSpec []byte, status *v1.PodStatus) ([]byte, error) {
	ss := status.Size()
	rawLen := len(metaSpec) + 1 + protowire.SizeVarint(uint64(ss)) + ss
	total := len(podEnvelope) + 1 + protowire.SizeVarint(uint64(rawLen)) + rawLen + len(podEnvelopeTail)
	out := append(alloc.Allocate(uint64(total))[:0], podEnvelope...)
	out = append(out, 0x12)
	out = protowire.AppendVarint(out, uint64(rawLen))
	out = append(out, metaSpec...)
	out = append(out, 0x1a)
	out = protowire.AppendVarint(out, uint64(ss))
	at := len(out)
	out = out[:at+ss]
	if _, err := status.MarshalToSizedBuffer(out[at:]); err != nil {
		return nil, err
	}
	return append(out, podEnvelopeTail...), nil
}
