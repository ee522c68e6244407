package openapi

import (
	"testing"

	"skiff.dev/skiff/internal/registry"
)

// BenchmarkBuild measures building every document from scratch. The
// structured-merge-diff schema is parsed once per process by client-go,
// so the first iteration carries that cost and later ones do not; run
// with -benchtime=1x to see the cold number.
func BenchmarkBuild(b *testing.B) {
	scheme := registry.NewScheme()
	resources := testResources()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := Build(scheme, resources, "v1.37.1"); err != nil {
			b.Fatal(err)
		}
	}
}
