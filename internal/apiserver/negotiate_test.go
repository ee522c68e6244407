package apiserver

import (
	"net/http/httptest"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/serializer"

	"skiff.dev/skiff/internal/registry"
)

// The remembered negotiation answers as parsing the header does, for
// every allowed set, the first time and from the cache.
func TestNegotiatorOutputCacheMatchesParsing(t *testing.T) {
	n := newNegotiator(serializer.NewCodecFactory(registry.NewScheme()))
	accepts := []string{
		"application/json",
		"application/vnd.kubernetes.protobuf, */*",
		"application/vnd.kubernetes.protobuf,application/json",
		"application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
		"application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io,application/json",
		"application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json",
		"application/json;as=APIGroupDiscoveryList;v=v2;g=apidiscovery.k8s.io,application/json",
		"application/yaml",
		"text/html",
		"application/json;stream=watch",
		"*/*",
		"bogus;;",
	}
	allowedSets := [][]outputKind{nil, {outputTable, outputPartialMetadata}, {outputDiscoveryV2, outputDiscoveryV2Beta1}}
	for _, accept := range accepts {
		for _, allowed := range allowedSets {
			want, wantErr := n.negotiateOutput(accept, allowed)
			for round := 0; round < 2; round++ {
				r := httptest.NewRequest("GET", "/api/v1/pods", nil)
				r.Header.Set("Accept", accept)
				got, err := n.output(r, allowed...)
				if (err == nil) != (wantErr == nil) || got.kind != want.kind || got.info.MediaType != want.info.MediaType || got.info.Serializer != want.info.Serializer {
					t.Fatalf("Accept %q allowed %v round %d: got %v/%v (%v), want %v/%v (%v)", accept, allowed, round, got.info.MediaType, got.kind, err, want.info.MediaType, want.kind, wantErr)
				}
			}
		}
	}
}

func TestNegotiatorOutputCacheBounded(t *testing.T) {
	n := newNegotiator(serializer.NewCodecFactory(registry.NewScheme()))
	for i := 0; i < 3*maxCachedAccepts; i++ {
		r := httptest.NewRequest("GET", "/api/v1/pods", nil)
		r.Header.Set("Accept", "application/json;q=0."+string(rune('0'+i%10))+";x="+string(rune('a'+i%26))+string(rune('a'+i/26%26)))
		if _, err := n.output(r); err != nil {
			t.Fatal(err)
		}
	}
	if len(n.outputs) > maxCachedAccepts {
		t.Fatalf("%d Accept headers remembered, bound %d", len(n.outputs), maxCachedAccepts)
	}
}

// A bare Content-Type takes the map lookup; it must pick what parsing
// picks, and parameters or case still go through the parser.
func TestNegotiatorInput(t *testing.T) {
	n := newNegotiator(serializer.NewCodecFactory(registry.NewScheme()))
	for _, tc := range []struct{ ct, want string }{
		{"", mediaJSON},
		{"application/json", mediaJSON},
		{"application/vnd.kubernetes.protobuf", mediaProtobuf},
		{"application/yaml", mediaYAML},
		{"application/json; charset=utf-8", mediaJSON},
		{"Application/JSON", mediaJSON},
		{"text/plain", ""},
		{"application/json;;", ""},
	} {
		r := httptest.NewRequest("POST", "/api/v1/pods", nil)
		if tc.ct != "" {
			r.Header.Set("Content-Type", tc.ct)
		}
		info, err := n.input(r)
		if tc.want == "" {
			if err == nil {
				t.Errorf("Content-Type %q: accepted as %s, want an error", tc.ct, info.MediaType)
			}
			continue
		}
		if err != nil || info.MediaType != tc.want {
			t.Errorf("Content-Type %q: %q, %v; want %q", tc.ct, info.MediaType, err, tc.want)
		}
	}
}
