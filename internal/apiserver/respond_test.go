package apiserver

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/iotest"
)

func TestReadAllSized(t *testing.T) {
	body := strings.Repeat("0123456789", 100)
	for _, tc := range []struct {
		name     string
		declared int64
	}{
		{"exact", int64(len(body))},
		{"unknown", -1},
		{"zero", 0},
		{"declared shorter", 10},
		{"declared longer", int64(len(body)) * 3},
		{"over the limit", MaxRequestBodyBytes + 1},
	} {
		for _, r := range []io.Reader{strings.NewReader(body), iotest.OneByteReader(strings.NewReader(body)), iotest.DataErrReader(strings.NewReader(body))} {
			got, err := readAll(r, tc.declared)
			if err != nil || string(got) != body {
				t.Fatalf("%s: %d bytes, %v; want the %d-byte body", tc.name, len(got), err, len(body))
			}
		}
	}
	boom := errors.New("boom")
	if _, err := readAll(io.MultiReader(strings.NewReader("abc"), iotest.ErrReader(boom)), 3); !errors.Is(err, boom) {
		t.Fatalf("read error: %v, want %v", err, boom)
	}
}

func TestReadBodyLimit(t *testing.T) {
	big := bytes.Repeat([]byte("x"), MaxRequestBodyBytes+1)
	for _, declared := range []int64{-1, MaxRequestBodyBytes} {
		r := httptest.NewRequest("POST", "/api/v1/namespaces/ns/configmaps", bytes.NewReader(big))
		r.ContentLength = declared
		if _, err := readBody(r); err == nil || !strings.Contains(err.Error(), "limit is") {
			t.Fatalf("declared %d, body over the limit: %v, want request entity too large", declared, err)
		}
	}
}

// The binding and eviction answer, encoded once, is what encoding it per
// request wrote.
func TestCreatedStatusBytes(t *testing.T) {
	s := newPanickyServer(t)
	want := httptest.NewRecorder()
	s.writeRaw(want, http.StatusCreated, mediaJSON, s.neg.byType[mediaJSON].Serializer, createdStatus())
	got := httptest.NewRecorder()
	s.writeCreatedStatus(got)
	if got.Code != want.Code || got.Body.String() != want.Body.String() || got.Header().Get("Content-Type") != want.Header().Get("Content-Type") || got.Header().Get("Content-Length") != want.Header().Get("Content-Length") {
		t.Fatalf("got %d %v %q, want %d %v %q", got.Code, got.Header(), got.Body, want.Code, want.Header(), want.Body)
	}
	if !strings.Contains(got.Body.String(), `"status":"Success"`) || !strings.Contains(got.Body.String(), `"code":201`) {
		t.Fatalf("created Status: %s", got.Body)
	}
}
