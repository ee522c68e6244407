package openapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/cli-runtime/pkg/resource"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"skiff.dev/skiff/internal/registry"
)

// discoveryServer serves the OpenAPI handlers plus the minimal legacy
// discovery kubectl needs to map "deployment" to a resource; the real
// discovery handlers live elsewhere in internal/apiserver.
func discoveryServer(t *testing.T) *httptest.Server {
	t.Helper()
	resources := testResources()
	mux := http.NewServeMux()
	New(registry.NewScheme(), resources, "v1.37.1").Install(mux)

	byGV := map[schema.GroupVersion]*metav1.APIResourceList{}
	groups := &metav1.APIGroupList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"}}
	for _, r := range resources {
		list, ok := byGV[r.GroupVersion]
		if !ok {
			list = &metav1.APIResourceList{TypeMeta: metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"}, GroupVersion: r.GroupVersion.String()}
			byGV[r.GroupVersion] = list
			if r.GroupVersion.Group != "" {
				gv := metav1.GroupVersionForDiscovery{GroupVersion: r.GroupVersion.String(), Version: r.GroupVersion.Version}
				groups.Groups = append(groups.Groups, metav1.APIGroup{Name: r.GroupVersion.Group, Versions: []metav1.GroupVersionForDiscovery{gv}, PreferredVersion: gv})
			}
		}
		verbs := r.Verbs
		if verbs == nil {
			verbs = defaultVerbs
		}
		list.APIResources = append(list.APIResources, metav1.APIResource{
			Name: r.Resource, SingularName: r.Singular, Namespaced: r.Namespaced, Kind: r.Kind, Verbs: verbs,
		})
	}
	writeJSON := func(w http.ResponseWriter, v interface{}) {
		w.Header().Set("Content-Type", "application/json")
		if err := json.NewEncoder(w).Encode(v); err != nil {
			t.Errorf("encoding discovery: %v", err)
		}
	}
	mux.HandleFunc("/api", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, &metav1.APIVersions{TypeMeta: metav1.TypeMeta{Kind: "APIVersions"}, Versions: []string{"v1"}})
	})
	mux.HandleFunc("/apis", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, groups) })
	for gv, list := range byGV {
		list := list
		mux.HandleFunc(groupVersionPrefix(gv), func(w http.ResponseWriter, r *http.Request) { writeJSON(w, list) })
	}
	srv := httptest.NewUnstartedServer(mux)
	// kubectl drops connections it does not reuse; keep those handshake
	// errors out of the test log.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func kubeconfig(t *testing.T, server string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: %s
    insecure-skip-tls-verify: true
users:
- name: test
  user:
    token: dummy
contexts:
- name: test
  context: {cluster: test, user: test}
current-context: test
`, server)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func kubectlBinary(t *testing.T, version string) string {
	t.Helper()
	k, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl not installed")
	}
	if real, err := filepath.EvalSymlinks(k); err == nil {
		k = real
	}
	bin := filepath.Join(filepath.Dir(k), "kubectl."+version)
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("%s not installed", bin)
	}
	return bin
}

func TestKubectlExplain(t *testing.T) {
	if testing.Short() {
		t.Skip("runs kubectl")
	}
	srv := discoveryServer(t)
	cfg := kubeconfig(t, srv.URL)
	strategyDoc := (appsv1.DeploymentSpec{}).SwaggerDoc()["strategy"]
	containersDoc := "List of containers belonging to the pod."

	for _, version := range []string{"1.27", "1.33"} {
		bin := kubectlBinary(t, version)
		for _, tc := range []struct {
			args []string
			want []string
		}{
			{[]string{"explain", "deployment.spec.strategy"}, []string{"KIND:", "Deployment", "FIELD: strategy", strategyDoc, "rollingUpdate", "type"}},
			{[]string{"explain", "deployment.spec.strategy", "--output=plaintext-openapiv2"}, []string{"KIND:", "Deployment", "RESOURCE: strategy", strategyDoc, "rollingUpdate"}},
			{[]string{"explain", "pods.spec.containers"}, []string{"KIND:", "Pod", containersDoc, "-required-"}},
			{[]string{"explain", "deployment.spec.strategy", "--recursive"}, []string{"rollingUpdate", "maxSurge", "maxUnavailable", "type"}},
			{[]string{"explain", "clusterroles"}, []string{"GROUP:", "rbac.authorization.k8s.io", "ClusterRole", "aggregationRule"}},
		} {
			t.Run(version+"/"+strings.Join(tc.args, " "), func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()
				args := append([]string{"--kubeconfig", cfg, "--cache-dir", t.TempDir()}, tc.args...)
				out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
				if err != nil {
					t.Fatalf("kubectl %s: %v\n%s", strings.Join(tc.args, " "), err, out)
				}
				// kubectl wraps descriptions; compare with whitespace folded.
				text := strings.Join(strings.Fields(string(out)), " ")
				for _, w := range tc.want {
					if !strings.Contains(text, strings.Join(strings.Fields(w), " ")) {
						t.Errorf("output lacks %q:\n%s", w, out)
					}
				}
			})
		}
	}
}

// TestFieldValidationDetected runs the check kubectl uses to decide that
// the server supports fieldValidation (cli-runtime's v3 verifier).
func TestFieldValidationDetected(t *testing.T) {
	srv := discoveryServer(t)
	cfg := &rest.Config{Host: srv.URL, BearerToken: "dummy", TLSClientConfig: rest.TLSClientConfig{Insecure: true}}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	v := resource.NewQueryParamVerifierV3(dyn, dc.OpenAPIV3(), resource.QueryParamFieldValidation)
	for _, gvk := range []schema.GroupVersionKind{
		appsv1.SchemeGroupVersion.WithKind("Deployment"),
		{Version: "v1", Kind: "Pod"},
		{Version: "v1", Kind: "Namespace"},
		{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "ClusterRole"},
	} {
		if err := v.HasSupport(gvk); err != nil {
			t.Errorf("fieldValidation not detected for %v: %v", gvk, err)
		}
	}
	// The check must be able to fail: a kind without a PATCH operation.
	if err := v.HasSupport(appsv1.SchemeGroupVersion.WithKind("StatefulSet")); err == nil {
		t.Error("fieldValidation reported for a kind the documents do not describe")
	}
}
