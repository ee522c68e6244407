package apiserver

import (
	"math/rand"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/scheme"
)

// serializerBinding decodes body as the JSON serializer does for
// pods/binding (the slow path).
func serializerBinding(t *testing.T, body []byte) (*corev1.Binding, error) {
	t.Helper()
	info, ok := runtime.SerializerInfoForMediaType(scheme.Codecs.SupportedMediaTypes(), mediaJSON)
	if !ok {
		t.Fatal("no JSON serializer")
	}
	b := &corev1.Binding{}
	gvk := schema.GroupVersionKind{Version: "v1", Kind: "Binding"}
	_, _, err := info.Serializer.Decode(body, &gvk, b)
	return b, err
}

// Every body the plain decoder accepts decodes to what the serializer
// gives; the scheduler's bodies (and client-go's older encoding with a
// null creationTimestamp) are accepted; and what it must leave to the
// serializer (other keys, escapes, repeated keys, another kind, trailing
// data, non-string values) it refuses. Random byte-level mutations of
// accepted bodies check the first rule far from the shapes listed here.
func TestPlainBindingJSONMatchesSerializer(t *testing.T) {
	accepted := []string{
		`{"kind":"Binding","apiVersion":"v1","metadata":{"name":"web-5d8f7-abcde","namespace":"default","uid":"8a4b2c1e-0000-4000-8000-000000000001"},"target":{"kind":"Node","name":"hollow-node-17"}}` + "\n",
		`{"kind":"Binding","apiVersion":"v1","metadata":{"name":"p","namespace":"ns","uid":"u","creationTimestamp":null},"target":{"kind":"Node","name":"n"}}`,
		` { "apiVersion" : "v1" , "kind" : "Binding" , "target" : { "name" : "n" } , "metadata" : { } } `,
		`{"kind":"Binding","apiVersion":"v1","metadata":{"name":"p"},"target":{}}`,
		`{"kind":"Binding","apiVersion":"v1"}`,
		`{"kind":"Binding","apiVersion":"v1","metadata":{"name":"a b:c_d.e"},"target":{"kind":"Pod","name":""}}`,
	}
	refused := []string{
		``, `{}`, `null`, `[]`,
		`{"apiVersion":"v1","metadata":{"name":"p"},"target":{"name":"n"}}`,
		`{"kind":"Binding","metadata":{"name":"p"},"target":{"name":"n"}}`,
		`{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p"}}`,
		`{"kind":"Binding","apiVersion":"v2","metadata":{"name":"p"}}`,
		`{"kind":"Binding","apiVersion":"v1","metadata":{"name":"p","labels":{"a":"b"}}}`,
		`{"kind":"Binding","apiVersion":"v1","metadata":{"name":"p","annotations":{"a":"b"}}}`,
		`{"kind":"Binding","apiVersion":"v1","metadata":{"name":"p\u0041"}}`,
		`{"kind":"Binding","apiVersion":"v1","metadata":{"name":"p\"q"}}`,
		`{"kind":"Binding","apiVersion":"v1","metadata":{"name":"p","name":"q"}}`,
		`{"kind":"Binding","kind":"Binding","apiVersion":"v1"}`,
		`{"kind":"Binding","apiVersion":"v1","target":{"kind":"Node","name":"n","namespace":"x"}}`,
		`{"kind":"Binding","apiVersion":"v1","metadata":{"name":"p","creationTimestamp":"2026-01-01T00:00:00Z"}}`,
		`{"kind":"Binding","apiVersion":"v1","metadata":{"name":1}}`,
		`{"kind":"Binding","apiVersion":"v1"}x`,
		`{"kind":"Binding","apiVersion":"v1",}`,
		`{"Kind":"Binding","apiVersion":"v1"}`,
		`{"kind":"Binding","apiVersion":"v1","metadata":{"name":"caf` + "\u00e9" + `"}}`,
	}
	check := func(body string) bool {
		t.Helper()
		got, ok := plainBindingJSON([]byte(body))
		if !ok {
			return false
		}
		want, err := serializerBinding(t, []byte(body))
		if err != nil {
			t.Errorf("accepted %q, which the serializer refuses: %v", body, err)
		} else if !reflect.DeepEqual(got, want) {
			t.Errorf("%q:\nplain      %#v\nserializer %#v", body, got, want)
		}
		return true
	}
	for _, body := range accepted {
		if !check(body) {
			t.Errorf("refused %q", body)
		}
	}
	for _, body := range refused {
		if _, ok := plainBindingJSON([]byte(body)); ok {
			t.Errorf("accepted %q", body)
		}
	}
	rng := rand.New(rand.NewSource(1))
	alphabet := []byte(`{}[]":, nulx\v1kindBgamespcetuTNo` + "\t\n\x00\xc3")
	mutated, kept := 0, 0
	for range 20000 {
		body := []byte(accepted[rng.Intn(len(accepted))])
		for range 1 + rng.Intn(3) {
			i := rng.Intn(len(body) + 1)
			switch rng.Intn(3) {
			case 0: // insert
				body = append(body[:i], append([]byte{alphabet[rng.Intn(len(alphabet))]}, body[i:]...)...)
			case 1: // delete
				if i < len(body) {
					body = append(body[:i], body[i+1:]...)
				}
			default: // replace
				if i < len(body) {
					body[i] = alphabet[rng.Intn(len(alphabet))]
				}
			}
		}
		mutated++
		if check(string(body)) {
			kept++
		}
	}
	t.Logf("%d of %d mutated bodies accepted", kept, mutated)
	if kept == 0 || kept == mutated {
		t.Errorf("mutations accepted %d of %d: the comparison saw nothing", kept, mutated)
	}
}

// BenchmarkBindingDecodeJSON compares the decoders on the scheduler's
// body. Run: go test ./internal/apiserver -run '^$' -bench BindingDecodeJSON -benchmem
func BenchmarkBindingDecodeJSON(b *testing.B) {
	body := []byte(`{"kind":"Binding","apiVersion":"v1","metadata":{"name":"web-5d8f7c9b6-abcde","namespace":"bench","uid":"8a4b2c1e-0000-4000-8000-000000000001"},"target":{"kind":"Node","name":"hollow-node-17"}}` + "\n")
	info, _ := runtime.SerializerInfoForMediaType(scheme.Codecs.SupportedMediaTypes(), mediaJSON)
	gvk := schema.GroupVersionKind{Version: "v1", Kind: "Binding"}
	b.Run("plain", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, ok := plainBindingJSON(body); !ok {
				b.Fatal("refused")
			}
		}
	})
	b.Run("serializer", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, _, err := info.Serializer.Decode(body, &gvk, &corev1.Binding{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
