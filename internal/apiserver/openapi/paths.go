package openapi

import (
	"fmt"
	"net/http"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/kube-openapi/pkg/validation/spec"

	"skiff.dev/skiff/internal/registry"
)

var (
	mediaTypes      = []string{"application/json", "application/yaml", "application/vnd.kubernetes.protobuf"}
	watchMediaTypes = []string{"application/json", "application/yaml", "application/vnd.kubernetes.protobuf", "application/json;stream=watch", "application/vnd.kubernetes.protobuf;stream=watch"}
	patchMediaTypes = []string{"application/json-patch+json", "application/merge-patch+json", "application/strategic-merge-patch+json", "application/apply-patch+yaml"}
	anyMediaType    = []string{"*/*"}

	defaultVerbs = []string{"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}

	statusDef       = "io.k8s.apimachinery.pkg.apis.meta.v1.Status"
	deleteOptsDef   = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions"
	patchDef        = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch"
	watchEventDef   = "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent"
	resourceListDef = "io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList"
)

// Query parameters, described as upstream does (shortened where the
// upstream text is a page long).
var (
	paramPretty               = queryParam("pretty", "string", "If 'true', then the output is pretty printed. Defaults to 'false' unless the user-agent indicates a browser or command-line HTTP tool (curl and wget).")
	paramDryRun               = queryParam("dryRun", "string", "When present, indicates that modifications should not be persisted. An invalid or unrecognized dryRun directive will result in an error response and no further processing of the request. Valid values are: - All: all dry run stages will be processed")
	paramFieldManager         = queryParam("fieldManager", "string", "fieldManager is a name associated with the actor or entity that is making these changes. The value must be less than or 128 characters long, and only contain printable characters, as defined by https://golang.org/pkg/unicode/#IsPrint.")
	paramFieldValidation      = queryParam("fieldValidation", "string", "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: This will ignore any unknown fields that are silently dropped from the object, and will ignore all but the last duplicate field that the decoder encounters. - Warn: This will send a warning via the standard warning response header for each unknown field that is dropped from the object, and for each duplicate field that is encountered. The request will still succeed if there are no other errors, and will only persist the last of any duplicate fields. - Strict: This will fail the request with a BadRequest error if any unknown fields would be dropped from the object, or if any duplicate fields are present. The error returned from the server will contain all unknown and duplicate fields encountered.")
	paramForce                = queryParam("force", "boolean", "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people. Force flag must be unset for non-apply patch requests.")
	paramAllowWatchBookmarks  = queryParam("allowWatchBookmarks", "boolean", "allowWatchBookmarks requests watch events with type \"BOOKMARK\". Servers that do not implement bookmarks may ignore this flag and bookmarks are sent at the server's discretion. Clients should not assume bookmarks are returned at any specific interval, nor may they assume the server will send any BOOKMARK event during a session. If this is not a watch, this field is ignored.")
	paramContinue             = queryParam("continue", "string", "The continue option should be set when retrieving more results from the server. Since this value is server defined, clients may only use the continue value from a previous query result with identical query parameters (except for the value of continue) and the server may reject a continue value it does not recognize.")
	paramFieldSelector        = queryParam("fieldSelector", "string", "A selector to restrict the list of returned objects by their fields. Defaults to everything.")
	paramLabelSelector        = queryParam("labelSelector", "string", "A selector to restrict the list of returned objects by their labels. Defaults to everything.")
	paramLimit                = queryParam("limit", "integer", "limit is a maximum number of responses to return for a list call. If more items exist, the server will set the `continue` field on the list metadata to a value that can be used with the same initial query to retrieve the next set of results.")
	paramResourceVersion      = queryParam("resourceVersion", "string", "resourceVersion sets a constraint on what resource versions a request may be served from. See https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions for details.\n\nDefaults to unset")
	paramResourceVersionMatch = queryParam("resourceVersionMatch", "string", "resourceVersionMatch determines how resourceVersion is applied to list calls. It is highly recommended that resourceVersionMatch be set for list calls where resourceVersion is set See https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions for details.\n\nDefaults to unset")
	paramSendInitialEvents    = queryParam("sendInitialEvents", "boolean", "`sendInitialEvents=true` may be set together with `watch=true`. In that case, the watch stream will begin with synthetic events to produce the current state of objects in the collection. Once all such events have been sent, a synthetic \"Bookmark\" event will be sent.")
	paramTimeoutSeconds       = queryParam("timeoutSeconds", "integer", "Timeout for the list/watch call. This limits the duration of the call, regardless of any activity or inactivity.")
	paramWatch                = queryParam("watch", "boolean", "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications. Specify resourceVersion.")
	paramGracePeriodSeconds   = queryParam("gracePeriodSeconds", "integer", "The duration in seconds before the object should be deleted. Value must be non-negative integer. The value zero indicates delete immediately. If this value is nil, the default grace period for the specified type will be used. Defaults to a per object value if not specified. zero means delete immediately.")
	paramOrphanDependents     = queryParam("orphanDependents", "boolean", "Deprecated: please use the PropagationPolicy, this field will be deprecated in 1.7. Should the dependent objects be orphaned. If true/false, the \"orphan\" finalizer will be added to/removed from the object's finalizers list. Either this field or PropagationPolicy may be set, but not both.")
	paramPropagationPolicy    = queryParam("propagationPolicy", "string", "Whether and how garbage collection will be performed. Either this field or OrphanDependents may be set, but not both. The default policy is decided by the existing finalizer set in the metadata.finalizers and the resource-specific default policy. Acceptable values are: 'Orphan' - orphan the dependents; 'Background' - allow the garbage collector to delete the dependents in the background; 'Foreground' - a cascading policy that deletes all dependents in the foreground.")
	paramNamespace            = pathParam("namespace", "object name and auth scope, such as for teams and projects")

	listParams   = []spec.Parameter{paramAllowWatchBookmarks, paramContinue, paramFieldSelector, paramLabelSelector, paramLimit, paramResourceVersion, paramResourceVersionMatch, paramSendInitialEvents, paramTimeoutSeconds, paramWatch}
	writeParams  = []spec.Parameter{paramDryRun, paramFieldManager, paramFieldValidation}
	deleteParams = []spec.Parameter{paramDryRun, paramGracePeriodSeconds, paramOrphanDependents, paramPropagationPolicy}
)

func queryParam(name, typ, desc string) spec.Parameter {
	return spec.Parameter{
		CommonValidations: spec.CommonValidations{UniqueItems: true},
		SimpleSchema:      spec.SimpleSchema{Type: typ},
		ParamProps:        spec.ParamProps{Name: name, In: "query", Description: desc},
	}
}

func pathParam(name, desc string) spec.Parameter {
	return spec.Parameter{
		CommonValidations: spec.CommonValidations{UniqueItems: true},
		SimpleSchema:      spec.SimpleSchema{Type: "string"},
		ParamProps:        spec.ParamProps{Name: name, In: "path", Required: true, Description: desc},
	}
}

func bodyParam(def string) spec.Parameter {
	return spec.Parameter{ParamProps: spec.ParamProps{Name: "body", In: "body", Required: true, Schema: refSchema(def)}}
}

// optionalBody is the DeleteOptions body of deletes: clients may omit it.
func optionalBody(def string) spec.Parameter {
	p := bodyParam(def)
	p.Required = false
	return p
}

func response(desc, def string) spec.Response {
	r := spec.Response{ResponseProps: spec.ResponseProps{Description: desc}}
	if def != "" {
		r.Schema = refSchema(def)
	}
	return r
}

func newOperation(id, desc string, gv schema.GroupVersion) *spec.Operation {
	return &spec.Operation{OperationProps: spec.OperationProps{
		ID: id, Description: desc, Schemes: []string{"https"}, Tags: []string{tag(gv)},
	}}
}

// pathBuilder adds the REST paths of resources to a swagger document.
type pathBuilder struct {
	scheme *runtime.Scheme
	defs   *definitionBuilder
	paths  map[string]spec.PathItem
}

// groupVersionPrefix is "/api/v1" for the core group and "/apis/<g>/<v>"
// otherwise.
func groupVersionPrefix(gv schema.GroupVersion) string {
	if gv.Group == "" {
		return "/api/" + gv.Version
	}
	return "/apis/" + gv.Group + "/" + gv.Version
}

// operationPrefix is the camel-cased group and version upstream puts in
// operation ids: "AppsV1", "CoreV1", "RbacAuthorizationV1".
func operationPrefix(gv schema.GroupVersion) string {
	group := "core"
	if gv.Group != "" {
		group = strings.TrimSuffix(gv.Group, ".k8s.io")
	}
	var b strings.Builder
	for _, part := range strings.Split(group, ".") {
		b.WriteString(upperFirst(part))
	}
	b.WriteString(upperFirst(gv.Version))
	return b.String()
}

// tag is upstream's operation tag: "apps_v1", "rbacAuthorization_v1".
func tag(gv schema.GroupVersion) string {
	p := operationPrefix(gv)
	group := strings.TrimSuffix(p, upperFirst(gv.Version))
	return strings.ToLower(group[:1]) + group[1:] + "_" + gv.Version
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func gvkExtension(gvk schema.GroupVersionKind) map[string]interface{} {
	return map[string]interface{}{"group": gvk.Group, "version": gvk.Version, "kind": gvk.Kind}
}

func (p *pathBuilder) defFor(gvk schema.GroupVersionKind, newObj func() runtime.Object) (string, error) {
	var obj runtime.Object
	if newObj != nil {
		obj = newObj()
	} else {
		o, err := p.scheme.New(gvk)
		if err != nil {
			return "", fmt.Errorf("creating %v: %w", gvk, err)
		}
		obj = o
	}
	name, err := p.defs.addType(typeOf(obj))
	if err != nil {
		return "", fmt.Errorf("defining %v: %w", gvk, err)
	}
	return name, nil
}

// op is one operation about to be added.
type op struct {
	method, id, desc, action string
	gvk                      schema.GroupVersionKind
	params                   []spec.Parameter
	consumes, produces       []string
	responses                map[int]string // status code to definition name
}

func (p *pathBuilder) add(path string, pathParams []spec.Parameter, o op) {
	item := p.paths[path]
	if len(item.Parameters) == 0 {
		item.Parameters = pathParams
	}
	operation := newOperation(o.id, o.desc, o.gvk.GroupVersion())
	operation.Consumes = o.consumes
	operation.Produces = o.produces
	operation.Parameters = o.params
	operation.AddExtension(extAction, o.action)
	operation.AddExtension(extGVK, gvkExtension(o.gvk))
	operation.Responses = &spec.Responses{ResponsesProps: spec.ResponsesProps{StatusCodeResponses: map[int]spec.Response{}}}
	for code, def := range o.responses {
		operation.Responses.StatusCodeResponses[code] = response(http.StatusText(code), def)
	}
	operation.Responses.StatusCodeResponses[http.StatusUnauthorized] = response(http.StatusText(http.StatusUnauthorized), "")
	switch o.method {
	case http.MethodGet:
		item.Get = operation
	case http.MethodPost:
		item.Post = operation
	case http.MethodPut:
		item.Put = operation
	case http.MethodPatch:
		item.Patch = operation
	case http.MethodDelete:
		item.Delete = operation
	}
	p.paths[path] = item
}

func hasVerb(verbs []string, verb string) bool {
	if verbs == nil {
		verbs = defaultVerbs
	}
	for _, v := range verbs {
		if v == verb {
			return true
		}
	}
	return false
}

func with(base []spec.Parameter, more ...spec.Parameter) []spec.Parameter {
	out := make([]spec.Parameter, 0, len(base)+len(more))
	out = append(out, base...)
	return append(out, more...)
}

// addResource adds every path and operation of one resource.
func (p *pathBuilder) addResource(r *registry.Resource) error {
	gv := r.GroupVersion
	gvk := r.GroupVersionKind()
	def, err := p.defFor(gvk, r.New)
	if err != nil {
		return err
	}
	listKind := r.ListKind
	if listKind == "" {
		listKind = r.Kind + "List"
	}
	prefix := groupVersionPrefix(gv)
	opPrefix := operationPrefix(gv)
	scope, kindName := "", r.Kind
	var collection, watchCollection string
	var collParams []spec.Parameter
	if r.Namespaced {
		scope = "Namespaced"
		collection = prefix + "/namespaces/{namespace}/" + r.Resource
		watchCollection = prefix + "/watch/namespaces/{namespace}/" + r.Resource
		collParams = []spec.Parameter{paramNamespace, paramPretty}
	} else {
		collection = prefix + "/" + r.Resource
		watchCollection = prefix + "/watch/" + r.Resource
		collParams = []spec.Parameter{paramPretty}
	}
	item := collection + "/{name}"
	nameParam := pathParam("name", "name of the "+r.Kind)
	itemParams := append([]spec.Parameter{nameParam}, collParams...)
	subject := scope + kindName // "NamespacedDeployment"
	verbs := r.Verbs

	needsList := hasVerb(verbs, "list") || hasVerb(verbs, "watch") || hasVerb(verbs, "deletecollection")
	var listDef string
	if needsList {
		listDef, err = p.defFor(gv.WithKind(listKind), r.NewList)
		if err != nil {
			return err
		}
	}
	if hasVerb(verbs, "list") {
		p.add(collection, collParams, op{
			method: http.MethodGet, id: "list" + opPrefix + subject, action: "list", gvk: gvk,
			desc:   "list or watch objects of kind " + r.Kind,
			params: listParams, consumes: anyMediaType, produces: watchMediaTypes,
			responses: map[int]string{http.StatusOK: listDef},
		})
		if r.Namespaced {
			p.add(prefix+"/"+r.Resource, []spec.Parameter{paramPretty}, op{
				method: http.MethodGet, id: "list" + opPrefix + kindName + "ForAllNamespaces", action: "list", gvk: gvk,
				desc:   "list or watch objects of kind " + r.Kind,
				params: listParams, consumes: anyMediaType, produces: watchMediaTypes,
				responses: map[int]string{http.StatusOK: listDef},
			})
		}
	}
	if hasVerb(verbs, "create") {
		p.add(collection, collParams, op{
			method: http.MethodPost, id: "create" + opPrefix + subject, action: "post", gvk: gvk,
			desc:   "create " + article(r.Kind) + " " + r.Kind,
			params: with(writeParams, bodyParam(def)), consumes: anyMediaType, produces: mediaTypes,
			responses: map[int]string{http.StatusOK: def, http.StatusCreated: def, http.StatusAccepted: def},
		})
	}
	if hasVerb(verbs, "deletecollection") {
		p.add(collection, collParams, op{
			method: http.MethodDelete, id: "delete" + opPrefix + "Collection" + subject, action: "deletecollection", gvk: gvk,
			desc:   "delete collection of " + r.Kind,
			params: with(with(deleteParams, listParams...), optionalBody(deleteOptsDef)), consumes: anyMediaType, produces: mediaTypes,
			responses: map[int]string{http.StatusOK: statusDef},
		})
	}
	if hasVerb(verbs, "get") {
		p.add(item, itemParams, op{
			method: http.MethodGet, id: "read" + opPrefix + subject, action: "get", gvk: gvk,
			desc: "read the specified " + r.Kind, consumes: anyMediaType, produces: mediaTypes,
			responses: map[int]string{http.StatusOK: def},
		})
	}
	if hasVerb(verbs, "update") {
		p.add(item, itemParams, op{
			method: http.MethodPut, id: "replace" + opPrefix + subject, action: "put", gvk: gvk,
			desc:   "replace the specified " + r.Kind,
			params: with(writeParams, bodyParam(def)), consumes: anyMediaType, produces: mediaTypes,
			responses: map[int]string{http.StatusOK: def, http.StatusCreated: def},
		})
	}
	if hasVerb(verbs, "patch") {
		p.add(item, itemParams, patchOp("patch"+opPrefix+subject, "partially update the specified "+r.Kind, gvk, def))
	}
	if hasVerb(verbs, "delete") {
		p.add(item, itemParams, op{
			method: http.MethodDelete, id: "delete" + opPrefix + subject, action: "delete", gvk: gvk,
			desc:   "delete " + article(r.Kind) + " " + r.Kind,
			params: with(deleteParams, optionalBody(deleteOptsDef)), consumes: anyMediaType, produces: mediaTypes,
			responses: map[int]string{http.StatusOK: statusDef, http.StatusAccepted: statusDef},
		})
	}
	if hasVerb(verbs, "watch") {
		watchItem := watchCollection + "/{name}"
		p.add(watchCollection, collParams, op{
			method: http.MethodGet, id: "watch" + opPrefix + subject + "List", action: "watchlist", gvk: gvk,
			desc:   "watch individual changes to a list of " + r.Kind + ". deprecated: use the 'watch' parameter with a list operation instead.",
			params: listParams, consumes: anyMediaType, produces: watchMediaTypes,
			responses: map[int]string{http.StatusOK: watchEventDef},
		})
		p.add(watchItem, itemParams, op{
			method: http.MethodGet, id: "watch" + opPrefix + subject, action: "watch", gvk: gvk,
			desc:   "watch changes to an object of kind " + r.Kind + ". deprecated: use the 'watch' parameter with a list operation instead, filtered to a single item with the 'fieldSelector' parameter.",
			params: listParams, consumes: anyMediaType, produces: watchMediaTypes,
			responses: map[int]string{http.StatusOK: watchEventDef},
		})
		if r.Namespaced {
			p.add(prefix+"/watch/"+r.Resource, []spec.Parameter{paramPretty}, op{
				method: http.MethodGet, id: "watch" + opPrefix + kindName + "ListForAllNamespaces", action: "watchlist", gvk: gvk,
				desc:   "watch individual changes to a list of " + r.Kind + ". deprecated: use the 'watch' parameter with a list operation instead.",
				params: listParams, consumes: anyMediaType, produces: watchMediaTypes,
				responses: map[int]string{http.StatusOK: watchEventDef},
			})
		}
	}
	for _, sub := range r.Subresources {
		if err := p.addSubresource(r, sub, item, itemParams, subject, def); err != nil {
			return err
		}
	}
	return nil
}

func patchOp(id, desc string, gvk schema.GroupVersionKind, def string) op {
	return op{
		method: http.MethodPatch, id: id, action: "patch", gvk: gvk, desc: desc,
		params: with(writeParams, paramForce, bodyParam(patchDef)), consumes: patchMediaTypes, produces: mediaTypes,
		responses: map[int]string{http.StatusOK: def, http.StatusCreated: def},
	}
}

// createOnly describes subresources that only accept POST of another kind.
var createOnly = map[string]schema.GroupVersionKind{
	"binding":  {Version: "v1", Kind: "Binding"},
	"eviction": {Group: "policy", Version: "v1", Kind: "Eviction"},
	"token":    {Group: "authentication.k8s.io", Version: "v1", Kind: "TokenRequest"},
}

func (p *pathBuilder) addSubresource(r *registry.Resource, sub, item string, itemParams []spec.Parameter, subject, def string) error {
	gvk := r.GroupVersionKind()
	opPrefix := operationPrefix(r.GroupVersion)
	path := item + "/" + sub
	switch sub {
	case "status", "scale":
		subDef, subGVK := def, gvk
		if sub == "scale" {
			subGVK = schema.GroupVersionKind{Group: "autoscaling", Version: "v1", Kind: "Scale"}
			d, err := p.defFor(subGVK, nil)
			if err != nil {
				return err
			}
			subDef = d
		}
		suffix := upperFirst(sub)
		params := append([]spec.Parameter{pathParam("name", "name of the "+subGVK.Kind)}, itemParams[1:]...)
		p.add(path, params, op{
			method: http.MethodGet, id: "read" + opPrefix + subject + suffix, action: "get", gvk: subGVK,
			desc: "read " + sub + " of the specified " + r.Kind, consumes: anyMediaType, produces: mediaTypes,
			responses: map[int]string{http.StatusOK: subDef},
		})
		p.add(path, params, op{
			method: http.MethodPut, id: "replace" + opPrefix + subject + suffix, action: "put", gvk: subGVK,
			desc:   "replace " + sub + " of the specified " + r.Kind,
			params: with(writeParams, bodyParam(subDef)), consumes: anyMediaType, produces: mediaTypes,
			responses: map[int]string{http.StatusOK: subDef, http.StatusCreated: subDef},
		})
		p.add(path, params, patchOp("patch"+opPrefix+subject+suffix, "partially update "+sub+" of the specified "+r.Kind, subGVK, subDef))
	default:
		subGVK, ok := createOnly[sub]
		if !ok {
			// Connect-style subresources (log, exec, attach, portforward,
			// proxy) are not described yet.
			return nil
		}
		subDef, err := p.defFor(subGVK, nil)
		if err != nil {
			return err
		}
		params := append([]spec.Parameter{pathParam("name", "name of the "+subGVK.Kind)}, itemParams[1:]...)
		p.add(path, params, op{
			method: http.MethodPost, id: "create" + opPrefix + subject + upperFirst(sub), action: "post", gvk: subGVK,
			desc:   "create " + sub + " of " + article(r.Kind) + " " + r.Kind,
			params: with(writeParams, bodyParam(subDef)), consumes: anyMediaType, produces: mediaTypes,
			responses: map[int]string{http.StatusOK: subDef, http.StatusCreated: subDef, http.StatusAccepted: subDef},
		})
	}
	return nil
}

// addResourceList adds GET <prefix>/ returning the group version's
// APIResourceList, as upstream documents it.
func (p *pathBuilder) addResourceList(gv schema.GroupVersion) {
	operation := newOperation("get"+operationPrefix(gv)+"APIResources", "get available resources", gv)
	operation.Consumes = []string{"application/json", "application/yaml", "application/vnd.kubernetes.protobuf"}
	operation.Produces = mediaTypes
	operation.Responses = &spec.Responses{ResponsesProps: spec.ResponsesProps{StatusCodeResponses: map[int]spec.Response{
		http.StatusOK:           response("OK", resourceListDef),
		http.StatusUnauthorized: response("Unauthorized", ""),
	}}}
	p.paths[groupVersionPrefix(gv)+"/"] = spec.PathItem{PathItemProps: spec.PathItemProps{Get: operation}}
}

func article(kind string) string {
	if kind != "" && strings.ContainsRune("AEIOU", rune(kind[0])) {
		return "an"
	}
	return "a"
}
