package apiserver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"skiff.dev/skiff/test/integration/framework"
)

// raw drives the API with plain HTTP requests on the admin credentials.
type raw struct {
	hc   *http.Client
	base string
}

func newRaw(t *testing.T, cfg *rest.Config) *raw {
	t.Helper()
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatalf("building http client: %v", err)
	}
	hc.Timeout = 30 * time.Second
	return &raw{hc: hc, base: strings.TrimSuffix(cfg.Host, "/")}
}

type response struct {
	code   int
	header http.Header
	body   []byte
}

func (r *raw) do(t *testing.T, method, path string, header map[string]string, body []byte) response {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, r.base+path, rd)
	if err != nil {
		t.Fatalf("building request: %v", err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := r.hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading response of %s %s: %v", method, path, err)
	}
	return response{code: resp.StatusCode, header: resp.Header, body: b}
}

// status decodes a metav1.Status body and checks its envelope.
func (resp response) status(t *testing.T) metav1.Status {
	t.Helper()
	var st metav1.Status
	if err := json.Unmarshal(resp.body, &st); err != nil {
		t.Fatalf("response (%d) is not a Status: %v\n%s", resp.code, err, resp.body)
	}
	if st.Kind != "Status" || st.APIVersion != "v1" || st.Status != metav1.StatusFailure || int(st.Code) != resp.code {
		t.Errorf("bad Status envelope for %d: kind=%q apiVersion=%q status=%q code=%d", resp.code, st.Kind, st.APIVersion, st.Status, st.Code)
	}
	return st
}

const badNS = "bad-input"

// snapshot is the namespace's configmaps by name with their full JSON,
// to show a rejected request wrote nothing.
func snapshot(t *testing.T, r *raw) map[string]string {
	t.Helper()
	resp := r.do(t, http.MethodGet, "/api/v1/namespaces/"+badNS+"/configmaps", nil, nil)
	if resp.code != http.StatusOK {
		t.Fatalf("listing configmaps: %d %s", resp.code, resp.body)
	}
	var list corev1.ConfigMapList
	if err := json.Unmarshal(resp.body, &list); err != nil {
		t.Fatalf("decoding list: %v", err)
	}
	out := map[string]string{}
	for _, cm := range list.Items {
		b, _ := json.Marshal(cm)
		out[cm.Name] = string(b)
	}
	return out
}

func cmJSON(name string, data map[string]string) []byte {
	b, _ := json.Marshal(map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]any{"name": name}, "data": data})
	return b
}

func TestBadInput(t *testing.T) {
	c := framework.Start(t, framework.Options{})
	ctx := context.Background()
	r := newRaw(t, c.Config)
	createNamespace(t, c, badNS)
	keep, err := c.Client.CoreV1().ConfigMaps(badNS).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "keep"}, Data: map[string]string{"a": "1"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating configmap: %v", err)
	}
	staleRV := keep.ResourceVersion
	keep.Data["a"] = "2"
	if _, err := c.Client.CoreV1().ConfigMaps(badNS).Update(ctx, keep, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("updating configmap: %v", err)
	}
	stale, _ := json.Marshal(map[string]any{"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": "keep", "resourceVersion": staleRV}, "data": map[string]string{"a": "stale"}})

	const (
		coll     = "/api/v1/namespaces/" + badNS + "/configmaps"
		item     = coll + "/keep"
		ctJSON   = "application/json"
		ctYAML   = "application/yaml"
		ctJSONP  = "application/json-patch+json"
		ctMergeP = "application/merge-patch+json"
		ctSMP    = "application/strategic-merge-patch+json"
	)
	big := bytes.Repeat([]byte("x"), 3*1024*1024+10)
	bigBody := cmJSON("big", map[string]string{"big": string(big)})
	longName := strings.Repeat("a", 254)

	tests := []struct {
		name        string
		method      string
		path        string
		contentType string
		body        []byte
		code        int
		reason      metav1.StatusReason
		// causeField, when set, must be the field of one of the causes.
		causeField string
		// msg, when set, must be in the message.
		msg string
	}{
		{"malformed json", http.MethodPost, coll, ctJSON, []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"mj"`), 400, metav1.StatusReasonBadRequest, "", ""},
		{"json not an object", http.MethodPost, coll, ctJSON, []byte(`[1,2,3]`), 400, metav1.StatusReasonBadRequest, "", ""},
		{"malformed yaml", http.MethodPost, coll, ctYAML, []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: my\n data: [\n"), 400, metav1.StatusReasonBadRequest, "", ""},
		{"yaml of wrong shape", http.MethodPost, coll, ctYAML, []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: 7\n"), 400, metav1.StatusReasonBadRequest, "", ""},
		{"garbage protobuf", http.MethodPost, coll, "application/vnd.kubernetes.protobuf", []byte("k8s\x00\x0a\x0bnot-really"), 400, metav1.StatusReasonBadRequest, "", ""},
		{"wrong kind", http.MethodPost, coll, ctJSON, []byte(`{"apiVersion":"v1","kind":"Secret","metadata":{"name":"wk"}}`), 400, metav1.StatusReasonBadRequest, "", "kind"},
		{"unknown kind", http.MethodPost, coll, ctJSON, []byte(`{"apiVersion":"v1","kind":"Nonsense","metadata":{"name":"uk"}}`), 400, metav1.StatusReasonBadRequest, "", ""},
		{"wrong apiVersion", http.MethodPost, coll, ctJSON, []byte(`{"apiVersion":"apps/v1","kind":"ConfigMap","metadata":{"name":"wv"}}`), 400, metav1.StatusReasonBadRequest, "", ""},
		{"unknown apiVersion", http.MethodPost, coll, ctJSON, []byte(`{"apiVersion":"v7","kind":"ConfigMap","metadata":{"name":"wv"}}`), 400, metav1.StatusReasonBadRequest, "", ""},
		{"uppercase name", http.MethodPost, coll, ctJSON, cmJSON("BadName", nil), 422, metav1.StatusReasonInvalid, "metadata.name", ""},
		{"name too long", http.MethodPost, coll, ctJSON, cmJSON(longName, nil), 422, metav1.StatusReasonInvalid, "metadata.name", ""},
		{"no name", http.MethodPost, coll, ctJSON, cmJSON("", nil), 422, metav1.StatusReasonInvalid, "metadata.name", ""},
		{"invalid data key", http.MethodPost, coll, ctJSON, cmJSON("badkey", map[string]string{"no/slash": "x"}), 422, metav1.StatusReasonInvalid, "data[no/slash]", ""},
		{"namespace mismatch", http.MethodPost, coll, ctJSON, []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"nsm","namespace":"other"}}`), 400, metav1.StatusReasonBadRequest, "", "namespace"},
		{"already exists", http.MethodPost, coll, ctJSON, cmJSON("keep", map[string]string{"a": "overwritten"}), 409, metav1.StatusReasonAlreadyExists, "", ""},
		{"oversized body", http.MethodPost, coll, ctJSON, bigBody, 413, metav1.StatusReasonRequestEntityTooLarge, "", ""},
		{"oversized update", http.MethodPut, item, ctJSON, bigBody, 413, metav1.StatusReasonRequestEntityTooLarge, "", ""},
		{"unknown field strict", http.MethodPost, coll + "?fieldValidation=Strict", ctJSON, []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"strict"},"bogus":1}`), 400, metav1.StatusReasonBadRequest, "", "bogus"},
		{"duplicate field strict", http.MethodPost, coll + "?fieldValidation=Strict", ctJSON, []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"dup","name":"dup2"}}`), 400, metav1.StatusReasonBadRequest, "", "duplicate"},
		{"invalid fieldValidation", http.MethodPost, coll + "?fieldValidation=Loud", ctJSON, cmJSON("fv", nil), 400, metav1.StatusReasonBadRequest, "", ""},
		{"invalid dryRun", http.MethodPost, coll + "?dryRun=Some", ctJSON, cmJSON("dr", nil), 400, metav1.StatusReasonBadRequest, "", ""},
		{"stale resourceVersion", http.MethodPut, item, ctJSON, stale, 409, metav1.StatusReasonConflict, "", "modified"},
		{"update name mismatch", http.MethodPut, item, ctJSON, cmJSON("other", nil), 400, metav1.StatusReasonBadRequest, "", ""},
		{"update empty body", http.MethodPut, item, ctJSON, []byte{}, 400, metav1.StatusReasonBadRequest, "", ""},
		{"json patch test fails", http.MethodPatch, item, ctJSONP, []byte(`[{"op":"test","path":"/data/a","value":"nope"},{"op":"replace","path":"/data/a","value":"patched"}]`), 422, metav1.StatusReasonInvalid, "", ""},
		{"json patch missing path", http.MethodPatch, item, ctJSONP, []byte(`[{"op":"replace","path":"/data/missing/deeper","value":"x"}]`), 422, metav1.StatusReasonInvalid, "", ""},
		{"malformed json patch", http.MethodPatch, item, ctJSONP, []byte(`[{"op":"replace",`), 400, metav1.StatusReasonBadRequest, "", ""},
		{"json patch not a list", http.MethodPatch, item, ctJSONP, []byte(`{"op":"replace"}`), 400, metav1.StatusReasonBadRequest, "", ""},
		{"malformed merge patch", http.MethodPatch, item, ctMergeP, []byte(`{"data":`), 400, metav1.StatusReasonBadRequest, "", ""},
		{"malformed strategic patch", http.MethodPatch, item, ctSMP, []byte(`{"data":`), 400, metav1.StatusReasonBadRequest, "", ""},
		{"merge patch wrong type", http.MethodPatch, item, ctMergeP, []byte(`{"data":"a string"}`), 400, metav1.StatusReasonBadRequest, "", ""},
		{"patch makes invalid", http.MethodPatch, item, ctMergeP, []byte(`{"data":{"bad/key":"x"}}`), 422, metav1.StatusReasonInvalid, "data[bad/key]", ""},
		{"patch unknown field strict", http.MethodPatch, item + "?fieldValidation=Strict", ctMergeP, []byte(`{"bogus":1}`), 400, metav1.StatusReasonBadRequest, "", "bogus"},
		{"patch missing object", http.MethodPatch, coll + "/absent", ctMergeP, []byte(`{"data":{"a":"b"}}`), 404, metav1.StatusReasonNotFound, "", ""},
		{"apply without fieldManager", http.MethodPatch, item, "application/apply-patch+yaml", []byte("apiVersion: v1\nkind: ConfigMap\ndata:\n  a: x\n"), 400, metav1.StatusReasonBadRequest, "", "fieldManager"},
		{"unsupported media type", http.MethodPost, coll, "text/plain", []byte("hello"), 415, metav1.StatusReasonUnsupportedMediaType, "", ""},
		{"unsupported patch type", http.MethodPatch, item, ctJSON, []byte(`{"data":{"a":"x"}}`), 415, metav1.StatusReasonUnsupportedMediaType, "", ""},
		{"missing namespace", http.MethodPost, "/api/v1/namespaces/does-not-exist/configmaps", ctJSON, cmJSON("x", nil), 404, metav1.StatusReasonNotFound, "", ""},
		{"unknown resource", http.MethodPost, "/api/v1/namespaces/" + badNS + "/widgets", ctJSON, cmJSON("x", nil), 404, metav1.StatusReasonNotFound, "", ""},
		{"delete missing", http.MethodDelete, coll + "/absent", "", nil, 404, metav1.StatusReasonNotFound, "", ""},
		{"delete wrong uid precondition", http.MethodDelete, item, ctJSON, []byte(`{"kind":"DeleteOptions","apiVersion":"v1","preconditions":{"uid":"not-the-uid"}}`), 409, metav1.StatusReasonConflict, "", ""},
		{"delete stale rv precondition", http.MethodDelete, item, ctJSON, []byte(`{"kind":"DeleteOptions","apiVersion":"v1","preconditions":{"resourceVersion":"` + staleRV + `"}}`), 409, metav1.StatusReasonConflict, "", ""},
		{"wrong value type", http.MethodPost, coll, ctJSON, []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"wt"},"data":{"a":1}}`), 400, metav1.StatusReasonBadRequest, "", ""},
		{"resourceVersion on create", http.MethodPost, coll, ctJSON, []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"rvc","resourceVersion":"5"}}`), 400, metav1.StatusReasonBadRequest, "", "resourceVersion"},
		{"update missing object", http.MethodPut, coll + "/absent", ctJSON, cmJSON("absent", nil), 404, metav1.StatusReasonNotFound, "", ""},
		{"apply wrong kind", http.MethodPatch, item + "?fieldManager=t", "application/apply-patch+yaml", []byte("apiVersion: v1\nkind: Secret\nmetadata:\n  name: keep\n"), 400, metav1.StatusReasonBadRequest, "", ""},
		{"apply malformed yaml", http.MethodPatch, item + "?fieldManager=t", "application/apply-patch+yaml", []byte("apiVersion: v1\nkind: ConfigMap\n data: [\n"), 400, metav1.StatusReasonBadRequest, "", ""},
		{"delete bad propagationPolicy", http.MethodDelete, item + "?propagationPolicy=Sideways", "", nil, 422, metav1.StatusReasonInvalid, "propagationPolicy", ""},
		{"delete orphan and propagation", http.MethodDelete, item, ctJSON, []byte(`{"kind":"DeleteOptions","apiVersion":"v1","orphanDependents":true,"propagationPolicy":"Background"}`), 422, metav1.StatusReasonInvalid, "propagationPolicy", "cannot be both set"},
		{"deletecollection bad propagationPolicy", http.MethodDelete, coll + "?labelSelector=none%3Dmatch&propagationPolicy=Sideways", "", nil, 422, metav1.StatusReasonInvalid, "propagationPolicy", ""},
		{"delete malformed options", http.MethodDelete, item, ctJSON, []byte(`{"kind":`), 400, metav1.StatusReasonBadRequest, "", ""},
		{"delete negative grace", http.MethodDelete, item + "?gracePeriodSeconds=abc", "", nil, 400, metav1.StatusReasonBadRequest, "", ""},
		{"deletecollection bad selector", http.MethodDelete, coll + "?labelSelector=a%3D%3D%3Db", "", nil, 400, metav1.StatusReasonBadRequest, "", ""},
		{"limit not a number", http.MethodGet, coll + "?limit=ten", "", nil, 400, metav1.StatusReasonBadRequest, "", ""},
		{"exact without resourceVersion", http.MethodGet, coll + "?resourceVersionMatch=Exact", "", nil, 400, metav1.StatusReasonBadRequest, "", ""},
		{"get missing", http.MethodGet, coll + "/absent", "", nil, 404, metav1.StatusReasonNotFound, "", ""},
		{"method not allowed", http.MethodPost, item, ctJSON, cmJSON("keep", nil), 405, metav1.StatusReasonMethodNotAllowed, "", ""},
		{"bad label selector", http.MethodGet, coll + "?labelSelector=a%3D%3D%3Db", "", nil, 400, metav1.StatusReasonBadRequest, "", ""},
		{"unsupported field selector", http.MethodGet, coll + "?fieldSelector=data.a%3D1", "", nil, 400, metav1.StatusReasonBadRequest, "", ""},
		{"bad resourceVersion", http.MethodGet, coll + "?resourceVersion=abc", "", nil, 400, metav1.StatusReasonBadRequest, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := snapshot(t, r)
			var hdr map[string]string
			if tc.contentType != "" {
				hdr = map[string]string{"Content-Type": tc.contentType}
			}
			resp := r.do(t, tc.method, tc.path, hdr, tc.body)
			if resp.code != tc.code {
				t.Fatalf("code = %d, want %d; body:\n%.2000s", resp.code, tc.code, resp.body)
			}
			if ct := resp.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			st := resp.status(t)
			if st.Reason != tc.reason {
				t.Errorf("reason = %q, want %q (message %q)", st.Reason, tc.reason, st.Message)
			}
			if tc.msg != "" && !strings.Contains(st.Message, tc.msg) {
				t.Errorf("message %q lacks %q", st.Message, tc.msg)
			}
			if tc.causeField != "" {
				found := false
				if st.Details != nil {
					for _, c := range st.Details.Causes {
						found = found || c.Field == tc.causeField
					}
				}
				if !found {
					t.Errorf("no cause for field %s in %+v", tc.causeField, st.Details)
				}
			}
			if after := snapshot(t, r); !reflect.DeepEqual(before, after) {
				t.Errorf("a rejected request changed storage:\nbefore %v\nafter  %v", before, after)
			}
		})
	}

	t.Run("unknown field warn", func(t *testing.T) {
		resp := r.do(t, http.MethodPost, coll+"?fieldValidation=Warn", map[string]string{"Content-Type": ctJSON},
			[]byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"warned"},"bogus":1}`))
		if resp.code != http.StatusCreated {
			t.Fatalf("code = %d, want 201: %s", resp.code, resp.body)
		}
		if w := resp.header.Values("Warning"); len(w) != 1 || !strings.Contains(w[0], `unknown field \"bogus\"`) || !strings.HasPrefix(w[0], "299 ") {
			t.Errorf("Warning headers = %q", w)
		}
		if bytes.Contains(resp.body, []byte("bogus")) {
			t.Errorf("the unknown field was stored: %s", resp.body)
		}
		// Ignore: no warning either.
		resp = r.do(t, http.MethodPost, coll+"?fieldValidation=Ignore", map[string]string{"Content-Type": ctJSON},
			[]byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"ignored"},"bogus":1}`))
		if resp.code != http.StatusCreated || len(resp.header.Values("Warning")) != 0 {
			t.Errorf("Ignore: code %d warnings %q", resp.code, resp.header.Values("Warning"))
		}
	})

	t.Run("compacted", func(t *testing.T) {
		cm, err := c.Client.CoreV1().ConfigMaps(badNS).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "compacted"}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("creating: %v", err)
		}
		oldRV := cm.ResourceVersion
		cm.Data = map[string]string{"x": "y"}
		cm, err = c.Client.CoreV1().ConfigMaps(badNS).Update(ctx, cm, metav1.UpdateOptions{})
		if err != nil {
			t.Fatalf("updating: %v", err)
		}
		compact(t, c, cm.ResourceVersion)
		// An exact read at a compacted revision needs etcd's history. (A
		// watch from a compacted revision is served from the watch cache
		// while the cache still holds it, as upstream; the informer test
		// pushes a revision out of the cache and shows that 410.)
		for _, p := range []string{
			coll + "?resourceVersion=" + oldRV + "&resourceVersionMatch=Exact",
			coll + "?resourceVersion=" + oldRV + "&resourceVersionMatch=Exact&limit=1",
		} {
			resp := r.do(t, http.MethodGet, p, nil, nil)
			if resp.code != http.StatusGone {
				t.Errorf("GET %s: code %d, want 410: %s", p, resp.code, resp.body)
				continue
			}
			if st := resp.status(t); st.Reason != metav1.StatusReasonExpired {
				t.Errorf("GET %s: reason %q, want Expired", p, st.Reason)
			}
		}
	})
}

// compact compacts etcd up to rv.
func compact(t *testing.T, c *framework.Cluster, rv string) {
	t.Helper()
	cli := c.Server.EtcdClient()
	if cli == nil {
		t.Fatalf("server has no etcd client")
	}
	var rev int64
	if _, err := fmt.Sscan(rv, &rev); err != nil {
		t.Fatalf("parsing resourceVersion %q: %v", rv, err)
	}
	if _, err := cli.Compact(context.Background(), rev); err != nil {
		t.Fatalf("compacting etcd at %d: %v", rev, err)
	}
}
