package apiserver

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/applyconfigurations"

	"skiff.dev/skiff/internal/registry"
	"skiff.dev/skiff/internal/registry/core"
	"skiff.dev/skiff/internal/registry/generic"
	"skiff.dev/skiff/internal/storage"
)

// staleGuessStorage runs every update first against a stale copy of the
// object, as the cacher does with a cached guess that etcd then refuses:
// the attempt's object is encoded (its resourceVersion cleared in place,
// as etcd3's encode does) and thrown away, and the update is retried on
// the current object.
type staleGuessStorage struct {
	*memStorage
	mu    sync.Mutex
	stale map[string]runtime.Object
}

func (s *staleGuessStorage) GuaranteedUpdate(ctx context.Context, key string, ignoreNotFound bool, fn storage.UpdateFunc) (runtime.Object, error) {
	s.mu.Lock()
	guess := s.stale[key]
	s.mu.Unlock()
	if guess != nil {
		if out, err := fn(guess.DeepCopyObject()); err == nil {
			if m, err := meta.Accessor(out); err == nil {
				m.SetResourceVersion("")
			}
		}
	}
	return s.memStorage.GuaranteedUpdate(ctx, key, ignoreNotFound, fn)
}

// TestUpdateRetryKeepsClientResourceVersion: a PUT whose first attempt ran
// on a stale guess carrying the client's (stale) resourceVersion must
// still be refused on the retry against the current object, not go
// through with the resourceVersion its first attempt cleared; and a PUT
// of the current version succeeds after the same retry.
func TestUpdateRetryKeepsClientResourceVersion(t *testing.T) {
	scheme := registry.NewScheme()
	fms := generic.NewFieldManagers(scheme, applyconfigurations.NewTypeConverter(scheme))
	sgs := &staleGuessStorage{memStorage: newMemStorage(), stale: map[string]runtime.Object{}}
	var stores []*generic.Store
	for _, r := range core.Resources() {
		if r.Resource != "configmaps" {
			continue
		}
		st := generic.NewStore(r, sgs, "/registry/configmaps")
		st.FieldManagers = fms
		stores = append(stores, st)
	}
	s, err := New(Config{Scheme: scheme, Stores: stores, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	h := s.Handler()
	do := func(method, path, body string) (int, *corev1.ConfigMap) {
		t.Helper()
		r := httptest.NewRequest(method, "https://127.0.0.1"+path, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		var cm corev1.ConfigMap
		if w.Code < 300 {
			if err := json.Unmarshal(w.Body.Bytes(), &cm); err != nil {
				t.Fatalf("%s %s: %v", method, path, err)
			}
		}
		return w.Code, &cm
	}
	const path = "/api/v1/namespaces/default/configmaps"
	code, v1 := do("POST", path, `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm"},"data":{"k":"1"}}`)
	if code != http.StatusCreated {
		t.Fatalf("create: %d", code)
	}
	stale, err := sgs.Get(context.Background(), "/registry/configmaps/default/cm", storage.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sgs.stale["/registry/configmaps/default/cm"] = stale
	put := func(rv, value string) (int, *corev1.ConfigMap) {
		return do("PUT", path+"/cm", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm","resourceVersion":"`+rv+`"},"data":{"k":"`+value+`"}}`)
	}
	code, v2 := put(v1.ResourceVersion, "2")
	if code != http.StatusOK || v2.Data["k"] != "2" {
		t.Fatalf("update of the current version after a stale attempt: %d %v", code, v2.Data)
	}
	if code, _ := put(v1.ResourceVersion, "stale"); code != http.StatusConflict {
		t.Fatalf("update of a stale version whose first attempt ran on a stale guess: %d, want 409", code)
	}
	got, _ := sgs.Get(context.Background(), "/registry/configmaps/default/cm", storage.GetOptions{})
	if d := got.(*corev1.ConfigMap).Data["k"]; d != "2" {
		t.Fatalf("stored data %q after the refused stale update, want 2", d)
	}
}
