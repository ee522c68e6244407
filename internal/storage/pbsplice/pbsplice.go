// Package pbsplice turns the bytes etcd holds for an object into the
// bytes the API's protobuf encoder would write for it, without decoding
// or encoding the object.
//
// Skiff stores objects with the Kubernetes protobuf encoding ("k8s\x00"
// followed by a runtime.Unknown whose TypeMeta names the kind and whose
// Raw is the object's own protobuf) and with metadata.resourceVersion
// cleared: the version is the etcd revision, set on decode. A protobuf
// client receives exactly that encoding again, with the resourceVersion
// filled in. The generated marshallers write fields in number order and
// always write ObjectMeta's string fields, so the stored object carries an
// empty field 6 (resourceVersion) of ObjectMeta (field 1 of the object):
// replacing it and the three length prefixes that enclose it (ObjectMeta,
// the object, Unknown.Raw) gives the encoder's output for the decoded
// object. That is a copy instead of a walk over every field.
//
// Contract: Splice returns ok only when the stored bytes have exactly the
// shape the protobuf serializer writes (prefix, TypeMeta, Raw, empty
// content encoding and type, nothing else), the TypeMeta names the kind the
// encoder would write for obj, obj's Go type carries ObjectMeta as
// protobuf field 1, and the result has the size obj's own marshaller
// computes for obj (so stored fields that obj's type does not know, which
// decoding drops, make it refuse). It is correct only when obj was decoded
// from (or encoded into) stored and not modified since, except for its
// resourceVersion; callers guarantee that by object identity. On !ok the
// caller encodes obj as usual.
package pbsplice

import (
	"encoding/binary"
	"reflect"
	"strconv"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// prefix starts every Kubernetes protobuf encoding.
var prefix = []byte{'k', '8', 's', 0}

// Protobuf tags (field number << 3 | wire type 2) the splice reads.
const (
	tagField1 = 1<<3 | 2 // TypeMeta in Unknown, apiVersion in TypeMeta, ObjectMeta in an object
	tagField2 = 2<<3 | 2 // Raw in Unknown, kind in TypeMeta
	tagField3 = 3<<3 | 2 // ContentEncoding in Unknown
	tagField4 = 4<<3 | 2 // ContentType in Unknown
	tagRV     = 6<<3 | 2 // resourceVersion in ObjectMeta
)

// sizer is what generated protobuf types implement.
type sizer interface {
	Size() int
}

// Splice returns the protobuf encoding of obj, which must be the object
// decoded from stored with its resourceVersion (possibly) set, built from
// stored. ok is false when that cannot be shown to be identical to
// encoding obj (see the package contract); the result is then nil.
func Splice(stored []byte, obj runtime.Object) ([]byte, bool) {
	m, isMeta := obj.(metav1.Object)
	sz, isSizer := obj.(sizer)
	if !isMeta || !isSizer || !metaIsField1(obj) {
		return nil, false
	}
	gvk := obj.GetObjectKind().GroupVersionKind()
	out, n, ok := splice(stored, gvk, m.GetResourceVersion())
	if !ok {
		return nil, false
	}
	// The object's own size is the final check: anything in stored that
	// obj does not hold (unknown fields) or holds differently in length
	// shows up here, at the cost of a size walk rather than a marshal.
	if n != sz.Size() {
		return nil, false
	}
	return out, true
}

// splice builds the encoding with resourceVersion rv from stored,
// checking its shape and that its TypeMeta is gvk's. rawLen is the
// length of the object's own encoding in it.
func splice(stored []byte, gvk schema.GroupVersionKind, rv string) (out []byte, rawLen int, ok bool) {
	if len(stored) < len(prefix) || string(stored[:len(prefix)]) != string(prefix) {
		return nil, 0, false
	}
	p := stored[len(prefix):]
	// Unknown.TypeMeta
	tm, p, ok := field(p, tagField1)
	if !ok || !typeMetaIs(tm, gvk) {
		return nil, 0, false
	}
	tmEnd := len(stored) - len(p)
	// Unknown.Raw
	raw, p, ok := field(p, tagField2)
	if !ok {
		return nil, 0, false
	}
	// Empty ContentEncoding and ContentType, then the end.
	if len(p) != 4 || p[0] != tagField3 || p[1] != 0 || p[2] != tagField4 || p[3] != 0 {
		return nil, 0, false
	}
	// Raw starts with ObjectMeta.
	meta, afterMeta, ok := field(raw, tagField1)
	if !ok {
		return nil, 0, false
	}
	before, after, ok := aroundRV(meta)
	if !ok {
		return nil, 0, false
	}
	// The generated marshaller writes resourceVersion even when empty.
	newMetaLen := len(before) + 1 + uvarintLen(uint64(len(rv))) + len(rv) + len(after)
	newRawLen := 1 + uvarintLen(uint64(newMetaLen)) + newMetaLen + len(afterMeta)
	total := tmEnd + 1 + uvarintLen(uint64(newRawLen)) + newRawLen + 4
	out = make([]byte, 0, total)
	out = append(out, stored[:tmEnd]...)
	out = append(out, tagField2)
	out = binary.AppendUvarint(out, uint64(newRawLen))
	out = append(out, tagField1)
	out = binary.AppendUvarint(out, uint64(newMetaLen))
	out = append(out, before...)
	out = append(out, tagRV)
	out = binary.AppendUvarint(out, uint64(len(rv)))
	out = append(out, rv...)
	out = append(out, after...)
	out = append(out, afterMeta...)
	out = append(out, tagField3, 0, tagField4, 0)
	return out, newRawLen, true
}

// field reads a length-delimited field with tag (a one-byte tag) at the
// start of p and returns its contents and what follows.
func field(p []byte, tag byte) (contents, rest []byte, ok bool) {
	if len(p) == 0 || p[0] != tag {
		return nil, nil, false
	}
	n, w := binary.Uvarint(p[1:])
	if w <= 0 || n > uint64(len(p)-1-w) {
		return nil, nil, false
	}
	start := 1 + w
	return p[start : start+int(n)], p[start+int(n):], true
}

// typeMetaIs reports whether the encoded runtime.TypeMeta tm is exactly
// what the encoder writes for gvk: apiVersion then kind.
func typeMetaIs(tm []byte, gvk schema.GroupVersionKind) bool {
	av, rest, ok := field(tm, tagField1)
	if !ok {
		return false
	}
	kind, rest, ok := field(rest, tagField2)
	if !ok || len(rest) != 0 || string(kind) != gvk.Kind {
		return false
	}
	if gvk.Group == "" {
		return string(av) == gvk.Version
	}
	if gvk.Version == "" {
		return string(av) == gvk.Group
	}
	return len(av) == len(gvk.Group)+1+len(gvk.Version) &&
		string(av[:len(gvk.Group)]) == gvk.Group && av[len(gvk.Group)] == '/' &&
		string(av[len(gvk.Group)+1:]) == gvk.Version
}

// aroundRV splits the encoded ObjectMeta meta around its resourceVersion
// field: the fields before it and the fields after it (the field itself,
// when present, is in neither). It walks the fields to find the place,
// since fields are in number order.
func aroundRV(meta []byte) (before, after []byte, ok bool) {
	i := 0
	for i < len(meta) {
		key, w := binary.Uvarint(meta[i:])
		if w <= 0 {
			return nil, nil, false
		}
		num := key >> 3
		if num == 6 {
			if key&7 != 2 {
				return nil, nil, false
			}
			_, rest, ok := field(meta[i:], tagRV)
			if !ok {
				return nil, nil, false
			}
			return meta[:i], rest, true
		}
		if num > 6 {
			return meta[:i], meta[i:], true
		}
		n, ok := skipField(meta[i+w:], key&7)
		if !ok {
			return nil, nil, false
		}
		i += w + n
	}
	return meta, nil, true
}

// skipField returns the length of a field's value of wire type wt at the
// start of p.
func skipField(p []byte, wt uint64) (int, bool) {
	switch wt {
	case 0: // varint
		_, w := binary.Uvarint(p)
		return w, w > 0
	case 1: // 64-bit
		return 8, len(p) >= 8
	case 2: // length-delimited
		n, w := binary.Uvarint(p)
		if w <= 0 || n > uint64(len(p)-w) {
			return 0, false
		}
		return w + int(n), true
	case 5: // 32-bit
		return 4, len(p) >= 4
	}
	return 0, false
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

// metaFields remembers, per Go type, whether its protobuf field 1 is an
// embedded metav1.ObjectMeta.
var metaFields sync.Map // reflect.Type → bool

var objectMetaType = reflect.TypeOf(metav1.ObjectMeta{})

func metaIsField1(obj runtime.Object) bool {
	t := reflect.TypeOf(obj)
	if v, ok := metaFields.Load(t); ok {
		return v.(bool)
	}
	ok := false
	if t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct {
		st := t.Elem()
		for i := 0; i < st.NumField(); i++ {
			f := st.Field(i)
			if f.Type == objectMetaType && protobufNumber(f.Tag.Get("protobuf")) == 1 {
				ok = true
				break
			}
		}
	}
	metaFields.Store(t, ok)
	return ok
}

// protobufNumber reads the field number from a protobuf struct tag
// ("bytes,1,opt,name=metadata").
func protobufNumber(tag string) int {
	for i := 0; i < len(tag); i++ {
		if tag[i] != ',' {
			continue
		}
		j := i + 1
		for j < len(tag) && tag[j] != ',' {
			j++
		}
		n, err := strconv.Atoi(tag[i+1 : j])
		if err != nil {
			return 0
		}
		return n
	}
	return 0
}
