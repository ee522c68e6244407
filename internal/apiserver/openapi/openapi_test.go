package openapi

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	openapi_v2 "github.com/google/gnostic-models/openapiv2"
	openapi_v3 "github.com/google/gnostic-models/openapiv3"
	"google.golang.org/protobuf/proto"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"k8s.io/kube-openapi/pkg/spec3"
	"k8s.io/kube-openapi/pkg/validation/spec"
	kubectlopenapi "k8s.io/kubectl/pkg/util/openapi"

	"skiff.dev/skiff/internal/registry"
)

var (
	docsOnce sync.Once
	docs     *Documents
	docsErr  error
)

// testDocuments builds the documents once for all tests in the package.
func testDocuments(t *testing.T) *Documents {
	t.Helper()
	docsOnce.Do(func() {
		docs, docsErr = Build(registry.NewScheme(), testResources(), "v1.37.1")
	})
	if docsErr != nil {
		t.Fatalf("building documents: %v", docsErr)
	}
	return docs
}

func definition(t *testing.T, d *Documents, name string) spec.Schema {
	t.Helper()
	def, ok := d.V2.Definitions[name]
	if !ok {
		t.Fatalf("definition %s missing", name)
	}
	return def
}

// property follows a dotted field path from a definition through $refs.
func property(t *testing.T, d *Documents, def, path string) spec.Schema {
	t.Helper()
	s := definition(t, d, def)
	for _, field := range strings.Split(path, ".") {
		if ref := s.Ref.String(); ref != "" {
			s = definition(t, d, strings.TrimPrefix(ref, v2DefPrefix))
		}
		p, ok := s.Properties[field]
		if !ok {
			t.Fatalf("%s: no field %q in %s", def, field, path)
		}
		s = p
	}
	return s
}

func refOf(s spec.Schema) string { return s.Ref.String() }

func TestDeploymentDefinition(t *testing.T) {
	d := testDocuments(t)
	def := definition(t, d, "io.k8s.api.apps.v1.Deployment")
	if want := (appsv1.Deployment{}).SwaggerDoc()[""]; def.Description != want || want == "" {
		t.Errorf("description = %q, want %q", def.Description, want)
	}
	var gvks []map[string]string
	if err := def.Extensions.GetObject(extGVK, &gvks); err != nil {
		t.Fatalf("reading gvk extension: %v", err)
	}
	want := []map[string]string{{"group": "apps", "version": "v1", "kind": "Deployment"}}
	if !reflect.DeepEqual(gvks, want) {
		t.Errorf("gvk = %v, want %v", gvks, want)
	}
	for _, f := range []string{"apiVersion", "kind", "metadata", "spec", "status"} {
		if _, ok := def.Properties[f]; !ok {
			t.Errorf("Deployment lacks property %q", f)
		}
	}
	if got := refOf(def.Properties["metadata"]); got != "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta" {
		t.Errorf("metadata ref = %q", got)
	}
	if len(def.Required) != 0 {
		t.Errorf("Deployment required = %v, want none", def.Required)
	}
	specDef := definition(t, d, "io.k8s.api.apps.v1.DeploymentSpec")
	if !reflect.DeepEqual(specDef.Required, []string{"selector", "template"}) {
		t.Errorf("DeploymentSpec required = %v, want [selector template]", specDef.Required)
	}
	replicas := specDef.Properties["replicas"]
	if replicas.Type[0] != "integer" || replicas.Format != "int32" {
		t.Errorf("replicas = %v/%v, want integer/int32", replicas.Type, replicas.Format)
	}
	if got := property(t, d, "io.k8s.api.apps.v1.Deployment", "spec.strategy").Description; !strings.Contains(got, "deployment strategy") {
		t.Errorf("spec.strategy description = %q", got)
	}
}

func TestPatchAndListExtensions(t *testing.T) {
	d := testDocuments(t)
	containers := property(t, d, "io.k8s.api.apps.v1.Deployment", "spec.template.spec.containers")
	for k, want := range map[string]interface{}{
		extPatchStrategy: "merge",
		extPatchMergeKey: "name",
		extListType:      "map",
	} {
		if got := containers.Extensions[k]; got != want {
			t.Errorf("containers %s = %v, want %v", k, got, want)
		}
	}
	if keys, _ := containers.Extensions.GetStringSlice(extListMapKeys); !reflect.DeepEqual(keys, []string{"name"}) {
		t.Errorf("containers list-map-keys = %v", keys)
	}
	if containers.Type[0] != "array" || containers.Items.Schema.Ref.String() != "#/definitions/io.k8s.api.core.v1.Container" {
		t.Errorf("containers schema = %+v", containers.SchemaProps)
	}
	// Ports are keyed by containerPort and protocol.
	ports := property(t, d, "io.k8s.api.core.v1.Container", "ports")
	if keys, _ := ports.Extensions.GetStringSlice(extListMapKeys); !reflect.DeepEqual(keys, []string{"containerPort", "protocol"}) {
		t.Errorf("ports list-map-keys = %v", keys)
	}
	if got := property(t, d, "io.k8s.api.apps.v1.Deployment", "spec.strategy").Extensions[extPatchStrategy]; got != "retainKeys" {
		t.Errorf("strategy patch strategy = %v, want retainKeys", got)
	}
	if got := property(t, d, "io.k8s.api.core.v1.PodSpec", "volumes").Extensions[extPatchStrategy]; got != "merge,retainKeys" {
		t.Errorf("volumes patch strategy = %v", got)
	}
	if got := property(t, d, "io.k8s.api.core.v1.Container", "args").Extensions[extListType]; got != "atomic" {
		t.Errorf("args list type = %v, want atomic", got)
	}
	if got := definition(t, d, "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector").Extensions[extMapType]; got != "atomic" {
		t.Errorf("LabelSelector map type = %v, want atomic", got)
	}
	if got := property(t, d, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "finalizers").Extensions[extListType]; got != "set" {
		t.Errorf("finalizers list type = %v, want set", got)
	}
	labels := property(t, d, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "labels")
	if labels.Type[0] != "object" || labels.AdditionalProperties == nil || labels.AdditionalProperties.Schema.Type[0] != "string" {
		t.Errorf("labels = %+v", labels.SchemaProps)
	}
}

func TestSpecialTypes(t *testing.T) {
	d := testDocuments(t)
	for _, tc := range []struct {
		name, typ, format, desc string
	}{
		{"io.k8s.apimachinery.pkg.api.resource.Quantity", "string", "", "fixed-point"},
		{"io.k8s.apimachinery.pkg.util.intstr.IntOrString", "string", "int-or-string", "int32 or a string"},
		{"io.k8s.apimachinery.pkg.apis.meta.v1.Time", "string", "date-time", "time.Time"},
		{"io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime", "string", "date-time", "microsecond"},
		{"io.k8s.apimachinery.pkg.runtime.RawExtension", "object", "", "RawExtension"},
		{"io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1", "object", "", "FieldsV1"},
	} {
		def := definition(t, d, tc.name)
		if len(def.Type) != 1 || def.Type[0] != tc.typ || def.Format != tc.format {
			t.Errorf("%s: type %v format %q, want %s %q", tc.name, def.Type, def.Format, tc.typ, tc.format)
		}
		if !strings.Contains(def.Description, tc.desc) {
			t.Errorf("%s: description %q lacks %q", tc.name, def.Description, tc.desc)
		}
		if len(def.Properties) != 0 {
			t.Errorf("%s: has properties %v", tc.name, def.Properties)
		}
	}
	if got := property(t, d, "io.k8s.api.core.v1.ResourceRequirements", "limits").AdditionalProperties.Schema.Ref.String(); got != "#/definitions/io.k8s.apimachinery.pkg.api.resource.Quantity" {
		t.Errorf("limits values ref = %q", got)
	}
	if got := refOf(property(t, d, "io.k8s.api.apps.v1.RollingUpdateDeployment", "maxSurge")); got != "#/definitions/io.k8s.apimachinery.pkg.util.intstr.IntOrString" {
		t.Errorf("maxSurge ref = %q", got)
	}
	if got := property(t, d, "io.k8s.api.core.v1.Secret", "data").AdditionalProperties.Schema; got.Type[0] != "string" || got.Format != "byte" {
		t.Errorf("secret data values = %v %q, want string byte", got.Type, got.Format)
	}
	if got := property(t, d, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "generation"); got.Format != "int64" {
		t.Errorf("generation format = %q", got.Format)
	}

	v3 := d.V3["apis/apps/v1"].Components.Schemas
	ios := v3["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]
	if ios == nil || len(ios.OneOf) != 2 || ios.OneOf[0].Type[0] != "integer" || ios.Format != "int-or-string" || len(ios.Type) != 0 {
		t.Errorf("v3 IntOrString = %+v", ios)
	}
	// A v3 ref with a description is wrapped in allOf, as upstream.
	meta := v3["io.k8s.api.apps.v1.Deployment"].Properties["metadata"]
	if len(meta.AllOf) != 1 || meta.AllOf[0].Ref.String() != "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta" || meta.Description == "" {
		t.Errorf("v3 metadata = %+v", meta.SchemaProps)
	}
}

func paramNames(ps []spec.Parameter) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Name)
	}
	return out
}

func TestOperations(t *testing.T) {
	d := testDocuments(t)
	item, ok := d.V2.Paths.Paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]
	if !ok {
		t.Fatal("deployment item path missing")
	}
	patch := item.Patch
	if patch == nil {
		t.Fatal("no PATCH operation on deployments")
	}
	if patch.ID != "patchAppsV1NamespacedDeployment" {
		t.Errorf("operationId = %q", patch.ID)
	}
	if !reflect.DeepEqual(patch.Consumes, patchMediaTypes) {
		t.Errorf("consumes = %v", patch.Consumes)
	}
	names := strings.Join(paramNames(patch.Parameters), ",")
	for _, p := range []string{"dryRun", "fieldManager", "fieldValidation", "force", "body"} {
		if !strings.Contains(","+names+",", ","+p+",") {
			t.Errorf("PATCH parameters %s lack %s", names, p)
		}
	}
	if got := strings.Join(paramNames(item.Parameters), ","); got != "name,namespace,pretty" {
		t.Errorf("path parameters = %s", got)
	}
	var gvk map[string]string
	if err := patch.Extensions.GetObject(extGVK, &gvk); err != nil || gvk["kind"] != "Deployment" || gvk["group"] != "apps" {
		t.Errorf("patch gvk = %v (%v)", gvk, err)
	}
	if a, _ := patch.Extensions.GetString(extAction); a != "patch" {
		t.Errorf("patch action = %q", a)
	}

	list := d.V2.Paths.Paths["/apis/apps/v1/namespaces/{namespace}/deployments"].Get
	if list == nil || list.ID != "listAppsV1NamespacedDeployment" {
		t.Fatalf("list operation = %+v", list)
	}
	if got := list.Responses.StatusCodeResponses[200].Schema.Ref.String(); got != "#/definitions/io.k8s.api.apps.v1.DeploymentList" {
		t.Errorf("list response = %q", got)
	}
	for _, p := range []string{"labelSelector", "fieldSelector", "limit", "continue", "resourceVersion", "resourceVersionMatch", "watch", "allowWatchBookmarks", "timeoutSeconds"} {
		if !strings.Contains(","+strings.Join(paramNames(list.Parameters), ",")+",", ","+p+",") {
			t.Errorf("list lacks %s", p)
		}
	}

	for path, id := range map[string]string{
		"/api/v1/namespaces/{namespace}/pods":                            "createCoreV1NamespacedPod",
		"/api/v1/namespaces/{namespace}/pods/{name}/binding":             "createCoreV1NamespacedPodBinding",
		"/api/v1/namespaces/{namespace}/pods/{name}/eviction":            "createCoreV1NamespacedPodEviction",
		"/apis/rbac.authorization.k8s.io/v1/clusterroles":                "createRbacAuthorizationV1ClusterRole",
		"/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale":  "",
		"/apis/apps/v1/namespaces/{namespace}/deployments/{name}/status": "",
		"/apis/apps/v1/watch/namespaces/{namespace}/deployments/{name}":  "",
		"/apis/apps/v1/deployments":                                      "",
		"/api/v1/namespaces/{name}/status":                               "",
		"/apis/rbac.authorization.k8s.io/v1/watch/clusterroles":          "",
	} {
		item, ok := d.V2.Paths.Paths[path]
		if !ok {
			t.Errorf("path %s missing", path)
			continue
		}
		if id != "" && (item.Post == nil || item.Post.ID != id) {
			t.Errorf("%s POST = %+v, want %s", path, item.Post, id)
		}
	}
	scale := d.V2.Paths.Paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"].Patch
	if err := scale.Extensions.GetObject(extGVK, &gvk); err != nil || gvk["kind"] != "Scale" || gvk["group"] != "autoscaling" {
		t.Errorf("scale gvk = %v", gvk)
	}
	// Namespaces do not allow deletecollection in this descriptor.
	if d.V2.Paths.Paths["/api/v1/namespaces"].Delete != nil {
		t.Error("namespaces got a deletecollection operation it does not serve")
	}
	// log is a connect subresource, not described.
	if _, ok := d.V2.Paths.Paths["/api/v1/namespaces/{namespace}/pods/{name}/log"]; ok {
		t.Error("pods/log described")
	}
}

func TestV3Documents(t *testing.T) {
	d := testDocuments(t)
	for _, gv := range []string{"api/v1", "apis/apps/v1", "apis/rbac.authorization.k8s.io/v1"} {
		if d.V3[gv] == nil {
			t.Errorf("no v3 document for %s", gv)
		}
	}
	apps := d.V3["apis/apps/v1"]
	for p := range apps.Paths.Paths {
		if !strings.HasPrefix(p, "/apis/apps/v1/") {
			t.Errorf("apps/v1 document has foreign path %s", p)
		}
	}
	if _, ok := apps.Components.Schemas["io.k8s.api.core.v1.ConfigMap"]; ok {
		t.Error("apps/v1 document carries unreferenced ConfigMap")
	}
	for _, name := range []string{"io.k8s.api.apps.v1.Deployment", "io.k8s.api.core.v1.PodSpec", "io.k8s.api.autoscaling.v1.Scale", "io.k8s.apimachinery.pkg.apis.meta.v1.Status"} {
		if _, ok := apps.Components.Schemas[name]; !ok {
			t.Errorf("apps/v1 document lacks %s", name)
		}
	}
	patch := apps.Paths.Paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"].Patch
	if patch.RequestBody == nil || patch.RequestBody.Content["application/strategic-merge-patch+json"] == nil {
		t.Fatalf("v3 patch request body = %+v", patch.RequestBody)
	}
	found := false
	for _, p := range patch.Parameters {
		if p.Name == "fieldValidation" && p.In == "query" {
			found = true
		}
	}
	if !found {
		t.Error("v3 PATCH lacks fieldValidation")
	}
	// Every v3 document must be valid JSON kubectl can parse back.
	b, err := json.Marshal(apps)
	if err != nil {
		t.Fatal(err)
	}
	var back spec3.OpenAPI
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("v3 round trip: %v", err)
	}
}

// TestKubectlPatchMeta feeds the v2 document through the code kubectl
// apply uses to find strategic merge patch metadata.
func TestKubectlPatchMeta(t *testing.T) {
	d := testDocuments(t)
	b, err := json.Marshal(d.V2)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := openapi_v2.ParseDocument(b)
	if err != nil {
		t.Fatalf("parsing v2 document: %v", err)
	}
	resources, err := kubectlopenapi.NewOpenAPIData(doc)
	if err != nil {
		t.Fatalf("kubectl openapi data: %v", err)
	}
	s := resources.LookupResource(appsv1.SchemeGroupVersion.WithKind("Deployment"))
	if s == nil {
		t.Fatal("kubectl cannot find Deployment by GVK")
	}
	meta := strategicpatch.NewPatchMetaFromOpenAPI(s)
	var cur strategicpatch.LookupPatchMeta = meta
	for _, f := range []string{"spec", "template", "spec"} {
		next, _, err := cur.LookupPatchMetadataForStruct(f)
		if err != nil {
			t.Fatalf("looking up %s: %v", f, err)
		}
		cur = next
	}
	podSpec := cur
	_, pm, err := podSpec.LookupPatchMetadataForSlice("containers")
	if err != nil {
		t.Fatal(err)
	}
	if pm.GetPatchMergeKey() != "name" || len(pm.GetPatchStrategies()) != 1 || pm.GetPatchStrategies()[0] != "merge" {
		t.Errorf("containers patch meta = %v %q", pm.GetPatchStrategies(), pm.GetPatchMergeKey())
	}
}

func get(t *testing.T, srv *httptest.Server, path, accept string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	return resp, body
}

func testServer(t *testing.T) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	New(registry.NewScheme(), testResources(), "v1.37.1").Install(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestHandlers(t *testing.T) {
	srv := testServer(t)

	resp, body := get(t, srv, "/openapi/v2", "application/json")
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"io.k8s.api.apps.v1.Deployment"`) {
		t.Fatalf("v2 json: %d %.200s", resp.StatusCode, body)
	}
	etag := resp.Header.Get("Etag")
	if etag == "" {
		t.Error("v2 has no ETag")
	}
	if resp, _ := get(t, srv, "/openapi/v2", "application/json", "If-None-Match", etag); resp.StatusCode != http.StatusNotModified {
		t.Errorf("v2 with matching If-None-Match: %d, want 304", resp.StatusCode)
	}

	resp, body = get(t, srv, "/openapi/v2", "application/com.github.proto-openapi.spec.v2@v1.0+protobuf")
	// kube-openapi answers with its historical spelling of the type.
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/com.github.proto-openapi.spec.v2") || !strings.HasSuffix(ct, "+protobuf") {
		t.Errorf("v2 protobuf content type = %q", ct)
	}
	var v2 openapi_v2.Document
	if err := proto.Unmarshal(body, &v2); err != nil {
		t.Fatalf("decoding v2 protobuf: %v", err)
	}
	found := false
	for _, def := range v2.GetDefinitions().GetAdditionalProperties() {
		if def.GetName() == "io.k8s.api.apps.v1.Deployment" {
			found = true
		}
	}
	if !found {
		t.Error("v2 protobuf lacks the Deployment definition")
	}

	resp, body = get(t, srv, "/openapi/v3", "")
	var disco struct {
		Paths map[string]struct {
			ServerRelativeURL string `json:"serverRelativeURL"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(body, &disco); err != nil {
		t.Fatalf("v3 discovery %d: %v: %s", resp.StatusCode, err, body)
	}
	apps, ok := disco.Paths["apis/apps/v1"]
	if !ok || !strings.HasPrefix(apps.ServerRelativeURL, "/openapi/v3/apis/apps/v1?hash=") {
		t.Fatalf("v3 discovery apps/v1 = %+v", disco.Paths)
	}
	if _, ok := disco.Paths["api/v1"]; !ok {
		t.Error("v3 discovery lacks api/v1")
	}

	resp, body = get(t, srv, apps.ServerRelativeURL, "application/json")
	if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "public, immutable" {
		t.Errorf("v3 apps/v1 by hash: %d cache-control %q", resp.StatusCode, resp.Header.Get("Cache-Control"))
	}
	var v3 spec3.OpenAPI
	if err := json.Unmarshal(body, &v3); err != nil || v3.Components.Schemas["io.k8s.api.apps.v1.Deployment"] == nil {
		t.Fatalf("v3 apps/v1 json: %v", err)
	}

	resp, body = get(t, srv, "/openapi/v3/api/v1", "application/com.github.proto-openapi.spec.v3@v1.0+protobuf")
	if resp.StatusCode != 200 {
		t.Fatalf("v3 api/v1 protobuf: %d", resp.StatusCode)
	}
	var pb openapi_v3.Document
	if err := proto.Unmarshal(body, &pb); err != nil {
		t.Fatalf("decoding v3 protobuf: %v", err)
	}
	found = false
	for _, s := range pb.GetComponents().GetSchemas().GetAdditionalProperties() {
		if s.GetName() == "io.k8s.api.core.v1.Pod" {
			found = true
		}
	}
	if !found {
		t.Error("v3 api/v1 protobuf lacks the Pod schema")
	}

	// A stale hash redirects to the current one.
	resp, _ = get(t, srv, "/openapi/v3/apis/apps/v1?hash=stale", "application/json")
	if resp.Request.URL.String() != srv.URL+apps.ServerRelativeURL {
		t.Errorf("stale hash ended at %s, want %s", resp.Request.URL, apps.ServerRelativeURL)
	}
}

func TestLazyAndWarm(t *testing.T) {
	s := New(registry.NewScheme(), testResources(), "v1.37.1")
	s.Warm() // before Install: nothing to warm
	mux := http.NewServeMux()
	s.Install(mux)
	if s.sv != nil || s.err != nil {
		t.Fatal("Install built the documents; they must wait for the first request")
	}
	s.Warm()
	if s.sv == nil || s.err != nil {
		t.Fatalf("Warm did not build the documents: %v", s.err)
	}
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/openapi/v3/apis/apps/v1", nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "patchAppsV1NamespacedDeployment") {
		t.Errorf("after Warm: %d %.200s", rec.Code, rec.Body.String())
	}
}

// TestKubectlPatchMetaV3 computes a three-way strategic merge patch with
// the v3 document the way kubectl 1.33 apply does: a changed container
// image must be patched by merge key, not by replacing the list.
func TestKubectlPatchMetaV3(t *testing.T) {
	d := testDocuments(t)
	doc := d.V3["apis/apps/v1"]
	var deployment *spec.Schema
	for _, s := range doc.Components.Schemas {
		var gvks []map[string]string
		if err := s.Extensions.GetObject(extGVK, &gvks); err == nil && len(gvks) == 1 && gvks[0]["kind"] == "Deployment" && gvks[0]["group"] == "apps" {
			deployment = s
		}
	}
	if deployment == nil {
		t.Fatal("no schema with the Deployment GVK in apps/v1")
	}
	meta := strategicpatch.PatchMetaFromOpenAPIV3{Schema: deployment, SchemaList: doc.Components.Schemas}
	original := []byte(`{"spec":{"template":{"spec":{"containers":[{"name":"a","image":"a:1"},{"name":"b","image":"b:1"}]}}}}`)
	modified := []byte(`{"spec":{"template":{"spec":{"containers":[{"name":"a","image":"a:2"},{"name":"b","image":"b:1"}]}}}}`)
	patch, err := strategicpatch.CreateThreeWayMergePatch(original, modified, original, meta, false)
	if err != nil {
		t.Fatalf("creating patch: %v", err)
	}
	want := `{"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"a"},{"name":"b"}],"containers":[{"image":"a:2","name":"a"}]}}}}`
	if string(patch) != want {
		t.Errorf("patch = %s\nwant    %s", patch, want)
	}
}

// TestReflectionEdgeCases covers Go shapes the built-in types use rarely
// or not at all, so a future type does not break the build.
func TestReflectionEdgeCases(t *testing.T) {
	type inner struct {
		A string `json:"a"`
	}
	type sample struct {
		inner   `json:""`
		Skipped string            `json:"-"`
		When    time.Time         `json:"when"`
		Any     interface{}       `json:"any,omitempty"`
		Nested  map[string][]byte `json:"nested,omitempty"`
		Anon    struct {
			B int64 `json:"b,omitzero"`
		} `json:"anon"`
		private string // unexported: must be ignored
	}
	b := newDefinitionBuilder(registry.NewScheme(), nil)
	name, err := b.addType(reflect.TypeOf(sample{}))
	if err != nil {
		t.Fatal(err)
	}
	def := b.defs[name]
	if !strings.HasSuffix(name, ".sample") || !strings.HasPrefix(name, "dev.skiff.") {
		t.Errorf("name = %q", name)
	}
	got := map[string]string{}
	for k, v := range def.Properties {
		typ := ""
		if len(v.Type) > 0 {
			typ = v.Type[0]
		}
		got[k] = typ + "/" + v.Format
	}
	want := map[string]string{"a": "string/", "when": "string/date-time", "any": "object/", "nested": "object/", "anon": "object/"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("properties = %v, want %v", got, want)
	}
	if !reflect.DeepEqual(def.Required, []string{"a", "when", "anon"}) {
		t.Errorf("required = %v", def.Required)
	}
	if p := def.Properties["nested"].AdditionalProperties.Schema; p.Format != "byte" {
		t.Errorf("nested values = %+v", p.SchemaProps)
	}
	if r := def.Properties["anon"].Required; len(r) != 0 {
		t.Errorf("omitzero field required: %v", r)
	}
}
