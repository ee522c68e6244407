package apiserver

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	sigsyaml "sigs.k8s.io/yaml"

	"skiff.dev/skiff/internal/registry/generic"
)

func typesUID(s string) types.UID { return types.UID(s) }

// serveAPI handles /api and /apis trees: discovery and resources.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	if h := s.delegatedFor(r.URL.Path); h != nil {
		h.ServeHTTP(w, r)
		return
	}
	ri := parseRequestInfo(r)
	if rec, ok := w.(*statusRecorder); ok {
		// The metrics filter labels the request with it afterwards.
		rec.ri = ri
	}
	if !ri.IsResourceRequest {
		s.serveDiscovery(w, r)
		return
	}
	if s.cfg.Extra != nil && ri.Subresource != "" {
		if s.cfg.Extra.Handle(w, r, ri, s) {
			return
		}
	}
	st := s.resourceFor(w, r, ri)
	if st == nil {
		return
	}
	if ri.Subresource != "" && !hasString(st.R.Subresources, ri.Subresource) {
		s.writeError(w, r, apierrors.NewNotFound(st.R.GroupResource(), ri.Name))
		return
	}
	if st.R.Namespaced && ri.Namespace == "" && ri.Name != "" {
		s.writeError(w, r, apierrors.NewNotFound(st.R.GroupResource(), ri.Name))
		return
	}
	if !st.R.Namespaced && ri.Namespace != "" {
		s.writeError(w, r, apierrors.NewNotFound(st.R.GroupResource(), ri.Name))
		return
	}
	if st.R.Verbs != nil && ri.Subresource == "" && !hasString(st.R.Verbs, ri.Verb) {
		s.writeError(w, r, apierrors.NewMethodNotSupported(st.R.GroupResource(), ri.Verb))
		return
	}
	switch ri.Subresource {
	case "", "status":
	case "scale":
		s.serveScale(w, r, ri, st)
		return
	case "approval":
		s.serveCSRApproval(w, r, ri, st)
		return
	case "finalize":
		if ri.Verb != "update" {
			s.writeError(w, r, apierrors.NewMethodNotSupported(st.R.GroupResource(), ri.Verb))
			return
		}
	default:
		s.writeError(w, r, apierrors.NewMethodNotSupported(schema.GroupResource{Group: st.R.GroupVersion.Group, Resource: st.R.Resource + "/" + ri.Subresource}, ri.Verb))
		return
	}
	switch ri.Verb {
	case "get":
		s.serveGet(w, r, ri, st)
	case "list":
		if ri.Subresource != "" {
			s.writeError(w, r, apierrors.NewMethodNotSupported(st.R.GroupResource(), "list"))
			return
		}
		s.serveList(w, r, ri, st)
	case "watch":
		s.serveWatch(w, r, ri, st)
	case "create":
		if ri.Name != "" || ri.Subresource != "" {
			s.writeError(w, r, apierrors.NewMethodNotSupported(st.R.GroupResource(), "create"))
			return
		}
		s.serveCreate(w, r, ri, st)
	case "update":
		s.serveUpdate(w, r, ri, st)
	case "patch":
		s.servePatch(w, r, ri, st)
	case "delete":
		s.serveDelete(w, r, ri, st)
	case "deletecollection":
		s.serveDeleteCollection(w, r, ri, st)
	default:
		s.writeError(w, r, apierrors.NewMethodNotSupported(st.R.GroupResource(), r.Method))
	}
}

func hasString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// ---------------------------------------------------------------- reads

func (s *Server) serveGet(w http.ResponseWriter, r *http.Request, ri *RequestInfo, st *generic.Store) {
	q := queryOf(r)
	obj, err := st.Get(r.Context(), ri.Namespace, ri.Name, metav1.GetOptions{ResourceVersion: q.Get("resourceVersion")})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeObject(w, r, http.StatusOK, st.R, obj)
}

// parseListOptions reads a list's (or a deletecollection's) query.
func parseListOptions(q url.Values) (generic.ListOptions, error) {
	return parseListOrWatchOptions(q, false)
}

// parseListOrWatchOptions reads the selectors, resourceVersion and paging
// of a list or watch. resourceVersionMatch follows upstream's rules for
// each: a list needs a resourceVersion with it; a watch takes it only
// with sendInitialEvents (a watch-list, which client-go's informers try
// first), where an empty resourceVersion means the current state.
func parseListOrWatchOptions(q url.Values, watch bool) (generic.ListOptions, error) {
	var opts generic.ListOptions
	var err error
	if ls := q.Get("labelSelector"); ls != "" {
		if opts.Labels, err = labels.Parse(ls); err != nil {
			return opts, apierrors.NewBadRequest(fmt.Sprintf("unable to parse requirement: %v", err))
		}
	}
	if fs := q.Get("fieldSelector"); fs != "" {
		if opts.Fields, err = fields.ParseSelector(fs); err != nil {
			return opts, apierrors.NewBadRequest(fmt.Sprintf("invalid field selector: %v", err))
		}
	}
	opts.ResourceVersion = q.Get("resourceVersion")
	opts.ResourceVersionMatch = metav1.ResourceVersionMatch(q.Get("resourceVersionMatch"))
	switch opts.ResourceVersionMatch {
	case "", metav1.ResourceVersionMatchExact, metav1.ResourceVersionMatchNotOlderThan:
	default:
		return opts, apierrors.NewBadRequest(fmt.Sprintf("resourceVersionMatch: Unsupported value: %q: supported values: \"Exact\", \"NotOlderThan\", \"\"", opts.ResourceVersionMatch))
	}
	switch {
	case watch && opts.ResourceVersionMatch != "" && q.Get("sendInitialEvents") == "":
		return opts, apierrors.NewBadRequest("resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided")
	case watch && opts.ResourceVersionMatch == metav1.ResourceVersionMatchExact:
		return opts, apierrors.NewBadRequest(fmt.Sprintf("resourceVersionMatch: Unsupported value: %q: supported values: \"NotOlderThan\"", opts.ResourceVersionMatch))
	case !watch && opts.ResourceVersionMatch != "" && opts.ResourceVersion == "":
		return opts, apierrors.NewBadRequest("resourceVersionMatch is forbidden unless resourceVersion is provided")
	}
	if opts.ResourceVersionMatch == metav1.ResourceVersionMatchExact && opts.ResourceVersion == "0" {
		return opts, apierrors.NewBadRequest("resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"")
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.ParseInt(l, 10, 64)
		if err != nil || n < 0 {
			return opts, apierrors.NewBadRequest(fmt.Sprintf("invalid limit %q", l))
		}
		opts.Limit = n
	}
	opts.Continue = q.Get("continue")
	if opts.Continue != "" && opts.ResourceVersion != "" && opts.ResourceVersion != "0" {
		return opts, apierrors.NewBadRequest("specifying resource version is not allowed when using continue")
	}
	if opts.ResourceVersion != "" {
		if _, err := strconv.ParseUint(opts.ResourceVersion, 10, 64); err != nil {
			return opts, apierrors.NewBadRequest(fmt.Sprintf("invalid resource version %q", opts.ResourceVersion))
		}
	}
	return opts, nil
}

func (s *Server) serveList(w http.ResponseWriter, r *http.Request, ri *RequestInfo, st *generic.Store) {
	opts, err := parseListOptions(queryOf(r))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	obj, err := st.List(r.Context(), ri.Namespace, opts)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeObject(w, r, http.StatusOK, st.R, obj)
}

// ---------------------------------------------------------------- decoding

// fieldValidation returns the directive: Strict, Warn or Ignore.
func fieldValidation(q url.Values) (string, error) {
	v := q.Get("fieldValidation")
	switch strings.ToLower(v) {
	case "":
		return "Warn", nil
	case "strict":
		return "Strict", nil
	case "warn":
		return "Warn", nil
	case "ignore":
		return "Ignore", nil
	}
	return "", apierrors.NewBadRequest(fmt.Sprintf("fieldValidation: invalid value %q, must be one of Ignore, Warn, Strict", v))
}

// decodeBody decodes a create/update body into a new object of st's type,
// applying the field-validation directive.
func (s *Server) decodeBody(w http.ResponseWriter, r *http.Request, st *generic.Store, body []byte, into runtime.Object) (runtime.Object, error) {
	info, err := s.neg.input(r)
	if err != nil {
		return nil, apierrors.NewGenericServerResponse(http.StatusUnsupportedMediaType, "", schema.GroupResource{}, "", err.Error(), 0, false)
	}
	if len(body) == 0 {
		return nil, apierrors.NewBadRequest("request body must not be empty")
	}
	directive, err := fieldValidation(queryOf(r))
	if err != nil {
		return nil, err
	}
	gvk := st.R.GroupVersionKind()
	var dec runtime.Decoder = info.Serializer
	if directive != "Ignore" {
		if sd, ok := s.strictDec[info.MediaType]; ok {
			dec = sd
		}
	}
	obj, gotGVK, err := dec.Decode(body, &gvk, into)
	if err != nil && !runtime.IsStrictDecodingError(err) {
		return nil, decodeError(err)
	}
	if err != nil {
		switch directive {
		case "Strict":
			return nil, apierrors.NewBadRequest(err.Error())
		case "Warn":
			addWarnings(w, strictErrors(err))
		}
	}
	if gotGVK != nil && (gotGVK.Group != gvk.Group || gotGVK.Version != gvk.Version) {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("the API version in the data (%s) does not match the expected API version (%s)", gotGVK.GroupVersion().String(), gvk.GroupVersion().String()))
	}
	if gotGVK != nil && gotGVK.Kind != gvk.Kind {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("the kind in the data (%s) does not match the expected kind (%s)", gotGVK.Kind, gvk.Kind))
	}
	return obj, nil
}

func strictErrors(err error) []string {
	if se, ok := runtime.AsStrictDecodingError(err); ok {
		var out []string
		for _, e := range se.Errors() {
			out = append(out, e.Error())
		}
		return out
	}
	return []string{err.Error()}
}

func addWarnings(w http.ResponseWriter, msgs []string) {
	for _, m := range msgs {
		w.Header().Add("Warning", fmt.Sprintf("299 - %q", m))
	}
}

func decodeError(err error) error {
	msg := err.Error()
	if runtime.IsNotRegisteredError(err) || runtime.IsMissingKind(err) || runtime.IsMissingVersion(err) {
		return apierrors.NewBadRequest(msg)
	}
	return apierrors.NewBadRequest(fmt.Sprintf("the object provided is unrecognized or malformed: %s", msg))
}

// dryRun parses ?dryRun=All.
func dryRun(q url.Values) (bool, error) {
	vals := q["dryRun"]
	for _, v := range vals {
		if v != "All" {
			return false, apierrors.NewBadRequest(fmt.Sprintf("dryRun: Unsupported value: %q: supported values: \"All\"", v))
		}
	}
	return len(vals) > 0, nil
}

// fieldManagerName returns the manager for a write: the fieldManager
// parameter or one derived from the User-Agent as upstream does.
func fieldManagerName(r *http.Request) (string, error) {
	if fm := queryOf(r).Get("fieldManager"); fm != "" {
		if len(fm) > 128 {
			return "", apierrors.NewBadRequest("fieldManager: Too long: may not be longer than 128")
		}
		return fm, nil
	}
	ua := r.UserAgent()
	if i := strings.Index(ua, "/"); i > 0 {
		ua = ua[:i]
	}
	if len(ua) > 128 {
		ua = ua[:128]
	}
	return ua, nil
}

// ---------------------------------------------------------------- writes

// writeParams are the query parameters every write takes.
type writeParams struct {
	dryRun       bool
	fieldManager string
	// body is the request body (read-only).
	body []byte
}

// parseWrite reads the body and the common write parameters.
func parseWrite(r *http.Request) ([]byte, writeParams, error) {
	body, err := readBody(r)
	if err != nil {
		return nil, writeParams{}, err
	}
	dr, err := dryRun(queryOf(r))
	if err != nil {
		return nil, writeParams{}, err
	}
	fm, err := fieldManagerName(r)
	if err != nil {
		return nil, writeParams{}, err
	}
	return body, writeParams{dryRun: dr, fieldManager: fm, body: body}, nil
}

// decodeWrite is parseWrite plus decoding the body into a new object of
// st's type.
func (s *Server) decodeWrite(w http.ResponseWriter, r *http.Request, st *generic.Store) (runtime.Object, writeParams, error) {
	body, wp, err := parseWrite(r)
	if err != nil {
		return nil, wp, err
	}
	obj, err := s.decodeBody(w, r, st, body, st.R.New())
	return obj, wp, err
}

func (s *Server) serveCreate(w http.ResponseWriter, r *http.Request, ri *RequestInfo, st *generic.Store) {
	obj, wp, err := s.decodeWrite(w, r, st)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out, err := st.Create(r.Context(), ri.Namespace, obj, generic.CreateOptions{
		DryRun: wp.dryRun, FieldManager: wp.fieldManager,
		Body: wp.body, MediaType: r.Header.Get("Content-Type"),
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeObject(w, r, http.StatusCreated, st.R, out)
}

func (s *Server) serveUpdate(w http.ResponseWriter, r *http.Request, ri *RequestInfo, st *generic.Store) {
	obj, wp, err := s.decodeWrite(w, r, st)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	dr, fm := wp.dryRun, wp.fieldManager
	sub := ri.Subresource
	if sub == "finalize" {
		s.serveFinalize(w, r, ri, st, obj, dr)
		return
	}
	attempts := 0
	out, created, err := st.Update(r.Context(), ri.Namespace, ri.Name, func(ctx context.Context, cur runtime.Object) (runtime.Object, error) {
		// Preparing and encoding an attempt changes the object in place
		// (its resourceVersion is cleared for storage), and a retried
		// attempt must still carry the client's resourceVersion, or a
		// stale update would overwrite the write it lost the
		// compare-and-swap to. The first attempt takes the decoded object
		// itself; a retry (rare: a stale cached guess or a lost race)
		// decodes the body again, instead of every attempt deep-copying
		// the object in case it is retried.
		attempts++
		if attempts == 1 {
			return obj, nil
		}
		return s.decodeBody(discardHeaders{}, r, st, wp.body, st.R.New())
	}, generic.UpdateOptions{DryRun: dr, FieldManager: fm, Subresource: sub, AllowCreate: sub == "" && allowCreateOnUpdate(st), ReadOnlyCurrent: true})
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

// discardHeaders is a ResponseWriter for a second decode of a body, whose
// warnings the first decode already sent.
type discardHeaders struct{}

func (discardHeaders) Header() http.Header         { return http.Header{} }
func (discardHeaders) Write(b []byte) (int, error) { return len(b), nil }
func (discardHeaders) WriteHeader(int)             {}

// allowCreateOnUpdate lists the resources upstream lets PUT create.
func allowCreateOnUpdate(st *generic.Store) bool {
	switch st.R.GroupResource().String() {
	case "endpoints", "events", "events.events.k8s.io", "leases.coordination.k8s.io", "limitranges", "nodes":
		return true
	}
	return false
}

// serveFinalize handles namespaces/{name}/finalize: only spec.finalizers
// may change; a deleting namespace with no finalizers left is removed.
func (s *Server) serveFinalize(w http.ResponseWriter, r *http.Request, ri *RequestInfo, st *generic.Store, obj runtime.Object, dr bool) {
	out, err := finalizeNamespace(r.Context(), st, ri.Name, obj, dr)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeObject(w, r, http.StatusOK, st.R, out)
}

func (s *Server) serveDelete(w http.ResponseWriter, r *http.Request, ri *RequestInfo, st *generic.Store) {
	if ri.Subresource != "" {
		s.writeError(w, r, apierrors.NewMethodNotSupported(st.R.GroupResource(), "delete"))
		return
	}
	opts, dr, err := s.deleteOptions(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out, gone, err := st.Delete(r.Context(), ri.Namespace, ri.Name, opts, dr)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	code := http.StatusOK
	if !gone {
		code = http.StatusAccepted
	}
	s.writeObject(w, r, code, st.R, out)
}

func (s *Server) deleteOptions(r *http.Request) (*metav1.DeleteOptions, bool, error) {
	q := queryOf(r)
	opts := &metav1.DeleteOptions{}
	body, err := readBody(r)
	if err != nil {
		return nil, false, err
	}
	if len(body) > 0 {
		if err := decodeDeleteOptions(r.Header.Get("Content-Type"), body, opts); err != nil {
			return nil, false, apierrors.NewBadRequest(fmt.Sprintf("decoding DeleteOptions: %v", err))
		}
	}
	if g := q.Get("gracePeriodSeconds"); g != "" {
		n, err := strconv.ParseInt(g, 10, 64)
		if err != nil {
			return nil, false, apierrors.NewBadRequest(fmt.Sprintf("invalid gracePeriodSeconds %q", g))
		}
		opts.GracePeriodSeconds = &n
	}
	if p := q.Get("propagationPolicy"); p != "" {
		pp := metav1.DeletionPropagation(p)
		opts.PropagationPolicy = &pp
	}
	if o := q.Get("orphanDependents"); o != "" {
		b := isTrue(o)
		opts.OrphanDependents = &b
	}
	dr, err := dryRun(q)
	if err != nil {
		return nil, false, err
	}
	if len(opts.DryRun) > 0 {
		for _, v := range opts.DryRun {
			if v != "All" {
				return nil, false, apierrors.NewBadRequest(fmt.Sprintf("dryRun: Unsupported value: %q", v))
			}
		}
		dr = true
	}
	return opts, dr, nil
}

func (s *Server) serveDeleteCollection(w http.ResponseWriter, r *http.Request, ri *RequestInfo, st *generic.Store) {
	lopts, err := parseListOptions(queryOf(r))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	dopts, dr, err := s.deleteOptions(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out, err := st.DeleteCollection(r.Context(), ri.Namespace, lopts, dopts, dr)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeObject(w, r, http.StatusOK, st.R, out)
}

// objectName is a helper for messages.
func objectName(obj runtime.Object) string {
	m, err := meta.Accessor(obj)
	if err != nil {
		return ""
	}
	return m.GetName()
}

// protobufPrefix starts every Kubernetes protobuf message (runtime.Unknown
// envelope).
var protobufPrefix = []byte{0x6b, 0x38, 0x73, 0x00}

// decodeDeleteOptions decodes a DeleteOptions body. Clients send it with
// any group's apiVersion or meta.k8s.io/v1, as JSON/YAML or (metadata
// clients) protobuf; the shape is the same everywhere, so it is decoded
// without a scheme lookup.
func decodeDeleteOptions(contentType string, body []byte, opts *metav1.DeleteOptions) error {
	if strings.HasPrefix(contentType, mediaProtobuf) {
		if !bytes.HasPrefix(body, protobufPrefix) {
			return fmt.Errorf("protobuf body without the k8s envelope")
		}
		var u runtime.Unknown
		if err := u.Unmarshal(body[len(protobufPrefix):]); err != nil {
			return err
		}
		return opts.Unmarshal(u.Raw)
	}
	return sigsyaml.Unmarshal(body, opts)
}
