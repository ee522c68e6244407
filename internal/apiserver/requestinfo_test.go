package apiserver

import (
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
)

// splitPathInto and lowerMethod give what strings.Split and
// strings.ToLower give.
func TestSplitPathLikeStringsSplit(t *testing.T) {
	for _, p := range []string{"", "/", "//", "/api", "/api/", "api/v1", "/api/v1/namespaces/ns/pods/p/status",
		"/apis/apps/v1/namespaces/ns/deployments/d/scale", "/a//b/", "/a/b/c/d/e/f/g/h/i/j/k/l/m", "/x/", "no-slash"} {
		var want []string
		if tp := strings.Trim(p, "/"); tp != "" {
			want = strings.Split(tp, "/")
		}
		var buf [3]string
		if got := splitPathInto(buf[:0], p); !reflect.DeepEqual(got, want) {
			t.Errorf("splitPathInto(%q) = %q, want %q", p, got, want)
		}
		if got := splitPath(p); !reflect.DeepEqual(got, want) {
			t.Errorf("splitPath(%q) = %q, want %q", p, got, want)
		}
	}
	for _, m := range []string{"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "CONNECT", "get", "Brew"} {
		if got, want := lowerMethod(m), strings.ToLower(m); got != want {
			t.Errorf("lowerMethod(%q) = %q, want %q", m, got, want)
		}
	}
}

func TestParseRequestInfo(t *testing.T) {
	for _, c := range []struct {
		method, target string
		want           RequestInfo
	}{
		{"PUT", "/api/v1/namespaces/ns/pods/p/status", RequestInfo{IsResourceRequest: true, Verb: "update", APIPrefix: "api", APIVersion: "v1",
			Namespace: "ns", Resource: "pods", Name: "p", Subresource: "status", Parts: []string{"pods", "p", "status"}}},
		{"POST", "/api/v1/namespaces/ns/pods", RequestInfo{IsResourceRequest: true, Verb: "create", APIPrefix: "api", APIVersion: "v1",
			Namespace: "ns", Resource: "pods", Parts: []string{"pods"}}},
		{"GET", "/apis/apps/v1/deployments?watch=true", RequestInfo{IsResourceRequest: true, Verb: "watch", APIPrefix: "apis", APIGroup: "apps",
			APIVersion: "v1", Resource: "deployments", Parts: []string{"deployments"}}},
		{"GET", "/api/v1/watch/namespaces/ns/pods/p", RequestInfo{IsResourceRequest: true, Verb: "watch", APIPrefix: "api", APIVersion: "v1",
			Namespace: "ns", Resource: "pods", Name: "p", Parts: []string{"pods", "p"}}},
		{"DELETE", "/api/v1/namespaces/ns/pods", RequestInfo{IsResourceRequest: true, Verb: "deletecollection", APIPrefix: "api", APIVersion: "v1",
			Namespace: "ns", Resource: "pods", Parts: []string{"pods"}}},
		{"GET", "/api/v1/namespaces/ns", RequestInfo{IsResourceRequest: true, Verb: "get", APIPrefix: "api", APIVersion: "v1",
			Resource: "namespaces", Name: "ns", Parts: []string{"namespaces", "ns"}}},
		{"PUT", "/api/v1/namespaces/ns/finalize", RequestInfo{IsResourceRequest: true, Verb: "update", APIPrefix: "api", APIVersion: "v1",
			Resource: "namespaces", Name: "ns", Subresource: "finalize", Parts: []string{"namespaces", "ns", "finalize"}}},
		{"GET", "/a/b/c/d/e/f/g/h/i/j/k/l", RequestInfo{Verb: "get", APIPrefix: "a"}},
		{"GET", "/apis/x.example/v1/namespaces/ns/things/t/sub/a/b/c/d/e/f", RequestInfo{IsResourceRequest: true, Verb: "get", APIPrefix: "apis",
			APIGroup: "x.example", APIVersion: "v1", Namespace: "ns", Resource: "things", Name: "t", Subresource: "sub",
			Parts: []string{"things", "t", "sub", "a", "b", "c", "d", "e", "f"}}},
		{"GET", "/healthz", RequestInfo{Verb: "get"}},
		{"BREW", "/api/v1/pods", RequestInfo{IsResourceRequest: true, Verb: "", APIPrefix: "api", APIVersion: "v1", Resource: "pods", Parts: []string{"pods"}}},
	} {
		ri := parseRequestInfo(httptest.NewRequest(c.method, "https://127.0.0.1"+c.target, nil))
		want := c.want
		want.Path = strings.SplitN(c.target, "?", 2)[0]
		got := *ri
		got.parts = [10]string{}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s %s:\n got %+v\nwant %+v", c.method, c.target, got, want)
		}
	}
}
