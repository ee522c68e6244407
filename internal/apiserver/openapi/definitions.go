package openapi

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/kube-openapi/pkg/common"
	"k8s.io/kube-openapi/pkg/validation/spec"
)

const (
	v2DefPrefix = "#/definitions/"

	extGVK           = "x-kubernetes-group-version-kind"
	extPatchStrategy = "x-kubernetes-patch-strategy"
	extPatchMergeKey = "x-kubernetes-patch-merge-key"
	extListType      = "x-kubernetes-list-type"
	extListMapKeys   = "x-kubernetes-list-map-keys"
	extMapType       = "x-kubernetes-map-type"
	extAction        = "x-kubernetes-action"
)

// Interfaces the k8s.io/api and apimachinery types implement; they carry
// the information upstream's openapi-gen reads from comments and markers.
type (
	swaggerDocer     interface{ SwaggerDoc() map[string]string }
	modelNamer       interface{ OpenAPIModelName() string }
	schemaTyper      interface{ OpenAPISchemaType() []string }
	schemaFormatter  interface{ OpenAPISchemaFormat() string }
	v3OneOfTyper     interface{ OpenAPIV3OneOfTypes() []string }
	listTypeResolver interface {
		// field returns the list/map extensions for field of the named
		// definition, and typ the extensions of the definition itself.
		field(def, field string) spec.Extensions
		typ(def string) spec.Extensions
	}
)

// definitionBuilder turns Go types into OpenAPI v2 definitions by
// reflection. It is not safe for concurrent use; one build uses one
// builder.
type definitionBuilder struct {
	defs  spec.Definitions
	gvks  map[reflect.Type][]schema.GroupVersionKind
	lists listTypeResolver
	// names caches the definition name of every named struct type seen.
	names map[reflect.Type]string
	// v3OneOf records definitions that upstream describes with oneOf in
	// v3 (Quantity, IntOrString); the v3 conversion rewrites them.
	v3OneOf map[string][]string
}

func newDefinitionBuilder(scheme *runtime.Scheme, lists listTypeResolver) *definitionBuilder {
	b := &definitionBuilder{
		defs:    spec.Definitions{},
		gvks:    map[reflect.Type][]schema.GroupVersionKind{},
		lists:   lists,
		names:   map[reflect.Type]string{},
		v3OneOf: map[string][]string{},
	}
	for gvk, t := range scheme.AllKnownTypes() {
		if gvk.Version == runtime.APIVersionInternal {
			continue
		}
		b.gvks[t] = append(b.gvks[t], gvk)
	}
	for _, list := range b.gvks {
		sort.Slice(list, func(i, j int) bool {
			a, c := list[i], list[j]
			if a.Group != c.Group {
				return a.Group < c.Group
			}
			if a.Version != c.Version {
				return a.Version < c.Version
			}
			return a.Kind < c.Kind
		})
	}
	return b
}

// addType makes sure t (a struct or pointer to one) has a definition and
// returns its name.
func (b *definitionBuilder) addType(t reflect.Type) (string, error) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	name := b.definitionName(t)
	if name == "" {
		return "", fmt.Errorf("type %v has no definition name", t)
	}
	if err := b.ensureDefinition(t, name); err != nil {
		return "", err
	}
	return name, nil
}

// definitionName is the upstream model name of a named type: the
// generated OpenAPIModelName when present, else the REST-friendly form of
// the package path ("k8s.io/api/apps/v1.Deployment" becomes
// "io.k8s.api.apps.v1.Deployment").
func (b *definitionBuilder) definitionName(t reflect.Type) string {
	if n, ok := b.names[t]; ok {
		return n
	}
	var name string
	if n, ok := reflect.New(t).Interface().(modelNamer); ok {
		name = n.OpenAPIModelName()
	} else if t.Name() != "" && t.PkgPath() != "" {
		name = restFriendlyName(t.PkgPath() + "." + t.Name())
	}
	b.names[t] = name
	return name
}

func restFriendlyName(name string) string {
	parts := strings.Split(name, "/")
	if strings.Contains(parts[0], ".") {
		host := strings.Split(parts[0], ".")
		for i, j := 0, len(host)-1; i < j; i, j = i+1, j-1 {
			host[i], host[j] = host[j], host[i]
		}
		parts[0] = strings.Join(host, ".")
	}
	return strings.Join(parts, ".")
}

func (b *definitionBuilder) ensureDefinition(t reflect.Type, name string) error {
	if _, ok := b.defs[name]; ok {
		return nil
	}
	// Reserve the name first so recursive types (JSONSchemaProps-like)
	// terminate.
	b.defs[name] = spec.Schema{}
	def, err := b.buildDefinition(t, name)
	if err != nil {
		delete(b.defs, name)
		return fmt.Errorf("building definition %s: %w", name, err)
	}
	if gvks := b.gvks[t]; len(gvks) > 0 {
		list := make([]interface{}, 0, len(gvks))
		for _, gvk := range gvks {
			list = append(list, map[string]interface{}{"group": gvk.Group, "version": gvk.Version, "kind": gvk.Kind})
		}
		def.AddExtension(extGVK, list)
	}
	if b.lists != nil {
		for k, v := range b.lists.typ(name) {
			def.AddExtension(k, v)
		}
	}
	b.defs[name] = def
	return nil
}

func typeDoc(t reflect.Type) map[string]string {
	if d, ok := reflect.New(t).Interface().(swaggerDocer); ok {
		return d.SwaggerDoc()
	}
	return nil
}

func (b *definitionBuilder) buildDefinition(t reflect.Type, name string) (spec.Schema, error) {
	doc := typeDoc(t)
	var def spec.Schema
	def.Description = doc[""]

	// Types that serialize as something other than their Go structure
	// say so (Time, Quantity, IntOrString, Duration ...).
	zero := reflect.New(t).Interface()
	if typer, ok := zero.(schemaTyper); ok {
		def.Type = typer.OpenAPISchemaType()
		if f, ok := zero.(schemaFormatter); ok {
			def.Format = f.OpenAPISchemaFormat()
		}
		if o, ok := zero.(v3OneOfTyper); ok {
			b.v3OneOf[name] = o.OpenAPIV3OneOfTypes()
		}
		return def, nil
	}
	if t.Kind() != reflect.Struct {
		s, err := b.schemaOf(t)
		if err != nil {
			return def, err
		}
		s.Description = def.Description
		return *s, nil
	}
	if opaqueObject(t) {
		def.Type = spec.StringOrArray{"object"}
		return def, nil
	}

	def.Type = spec.StringOrArray{"object"}
	if err := b.addFields(&def, t, name, doc); err != nil {
		return def, err
	}
	return def, nil
}

// opaqueObject reports the structs that carry arbitrary JSON and are
// described as a bare object upstream.
func opaqueObject(t reflect.Type) bool {
	switch t.PkgPath() + "." + t.Name() {
	case "k8s.io/apimachinery/pkg/runtime.RawExtension",
		"k8s.io/apimachinery/pkg/apis/meta/v1.FieldsV1",
		"k8s.io/apimachinery/pkg/apis/meta/v1.Patch":
		return true
	}
	return false
}

// addFields adds the properties of struct t to def, flattening inline
// members into it.
func (b *definitionBuilder) addFields(def *spec.Schema, t reflect.Type, defName string, doc map[string]string) error {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		jsonName, opts, _ := strings.Cut(tag, ",")
		// Embedded structs without a json name are flattened by
		// encoding/json (k8s.io/api writes them `json:""` or
		// `json:",inline"`).
		inline := strings.Contains(","+opts+",", ",inline,") || (f.Anonymous && jsonName == "")
		if inline {
			et := f.Type
			for et.Kind() == reflect.Pointer {
				et = et.Elem()
			}
			if et.Kind() != reflect.Struct {
				continue
			}
			if err := b.addFields(def, et, defName, typeDoc(et)); err != nil {
				return err
			}
			continue
		}
		if !f.IsExported() {
			continue
		}
		if jsonName == "" {
			jsonName = f.Name
		}
		prop, err := b.schemaOf(f.Type)
		if err != nil {
			return fmt.Errorf("field %s: %w", f.Name, err)
		}
		prop.Description = doc[jsonName]
		if s := f.Tag.Get("patchStrategy"); s != "" {
			prop.AddExtension(extPatchStrategy, s)
		}
		if k := f.Tag.Get("patchMergeKey"); k != "" {
			prop.AddExtension(extPatchMergeKey, k)
		}
		if b.lists != nil {
			for k, v := range b.lists.field(defName, jsonName) {
				prop.AddExtension(k, v)
			}
		}
		if def.Properties == nil {
			def.Properties = map[string]spec.Schema{}
		}
		def.Properties[jsonName] = *prop
		// Like openapi-gen: a member is optional when its json tag says
		// omitempty (or omitzero); otherwise it is required.
		optional := strings.Contains(","+opts+",", ",omitempty,") || strings.Contains(","+opts+",", ",omitzero,")
		if !optional {
			def.Required = append(def.Required, jsonName)
		}
	}
	return nil
}

// schemaOf returns the schema of a value of type t: a reference for named
// structs and special types, an inline schema otherwise.
func (b *definitionBuilder) schemaOf(t reflect.Type) (*spec.Schema, error) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == timeType {
		// A bare time.Time marshals as an RFC 3339 string.
		return &spec.Schema{SchemaProps: spec.SchemaProps{Type: spec.StringOrArray{"string"}, Format: "date-time"}}, nil
	}
	zero := reflect.New(t).Interface()
	_, special := zero.(schemaTyper)
	if (t.Kind() == reflect.Struct || special) && t.Name() != "" {
		name, err := b.addType(t)
		if err != nil {
			return nil, err
		}
		return refSchema(name), nil
	}
	s := &spec.Schema{}
	switch t.Kind() {
	case reflect.String:
		s.Type = spec.StringOrArray{"string"}
	case reflect.Bool:
		s.Type = spec.StringOrArray{"boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		typ, format := common.OpenAPITypeFormat(t.Kind().String())
		s.Type = spec.StringOrArray{typ}
		s.Format = format
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			s.Type = spec.StringOrArray{"string"}
			s.Format = "byte"
			break
		}
		items, err := b.schemaOf(t.Elem())
		if err != nil {
			return nil, err
		}
		s.Type = spec.StringOrArray{"array"}
		s.Items = &spec.SchemaOrArray{Schema: items}
	case reflect.Map:
		elem, err := b.schemaOf(t.Elem())
		if err != nil {
			return nil, err
		}
		s.Type = spec.StringOrArray{"object"}
		s.AdditionalProperties = &spec.SchemaOrBool{Allows: true, Schema: elem}
	case reflect.Interface:
		s.Type = spec.StringOrArray{"object"}
	case reflect.Struct:
		// Anonymous struct: describe it inline.
		s.Type = spec.StringOrArray{"object"}
		if err := b.addFields(s, t, "", nil); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unsupported kind %v of type %v", t.Kind(), t)
	}
	return s, nil
}

var timeType = reflect.TypeOf(time.Time{})

func refSchema(name string) *spec.Schema {
	return &spec.Schema{SchemaProps: spec.SchemaProps{Ref: spec.MustCreateRef(v2DefPrefix + name)}}
}
