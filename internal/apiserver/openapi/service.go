package openapi

import (
	"fmt"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/kube-openapi/pkg/openapiconv"
	"k8s.io/kube-openapi/pkg/spec3"
	"k8s.io/kube-openapi/pkg/validation/spec"

	"skiff.dev/skiff/internal/registry"
)

// Service builds and serves the OpenAPI documents of a set of resources.
// Documents are built once, on the first request that needs them (or
// Warm), serialized and compressed; the spec objects are then dropped.
type Service struct {
	scheme    *runtime.Scheme
	resources []*registry.Resource
	version   string

	once      sync.Once
	sv        *served
	err       error
	installed bool
}

// Documents is one build: the v2 document and the v3 documents keyed by
// group version path ("api/v1", "apis/apps/v1").
type Documents struct {
	V2 *spec.Swagger
	V3 map[string]*spec3.OpenAPI
}

// New returns a Service describing resources, whose Go types are taken
// from scheme. version is the server's version ("v1.37.1"), reported in
// the documents' info.
func New(scheme *runtime.Scheme, resources []*registry.Resource, version string) *Service {
	return &Service{scheme: scheme, resources: resources, version: version}
}

// served builds, serializes and compresses the documents on first use.
func (s *Service) served() (*served, error) {
	s.once.Do(func() {
		docs, err := Build(s.scheme, s.resources, s.version)
		if err != nil {
			s.err = err
			return
		}
		s.sv, s.err = serialize(docs)
	})
	return s.sv, s.err
}

// Install registers /openapi/v2 and /openapi/v3 (discovery and the per
// group version documents) on mux. Nothing is built until a request
// arrives or Warm is called. Install must be called at most once.
func (s *Service) Install(mux *http.ServeMux) {
	s.installed = true
	mux.HandleFunc("/openapi/v2", s.serveV2)
	mux.HandleFunc("/openapi/v3", s.serveV3Discovery)
	mux.HandleFunc("/openapi/v3/", s.serveV3)
}

// Warm builds everything kubectl's first requests need (v3 discovery and
// every group version, the v2 JSON and protobuf), so they are not paid by
// a client. The protobuf conversions alone cost about half a second, so a
// server calls this in a goroutine once it is ready rather than before.
// It is a no-op before Install.
func (s *Service) Warm() {
	if !s.installed {
		return
	}
	_, _ = s.served()
}

// groupVersionPaths lists the v3 document keys without building anything.
func (s *Service) groupVersionPaths() []string {
	seen := map[string]bool{}
	var out []string
	for _, r := range s.resources {
		k := v3Key(r.GroupVersion)
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

func v3Key(gv schema.GroupVersion) string {
	return strings.TrimPrefix(groupVersionPrefix(gv), "/")
}

// Build generates the documents for resources. It is what Service calls
// lazily; exported for tests and benchmarks elsewhere.
func Build(scheme *runtime.Scheme, resources []*registry.Resource, version string) (*Documents, error) {
	lists, err := loadSMDLists(scheme)
	if err != nil {
		return nil, fmt.Errorf("loading list types: %w", err)
	}
	defs := newDefinitionBuilder(scheme, lists)
	pb := &pathBuilder{scheme: scheme, defs: defs, paths: map[string]spec.PathItem{}}

	// Types every group version's operations refer to.
	for _, obj := range []runtime.Object{&metav1.Status{}, &metav1.DeleteOptions{}, &metav1.WatchEvent{}, &metav1.APIResourceList{}} {
		if _, err := defs.addType(typeOf(obj)); err != nil {
			return nil, err
		}
	}
	if _, err := defs.addType(reflect.TypeOf(metav1.Patch{})); err != nil {
		return nil, err
	}
	gvs := map[schema.GroupVersion]bool{}
	for _, r := range resources {
		if err := pb.addResource(r); err != nil {
			return nil, fmt.Errorf("describing %s: %w", r.GroupVersion.WithResource(r.Resource), err)
		}
		if !gvs[r.GroupVersion] {
			gvs[r.GroupVersion] = true
			pb.addResourceList(r.GroupVersion)
		}
	}
	// Every kind the scheme knows gets a definition, as upstream's v2
	// document has one for every served type.
	for _, t := range sortedTypes(defs.gvks) {
		if _, err := defs.addType(t); err != nil {
			return nil, err
		}
	}
	for name, desc := range specialDescriptions {
		if d, ok := defs.defs[name]; ok && d.Description == "" {
			d.Description = desc
			defs.defs[name] = d
		}
	}

	v2 := &spec.Swagger{SwaggerProps: spec.SwaggerProps{
		Swagger:     "2.0",
		Info:        &spec.Info{InfoProps: spec.InfoProps{Title: "Kubernetes", Version: version}},
		Paths:       &spec.Paths{Paths: pb.paths},
		Definitions: defs.defs,
		SecurityDefinitions: spec.SecurityDefinitions{
			"BearerToken": {SecuritySchemeProps: spec.SecuritySchemeProps{
				Type: "apiKey", Name: "authorization", In: "header",
				Description: "Bearer Token authentication",
			}},
		},
		Security: []map[string][]string{{"BearerToken": {}}},
	}}

	return &Documents{V2: v2, V3: buildV3(v2, gvs, defs.v3OneOf)}, nil
}

// buildV3 splits v2 into one v3 document per group version, each holding
// the paths under that group version and only the schemas they reach, as
// upstream serves them. Schemas and paths are converted once and shared
// between the documents (they are never modified after the build).
func buildV3(v2 *spec.Swagger, gvs map[schema.GroupVersion]bool, oneOf map[string][]string) map[string]*spec3.OpenAPI {
	schemas := make(map[string]*spec.Schema, len(v2.Definitions))
	for name, def := range v2.Definitions {
		def := def
		s := openapiconv.ConvertSchema(&def)
		// Upstream's v3 documents describe the dual-typed scalars with
		// oneOf instead of v2's "type": "string".
		if types, ok := oneOf[name]; ok {
			c := *s
			c.Type = nil
			c.OneOf = nil
			for _, t := range types {
				c.OneOf = append(c.OneOf, spec.Schema{SchemaProps: spec.SchemaProps{Type: spec.StringOrArray{t}}})
			}
			s = &c
		}
		schemas[name] = s
	}
	paths := openapiconv.ConvertPaths(v2.Paths).Paths
	security := openapiconv.ConvertComponents(v2.SecurityDefinitions, nil, nil, nil).SecuritySchemes

	docs := make(map[string]*spec3.OpenAPI, len(gvs))
	for gv := range gvs {
		prefix := groupVersionPrefix(gv) + "/"
		v2Paths := map[string]spec.PathItem{}
		v3Paths := map[string]*spec3.Path{}
		for p, item := range v2.Paths.Paths {
			if strings.HasPrefix(p, prefix) {
				v2Paths[p] = item
				v3Paths[p] = paths[p]
			}
		}
		components := &spec3.Components{Schemas: map[string]*spec.Schema{}, SecuritySchemes: security}
		for name := range reachable(v2.Definitions, v2Paths) {
			components.Schemas[name] = schemas[name]
		}
		docs[v3Key(gv)] = &spec3.OpenAPI{
			Version:    "3.0.0",
			Info:       v2.Info,
			Paths:      &spec3.Paths{Paths: v3Paths},
			Components: components,
		}
	}
	return docs
}

// reachable returns the definitions referenced, directly or not, from
// the given paths.
func reachable(all spec.Definitions, paths map[string]spec.PathItem) spec.Definitions {
	out := spec.Definitions{}
	var visit func(s *spec.Schema)
	visitRef := func(ref spec.Ref) {
		name := strings.TrimPrefix(ref.String(), v2DefPrefix)
		if name == "" || name == ref.String() {
			return
		}
		if _, done := out[name]; done {
			return
		}
		def, ok := all[name]
		if !ok {
			return
		}
		out[name] = def
		visit(&def)
	}
	visit = func(s *spec.Schema) {
		if s == nil {
			return
		}
		visitRef(s.Ref)
		for _, p := range s.Properties {
			visit(&p)
		}
		if s.Items != nil {
			visit(s.Items.Schema)
			for i := range s.Items.Schemas {
				visit(&s.Items.Schemas[i])
			}
		}
		if s.AdditionalProperties != nil {
			visit(s.AdditionalProperties.Schema)
		}
		for i := range s.AllOf {
			visit(&s.AllOf[i])
		}
	}
	visitOp := func(o *spec.Operation) {
		if o == nil {
			return
		}
		for _, p := range o.Parameters {
			visit(p.Schema)
		}
		if o.Responses != nil {
			for _, r := range o.Responses.StatusCodeResponses {
				visit(r.Schema)
			}
		}
	}
	for _, item := range paths {
		for _, o := range []*spec.Operation{item.Get, item.Put, item.Post, item.Delete, item.Patch} {
			visitOp(o)
		}
	}
	return out
}

func typeOf(obj interface{}) reflect.Type {
	t := reflect.TypeOf(obj)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

func sortedTypes(m map[reflect.Type][]schema.GroupVersionKind) []reflect.Type {
	out := make([]reflect.Type, 0, len(m))
	for t := range m {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].PkgPath()+"."+out[i].Name() < out[j].PkgPath()+"."+out[j].Name()
	})
	return out
}

// specialDescriptions documents the hand-written apimachinery types that
// have no generated SwaggerDoc; the text follows their Go documentation.
var specialDescriptions = map[string]string{
	"io.k8s.apimachinery.pkg.api.resource.Quantity":    "Quantity is a fixed-point representation of a number. It provides convenient marshaling/unmarshaling in JSON and YAML, in addition to String() and AsInt64() accessors.\n\nThe serialization format is:\n\n``` <quantity>        ::= <signedNumber><suffix>\n\n\t(Note that <suffix> may be empty, from the \"\" case in <decimalSI>.)\n\n<digit>           ::= 0 | 1 | ... | 9 <digits>          ::= <digit> | <digit><digits> <number>          ::= <digits> | <digits>.<digits> | <digits>. | .<digits> <sign>            ::= \"+\" | \"-\" <signedNumber>    ::= <number> | <sign><number> <suffix>          ::= <binarySI> | <decimalExponent> | <decimalSI> <binarySI>        ::= Ki | Mi | Gi | Ti | Pi | Ei\n\n\t(International System of units; See: http://physics.nist.gov/cuu/Units/binary.html)\n\n<decimalSI>       ::= m | \"\" | k | M | G | T | P | E\n\n\t(Note that 1024 = 1Ki but 1000 = 1k; I didn't choose the capitalization.)\n\n<decimalExponent> ::= \"e\" <signedNumber> | \"E\" <signedNumber> ```\n\nNo matter which of the three exponent forms is used, no quantity may represent a number greater than 2^63-1 in magnitude, nor may it have more than 3 decimal places. Numbers larger or more precise will be capped or rounded up. (E.g.: 0.1m will rounded up to 1m.) This may be extended in the future if we require larger or smaller quantities.\n\nWhen a Quantity is parsed from a string, it will remember the type of suffix it had, and will use the same type again when it is serialized.",
	"io.k8s.apimachinery.pkg.util.intstr.IntOrString":  "IntOrString is a type that can hold an int32 or a string.  When used in JSON or YAML marshalling and unmarshalling, it produces or consumes the inner type.  This allows you to have, for example, a JSON field that can accept a name or number.",
	"io.k8s.apimachinery.pkg.apis.meta.v1.Time":        "Time is a wrapper around time.Time which supports correct marshaling to YAML and JSON.  Wrappers are provided for many of the factory methods that the time package offers.",
	"io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime":   "MicroTime is version of Time with microsecond level precision.",
	"io.k8s.apimachinery.pkg.apis.meta.v1.Duration":    "Duration is a wrapper around time.Duration which supports correct marshaling to YAML and JSON. In particular, it marshals into strings, which can be used as map keys in json.",
	"io.k8s.apimachinery.pkg.runtime.RawExtension":     "RawExtension is used to hold extensions in external versions. The embedded object is serialized as raw JSON and may be any kind of API object.",
	"io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent":  "Event represents a single event to a watched resource.",
	"io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1":    "FieldsV1 stores a set of fields in a data structure like a Trie, in JSON format.",
	"io.k8s.apimachinery.pkg.apis.meta.v1.Patch":       "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body.",
	"io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta":  "ObjectMeta is metadata that all persisted resources must have, which includes all objects users must create.",
	"io.k8s.apimachinery.pkg.apis.meta.v1.APIResource": "APIResource specifies the name of a resource and whether it is namespaced.",
}
