package apiserver

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/apimachinery/pkg/watch"

	"skiff.dev/skiff/internal/registry/generic"
)

// serveWatch streams watch events. Objects are encoded once per event and
// content type and shared by every watcher (see encodeCache), so a write
// seen by 100 watchers is serialised once.
func (s *Server) serveWatch(w http.ResponseWriter, r *http.Request, ri *RequestInfo, st *generic.Store) {
	q := queryOf(r)
	opts, err := parseListOrWatchOptions(q, true)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if ri.Name != "" {
		sel := fields.OneTermEqualSelector("metadata.name", ri.Name)
		if opts.Fields != nil && !opts.Fields.Empty() {
			sel = fields.AndSelectors(sel, opts.Fields)
		}
		opts.Fields = sel
	}
	mc, err := s.neg.output(r, outputTable, outputPartialMetadata)
	if err != nil {
		s.writeError(w, r, apierrors.NewGenericServerResponse(http.StatusNotAcceptable, "", st.R.GroupResource(), "", err.Error(), 0, false))
		return
	}
	var sendInitial *bool
	if v := q.Get("sendInitialEvents"); v != "" {
		b := isTrue(v)
		sendInitial = &b
		if b && opts.ResourceVersionMatch != metav1.ResourceVersionMatchNotOlderThan {
			s.writeError(w, r, apierrors.NewBadRequest("sendInitialEvents: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"))
			return
		}
	}
	timeout := time.Duration(30+rand.IntN(30)) * time.Minute
	if t := q.Get("timeoutSeconds"); t != "" {
		n, err := strconv.ParseInt(t, 10, 64)
		if err != nil || n < 0 {
			s.writeError(w, r, apierrors.NewBadRequest(fmt.Sprintf("invalid timeoutSeconds %q", t)))
			return
		}
		timeout = time.Duration(n) * time.Second
	}
	wi, err := st.Watch(r.Context(), ri.Namespace, opts, isTrue(q.Get("allowWatchBookmarks")), sendInitial)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer wi.Stop()

	flusher, _ := w.(http.Flusher)
	protobuf := mc.info.MediaType == mediaProtobuf
	ct := mc.info.MediaType
	if !protobuf {
		ct = mediaJSON
	}
	if protobuf {
		ct = mediaProtobuf + ";stream=watch"
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Transfer-Encoding", "chunked")
	w.WriteHeader(http.StatusOK)
	if flusher != nil {
		flusher.Flush()
	}
	f := watchFormat{mc: mc}
	// Events are framed into batch, and the events already waiting when
	// one arrives join it (up to maxWatchBatch bytes): the batch reaches
	// the ResponseWriter as one write and one flush. Over HTTP/2 each
	// flush, and each time the handler's 4 KiB buffer fills, hands the
	// connection a DATA chunk that it writes and, with nothing else
	// queued, flushes at once (a TLS record and a write syscall): sent
	// one by one, a burst of events costs that per event or per 4 KiB;
	// batched, once per 16 KiB record. The bytes and their order are
	// the same.
	var batch bytes.Buffer
	if sf := mc.info.StreamSerializer; protobuf && sf != nil {
		f.streamEnc, f.framer = sf.Serializer, sf.Framer
	}
	first := true
	add := func(ev watch.Event) bool {
		if err := s.appendWatchEvent(r, &f, st, ev, first, &batch); err != nil {
			s.log.Error("encoding watch event", "err", err)
			return false
		}
		if ev.Type != watch.Bookmark && ev.Type != watch.Error {
			first = false
		}
		return true
	}
	send := func() bool {
		_, err := w.Write(batch.Bytes())
		batch.Reset()
		if err != nil {
			return false
		}
		if flusher != nil {
			flusher.Flush()
		}
		return true
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	ch := wi.ResultChan()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-timer.C:
			return
		case ev, ok := <-ch:
			if !ok {
				return
			}
			// go on: the stream goes on after this batch (false when
			// the channel closed or an event failed to encode: the
			// events before it are still sent).
			goOn := add(ev)
		more:
			for goOn && batch.Len() < maxWatchBatch {
				select {
				case ev, goOn = <-ch:
					if goOn {
						goOn = add(ev)
					}
				default:
					break more
				}
			}
			if !send() || !goOn {
				return
			}
		}
	}
}

// maxWatchBatch bounds the bytes of events a watch stream writes at once.
const maxWatchBatch = 64 << 10

// watchFormat is how a watch stream encodes its events.
type watchFormat struct {
	mc mediaChoice
	// streamEnc encodes a protobuf stream's metav1.WatchEvent and framer
	// frames it (both nil: the stream is JSON lines).
	streamEnc runtime.Encoder
	framer    runtime.Framer
}

// appendWatchEvent appends ev to dst as the stream carries it: a framed
// protobuf WatchEvent or a JSON line. The object is encoded once per
// content type and shared by every watcher where its form does not depend
// on the watcher (not a Table, see encodeWatchObject); the event around
// it is framed straight into dst, without a copy of its own.
func (s *Server) appendWatchEvent(r *http.Request, f *watchFormat, st *generic.Store, ev watch.Event, first bool, dst *bytes.Buffer) error {
	raw, err := s.encodeWatchObject(r, f.mc, st, ev, first)
	if err != nil {
		return err
	}
	return f.appendFrame(dst, ev.Type, raw)
}

// appendFrame appends the event of type t with the encoded object raw to
// dst, framed.
func (f *watchFormat) appendFrame(dst *bytes.Buffer, t watch.EventType, raw []byte) error {
	if f.streamEnc == nil {
		return f.frame(dst, t, raw)
	}
	if raw != nil && f.framer == protobuf.LengthDelimitedFramer {
		// The length-delimited framer's frame: a big-endian uint32
		// length, then the message.
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(watchEventProtoSize(string(t), len(raw))))
		dst.Write(n[:])
		appendWatchEventProto(dst, string(t), raw)
		return nil
	}
	var msg bytes.Buffer
	if err := f.frame(&msg, t, raw); err != nil {
		return err
	}
	_, err := f.framer.NewFrameWriter(dst).Write(msg.Bytes())
	return err
}

// frame writes the event of type t with the encoded object raw to b.
func (f *watchFormat) frame(b *bytes.Buffer, t watch.EventType, raw []byte) error {
	if f.streamEnc != nil {
		if raw == nil {
			return f.streamEnc.Encode(&metav1.WatchEvent{Type: string(t), Object: runtime.RawExtension{Raw: raw}}, b)
		}
		appendWatchEventProto(b, string(t), raw)
		return nil
	}
	b.WriteString(`{"type":"`)
	b.WriteString(string(t))
	b.WriteString(`","object":`)
	b.Write(bytes.TrimRight(raw, "\n"))
	b.WriteString("}\n")
	return nil
}

// appendWatchEventProto writes the protobuf encoding of
// metav1.WatchEvent{Type: t, Object: RawExtension{Raw: raw}} (raw not nil)
// to b as its generated marshaller does (type, then the object's raw
// bytes), in one exactly sized copy: the marshaller sizes and fills a
// slice of its own that the buffer then copies again, for a message that
// is all a copy of raw.
func appendWatchEventProto(b *bytes.Buffer, t string, raw []byte) {
	ext := 1 + uvarintLen(len(raw)) + len(raw) // RawExtension{Raw: raw}
	b.Grow(watchEventProtoSize(t, len(raw)))
	var tmp [binary.MaxVarintLen64]byte
	b.WriteByte(1<<3 | 2) // WatchEvent.type
	b.Write(binary.AppendUvarint(tmp[:0], uint64(len(t))))
	b.WriteString(t)
	b.WriteByte(2<<3 | 2) // WatchEvent.object
	b.Write(binary.AppendUvarint(tmp[:0], uint64(ext)))
	b.WriteByte(1<<3 | 2) // RawExtension.raw
	b.Write(binary.AppendUvarint(tmp[:0], uint64(len(raw))))
	b.Write(raw)
}

// watchEventProtoSize is the size of what appendWatchEventProto writes.
func watchEventProtoSize(t string, rawLen int) int {
	ext := 1 + uvarintLen(rawLen) + rawLen
	return 1 + uvarintLen(len(t)) + len(t) + 1 + uvarintLen(ext) + ext
}

func uvarintLen(n int) int {
	l := 1
	for ; n >= 0x80; n >>= 7 {
		l++
	}
	return l
}

// encodeWatchObject encodes the event's object in the negotiated form,
// sharing the bytes across watchers where the form is watcher-independent.
func (s *Server) encodeWatchObject(r *http.Request, mc mediaChoice, st *generic.Store, ev watch.Event, first bool) ([]byte, error) {
	obj := ev.Object
	if ev.Type == watch.Error {
		if st, ok := obj.(*metav1.Status); ok {
			st.SetGroupVersionKind(statusGVK)
		}
		var b bytes.Buffer
		err := mc.info.Serializer.Encode(obj, &b)
		return b.Bytes(), err
	}
	if ev.Type == watch.Bookmark && obj.GetObjectKind().GroupVersionKind().Empty() {
		// Bookmarks from the cache carry only a resourceVersion; clients
		// decoding unstructured events need the kind.
		obj = obj.DeepCopyObject()
		obj.GetObjectKind().SetGroupVersionKind(st.R.GroupVersionKind())
		ev.Object = obj
	}
	switch mc.kind {
	case outputTable:
		if ev.Type == watch.Bookmark {
			t := &metav1.Table{}
			t.SetGroupVersionKind(tableGVK)
			t.ResourceVersion = objectRV(obj)
			var b bytes.Buffer
			err := mc.info.Serializer.Encode(t, &b)
			return b.Bytes(), err
		}
		t, err := s.toTable(st.R, obj, metav1.IncludeObjectPolicy(queryOf(r).Get("includeObject")), first)
		if err != nil {
			return nil, err
		}
		var b bytes.Buffer
		err = mc.info.Serializer.Encode(t, &b)
		return b.Bytes(), err
	case outputPartialMetadata:
		return watchEncodeCache.encode(encodeKey{obj: obj, ct: mc.info.MediaType, kind: outputPartialMetadata}, func(b *bytes.Buffer) error {
			p, err := toPartial(obj)
			if err != nil {
				return err
			}
			return mc.info.Serializer.Encode(p, b)
		})
	}
	k := encodeKey{obj: obj, ct: mc.info.MediaType}
	if mc.info.MediaType == mediaProtobuf && ev.Type != watch.Bookmark {
		return watchEncodeCache.encodeBytes(k, func() ([]byte, error) {
			if b, ok := splicedProtobuf(st, mc.info.Serializer, obj); ok {
				return b, nil
			}
			var b bytes.Buffer
			err := mc.info.Serializer.Encode(obj, &b)
			return b.Bytes(), err
		})
	}
	return watchEncodeCache.encode(k, func(b *bytes.Buffer) error {
		return mc.info.Serializer.Encode(obj, b)
	})
}

func objectRV(obj runtime.Object) string {
	if m, ok := obj.(metav1.Object); ok {
		return m.GetResourceVersion()
	}
	return ""
}

// encodeCache remembers the encoding of recently seen watch objects by
// pointer identity: the watch cache hands the same object to every
// watcher, so the first watcher encodes and the others copy it into
// their events (of whatever type: a pod leaving one watcher's selector is
// a DELETED there and a MODIFIED elsewhere).
type encodeCache struct {
	mu    sync.Mutex
	m     map[encodeKey][]byte
	order []encodeKey
	next  int
}

type encodeKey struct {
	obj  runtime.Object
	ct   string     // media type
	kind outputKind // outputObject or outputPartialMetadata
}

// watchEncodeCache holds the encodings of the last 8192 objects.
var watchEncodeCache = newEncodeCache(8192)

func newEncodeCache(n int) *encodeCache {
	return &encodeCache{m: make(map[encodeKey][]byte, n), order: make([]encodeKey, n)}
}

func (c *encodeCache) encode(k encodeKey, enc func(*bytes.Buffer) error) ([]byte, error) {
	return c.encodeBytes(k, func() ([]byte, error) {
		var buf bytes.Buffer
		err := enc(&buf)
		return buf.Bytes(), err
	})
}

// encodeBytes is encode for an encoder that returns its own slice (kept
// as it is: it must not be modified afterwards).
func (c *encodeCache) encodeBytes(k encodeKey, enc func() ([]byte, error)) ([]byte, error) {
	c.mu.Lock()
	if b, ok := c.m[k]; ok {
		c.mu.Unlock()
		return b, nil
	}
	c.mu.Unlock()
	b, err := enc()
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if old := c.order[c.next]; old.obj != nil {
		delete(c.m, old)
	}
	c.order[c.next] = k
	c.next = (c.next + 1) % len(c.order)
	c.m[k] = b
	c.mu.Unlock()
	return b, nil
}
