package openapi

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"

	"skiff.dev/skiff/internal/registry"
)

// allKinds describes every kind in the scheme that has a list kind, which
// is a superset of what skiff serves, so the benchmark bounds the real
// build.
func allKinds(scheme *runtime.Scheme) []*registry.Resource {
	var out []*registry.Resource
	for gvk := range scheme.AllKnownTypes() {
		if gvk.Version == runtime.APIVersionInternal || strings.HasSuffix(gvk.Kind, "List") {
			continue
		}
		if !scheme.Recognizes(gvk.GroupVersion().WithKind(gvk.Kind + "List")) {
			continue
		}
		out = append(out, &registry.Resource{
			GroupVersion: gvk.GroupVersion(), Resource: strings.ToLower(gvk.Kind) + "s", Kind: gvk.Kind,
			ListKind: gvk.Kind + "List", Namespaced: true, Subresources: []string{"status"},
		})
	}
	return out
}

// BenchmarkBuild measures building every document from scratch. The
// structured-merge-diff schema is parsed once per process by client-go,
// so the first iteration carries that cost and later ones do not; run
// with -benchtime=1x to see the cold number.
func BenchmarkBuild(b *testing.B) {
	scheme := registry.NewScheme()
	resources := allKinds(scheme)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Build(scheme, resources, "v1.37.1"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFirstRequests measures what a cold server pays when kubectl
// first asks for the v3 discovery document (which hashes every group
// version's JSON) and the v2 protobuf document; Warm pays it ahead.
func BenchmarkFirstRequests(b *testing.B) {
	scheme := registry.NewScheme()
	resources := allKinds(scheme)
	for i := 0; i < b.N; i++ {
		mux := http.NewServeMux()
		New(scheme, resources, "v1.37.1").Install(mux)
		for _, r := range []struct{ path, accept string }{
			{"/openapi/v3", ""},
			{"/openapi/v2", "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"},
		} {
			req := httptest.NewRequest(http.MethodGet, r.path, nil)
			if r.accept != "" {
				req.Header.Set("Accept", r.accept)
			}
			rec := httptest.NewRecorder()
			mux.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				b.Fatalf("%s: %d", r.path, rec.Code)
			}
		}
	}
}
