package apiserver

import (
	"context"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"sigs.k8s.io/yaml"

	"skiff.dev/skiff/internal/registry/generic"
)

// maxJSONPatchOperations bounds JSON patches as upstream does.
const maxJSONPatchOperations = 10000

func (s *Server) servePatch(w http.ResponseWriter, r *http.Request, ri *RequestInfo, st *generic.Store) {
	ct := r.Header.Get("Content-Type")
	mt, _, _ := mime.ParseMediaType(ct)
	pt := types.PatchType(mt)
	switch pt {
	case types.JSONPatchType, types.MergePatchType, types.StrategicMergePatchType, types.ApplyYAMLPatchType, types.ApplyCBORPatchType:
	default:
		s.writeError(w, r, apierrors.NewGenericServerResponse(http.StatusUnsupportedMediaType, "patch", st.R.GroupResource(), ri.Name,
			fmt.Sprintf("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json"), 0, false))
		return
	}
	if pt == types.ApplyCBORPatchType {
		s.writeError(w, r, apierrors.NewGenericServerResponse(http.StatusUnsupportedMediaType, "patch", st.R.GroupResource(), ri.Name, "apply-patch+cbor is not supported", 0, false))
		return
	}
	body, wp, err := parseWrite(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	dr, fm := wp.dryRun, wp.fieldManager
	q := queryOf(r)
	directive, err := fieldValidation(q)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	force := isTrue(q.Get("force"))
	if pt == types.ApplyYAMLPatchType {
		if q.Get("fieldManager") == "" {
			s.writeError(w, r, apierrors.NewBadRequest("PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"))
			return
		}
	} else if q.Has("force") {
		s.writeError(w, r, apierrors.NewBadRequest("PatchOptions.meta.k8s.io \"\" is invalid: force: Forbidden: may not be specified for non-apply patch"))
		return
	}
	if pt == types.JSONPatchType {
		ops, err := jsonpatch.DecodePatch(body)
		if err != nil {
			s.writeError(w, r, apierrors.NewBadRequest(fmt.Sprintf("error decoding patch: %v", err)))
			return
		}
		if len(ops) > maxJSONPatchOperations {
			s.writeError(w, r, apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("The allowed maximum operations in a JSON patch is %d, got %d", maxJSONPatchOperations, len(ops))))
			return
		}
	}
	var warnings []string
	out, created, err := st.Update(r.Context(), ri.Namespace, ri.Name, func(ctx context.Context, cur runtime.Object) (runtime.Object, error) {
		warnings = nil
		if pt == types.ApplyYAMLPatchType {
			return s.applyPatch(st, ri, cur, body, fm, force, directive, &warnings)
		}
		if cur == nil {
			return nil, apierrors.NewNotFound(st.R.GroupResource(), ri.Name)
		}
		return s.patchObject(st, cur, pt, body, directive, &warnings)
	}, generic.UpdateOptions{
		DryRun: dr, FieldManager: fm, Subresource: ri.Subresource,
		AllowCreate:      pt == types.ApplyYAMLPatchType,
		SkipFieldManager: pt == types.ApplyYAMLPatchType,
	})
	addWarnings(w, warnings)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	code := http.StatusOK
	if created {
		code = http.StatusCreated
	}
	s.writeObject(w, r, code, st.R, out)
}

// patchObject applies a JSON, merge or strategic merge patch to cur.
func (s *Server) patchObject(st *generic.Store, cur runtime.Object, pt types.PatchType, patch []byte, directive string, warnings *[]string) (runtime.Object, error) {
	curJSON, err := json.Marshal(cur)
	if err != nil {
		return nil, apierrors.NewInternalError(fmt.Errorf("encoding current object: %w", err))
	}
	var patched []byte
	switch pt {
	case types.JSONPatchType:
		p, err := jsonpatch.DecodePatch(patch)
		if err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("error decoding patch: %v", err))
		}
		patched, err = p.Apply(curJSON)
		if err != nil {
			return nil, apierrors.NewGenericServerResponse(http.StatusUnprocessableEntity, "", st.R.GroupResource(), objectName(cur), err.Error(), 0, false)
		}
	case types.MergePatchType:
		patched, err = jsonpatch.MergePatch(curJSON, patch)
		if err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("error applying merge patch: %v", err))
		}
	case types.StrategicMergePatchType:
		var pm map[string]interface{}
		if err := json.Unmarshal(patch, &pm); err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("error decoding patch: %v", err))
		}
		schema, err := strategicpatch.NewPatchMetaFromStruct(st.R.New())
		if err != nil {
			return nil, apierrors.NewInternalError(err)
		}
		var cm map[string]interface{}
		if err := json.Unmarshal(curJSON, &cm); err != nil {
			return nil, apierrors.NewInternalError(err)
		}
		res, err := strategicpatch.StrategicMergeMapPatchUsingLookupPatchMeta(cm, pm, schema)
		if err != nil {
			return nil, apierrors.NewBadRequest(err.Error())
		}
		patched, err = json.Marshal(res)
		if err != nil {
			return nil, apierrors.NewInternalError(err)
		}
	}
	return s.decodePatched(st, patched, directive, warnings)
}

// decodePatched decodes the patched JSON into a typed object, applying
// the field-validation directive to unknown or duplicate fields.
func (s *Server) decodePatched(st *generic.Store, data []byte, directive string, warnings *[]string) (runtime.Object, error) {
	gvk := st.R.GroupVersionKind()
	var dec runtime.Decoder = s.neg.byType[mediaJSON].Serializer
	if directive != "Ignore" {
		dec = s.strictDec[mediaJSON]
	}
	obj, got, err := dec.Decode(data, &gvk, st.R.New())
	if err != nil && !runtime.IsStrictDecodingError(err) {
		return nil, apierrors.NewBadRequest(err.Error())
	}
	if err != nil {
		if directive == "Strict" {
			return nil, apierrors.NewBadRequest(err.Error())
		}
		*warnings = append(*warnings, strictErrors(err)...)
	}
	if got != nil && (got.GroupVersion() != gvk.GroupVersion() || got.Kind != gvk.Kind) {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("the patch changed apiVersion/kind to %s, expected %s", got, gvk))
	}
	return obj, nil
}

// applyPatch implements server-side apply: the patch is a (partial) object
// in YAML or JSON; the field manager merges it into cur and records
// ownership, failing with 409 on conflicts unless force is set.
func (s *Server) applyPatch(st *generic.Store, ri *RequestInfo, cur runtime.Object, patch []byte, manager string, force bool, directive string, warnings *[]string) (runtime.Object, error) {
	pm := map[string]interface{}{}
	if err := yaml.Unmarshal(patch, &pm); err != nil {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("error decoding YAML: %v", err))
	}
	u := &unstructured.Unstructured{Object: pm}
	gvk := st.R.GroupVersionKind()
	if u.GetAPIVersion() == "" || u.GetKind() == "" {
		return nil, apierrors.NewBadRequest("apiVersion and kind are required in an apply patch")
	}
	if u.GroupVersionKind() != gvk {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("the API version in the data (%s) does not match the expected API version (%s)", u.GetAPIVersion(), gvk.GroupVersion().String()))
	}
	if u.GetName() != "" && u.GetName() != ri.Name {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("the name of the object (%s) does not match the name on the URL (%s)", u.GetName(), ri.Name))
	}
	if u.GetName() == "" {
		u.SetName(ri.Name)
	}
	if st.R.Namespaced && u.GetNamespace() != "" && u.GetNamespace() != ri.Namespace {
		return nil, apierrors.NewBadRequest("the namespace of the provided object does not match the namespace sent on the request")
	}
	if len(u.GetManagedFields()) > 0 {
		return nil, apierrors.NewBadRequest("metadata.managedFields must be nil")
	}
	// Unknown fields: decode the patch strictly to find them.
	if directive != "Ignore" {
		b, _ := json.Marshal(pm)
		if _, _, err := s.strictDec[mediaJSON].Decode(b, &gvk, st.R.New()); err != nil {
			if !runtime.IsStrictDecodingError(err) {
				return nil, apierrors.NewBadRequest(err.Error())
			}
			if directive == "Strict" {
				return nil, apierrors.NewBadRequest(err.Error())
			}
			*warnings = append(*warnings, strictErrors(err)...)
		}
	}
	live := cur
	if live == nil {
		live = st.R.New()
		m, _ := meta.Accessor(live)
		m.SetName(ri.Name)
		if st.R.Namespaced {
			m.SetNamespace(ri.Namespace)
		}
		live.GetObjectKind().SetGroupVersionKind(gvk)
	}
	fm, err := st.FieldManagers.Get(st.R, ri.Subresource)
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	out, err := fm.Apply(live, u, manager, force)
	if err != nil {
		if _, ok := err.(apierrors.APIStatus); ok {
			return nil, err
		}
		return nil, apierrors.NewBadRequest(err.Error())
	}
	// The field manager may hand back an unstructured object; make it typed.
	if uo, ok := out.(runtime.Unstructured); ok {
		typed := st.R.New()
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(uo.UnstructuredContent(), typed); err != nil {
			return nil, apierrors.NewInternalError(err)
		}
		out = typed
	}
	if cur == nil {
		// A new object: clear what apply may not set.
		m, _ := meta.Accessor(out)
		m.SetResourceVersion("")
	} else {
		m, _ := meta.Accessor(out)
		cm, _ := meta.Accessor(cur)
		if m.GetResourceVersion() == "" {
			m.SetResourceVersion(cm.GetResourceVersion())
		}
	}
	return out, nil
}

// finalizeNamespace implements namespaces/{name}/finalize.
func finalizeNamespace(ctx context.Context, st *generic.Store, name string, obj runtime.Object, dr bool) (runtime.Object, error) {
	newFin, err := namespaceSpecFinalizers(obj)
	if err != nil {
		return nil, err
	}
	out, _, err := st.Update(ctx, "", name, func(ctx context.Context, cur runtime.Object) (runtime.Object, error) {
		if cur == nil {
			return nil, apierrors.NewNotFound(st.R.GroupResource(), name)
		}
		if err := setNamespaceSpecFinalizers(cur, newFin); err != nil {
			return nil, err
		}
		return cur, nil
	}, generic.UpdateOptions{DryRun: dr, Subresource: "finalize"})
	if err != nil {
		return nil, err
	}
	// A deleting namespace with nothing left to finalize goes away.
	m, _ := meta.Accessor(out)
	if !dr && m.GetDeletionTimestamp() != nil && len(newFin) == 0 && len(m.GetFinalizers()) == 0 {
		if _, _, err := st.Delete(ctx, "", name, &metav1.DeleteOptions{}, false); err != nil && !apierrors.IsNotFound(err) {
			return nil, err
		}
	}
	return out, nil
}
