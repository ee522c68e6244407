package apiserver

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"skiff.dev/skiff/internal/registry/generic"
	"skiff.dev/skiff/internal/storage"
)

// TokenIssuer issues service-account tokens for serviceaccounts/token.
type TokenIssuer interface {
	// IssueFor returns a signed token for sa, bound to the optional object,
	// with the requested audiences and lifetime.
	IssueFor(ctx context.Context, sa *corev1.ServiceAccount, req *authenticationv1.TokenRequest, boundPod *corev1.Pod) (token string, exp time.Time, err error)
}

// PodSubresources serves pods/binding, pods/eviction and
// serviceaccounts/token. Streaming subresources (log, exec, attach,
// portforward, proxy) are answered by NodeProxy when set.
type PodSubresources struct {
	Tokens TokenIssuer
	// NodeProxy proxies pods/log|exec|attach|portforward and nodes/proxy
	// to the kubelet; nil answers 503.
	NodeProxy func(w http.ResponseWriter, r *http.Request, ri *RequestInfo, s *Server) bool
	// Now is the clock.
	Now func() time.Time
}

var _ ExtraHandlers = (*PodSubresources)(nil)

// Handle implements ExtraHandlers.
func (p *PodSubresources) Handle(w http.ResponseWriter, r *http.Request, ri *RequestInfo, s *Server) bool {
	switch {
	case ri.APIGroup == "" && ri.Resource == "pods" && ri.Subresource == "binding" && ri.Verb == "create":
		p.bind(w, r, ri, s)
	case ri.APIGroup == "" && ri.Resource == "pods" && ri.Subresource == "eviction" && ri.Verb == "create":
		p.evict(w, r, ri, s)
	case ri.APIGroup == "" && ri.Resource == "serviceaccounts" && ri.Subresource == "token" && ri.Verb == "create":
		p.token(w, r, ri, s)
	case ri.APIGroup == "" && (ri.Resource == "pods" || ri.Resource == "nodes" || ri.Resource == "services") &&
		(ri.Subresource == "log" || ri.Subresource == "exec" || ri.Subresource == "attach" || ri.Subresource == "portforward" || ri.Subresource == "proxy"):
		if p.NodeProxy != nil && p.NodeProxy(w, r, ri, s) {
			return true
		}
		s.writeError(w, r, apierrors.NewServiceUnavailable(fmt.Sprintf("%s/%s is not available: no node agent serves it", ri.Resource, ri.Subresource)))
	default:
		return false
	}
	return true
}

func (p *PodSubresources) decode(s *Server, r *http.Request, gvk schema.GroupVersionKind, into runtime.Object) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	info, err := s.neg.input(r)
	if err != nil {
		return apierrors.NewGenericServerResponse(http.StatusUnsupportedMediaType, "", schema.GroupResource{}, "", err.Error(), 0, false)
	}
	if _, _, err := info.Serializer.Decode(body, &gvk, into); err != nil {
		return decodeError(err)
	}
	return nil
}

// decodeBinding decodes a pods/binding body: a JSON one of the plain
// shape schedulers send directly (plainBindingJSON), any other with the
// negotiated serializer.
func (p *PodSubresources) decodeBinding(s *Server, r *http.Request) (*corev1.Binding, error) {
	body, err := readBody(r)
	if err != nil {
		return nil, err
	}
	info, err := s.neg.input(r)
	if err != nil {
		return nil, apierrors.NewGenericServerResponse(http.StatusUnsupportedMediaType, "", schema.GroupResource{}, "", err.Error(), 0, false)
	}
	if info.MediaType == mediaJSON {
		if b, ok := plainBindingJSON(body); ok {
			return b, nil
		}
	}
	b := &corev1.Binding{}
	gvk := corev1.SchemeGroupVersion.WithKind("Binding")
	if _, _, err := info.Serializer.Decode(body, &gvk, b); err != nil {
		return nil, decodeError(err)
	}
	return b, nil
}

// bind assigns a pod to a node (the scheduler's pods/binding call). Like
// upstream's BindingREST, it is one compare-and-swap update of the stored
// pod that sets spec.nodeName, the binding's annotations and the
// PodScheduled condition, straight on the pods' storage: no defaulting,
// no pod update admission or validation (the pod's spec and metadata are
// not the client's to change here; the binding's annotations are
// validated) and no managedFields (spec.nodeName and the condition are
// owned by no manager). The generic store's update was about a third of a
// binding's server CPU: a second deep copy of the pod, its defaulting,
// metadata validation and a semantic comparison of old and new. The
// bound pod is built from shallow copies of the current one, so the
// update runs under storage.WithSharedCurrent and starts from the watch
// cache's object without any deep copy.
func (p *PodSubresources) bind(w http.ResponseWriter, r *http.Request, ri *RequestInfo, s *Server) {
	st := s.Store(corev1.SchemeGroupVersion, "pods")
	b, err := p.decodeBinding(s, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if b.Name != "" && b.Name != ri.Name {
		s.writeError(w, r, apierrors.NewBadRequest(fmt.Sprintf("binding name %q does not match pod name %q", b.Name, ri.Name)))
		return
	}
	if b.Target.Kind != "" && b.Target.Kind != "Node" {
		s.writeError(w, r, apierrors.NewInvalid(corev1.SchemeGroupVersion.WithKind("Binding").GroupKind(), ri.Name, nil))
		return
	}
	if b.Target.Name == "" {
		s.writeError(w, r, apierrors.NewBadRequest("target.name: Required value"))
		return
	}
	if len(b.Annotations) > 0 {
		if errs := apimachineryvalidation.ValidateAnnotations(b.Annotations, field.NewPath("metadata", "annotations")); len(errs) > 0 {
			s.writeError(w, r, apierrors.NewInvalid(corev1.SchemeGroupVersion.WithKind("Binding").GroupKind(), ri.Name, errs))
			return
		}
	}
	dr, err := dryRun(queryOf(r))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	gr := st.R.GroupResource()
	now := metav1.NewTime(p.now())
	// bound returns cur bound to the node, built from shallow copies:
	// cur (possibly the watch cache's own object) is never modified.
	bound := func(cur *corev1.Pod) (*corev1.Pod, error) {
		if cur.DeletionTimestamp != nil {
			return nil, apierrors.NewConflict(gr, ri.Name, fmt.Errorf("pod %s is being deleted, cannot be assigned to a host", ri.Name))
		}
		if cur.Spec.NodeName != "" {
			return nil, apierrors.NewConflict(gr, ri.Name, fmt.Errorf("pod %s is already assigned to node %q", ri.Name, cur.Spec.NodeName))
		}
		if b.UID != "" && b.UID != cur.UID {
			return nil, apierrors.NewConflict(gr, ri.Name, fmt.Errorf("precondition failed: UID in precondition: %s, UID in object meta: %s", b.UID, cur.UID))
		}
		pod := *cur
		pod.Spec.NodeName = b.Target.Name
		if len(b.Annotations) > 0 {
			ann := make(map[string]string, len(cur.Annotations)+len(b.Annotations))
			maps.Copy(ann, cur.Annotations)
			maps.Copy(ann, b.Annotations)
			pod.Annotations = ann
		}
		pod.Status.Conditions = slices.Clone(cur.Status.Conditions)
		setPodCondition(&pod, corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now})
		return &pod, nil
	}
	key := st.KeyRoot + "/" + ri.Namespace + "/" + ri.Name
	if dr {
		cur, err := st.Storage.Get(r.Context(), key, storage.GetOptions{})
		if err == nil {
			_, err = bound(cur.(*corev1.Pod))
		}
		if err != nil {
			s.writeError(w, r, bindError(gr, ri.Name, err))
			return
		}
		s.writeCreatedStatus(w)
		return
	}
	// bound never modifies the pod it is given, so the store may hand it
	// the cache's object instead of a deep copy.
	ctx := storage.WithSharedCurrent(r.Context())
	if _, err := st.Storage.GuaranteedUpdate(ctx, key, false, func(cur runtime.Object) (runtime.Object, error) {
		pod, ok := cur.(*corev1.Pod)
		if !ok {
			return nil, apierrors.NewInternalError(fmt.Errorf("stored pod %s is a %T", key, cur))
		}
		return bound(pod)
	}); err != nil {
		s.writeError(w, r, bindError(gr, ri.Name, err))
		return
	}
	s.writeCreatedStatus(w)
}

// bindError answers a binding's failure: API errors (from the pod's
// checks) as they are, storage errors as the registry answers them.
func bindError(gr schema.GroupResource, name string, err error) error {
	if _, ok := err.(apierrors.APIStatus); ok {
		return err
	}
	var se *storage.Error
	if errors.As(err, &se) {
		switch se.Code {
		case storage.ErrCodeKeyNotFound:
			return apierrors.NewNotFound(gr, name)
		case storage.ErrCodeTooLarge:
			return apierrors.NewRequestEntityTooLargeError("object exceeds the maximum size stored")
		case storage.ErrCodeUnreachable:
			return apierrors.NewServiceUnavailable(se.Msg)
		}
	}
	return apierrors.NewInternalError(err)
}

// createdStatus is the success Status a binding or an eviction answers
// (201, JSON), the same for every request.
func createdStatus() *metav1.Status {
	st := &metav1.Status{Status: metav1.StatusSuccess, Code: http.StatusCreated}
	st.SetGroupVersionKind(statusGVK)
	return st
}

// writeCreatedStatus writes createdStatus, encoded once in New.
func (s *Server) writeCreatedStatus(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", mediaJSON)
	h.Set("Content-Length", strconv.Itoa(len(s.createdJSON)))
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write(s.createdJSON)
}

func (p *PodSubresources) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

func setPodCondition(pod *corev1.Pod, c corev1.PodCondition) {
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == c.Type {
			if pod.Status.Conditions[i].Status != c.Status {
				pod.Status.Conditions[i] = c
			}
			return
		}
	}
	pod.Status.Conditions = append(pod.Status.Conditions, c)
}

// evict deletes a pod unless a PodDisruptionBudget forbids it (429).
func (p *PodSubresources) evict(w http.ResponseWriter, r *http.Request, ri *RequestInfo, s *Server) {
	ev := &policyv1.Eviction{}
	if err := p.decode(s, r, policyv1.SchemeGroupVersion.WithKind("Eviction"), ev); err != nil {
		s.writeError(w, r, err)
		return
	}
	if ev.Name != "" && ev.Name != ri.Name {
		s.writeError(w, r, apierrors.NewBadRequest(fmt.Sprintf("name in URL does not match name in Eviction object")))
		return
	}
	ctx := r.Context()
	pods := s.Store(corev1.SchemeGroupVersion, "pods")
	obj, err := pods.Get(ctx, ri.Namespace, ri.Name, metav1.GetOptions{})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	pod := obj.(*corev1.Pod)
	terminal := pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed || pod.Status.Phase == corev1.PodPending
	if !terminal && pod.DeletionTimestamp == nil {
		if err := p.checkBudgets(ctx, s, pod); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	opts := ev.DeleteOptions
	if opts == nil {
		opts = &metav1.DeleteOptions{}
	}
	if _, _, err := pods.Delete(ctx, ri.Namespace, ri.Name, opts, len(opts.DryRun) > 0); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeCreatedStatus(w)
}

// checkBudgets refuses an eviction that would take a matching
// PodDisruptionBudget below its allowance, and records the disruption.
func (p *PodSubresources) checkBudgets(ctx context.Context, s *Server, pod *corev1.Pod) error {
	pdbs := s.Store(policyv1.SchemeGroupVersion, "poddisruptionbudgets")
	if pdbs == nil {
		return nil
	}
	listObj, err := pdbs.List(ctx, pod.Namespace, generic.ListOptions{})
	if err != nil {
		return err
	}
	list := listObj.(*policyv1.PodDisruptionBudgetList)
	var matched []policyv1.PodDisruptionBudget
	for _, pdb := range list.Items {
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil || sel.Empty() || !sel.Matches(labels.Set(pod.Labels)) {
			continue
		}
		matched = append(matched, pdb)
	}
	if len(matched) > 1 {
		return apierrors.NewInternalError(fmt.Errorf("this pod has more than one PodDisruptionBudget, which the eviction subresource does not support"))
	}
	if len(matched) == 0 {
		return nil
	}
	pdb := matched[0]
	// Budgets whose status the controller has not computed yet block.
	if pdb.Status.ObservedGeneration < pdb.Generation || pdb.Status.DisruptionsAllowed <= 0 {
		e := apierrors.NewTooManyRequests("Cannot evict pod as it would violate the pod's disruption budget.", 0)
		e.ErrStatus.Details.Causes = append(e.ErrStatus.Details.Causes, metav1.StatusCause{
			Type:    policyv1.DisruptionBudgetCause,
			Message: fmt.Sprintf("The disruption budget %s needs %d healthy pods and has %d currently", pdb.Name, pdb.Status.DesiredHealthy, pdb.Status.CurrentHealthy),
		})
		return e
	}
	_, _, err = pdbs.Update(ctx, pdb.Namespace, pdb.Name, func(ctx context.Context, cur runtime.Object) (runtime.Object, error) {
		if cur == nil {
			return nil, apierrors.NewNotFound(pdbs.R.GroupResource(), pdb.Name)
		}
		c := cur.(*policyv1.PodDisruptionBudget)
		if c.Status.DisruptionsAllowed <= 0 {
			return nil, apierrors.NewTooManyRequests("Cannot evict pod as it would violate the pod's disruption budget.", 0)
		}
		c.Status.DisruptionsAllowed--
		if c.Status.DisruptedPods == nil {
			c.Status.DisruptedPods = map[string]metav1.Time{}
		}
		c.Status.DisruptedPods[pod.Name] = metav1.NewTime(p.now())
		return c, nil
	}, generic.UpdateOptions{Subresource: "status", FieldManager: "skiff-eviction"})
	return err
}

// token implements serviceaccounts/{name}/token (TokenRequest).
func (p *PodSubresources) token(w http.ResponseWriter, r *http.Request, ri *RequestInfo, s *Server) {
	if p.Tokens == nil {
		s.writeError(w, r, apierrors.NewServiceUnavailable("token issuing is not configured"))
		return
	}
	req := &authenticationv1.TokenRequest{}
	if err := p.decode(s, r, authenticationv1.SchemeGroupVersion.WithKind("TokenRequest"), req); err != nil {
		s.writeError(w, r, err)
		return
	}
	ctx := r.Context()
	sas := s.Store(corev1.SchemeGroupVersion, "serviceaccounts")
	obj, err := sas.Get(ctx, ri.Namespace, ri.Name, metav1.GetOptions{})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	sa := obj.(*corev1.ServiceAccount)
	var pod *corev1.Pod
	if ref := req.Spec.BoundObjectRef; ref != nil {
		switch ref.Kind {
		case "Pod":
			po, err := s.Store(corev1.SchemeGroupVersion, "pods").Get(ctx, ri.Namespace, ref.Name, metav1.GetOptions{})
			if err != nil {
				s.writeError(w, r, err)
				return
			}
			pod = po.(*corev1.Pod)
			if ref.UID != "" && ref.UID != pod.UID {
				s.writeError(w, r, apierrors.NewConflict(schema.GroupResource{Resource: "pods"}, ref.Name, fmt.Errorf("the UID in the bound object reference (%s) does not match the UID in record. The object might have been deleted and then recreated", ref.UID)))
				return
			}
			if pod.Spec.ServiceAccountName != sa.Name {
				s.writeError(w, r, apierrors.NewBadRequest(fmt.Sprintf("cannot bind token for serviceaccount %q to pod running with different serviceaccount name.", sa.Name)))
				return
			}
		case "Secret", "Node", "":
		default:
			s.writeError(w, r, apierrors.NewBadRequest(fmt.Sprintf("cannot bind token to object of type %s", ref.Kind)))
			return
		}
	}
	if req.Spec.ExpirationSeconds == nil {
		e := int64(3600)
		req.Spec.ExpirationSeconds = &e
	}
	if *req.Spec.ExpirationSeconds < 600 {
		s.writeError(w, r, apierrors.NewBadRequest("spec.expirationSeconds: Invalid value: may not specify a duration less than 10 minutes"))
		return
	}
	if *req.Spec.ExpirationSeconds > 1<<32 {
		s.writeError(w, r, apierrors.NewBadRequest("spec.expirationSeconds: Invalid value: may not specify a duration larger than 2^32 seconds"))
		return
	}
	tok, exp, err := p.Tokens.IssueFor(ctx, sa, req, pod)
	if err != nil {
		s.writeError(w, r, apierrors.NewInternalError(fmt.Errorf("issuing token: %w", err)))
		return
	}
	out := req.DeepCopy()
	out.Name, out.Namespace = sa.Name, sa.Namespace
	out.CreationTimestamp = metav1.NewTime(p.now())
	out.Status = authenticationv1.TokenRequestStatus{Token: tok, ExpirationTimestamp: metav1.NewTime(exp)}
	out.SetGroupVersionKind(authenticationv1.SchemeGroupVersion.WithKind("TokenRequest"))
	s.writeRaw(w, http.StatusCreated, mediaJSON, s.neg.byType[mediaJSON].Serializer, out)
}

var _ = intstr.FromInt32
