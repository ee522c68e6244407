package server

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"net/http"
	"net/http/httptest"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestOnlyTheAPIServerIsAdmitted(t *testing.T) {
	s, err := New(Config{Runtime: runtimeapi.NewRuntimeServiceClient(nil)})
	if err != nil {
		t.Fatal(err)
	}
	h := s.authorize(s.Handler())
	for _, tc := range []struct {
		name string
		tls  *tls.ConnectionState
		want int
	}{
		{"no tls", nil, http.StatusForbidden},
		{"no certificate", &tls.ConnectionState{}, http.StatusForbidden},
		{"a node's certificate", &tls.ConnectionState{PeerCertificates: []*x509.Certificate{{Subject: pkix.Name{CommonName: "system:node:n1"}}}}, http.StatusForbidden},
		{"the api server", &tls.ConnectionState{PeerCertificates: []*x509.Certificate{{Subject: pkix.Name{CommonName: DefaultAllowedClient}}}}, http.StatusOK},
	} {
		r := httptest.NewRequest(http.MethodGet, "/healthz", nil)
		r.TLS = tc.tls
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != tc.want {
			t.Errorf("%s: got %d, want %d", tc.name, w.Code, tc.want)
		}
	}
}
