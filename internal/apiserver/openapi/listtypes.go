package openapi

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/kube-openapi/pkg/validation/spec"
	smdschema "sigs.k8s.io/structured-merge-diff/v6/schema"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/applyconfigurations"
)

// smdLists answers list-type, list-map-keys and map-type questions from
// the structured-merge-diff schema client-go ships for server-side apply.
// That schema is generated from upstream's OpenAPI, so it carries the
// +listType/+listMapKey/+mapType/+structType markers that reflection over
// Go types cannot see.
type smdLists struct {
	types map[string]*smdschema.TypeDef
}

var _ listTypeResolver = (*smdLists)(nil)

// loadSMDLists parses client-go's schema (about 100 ms, shared with any
// other user of the same converter through client-go's sync.Once).
func loadSMDLists(scheme *runtime.Scheme) (*smdLists, error) {
	tc := applyconfigurations.NewTypeConverter(scheme)
	// The converter does not expose its parser; a typed value of any
	// known kind carries the whole schema.
	probe := &corev1.ConfigMap{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"}}
	tv, err := tc.ObjectToTyped(probe)
	if err != nil {
		return nil, fmt.Errorf("reading structured-merge-diff schema: %w", err)
	}
	s := tv.Schema()
	l := &smdLists{types: make(map[string]*smdschema.TypeDef, len(s.Types))}
	for i := range s.Types {
		l.types[s.Types[i].Name] = &s.Types[i]
	}
	return l, nil
}

func (l *smdLists) typ(def string) spec.Extensions {
	td, ok := l.types[def]
	if !ok || td.Map == nil || len(td.Map.Fields) == 0 {
		return nil
	}
	if td.Map.ElementRelationship == smdschema.Atomic {
		return spec.Extensions{extMapType: "atomic"}
	}
	return nil
}

func (l *smdLists) field(def, field string) spec.Extensions {
	td, ok := l.types[def]
	if !ok || td.Map == nil {
		return nil
	}
	f, ok := td.Map.FindField(field)
	if !ok {
		return nil
	}
	ext := spec.Extensions{}
	if f.Type.ElementRelationship != nil && *f.Type.ElementRelationship == smdschema.Atomic {
		ext[extMapType] = "atomic"
	}
	switch {
	case f.Type.Inlined.List != nil:
		list := f.Type.Inlined.List
		switch {
		case list.ElementRelationship == smdschema.Associative && len(list.Keys) > 0:
			ext[extListType] = "map"
			keys := make([]interface{}, len(list.Keys))
			for i, k := range list.Keys {
				keys[i] = k
			}
			ext[extListMapKeys] = keys
		case list.ElementRelationship == smdschema.Associative:
			ext[extListType] = "set"
		case list.ElementRelationship == smdschema.Atomic:
			ext[extListType] = "atomic"
		}
	case f.Type.Inlined.Map != nil:
		if f.Type.Inlined.Map.ElementRelationship == smdschema.Atomic {
			ext[extMapType] = "atomic"
		}
	}
	if len(ext) == 0 {
		return nil
	}
	return ext
}
