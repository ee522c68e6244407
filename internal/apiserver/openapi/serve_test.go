package openapi

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"skiff.dev/skiff/internal/registry"
)

// TestServeEncodings checks both ways a document leaves the server: the
// stored gzip bytes for clients that accept them, inflated bytes for
// clients that do not, with the same ETag and content.
func TestServeEncodings(t *testing.T) {
	srv := testServer(t)
	for _, path := range []string{"/openapi/v2", "/openapi/v3", "/openapi/v3/apis/apps/v1"} {
		// Setting Accept-Encoding by hand stops Go's transport from
		// inflating the body itself.
		zresp, zbody := get(t, srv, path, "application/json", "Accept-Encoding", "gzip")
		if zresp.Header.Get("Content-Encoding") != "gzip" {
			t.Fatalf("%s with gzip: Content-Encoding %q", path, zresp.Header.Get("Content-Encoding"))
		}
		zr, err := gzip.NewReader(bytes.NewReader(zbody))
		if err != nil {
			t.Fatalf("%s: gzip body: %v", path, err)
		}
		inflated, err := io.ReadAll(zr)
		if err != nil {
			t.Fatalf("%s: inflating: %v", path, err)
		}
		presp, plain := get(t, srv, path, "application/json", "Accept-Encoding", "identity")
		if presp.Header.Get("Content-Encoding") != "" {
			t.Errorf("%s without gzip: Content-Encoding %q", path, presp.Header.Get("Content-Encoding"))
		}
		if !bytes.Equal(inflated, plain) || !json.Valid(plain) {
			t.Errorf("%s: gzip and plain bodies differ or are not JSON (%d vs %d bytes)", path, len(inflated), len(plain))
		}
		if zresp.Header.Get("Etag") == "" || zresp.Header.Get("Etag") != presp.Header.Get("Etag") {
			t.Errorf("%s: ETags %q and %q", path, zresp.Header.Get("Etag"), presp.Header.Get("Etag"))
		}
		if presp.ContentLength != int64(len(plain)) {
			t.Errorf("%s: Content-Length %d for %d bytes", path, presp.ContentLength, len(plain))
		}
		if r, _ := get(t, srv, path, "application/json", "If-None-Match", zresp.Header.Get("Etag")); r.StatusCode != http.StatusNotModified {
			t.Errorf("%s: If-None-Match with the ETag gave %d, want 304", path, r.StatusCode)
		}
	}
}

func TestServeRefusals(t *testing.T) {
	srv := testServer(t)
	if r, _ := get(t, srv, "/openapi/v2", "text/html"); r.StatusCode != http.StatusNotAcceptable {
		t.Errorf("v2 as text/html: %d, want 406", r.StatusCode)
	}
	if r, _ := get(t, srv, "/openapi/v3/apis/apps/v1", "application/yaml"); r.StatusCode != http.StatusNotAcceptable {
		t.Errorf("v3 as yaml: %d, want 406", r.StatusCode)
	}
	if r, _ := get(t, srv, "/openapi/v3/apis/nosuch.example.com/v1", "application/json"); r.StatusCode != http.StatusNotFound {
		t.Errorf("v3 of an unknown group version: %d, want 404", r.StatusCode)
	}
}

// TestServedIsCompressed guards the point of the serving layer: what the
// server keeps is the compressed documents, several times smaller than
// their JSON and protobuf forms.
func TestServedIsCompressed(t *testing.T) {
	s := New(registry.NewScheme(), testResources(), "v1.37.1")
	s.Install(http.NewServeMux())
	s.Warm()
	sv, err := s.served()
	if err != nil {
		t.Fatal(err)
	}
	var kept, raw int
	add := func(d document) {
		for _, b := range []blob{d.json, d.proto} {
			kept += len(b.gz)
			raw += b.size
		}
	}
	add(sv.v2)
	add(sv.discovery)
	for _, d := range sv.v3 {
		add(d)
	}
	if raw == 0 || kept*4 > raw {
		t.Errorf("kept %d bytes for %d bytes of documents; want at least 4x smaller", kept, raw)
	}
	t.Logf("kept %d KiB for %d KiB of documents", kept>>10, raw>>10)
}
