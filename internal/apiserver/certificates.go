package apiserver

import (
	"context"
	"net/http"

	certificatesv1 "k8s.io/api/certificates/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"

	"skiff.dev/skiff/internal/registry/certificates"
	"skiff.dev/skiff/internal/registry/generic"
)

// serveCSRApproval handles certificatesigningrequests/{name}/approval
// (what `kubectl certificate approve|deny` writes): only the Approved and
// Denied conditions may change.
func (s *Server) serveCSRApproval(w http.ResponseWriter, r *http.Request, ri *RequestInfo, st *generic.Store) {
	switch ri.Verb {
	case "get":
		s.serveGet(w, r, ri, st)
		return
	case "update":
	default:
		s.writeError(w, r, apierrors.NewMethodNotSupported(st.R.GroupResource(), ri.Verb))
		return
	}
	obj, wp, err := s.decodeWrite(w, r, st)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	want := obj.(*certificatesv1.CertificateSigningRequest)
	out, _, err := st.Update(r.Context(), "", ri.Name, func(ctx context.Context, cur runtime.Object) (runtime.Object, error) {
		if cur == nil {
			return nil, apierrors.NewNotFound(st.R.GroupResource(), ri.Name)
		}
		old := cur.(*certificatesv1.CertificateSigningRequest)
		next := want.DeepCopy()
		certificates.PrepareForApprovalUpdate(next, old)
		if errs := certificates.ValidateApprovalUpdate(next, old); len(errs) > 0 {
			return nil, apierrors.NewInvalid(st.R.GroupVersionKind().GroupKind(), ri.Name, errs)
		}
		return next, nil
	}, generic.UpdateOptions{DryRun: wp.dryRun, FieldManager: wp.fieldManager, Subresource: "approval"})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeObject(w, r, http.StatusOK, st.R, out)
}
