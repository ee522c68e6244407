package hollow

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/runtime/serializer/streaming"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	restclientwatch "k8s.io/client-go/rest/watch"
	"k8s.io/client-go/util/flowcontrol"
)

// PodDecoder turns the protobuf of one watch event's Pod (the bytes of a
// v1.Pod message, valid only during the call: copy what is kept) into the
// object the watch delivers.
type PodDecoder func(t watch.EventType, pod []byte) (runtime.Object, error)

// WatchPods sends the request the typed client's Pods(ns).Watch(ctx, opts)
// sends (GET, same URL, query and headers, over rc's HTTP client) and
// decodes each event's pod with decode instead of the scheme's full
// decoding: a harness's watch (the hollow nodes', the benchmark's) can
// read only the fields it needs, so its share of the process's CPU and
// heap stays small, while the API server serves exactly what it serves a
// typed client. rc is a core/v1 REST client (controller.CoreREST).
//
// Watches are not rate limited (as Request.Watch does not); a JSON answer
// (a client configured for JSON) is decoded fully and re-encoded for
// decode.
func WatchPods(ctx context.Context, rc *rest.RESTClient, ns string, opts metav1.ListOptions, decode PodDecoder) (watch.Interface, error) {
	var timeout time.Duration
	if opts.TimeoutSeconds != nil {
		timeout = time.Duration(*opts.TimeoutSeconds) * time.Second
	}
	opts.Watch = true
	body, err := rc.Get().UseProtobufAsDefault().NamespaceIfScoped(ns, ns != "").Resource("pods").
		VersionedParams(&opts, scheme.ParameterCodec).Timeout(timeout).
		Throttle(flowcontrol.NewFakeAlwaysRateLimiter()).Stream(ctx)
	if err != nil {
		return nil, err
	}
	return watch.NewStreamWatcher(&podStream{body: body, r: bufio.NewReaderSize(body, 32<<10), decode: decode},
		errors.NewClientErrorReporter(http.StatusInternalServerError, "GET", "ClientWatchDecoding")), nil
}

// podStream decodes a watch stream of pods: protobuf frames (a 4-byte
// big-endian length, then a metav1.WatchEvent message whose object is
// "k8s\x00" and a runtime.Unknown wrapping the Pod), read through one
// buffer reused from frame to frame.
type podStream struct {
	body   io.ReadCloser
	r      *bufio.Reader
	decode PodDecoder
	buf    []byte
	json   watch.Decoder // set when the server answered JSON
	probed bool
}

var protobufMagic = []byte("k8s\x00")

// typedDecoder decodes as the typed client's decoder does (no conversion,
// the kind cleared from the result).
var typedDecoder = runtime.WithoutVersionDecoder{Decoder: scheme.Codecs.UniversalDeserializer()}

func (s *podStream) Decode() (watch.EventType, runtime.Object, error) {
	if !s.probed {
		s.probed = true
		if b, err := s.r.Peek(1); err == nil && b[0] == '{' {
			info, _ := runtime.SerializerInfoForMediaType(scheme.Codecs.SupportedMediaTypes(), runtime.ContentTypeJSON)
			s.json = restclientwatch.NewDecoder(streaming.NewDecoder(json.Framer.NewFrameReader(io.NopCloser(s.r)), info.StreamSerializer.Serializer),
				typedDecoder)
		}
	}
	if s.json != nil {
		return s.decodeJSON()
	}
	var hdr [4]byte
	if _, err := io.ReadFull(s.r, hdr[:]); err != nil {
		return "", nil, err
	}
	n := int(binary.BigEndian.Uint32(hdr[:]))
	if cap(s.buf) < n {
		s.buf = make([]byte, n)
	}
	frame := s.buf[:n]
	if _, err := io.ReadFull(s.r, frame); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return "", nil, err
	}
	t, kind, obj, err := parseWatchEvent(frame)
	if err != nil {
		return "", nil, err
	}
	switch t {
	case watch.Added, watch.Modified, watch.Deleted, watch.Bookmark, watch.Error:
	default:
		return "", nil, fmt.Errorf("got invalid watch event type: %v", t)
	}
	if kind == "Pod" {
		o, err := s.decode(t, obj)
		if err != nil {
			return "", nil, fmt.Errorf("decoding a watched pod: %w", err)
		}
		return t, o, nil
	}
	// Anything else (a Status in an ERROR event) the scheme decodes.
	env, _ := fieldBytes(frame, 2)
	raw, _ := fieldBytes(env, 1)
	o, err := runtime.Decode(typedDecoder, append([]byte(nil), raw...))
	if err != nil {
		return "", nil, err
	}
	return t, o, nil
}

func (s *podStream) decodeJSON() (watch.EventType, runtime.Object, error) {
	t, o, err := s.json.Decode()
	if err != nil {
		return t, o, err
	}
	if pod, ok := o.(*v1.Pod); ok {
		b, err := pod.Marshal()
		if err != nil {
			return "", nil, err
		}
		if o, err = s.decode(t, b); err != nil {
			return "", nil, fmt.Errorf("decoding a watched pod: %w", err)
		}
	}
	return t, o, nil
}

func (s *podStream) Close() { s.body.Close() }

// parseWatchEvent splits a protobuf metav1.WatchEvent: its type, the kind
// its object names, and the object's own protobuf (aliasing frame).
func parseWatchEvent(frame []byte) (t watch.EventType, kind string, obj []byte, err error) {
	typ, ok1 := fieldBytes(frame, 1)
	ext, ok2 := fieldBytes(frame, 2)
	raw, ok3 := fieldBytes(ext, 1)
	if !ok1 || !ok2 || !ok3 || len(raw) < len(protobufMagic) || string(raw[:len(protobufMagic)]) != string(protobufMagic) {
		return "", "", nil, fmt.Errorf("malformed protobuf watch event")
	}
	unknown := raw[len(protobufMagic):]
	tm, _ := fieldBytes(unknown, 1)
	k, _ := fieldBytes(tm, 2)
	obj, _ = fieldBytes(unknown, 2)
	return watch.EventType(typ), string(k), obj, nil
}

// fieldBytes returns the contents of the last length-delimited field num
// of message b (protobuf: a repeated non-packed field's last value; the
// only one for a singular field), skipping every other field.
func fieldBytes(b []byte, num protowire.Number) ([]byte, bool) {
	var out []byte
	found := false
	for len(b) > 0 {
		n, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return nil, false
		}
		b = b[l:]
		if n == num && typ == protowire.BytesType {
			v, l := protowire.ConsumeBytes(b)
			if l < 0 {
				return nil, false
			}
			out, found = v, true
			b = b[l:]
			continue
		}
		l = protowire.ConsumeFieldValue(n, typ, b)
		if l < 0 {
			return nil, false
		}
		b = b[l:]
	}
	return out, found
}

// PodSummary decodes what the benchmark's pod observer reads of a pod:
// namespace, name, UID, resourceVersion, deletion timestamp, node name,
// the containers' names and images, and the phase (plus annotations of a
// bookmark, where a watch marks the end of its initial events). Every
// other field is left empty: the result is a summary for reading, never
// to be written back.
func PodSummary(t watch.EventType, b []byte) (runtime.Object, error) {
	pod := &v1.Pod{}
	err := eachField(b, "pod", func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		if typ != protowire.BytesType {
			return nil
		}
		switch num {
		case 1:
			return readMeta(&pod.ObjectMeta, v, t == watch.Bookmark, false)
		case 2:
			return summarySpec(&pod.Spec, v)
		case 3:
			if phase, ok := fieldBytes(v, 1); ok {
				pod.Status.Phase = v1.PodPhase(phase)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return pod, nil
}

func summarySpec(s *v1.PodSpec, b []byte) error {
	return eachField(b, "pod spec", func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		if typ != protowire.BytesType {
			return nil
		}
		switch num {
		case 2:
			name, _ := fieldBytes(v, 1)
			image, _ := fieldBytes(v, 2)
			s.Containers = append(s.Containers, v1.Container{Name: string(name), Image: string(image)})
		case 10:
			s.NodeName = string(v)
		}
		return nil
	})
}

// eachField calls fn for every length-delimited field of message b (v: its
// contents) and every varint field (x: its value), in order, skipping the
// other wire types; what names the message in errors.
func eachField(b []byte, what string, fn func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error) error {
	for len(b) > 0 {
		num, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return fmt.Errorf("malformed %s", what)
		}
		b = b[l:]
		var v []byte
		var x uint64
		switch typ {
		case protowire.BytesType:
			v, l = protowire.ConsumeBytes(b)
		case protowire.VarintType:
			x, l = protowire.ConsumeVarint(b)
		default:
			l = protowire.ConsumeFieldValue(num, typ, b)
		}
		if l < 0 {
			return fmt.Errorf("malformed %s", what)
		}
		b = b[l:]
		if typ == protowire.BytesType || typ == protowire.VarintType {
			if err := fn(num, typ, v, x); err != nil {
				return err
			}
		}
	}
	return nil
}
