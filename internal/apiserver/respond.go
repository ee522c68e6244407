package apiserver

import (
	"bytes"
	stdjson "encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"skiff.dev/skiff/internal/registry"
)

var (
	statusGVK       = schema.GroupVersionKind{Version: "v1", Kind: "Status"}
	tableGVK        = metav1.SchemeGroupVersion.WithKind("Table")
	partialGVK      = metav1.SchemeGroupVersion.WithKind("PartialObjectMetadata")
	partialListGVK  = metav1.SchemeGroupVersion.WithKind("PartialObjectMetadataList")
	bufPool         = make(chan *bytes.Buffer, 64)
	defaultTimezone = time.UTC
)

func schemaGR(resource string) schema.GroupResource { return schema.GroupResource{Resource: resource} }

func getBuf() *bytes.Buffer {
	select {
	case b := <-bufPool:
		b.Reset()
		return b
	default:
		return new(bytes.Buffer)
	}
}

func putBuf(b *bytes.Buffer) {
	if b.Cap() > 1<<20 {
		return
	}
	select {
	case bufPool <- b:
	default:
	}
}

// writeError writes err as a metav1.Status with its code.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	st := statusFor(err)
	st.Kind, st.APIVersion = "Status", "v1"
	code := int(st.Code)
	if code == 0 {
		code = http.StatusInternalServerError
		st.Code = int32(code)
	}
	if code == http.StatusInternalServerError {
		// Internal errors are bugs or storage trouble: leave a trace of
		// which request hit one (the 500s in the controller benchmark
		// were invisible without it).
		s.log.Warn("internal error answering request", "method", r.Method, "path", r.URL.Path, "reason", st.Reason, "err", st.Message)
	}
	if st.Details != nil && st.Details.RetryAfterSeconds > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(st.Details.RetryAfterSeconds)))
	}
	// Errors are JSON unless the client asked only for protobuf.
	info := s.neg.byType[mediaJSON]
	if mc, err := s.neg.output(r); err == nil && mc.info.MediaType == mediaProtobuf {
		info = mc.info
	}
	s.writeRaw(w, code, info.MediaType, info.Serializer, st)
}

// writeRaw encodes obj with enc.
func (s *Server) writeRaw(w http.ResponseWriter, code int, mediaType string, enc runtime.Encoder, obj runtime.Object) {
	buf := getBuf()
	defer putBuf(buf)
	if err := enc.Encode(obj, buf); err != nil {
		s.log.Error("encoding response", "err", err, "type", fmt.Sprintf("%T", obj))
		http.Error(w, "encoding response: "+err.Error(), http.StatusInternalServerError)
		return
	}
	writeBytes(w, code, mediaType, buf.Bytes())
}

// writeObject negotiates and writes an API object (or list), turning it
// into a Table or PartialObjectMetadata when the client asked for one.
func (s *Server) writeObject(w http.ResponseWriter, r *http.Request, code int, res *registry.Resource, obj runtime.Object) {
	mc, err := s.neg.output(r, outputTable, outputPartialMetadata)
	if err != nil {
		s.writeError(w, r, apierrors.NewGenericServerResponse(http.StatusNotAcceptable, "", schema.GroupResource{}, "", err.Error(), 0, false))
		return
	}
	if mc.kind == outputObject && mc.info.MediaType == mediaProtobuf && res != nil {
		if b, ok := splicedProtobuf(s.stores[storeKey(res.GroupVersion, res.Resource)], mc.info.Serializer, obj); ok {
			writeBytes(w, code, mc.info.MediaType, b)
			return
		}
	}
	out, err := s.transform(r, mc.kind, res, obj)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeRaw(w, code, mc.info.MediaType, mc.info.Serializer, out)
}

// writeBytes writes an encoded response.
func writeBytes(w http.ResponseWriter, code int, mediaType string, b []byte) {
	w.Header().Set("Content-Type", mediaType)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

// transform converts obj to the requested output shape.
func (s *Server) transform(r *http.Request, kind outputKind, res *registry.Resource, obj runtime.Object) (runtime.Object, error) {
	switch kind {
	case outputTable:
		if res == nil {
			return obj, nil
		}
		includeObject := metav1.IncludeObjectPolicy(queryOf(r).Get("includeObject"))
		return s.toTable(res, obj, includeObject, true)
	case outputPartialMetadata:
		return toPartial(obj)
	}
	return obj, nil
}

func toPartial(obj runtime.Object) (runtime.Object, error) {
	if meta.IsListType(obj) {
		items, err := meta.ExtractList(obj)
		if err != nil {
			return nil, err
		}
		lm, _ := meta.ListAccessor(obj)
		out := &metav1.PartialObjectMetadataList{Items: make([]metav1.PartialObjectMetadata, 0, len(items))}
		out.SetGroupVersionKind(partialListGVK)
		out.ResourceVersion = lm.GetResourceVersion()
		out.Continue = lm.GetContinue()
		out.RemainingItemCount = lm.GetRemainingItemCount()
		for _, it := range items {
			m, err := meta.Accessor(it)
			if err != nil {
				return nil, err
			}
			out.Items = append(out.Items, *partialOf(m))
		}
		return out, nil
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, err
	}
	p := partialOf(m)
	p.SetGroupVersionKind(partialGVK)
	return p, nil
}

func partialOf(m metav1.Object) *metav1.PartialObjectMetadata {
	p := &metav1.PartialObjectMetadata{}
	p.SetGroupVersionKind(partialGVK)
	p.ObjectMeta = metav1.ObjectMeta{
		Name: m.GetName(), GenerateName: m.GetGenerateName(), Namespace: m.GetNamespace(),
		UID: m.GetUID(), ResourceVersion: m.GetResourceVersion(), Generation: m.GetGeneration(),
		CreationTimestamp: m.GetCreationTimestamp(), DeletionTimestamp: m.GetDeletionTimestamp(),
		DeletionGracePeriodSeconds: m.GetDeletionGracePeriodSeconds(), Labels: m.GetLabels(),
		Annotations: m.GetAnnotations(), OwnerReferences: m.GetOwnerReferences(),
		Finalizers: m.GetFinalizers(), ManagedFields: m.GetManagedFields(),
	}
	return p
}

// toTable renders obj (an object or a list) as a metav1.Table.
func (s *Server) toTable(res *registry.Resource, obj runtime.Object, include metav1.IncludeObjectPolicy, withColumns bool) (*metav1.Table, error) {
	if include == "" {
		include = metav1.IncludeMetadata
	}
	switch include {
	case metav1.IncludeMetadata, metav1.IncludeObject, metav1.IncludeNone:
	default:
		return nil, apierrors.NewBadRequest(fmt.Sprintf("includeObject: Unsupported value: %q", include))
	}
	t := &metav1.Table{}
	t.SetGroupVersionKind(tableGVK)
	cols, row := res.TableColumns, res.TableRow
	if row == nil {
		cols = []metav1.TableColumnDefinition{
			{Name: "Name", Type: "string", Format: "name", Description: metav1.ObjectMeta{}.SwaggerDoc()["name"]},
			{Name: "Created At", Type: "date", Description: metav1.ObjectMeta{}.SwaggerDoc()["creationTimestamp"]},
		}
		row = func(o runtime.Object) []interface{} {
			m, _ := meta.Accessor(o)
			return []interface{}{m.GetName(), m.GetCreationTimestamp().UTC().Format(time.RFC3339)}
		}
	}
	if withColumns {
		t.ColumnDefinitions = cols
	}
	var items []runtime.Object
	if meta.IsListType(obj) {
		var err error
		items, err = meta.ExtractList(obj)
		if err != nil {
			return nil, err
		}
		lm, _ := meta.ListAccessor(obj)
		t.ResourceVersion = lm.GetResourceVersion()
		t.Continue = lm.GetContinue()
		t.RemainingItemCount = lm.GetRemainingItemCount()
	} else {
		items = []runtime.Object{obj}
		m, _ := meta.Accessor(obj)
		t.ResourceVersion = m.GetResourceVersion()
	}
	t.Rows = make([]metav1.TableRow, 0, len(items))
	for _, it := range items {
		tr := metav1.TableRow{Cells: row(it)}
		switch include {
		case metav1.IncludeObject:
			it.GetObjectKind().SetGroupVersionKind(res.GroupVersionKind())
			tr.Object = runtime.RawExtension{Object: it}
		case metav1.IncludeMetadata:
			m, _ := meta.Accessor(it)
			tr.Object = runtime.RawExtension{Object: partialOf(m)}
		}
		t.Rows = append(t.Rows, tr)
	}
	return t, nil
}

// readBody reads a request body with the 3 MiB limit.
func readBody(r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	if r.ContentLength > MaxRequestBodyBytes {
		return nil, apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("limit is %d", MaxRequestBodyBytes))
	}
	b, err := readAll(io.LimitReader(r.Body, MaxRequestBodyBytes+1), r.ContentLength)
	if err != nil {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("reading request body: %v", err))
	}
	if len(b) > MaxRequestBodyBytes {
		return nil, apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("limit is %d", MaxRequestBodyBytes))
	}
	return b, nil
}

// readAll is io.ReadAll starting with room for a body of the declared
// length and one more byte (to see the end without growing), instead of
// growing from 512 bytes by copies.
func readAll(r io.Reader, length int64) ([]byte, error) {
	if length <= 0 || length > MaxRequestBodyBytes {
		return io.ReadAll(r)
	}
	b := make([]byte, 0, length+1)
	for {
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
		if len(b) == cap(b) {
			// Longer than declared: let append grow it.
			b = append(b, 0)[:len(b)]
		}
	}
}

// writeStatusOK writes a success Status (deletes that return no object).
func (s *Server) writeStatusOK(w http.ResponseWriter, r *http.Request, res *registry.Resource, name string, uid string) {
	st := &metav1.Status{Status: metav1.StatusSuccess, Details: &metav1.StatusDetails{
		Name: name, Group: res.GroupVersion.Group, Kind: res.Resource, UID: typesUID(uid),
	}}
	st.SetGroupVersionKind(statusGVK)
	mc, err := s.neg.output(r, outputTable, outputPartialMetadata)
	if err != nil {
		mc.info = s.neg.byType[mediaJSON]
	}
	s.writeRaw(w, http.StatusOK, mc.info.MediaType, mc.info.Serializer, st)
}

func jsonMarshal(v interface{}) ([]byte, error)   { return stdjson.Marshal(v) }
func jsonUnmarshal(b []byte, v interface{}) error { return stdjson.Unmarshal(b, v) }
