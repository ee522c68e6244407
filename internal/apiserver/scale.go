package apiserver

import (
	"context"
	"fmt"
	"mime"
	"net/http"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"skiff.dev/skiff/internal/registry"

	"skiff.dev/skiff/internal/registry/generic"
)

var scaleGVK = autoscalingv1.SchemeGroupVersion.WithKind("Scale")

// scaleOf builds the autoscaling/v1 Scale view of obj.
func scaleOf(st *generic.Store, obj runtime.Object) *autoscalingv1.Scale {
	m, _ := meta.Accessor(obj)
	spec, status, sel := st.R.Scale.Get(obj)
	sc := &autoscalingv1.Scale{
		ObjectMeta: metav1.ObjectMeta{
			Name: m.GetName(), Namespace: m.GetNamespace(), UID: m.GetUID(),
			ResourceVersion: m.GetResourceVersion(), CreationTimestamp: m.GetCreationTimestamp(),
		},
		Spec:   autoscalingv1.ScaleSpec{Replicas: spec},
		Status: autoscalingv1.ScaleStatus{Replicas: status, Selector: sel},
	}
	sc.SetGroupVersionKind(scaleGVK)
	return sc
}

// serveScale serves GET/PUT/PATCH on {resource}/scale.
func (s *Server) serveScale(w http.ResponseWriter, r *http.Request, ri *RequestInfo, st *generic.Store) {
	if st.R.Scale == nil {
		s.writeError(w, r, apierrors.NewNotFound(st.R.GroupResource(), ri.Name))
		return
	}
	ctx := r.Context()
	switch ri.Verb {
	case "get":
		obj, err := st.Get(ctx, ri.Namespace, ri.Name, metav1.GetOptions{})
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		s.writeRaw(w, http.StatusOK, mediaJSON, s.neg.byType[mediaJSON].Serializer, scaleOf(st, obj))
	case "update", "patch":
		body, wp, err := parseWrite(r)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		dr, fm := wp.dryRun, wp.fieldManager
		var warnings []string
		out, _, err := st.Update(ctx, ri.Namespace, ri.Name, func(ctx context.Context, cur runtime.Object) (runtime.Object, error) {
			if cur == nil {
				return nil, apierrors.NewNotFound(st.R.GroupResource(), ri.Name)
			}
			old := scaleOf(st, cur)
			var want *autoscalingv1.Scale
			if ri.Verb == "update" {
				want = &autoscalingv1.Scale{}
				gvk := scaleGVK
				info, err := s.neg.input(r)
				if err != nil {
					return nil, apierrors.NewBadRequest(err.Error())
				}
				if _, _, err := info.Serializer.Decode(body, &gvk, want); err != nil {
					return nil, decodeError(err)
				}
			} else {
				scaleStore := &generic.Store{R: scaleResource}
				p, err := s.patchObject(scaleStore, old, patchTypeOf(r), body, "Ignore", &warnings)
				if err != nil {
					return nil, err
				}
				want = p.(*autoscalingv1.Scale)
			}
			if want.ResourceVersion != "" && want.ResourceVersion != old.ResourceVersion {
				return nil, apierrors.NewConflict(st.R.GroupResource(), ri.Name, fmt.Errorf("the object has been modified; please apply your changes to the latest version and try again"))
			}
			if want.Spec.Replicas < 0 {
				return nil, apierrors.NewInvalid(scaleGVK.GroupKind(), ri.Name, field.ErrorList{field.Invalid(field.NewPath("spec", "replicas"), want.Spec.Replicas, "must be greater than or equal to 0")})
			}
			st.R.Scale.SetReplicas(cur, want.Spec.Replicas)
			return cur, nil
		}, generic.UpdateOptions{DryRun: dr, FieldManager: fm})
		addWarnings(w, warnings)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		s.writeRaw(w, http.StatusOK, mediaJSON, s.neg.byType[mediaJSON].Serializer, scaleOf(st, out))
	default:
		s.writeError(w, r, apierrors.NewMethodNotSupported(st.R.GroupResource(), ri.Verb))
	}
}

// namespaceSpecFinalizers reads spec.finalizers from a Namespace body.
func namespaceSpecFinalizers(obj runtime.Object) ([]corev1.FinalizerName, error) {
	ns, ok := obj.(*corev1.Namespace)
	if !ok {
		return nil, apierrors.NewBadRequest("finalize expects a Namespace")
	}
	return ns.Spec.Finalizers, nil
}

func setNamespaceSpecFinalizers(obj runtime.Object, f []corev1.FinalizerName) error {
	ns, ok := obj.(*corev1.Namespace)
	if !ok {
		return apierrors.NewBadRequest("finalize expects a Namespace")
	}
	ns.Spec.Finalizers = f
	return nil
}

// scaleResource describes autoscaling/v1 Scale for patch decoding.
var scaleResource = &registry.Resource{
	GroupVersion: autoscalingv1.SchemeGroupVersion, Resource: "scale", Kind: "Scale",
	New: func() runtime.Object { return &autoscalingv1.Scale{} },
}

func patchTypeOf(r *http.Request) types.PatchType {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return types.PatchType(mt)
}
