package apiserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/applyconfigurations"

	"skiff.dev/skiff/internal/registry"
	"skiff.dev/skiff/internal/registry/apps"
	"skiff.dev/skiff/internal/registry/core"
	"skiff.dev/skiff/internal/registry/generic"
	"skiff.dev/skiff/internal/storage"
)

// memStorage is a minimal in-memory storage.Interface: enough for the
// create path (and get/list) without etcd.
type memStorage struct {
	mu   sync.Mutex
	rev  int64
	objs map[string]runtime.Object
}

var _ storage.Interface = (*memStorage)(nil)

func newMemStorage() *memStorage { return &memStorage{objs: map[string]runtime.Object{}} }

func (m *memStorage) Create(_ context.Context, key string, obj runtime.Object) (runtime.Object, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.objs[key]; ok {
		return nil, storage.NewError(storage.ErrCodeKeyExists, key, 0, "")
	}
	m.rev++
	o := obj.DeepCopyObject()
	if err := storage.SetResourceVersion(o, m.rev); err != nil {
		return nil, err
	}
	m.objs[key] = o
	return o.DeepCopyObject(), nil
}

func (m *memStorage) Get(_ context.Context, key string, _ storage.GetOptions) (runtime.Object, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	o, ok := m.objs[key]
	if !ok {
		return nil, storage.NewError(storage.ErrCodeKeyNotFound, key, 0, "")
	}
	return o.DeepCopyObject(), nil
}

func (m *memStorage) List(_ context.Context, prefix string, opts storage.ListOptions) (*storage.ListResult, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := &storage.ListResult{ResourceVersion: m.rev}
	for k, o := range m.objs {
		if strings.HasPrefix(k, prefix) && (opts.Predicate == nil || opts.Predicate(o)) {
			out.Items = append(out.Items, o.DeepCopyObject())
		}
	}
	return out, nil
}

func (m *memStorage) GuaranteedUpdate(ctx context.Context, key string, ignoreNotFound bool, fn storage.UpdateFunc) (runtime.Object, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, ok := m.objs[key]
	if !ok && !ignoreNotFound {
		return nil, storage.NewError(storage.ErrCodeKeyNotFound, key, 0, "")
	}
	var in runtime.Object
	if ok {
		// As the etcd store with a cached guess: no copy when the
		// update promises not to modify it.
		in = cur
		if !storage.SharedCurrent(ctx) {
			in = cur.DeepCopyObject()
		}
	}
	out, err := fn(in)
	if errors.Is(err, storage.ErrNoChange) {
		return cur.DeepCopyObject(), nil
	}
	if err != nil {
		return nil, err
	}
	m.rev++
	out = out.DeepCopyObject()
	if err := storage.SetResourceVersion(out, m.rev); err != nil {
		return nil, err
	}
	m.objs[key] = out
	return out.DeepCopyObject(), nil
}

func (m *memStorage) Delete(_ context.Context, key string, check func(runtime.Object) error) (runtime.Object, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, ok := m.objs[key]
	if !ok {
		return nil, storage.NewError(storage.ErrCodeKeyNotFound, key, 0, "")
	}
	if check != nil {
		if err := check(cur.DeepCopyObject()); err != nil {
			return nil, err
		}
	}
	delete(m.objs, key)
	m.rev++
	return cur, nil
}

func (m *memStorage) Watch(context.Context, string, storage.WatchOptions) (watch.Interface, error) {
	return nil, storage.NewError(storage.ErrCodeUnreachable, "", 0, "watch not supported by the in-memory store")
}

func (m *memStorage) CurrentRevision(context.Context) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.rev, nil
}

func (m *memStorage) Count(_ context.Context, prefix string) (int64, error) {
	l, err := m.List(context.Background(), prefix, storage.ListOptions{})
	if err != nil {
		return 0, err
	}
	return int64(len(l.Items)), nil
}

var (
	fuzzServerOnce sync.Once
	fuzzServer     *Server
	fuzzServerErr  error
)

// newFuzzServer builds an API server for the core and apps groups over
// in-memory storage, without authentication or admission.
func newFuzzServer(t testing.TB) *Server {
	t.Helper()
	fuzzServerOnce.Do(func() {
		scheme := registry.NewScheme()
		fms := generic.NewFieldManagers(scheme, applyconfigurations.NewTypeConverter(scheme))
		var stores []*generic.Store
		mems := map[string]*memStorage{}
		for _, r := range append(core.Resources(), apps.Resources()...) {
			gvr := r.StorageGVR()
			mem := mems[gvr.String()]
			if mem == nil {
				mem = newMemStorage()
				mems[gvr.String()] = mem
			}
			st := generic.NewStore(r, mem, "/registry/"+gvr.Group+"/"+gvr.Resource)
			st.FieldManagers = fms
			stores = append(stores, st)
		}
		fuzzServer, fuzzServerErr = New(Config{
			Scheme: scheme, Stores: stores,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
	})
	if fuzzServerErr != nil {
		t.Fatalf("building api server: %v", fuzzServerErr)
	}
	return fuzzServer
}

var fuzzTargets = []string{
	"/api/v1/namespaces/default/pods",
	"/api/v1/namespaces/default/configmaps",
	"/api/v1/namespaces/default/services",
	"/apis/apps/v1/namespaces/default/deployments",
	"/api/v1/namespaces",
	"/api/v1/nodes",
}

var fuzzContentTypes = []string{
	"application/json",
	"application/yaml",
	"application/vnd.kubernetes.protobuf",
	"",
	"text/plain",
}

// FuzzDecodeCreate posts arbitrary bodies to the create path: the server
// must never panic or answer 5xx, and every answer is a created object
// (201) or a failure Status whose code matches the HTTP code.
func FuzzDecodeCreate(f *testing.F) {
	seeds := []string{
		`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"nginx"}]}}`,
		`{"apiVersion":"v1","kind":"Pod","metadata":{"generateName":"p-","labels":{"a":"b"}},"spec":{"containers":[{"name":"c","image":"nginx","ports":[{"containerPort":80}],"resources":{"limits":{"cpu":"1"}}}],"nodeName":"n1"}}`,
		`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"P"},"spec":{"containers":[]}}`,
		`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c"}]},"bogus":true}`,
		`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","resourceVersion":"5"}}`,
		`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"`,
		`{"apiVersion":"v1","kind":"Pod","spec":{"containers":[{"name":"c","image":"x","resources":{"requests":{"cpu":"-1"}}}]}}`,
		`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"x","resources":{"requests":{"cpu":"1e999"}}}]}}`,
		`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"other"}}`,
		`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","managedFields":[{"manager":"x","operation":"Apply","fieldsType":"FieldsV1","fieldsV1":{"f:bad":1}}]}}`,
		`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},"spec":{"selector":{"matchLabels":{"a":"b"}},"template":{"metadata":{"labels":{"a":"b"}},"spec":{"containers":[{"name":"c","image":"x"}]}}}}`,
		`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{"k":"v"},"binaryData":{"b":"AAE="}}`,
		`{"apiVersion":"v1","kind":"Service","metadata":{"name":"s"},"spec":{"ports":[{"port":80,"targetPort":"http"}]}}`,
		"apiVersion: v1\nkind: Pod\nmetadata:\n  name: y\nspec:\n  containers:\n  - name: c\n    image: x\n",
		"apiVersion: v1\nkind: Pod\nmetadata: &a\n  name: *a\n",
		`[]`, `null`, `""`, `{}`, `{"kind":7}`, `{"apiVersion":"v1"}`,
		"k8s\x00\x0a\x02v1\x12\x03Pod",
	}
	for i, s := range seeds {
		f.Add([]byte(s), uint8(i), uint8(i/len(fuzzContentTypes)))
	}
	f.Fuzz(func(t *testing.T, body []byte, target, ctype uint8) {
		s := newFuzzServer(t)
		path := fuzzTargets[int(target)%len(fuzzTargets)]
		ct := fuzzContentTypes[int(ctype)%len(fuzzContentTypes)]
		q := []string{"", "?fieldValidation=Strict", "?dryRun=All", "?fieldValidation=Ignore"}[int(target/8)%4]
		req := httptest.NewRequest(http.MethodPost, path+q, bytes.NewReader(body))
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		checkCreateResponse(t, rec, body)
	})
}

func checkCreateResponse(t *testing.T, rec *httptest.ResponseRecorder, body []byte) {
	t.Helper()
	code := rec.Code
	if code >= 500 {
		t.Fatalf("create answered %d for body %q:\n%s", code, body, rec.Body.Bytes())
	}
	ct := rec.Header().Get("Content-Type")
	if code == http.StatusCreated || code == http.StatusOK {
		if ct != "application/json" {
			t.Fatalf("created object served as %q", ct)
		}
		var tm metav1.TypeMeta
		var om struct {
			Metadata metav1.ObjectMeta `json:"metadata"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &tm); err != nil || tm.Kind == "" || tm.APIVersion == "" {
			t.Fatalf("created object has no type (%v): %s", err, rec.Body.Bytes())
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &om); err != nil || om.Metadata.Name == "" || om.Metadata.UID == "" {
			t.Fatalf("created object has no name/uid (%v): %s", err, rec.Body.Bytes())
		}
		return
	}
	if code < 400 {
		t.Fatalf("create answered %d", code)
	}
	var st metav1.Status
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
		t.Fatalf("error %d is not a JSON Status (%v): %q", code, err, rec.Body.Bytes())
	}
	if st.Kind != "Status" || st.Status != metav1.StatusFailure || int(st.Code) != code || st.Reason == "" {
		t.Fatalf("bad Status for %d: %+v", code, st)
	}
}

// TestCreateResponsesWellFormed runs the fuzz seeds as a plain test.
func TestCreateResponsesWellFormed(t *testing.T) {
	s := newFuzzServer(t)
	for i, target := range fuzzTargets {
		for _, ct := range fuzzContentTypes {
			body := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p` + strconv.Itoa(i) + `"},"spec":{"containers":[{"name":"c","image":"nginx"}]}}`
			req := httptest.NewRequest(http.MethodPost, target, strings.NewReader(body))
			if ct != "" {
				req.Header.Set("Content-Type", ct)
			}
			rec := httptest.NewRecorder()
			s.Handler().ServeHTTP(rec, req)
			checkCreateResponse(t, rec, []byte(body))
		}
	}
}
