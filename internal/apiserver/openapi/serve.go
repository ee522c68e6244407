package openapi

import (
	"bytes"
	"compress/gzip"
	"crypto/sha512"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/munnerz/goautoneg"
	"k8s.io/kube-openapi/pkg/handler"
	"k8s.io/kube-openapi/pkg/handler3"
)

// The media types kubectl and client-go ask for. Both spellings of the
// protobuf types are accepted; the answer uses the non-deprecated one,
// as kube-openapi's handlers do.
const (
	mediaJSON         = "application/json"
	subtypeV2Proto    = "com.github.proto-openapi.spec.v2.v1.0+protobuf"
	subtypeV2ProtoOld = "com.github.proto-openapi.spec.v2@v1.0+protobuf"
	subtypeV3Proto    = "com.github.proto-openapi.spec.v3.v1.0+protobuf"
	subtypeV3ProtoOld = "com.github.proto-openapi.spec.v3@v1.0+protobuf"
)

// blob is one serialized document, kept gzip-compressed: the documents
// are served rarely (kubectl caches them by ETag) and are ~10x smaller
// compressed, so the server keeps about 1 MB instead of the ~30 MB the
// spec objects and their JSON and protobuf forms take.
type blob struct {
	gz   []byte
	size int // uncompressed length
}

func compress(b []byte) (blob, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return blob{}, err
	}
	if _, err := zw.Write(b); err != nil {
		return blob{}, err
	}
	if err := zw.Close(); err != nil {
		return blob{}, err
	}
	return blob{gz: bytes.Clone(buf.Bytes()), size: len(b)}, nil
}

// document is one document in JSON and protobuf, with the ETag both share
// (upstream derives it from the JSON form).
type document struct {
	etag  string
	json  blob
	proto blob
}

func newDocument(js []byte, toProto func([]byte) ([]byte, error)) (document, error) {
	pb, err := toProto(js)
	if err != nil {
		return document{}, fmt.Errorf("converting to protobuf: %w", err)
	}
	d := document{etag: fmt.Sprintf("%X", sha512.Sum512(js))}
	if d.json, err = compress(js); err != nil {
		return document{}, err
	}
	if d.proto, err = compress(pb); err != nil {
		return document{}, err
	}
	return d, nil
}

// served is everything the handlers answer with, built once.
type served struct {
	v2        document
	v3        map[string]document // by group version path ("apis/apps/v1")
	discovery document            // /openapi/v3 (JSON only)
	modTime   time.Time
}

// serialize turns built documents into their served forms. The spec
// objects are dropped afterwards.
func serialize(docs *Documents) (*served, error) {
	out := &served{v3: make(map[string]document, len(docs.V3)), modTime: time.Now()}
	js, err := docs.V2.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("encoding the v2 document: %w", err)
	}
	if out.v2, err = newDocument(js, handler.ToProtoBinary); err != nil {
		return nil, fmt.Errorf("the v2 document: %w", err)
	}
	disco := handler3.OpenAPIV3Discovery{Paths: map[string]handler3.OpenAPIV3DiscoveryGroupVersion{}}
	for gv, doc := range docs.V3 {
		js, err := json.Marshal(doc)
		if err != nil {
			return nil, fmt.Errorf("encoding the v3 document of %s: %w", gv, err)
		}
		d, err := newDocument(js, handler3.ToV3ProtoBinary)
		if err != nil {
			return nil, fmt.Errorf("the v3 document of %s: %w", gv, err)
		}
		out.v3[gv] = d
		disco.Paths[gv] = handler3.OpenAPIV3DiscoveryGroupVersion{ServerRelativeURL: v3URL(gv, d.etag)}
	}
	js, err = json.Marshal(disco)
	if err != nil {
		return nil, fmt.Errorf("encoding the v3 discovery document: %w", err)
	}
	out.discovery.etag = fmt.Sprintf("%X", sha512.Sum512(js))
	if out.discovery.json, err = compress(js); err != nil {
		return nil, err
	}
	return out, nil
}

func v3URL(gv, etag string) string {
	u := url.URL{Path: path.Join("/openapi/v3", gv), RawQuery: url.Values{"hash": {etag}}.Encode()}
	return u.String()
}

// negotiate picks the representation for an Accept header: "json",
// "proto" or "" (nothing acceptable).
func negotiate(accept, protoSubtype, protoSubtypeOld string) string {
	if accept == "" {
		accept = "*/*"
	}
	for _, c := range goautoneg.ParseAccept(accept) {
		if c.Type != "application" && c.Type != "*" {
			continue
		}
		switch c.SubType {
		case "json", "*":
			return "json"
		case protoSubtype, protoSubtypeOld:
			return "proto"
		}
	}
	return ""
}

// write answers with b: 304 when the client holds etag, the compressed
// bytes when it accepts gzip, else the bytes inflated on the fly.
func write(w http.ResponseWriter, r *http.Request, b blob, etag, contentType string, modTime time.Time) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Etag", strconv.Quote(etag))
	h.Add("Vary", "Accept-Encoding")
	h.Set("Last-Modified", modTime.UTC().Format(http.TimeFormat))
	if inm := r.Header.Get("If-None-Match"); inm != "" && etagMatches(inm, etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if acceptsGzip(r.Header.Get("Accept-Encoding")) {
		h.Set("Content-Encoding", "gzip")
		h.Set("Content-Length", strconv.Itoa(len(b.gz)))
		if r.Method != http.MethodHead {
			_, _ = w.Write(b.gz)
		}
		return
	}
	h.Set("Content-Length", strconv.Itoa(b.size))
	if r.Method == http.MethodHead {
		return
	}
	zr, err := gzip.NewReader(bytes.NewReader(b.gz))
	if err != nil {
		http.Error(w, "openapi document corrupt", http.StatusInternalServerError)
		return
	}
	_, _ = io.Copy(w, zr)
}

func etagMatches(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(t)
		t = strings.TrimPrefix(t, "W/")
		if t == "*" || t == strconv.Quote(etag) {
			return true
		}
	}
	return false
}

func acceptsGzip(header string) bool {
	for _, part := range strings.Split(header, ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(coding), "gzip") {
			continue
		}
		// "gzip;q=0" refuses it.
		if q, ok := strings.CutPrefix(strings.ReplaceAll(params, " ", ""), "q="); ok {
			if v, err := strconv.ParseFloat(q, 64); err == nil && v == 0 {
				return false
			}
		}
		return true
	}
	return false
}

func (s *Service) serveV2(w http.ResponseWriter, r *http.Request) {
	w.Header().Add("Vary", "Accept")
	kind := negotiate(r.Header.Get("Accept"), subtypeV2Proto, subtypeV2ProtoOld)
	if kind == "" {
		w.WriteHeader(http.StatusNotAcceptable)
		return
	}
	sv, err := s.served()
	if err != nil {
		http.Error(w, "building the openapi document: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	if kind == "proto" {
		write(w, r, sv.v2.proto, sv.v2.etag, "application/"+subtypeV2Proto, sv.modTime)
		return
	}
	write(w, r, sv.v2.json, sv.v2.etag, mediaJSON, sv.modTime)
}

func (s *Service) serveV3Discovery(w http.ResponseWriter, r *http.Request) {
	sv, err := s.served()
	if err != nil {
		http.Error(w, "building the openapi documents: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	write(w, r, sv.discovery.json, sv.discovery.etag, mediaJSON, sv.modTime)
}

func (s *Service) serveV3(w http.ResponseWriter, r *http.Request) {
	gv := strings.TrimPrefix(r.URL.Path, "/openapi/v3/")
	w.Header().Add("Vary", "Accept")
	kind := negotiate(r.Header.Get("Accept"), subtypeV3Proto, subtypeV3ProtoOld)
	if kind == "" {
		w.WriteHeader(http.StatusNotAcceptable)
		return
	}
	sv, err := s.served()
	if err != nil {
		http.Error(w, "building the openapi documents: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	d, ok := sv.v3[gv]
	if !ok {
		http.NotFound(w, r)
		return
	}
	if hash := r.URL.Query().Get("hash"); hash != "" {
		if hash != d.etag {
			// A client holding an old discovery document is sent to the
			// current one.
			http.Redirect(w, r, v3URL(gv, d.etag), http.StatusMovedPermanently)
			return
		}
		w.Header().Set("Cache-Control", "public, immutable")
		w.Header().Set("Expires", time.Now().AddDate(1, 0, 0).Format(time.RFC1123))
	}
	if kind == "proto" {
		write(w, r, d.proto, d.etag, "application/"+subtypeV3Proto, sv.modTime)
		return
	}
	write(w, r, d.json, d.etag, mediaJSON, sv.modTime)
}
