package apiserver

import (
	"net/http"
	"net/url"
	"strings"
)

// RequestInfo is what a resource URL means.
type RequestInfo struct {
	IsResourceRequest bool
	Path              string
	// Verb is the Kubernetes verb: get list watch create update patch
	// delete deletecollection (proxy verbs for subresources keep these).
	Verb        string
	APIPrefix   string // "api" or "apis"
	APIGroup    string
	APIVersion  string
	Namespace   string
	Resource    string
	Subresource string
	Name        string
	// Parts is the path after the group version.
	Parts []string

	// parts holds the path's segments for paths of up to its length,
	// saving a slice allocation per request.
	parts [10]string
}

var namespaceSubresources = map[string]bool{"status": true, "finalize": true}

// parseRequestInfo splits a Kubernetes API path. Non-resource paths
// (/healthz, /api, /apis/apps) come back with IsResourceRequest false.
func parseRequestInfo(r *http.Request) *RequestInfo {
	ri := &RequestInfo{Path: r.URL.Path, Verb: lowerMethod(r.Method)}
	parts := splitPathInto(ri.parts[:0], r.URL.Path)
	if len(parts) < 3 {
		return ri
	}
	ri.APIPrefix = parts[0]
	switch parts[0] {
	case "api":
		ri.APIVersion = parts[1]
		parts = parts[2:]
	case "apis":
		if len(parts) < 4 {
			return ri
		}
		ri.APIGroup, ri.APIVersion = parts[1], parts[2]
		parts = parts[3:]
	default:
		return ri
	}
	ri.IsResourceRequest = true
	watchPath := false
	if parts[0] == "watch" {
		watchPath = true
		parts = parts[1:]
		if len(parts) == 0 {
			ri.IsResourceRequest = false
			return ri
		}
	}
	switch r.Method {
	case http.MethodPost:
		ri.Verb = "create"
	case http.MethodGet, http.MethodHead:
		ri.Verb = "get"
	case http.MethodPut:
		ri.Verb = "update"
	case http.MethodPatch:
		ri.Verb = "patch"
	case http.MethodDelete:
		ri.Verb = "delete"
	default:
		ri.Verb = ""
	}
	if parts[0] == "namespaces" {
		if len(parts) > 1 {
			ri.Namespace = parts[1]
			if len(parts) > 2 && !namespaceSubresources[parts[2]] {
				parts = parts[2:]
			}
		}
	}
	ri.Parts = parts
	switch {
	case len(parts) >= 3:
		ri.Subresource = parts[2]
		fallthrough
	case len(parts) == 2:
		ri.Name = parts[1]
		fallthrough
	case len(parts) == 1:
		ri.Resource = parts[0]
	}
	// The namespace of a namespace is itself only when addressed by name.
	if ri.Resource == "namespaces" {
		ri.Namespace = ""
	}
	if ri.Name == "" && ri.Verb == "get" {
		ri.Verb = "list"
	}
	if watchPath || (ri.Verb == "list" && isTrue(queryOf(r).Get("watch"))) {
		ri.Verb = "watch"
	}
	if ri.Verb == "delete" && ri.Name == "" {
		ri.Verb = "deletecollection"
	}
	// Single-object watches: /watch/namespaces/ns/pods/name.
	if ri.Verb == "get" && watchPath {
		ri.Verb = "watch"
	}
	return ri
}

func splitPath(p string) []string { return splitPathInto(nil, p) }

// splitPathInto is strings.Split of p without its leading and trailing
// slashes, appended to dst (nil for an empty path).
func splitPathInto(dst []string, p string) []string {
	p = strings.Trim(p, "/")
	if p == "" {
		return nil
	}
	for {
		i := strings.IndexByte(p, '/')
		if i < 0 {
			return append(dst, p)
		}
		dst = append(dst, p[:i])
		p = p[i+1:]
	}
}

// lowerMethod is strings.ToLower(m) without allocating for the methods
// clients send.
func lowerMethod(m string) string {
	switch m {
	case http.MethodGet:
		return "get"
	case http.MethodPost:
		return "post"
	case http.MethodPut:
		return "put"
	case http.MethodPatch:
		return "patch"
	case http.MethodDelete:
		return "delete"
	case http.MethodHead:
		return "head"
	case http.MethodOptions:
		return "options"
	}
	return strings.ToLower(m)
}

// queryOf is r.URL.Query() without parsing (and allocating a map for) an
// empty query, which most writes have: nil Values answer Get, Has and
// indexing like an empty map. Callers must not add to the result.
func queryOf(r *http.Request) url.Values {
	if r.URL.RawQuery == "" {
		return nil
	}
	return r.URL.Query()
}

func isTrue(s string) bool { return s == "true" || s == "1" }
