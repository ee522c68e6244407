package apiserver

import (
	"net/http/httptest"
	"testing"
)

func TestIsLongRunning(t *testing.T) {
	for target, want := range map[string]bool{
		"/api/v1/namespaces/default/pods":                                false,
		"/api/v1/namespaces/default/pods/web-1/status":                   false,
		"/api/v1/namespaces/default/pods?watch=true":                     true,
		"/api/v1/namespaces/default/pods?watch=1&resourceVersion=5":      true,
		"/api/v1/namespaces/default/pods?watch=false":                    false,
		"/api/v1/watch/namespaces/default/pods":                          true,
		"/api/v1/namespaces/default/pods/web-1/log":                      true,
		"/api/v1/namespaces/default/pods/web-1/exec?command=ls":          true,
		"/api/v1/namespaces/default/pods/web-1/attach":                   true,
		"/api/v1/namespaces/default/pods/web-1/portforward":              true,
		"/api/v1/nodes/n1/proxy/metrics":                                 true,
		"/api/v1/namespaces/default/services/web:80/proxy/":              true,
		"/apis/apps/v1/namespaces/default/deployments/web/scale":         false,
		"/api/v1/namespaces/default/configmaps/watch":                    false,
		"/api/v1/namespaces/default/configmaps/logger":                   true, // a substring match, as before
		"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases": false,
	} {
		if got := isLongRunning(httptest.NewRequest("GET", "https://127.0.0.1"+target, nil)); got != want {
			t.Errorf("%s: %v, want %v", target, got, want)
		}
	}
}
