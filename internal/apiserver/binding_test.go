package apiserver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/applyconfigurations"

	"skiff.dev/skiff/internal/registry"
	"skiff.dev/skiff/internal/registry/core"
	"skiff.dev/skiff/internal/registry/generic"
	"skiff.dev/skiff/internal/storage"
	"skiff.dev/skiff/internal/storage/cacher"
	"skiff.dev/skiff/internal/storage/etcd3"
	"skiff.dev/skiff/internal/storage/storagetest"
)

// bindingEnv is an API server whose pods live in etcd behind a watch
// cache, as in the real server.
type bindingEnv struct {
	h      http.Handler
	pods   *generic.Store
	client *clientv3.Client
	now    time.Time
}

func newBindingEnv(t *testing.T) *bindingEnv {
	t.Helper()
	sch := registry.NewScheme()
	client := storagetest.StartEtcd(t)
	var podRes *registry.Resource
	for _, r := range core.Resources() {
		if r.GroupResource().String() == "pods" {
			podRes = r
		}
	}
	if podRes == nil {
		t.Fatal("no pods resource")
	}
	under := etcd3.New(etcd3.Config{Client: client, Codec: storagetest.ProtobufCodec(sch), NewFunc: podRes.New})
	c, err := cacher.New(cacher.Config{Storage: under, Prefix: "/registry/pods/", NewFunc: podRes.New,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	select {
	case <-c.Ready():
	case <-time.After(20 * time.Second):
		t.Fatal("watch cache not ready")
	}
	env := &bindingEnv{client: client, now: time.Date(2026, 11, 22, 20, 0, 0, 0, time.UTC)}
	env.pods = generic.NewStore(podRes, c, "/registry/pods")
	env.pods.Now = func() time.Time { return env.now }
	env.pods.FieldManagers = generic.NewFieldManagers(sch, applyconfigurations.NewTypeConverter(sch))
	s, err := New(Config{Scheme: sch, Stores: []*generic.Store{env.pods},
		Extra:  &PodSubresources{Now: func() time.Time { return env.now }},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	env.h = s.Handler()
	return env
}

func (e *bindingEnv) do(t *testing.T, method, path, body string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, "https://127.0.0.1"+path, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	return w
}

func (e *bindingEnv) create(t *testing.T, name string) *corev1.Pod {
	t.Helper()
	p := handlerBenchPod(name)
	p.Namespace = "ns"
	p.Annotations = map[string]string{"keep": "me"}
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReadyToStartContainers, Status: corev1.ConditionFalse}}
	body, _ := json.Marshal(p)
	w := e.do(t, "POST", "/api/v1/namespaces/ns/pods?fieldManager=creator", string(body))
	if w.Code != http.StatusCreated {
		t.Fatalf("creating %s: %d %s", name, w.Code, w.Body)
	}
	out := &corev1.Pod{}
	if err := json.Unmarshal(w.Body.Bytes(), out); err != nil {
		t.Fatal(err)
	}
	return out
}

func (e *bindingEnv) stored(t *testing.T, name string) ([]byte, int64) {
	t.Helper()
	resp, err := e.client.Get(context.Background(), "/registry/pods/ns/"+name)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("reading %s from etcd: %v %v", name, resp, err)
	}
	return resp.Kvs[0].Value, resp.Kvs[0].ModRevision
}

// cached returns the watch cache's own object for name once it is at rev.
func (e *bindingEnv) cached(t *testing.T, name string, rev int64) runtime.Object {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		obj, err := e.pods.Storage.Get(context.Background(), "/registry/pods/ns/"+name, storage.GetOptions{ResourceVersion: "0"})
		if err == nil && obj.(*corev1.Pod).ResourceVersion == fmt.Sprint(rev) {
			return obj
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cache did not reach %s at %d: %v", name, rev, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// referenceBind is pods/binding as it was before it wrote the pod's
// storage directly: the same checks and changes as an update of the
// generic store (defaulting, metadata validation, no managedFields).
func (e *bindingEnv) referenceBind(ctx context.Context, name string, b *corev1.Binding, dryRun bool) error {
	gr := e.pods.R.GroupResource()
	_, _, err := e.pods.Update(ctx, "ns", name, func(ctx context.Context, cur runtime.Object) (runtime.Object, error) {
		if cur == nil {
			return nil, apierrors.NewNotFound(gr, name)
		}
		pod := cur.(*corev1.Pod)
		if pod.DeletionTimestamp != nil {
			return nil, apierrors.NewConflict(gr, name, fmt.Errorf("pod %s is being deleted, cannot be assigned to a host", name))
		}
		if pod.Spec.NodeName != "" {
			return nil, apierrors.NewConflict(gr, name, fmt.Errorf("pod %s is already assigned to node %q", name, pod.Spec.NodeName))
		}
		if b.UID != "" && b.UID != pod.UID {
			return nil, apierrors.NewConflict(gr, name, fmt.Errorf("precondition failed: UID in precondition: %s, UID in object meta: %s", b.UID, pod.UID))
		}
		pod.Spec.NodeName = b.Target.Name
		for k, v := range b.Annotations {
			if pod.Annotations == nil {
				pod.Annotations = map[string]string{}
			}
			pod.Annotations[k] = v
		}
		setPodCondition(pod, corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(e.now)})
		return pod, nil
	}, generic.UpdateOptions{DryRun: dryRun, Subresource: "binding", SkipFieldManager: true})
	return err
}

func bindingJSON(name string, uid string, node string, ann map[string]string) (*corev1.Binding, string) {
	b := &corev1.Binding{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Binding"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", Annotations: ann},
		Target:     corev1.ObjectReference{Kind: "Node", Name: node}}
	b.UID = types.UID(uid)
	body, _ := json.Marshal(b)
	return b, string(body)
}

// A binding written straight to the pods' storage stores exactly the
// bytes the generic store's update stored (same pod, same binding, same
// clock), bumps the resourceVersion once, and answers every failure with
// the same status.
func TestBindingMatchesGenericUpdate(t *testing.T) {
	e := newBindingEnv(t)
	ctx := context.Background()
	// Pods created alike differ only in name and uid; the names are of
	// equal length so the bytes line up.
	var fast, ref *corev1.Pod
	for _, ann := range []map[string]string{nil, {"scheduler.example/by": "test"}} {
		fast, ref = e.create(t, "bind-fast-"+fmt.Sprint(len(ann))+"aaa"), e.create(t, "bind-refr-"+fmt.Sprint(len(ann))+"bbb")
		_, beforeRev := e.stored(t, fast.Name)
		// The binding starts from the watch cache's own object (no
		// copy): it must leave that object as it was.
		cached := e.cached(t, fast.Name, beforeRev)
		pristine := cached.DeepCopyObject()
		b, body := bindingJSON(fast.Name, string(fast.UID), "node-1", ann)
		if w := e.do(t, "POST", "/api/v1/namespaces/ns/pods/"+fast.Name+"/binding", body); w.Code != http.StatusCreated {
			t.Fatalf("binding: %d %s", w.Code, w.Body)
		}
		if !reflect.DeepEqual(cached, pristine) {
			t.Errorf("the binding modified the cached pod:\n%+v\n%+v", cached, pristine)
		}
		rb := b.DeepCopy()
		rb.Name, rb.UID = ref.Name, ref.UID
		if err := e.referenceBind(ctx, ref.Name, rb, false); err != nil {
			t.Fatal(err)
		}
		gotData, gotRev := e.stored(t, fast.Name)
		wantData, _ := e.stored(t, ref.Name)
		norm := bytes.ReplaceAll(bytes.ReplaceAll(gotData, []byte(fast.Name), []byte(ref.Name)), []byte(fast.UID), []byte(ref.UID))
		if !bytes.Equal(norm, wantData) {
			t.Errorf("annotations %v: stored bytes differ from the generic update's:\n%q\n%q", ann, norm, wantData)
		}
		if gotRev <= beforeRev {
			t.Errorf("binding left the mod revision at %d", gotRev)
		}
		// The cache serves the bound pod at its etcd revision.
		w := e.do(t, "GET", "/api/v1/namespaces/ns/pods/"+fast.Name, "")
		got := &corev1.Pod{}
		if err := json.Unmarshal(w.Body.Bytes(), got); err != nil {
			t.Fatal(err)
		}
		if got.Spec.NodeName != "node-1" || got.ResourceVersion != fmt.Sprint(gotRev) {
			t.Errorf("read back: node %q rv %s, want node-1 at %d", got.Spec.NodeName, got.ResourceVersion, gotRev)
		}
	}

	// Failures answer as the generic update did; nothing is written.
	status := func(w *httptest.ResponseRecorder) (int, metav1.StatusReason) {
		st := &metav1.Status{}
		_ = json.Unmarshal(w.Body.Bytes(), st)
		return w.Code, st.Reason
	}
	deleting := e.create(t, "bind-dele-cccc")
	deleting.Finalizers = []string{"example.com/hold"}
	body, _ := json.Marshal(deleting)
	if w := e.do(t, "PUT", "/api/v1/namespaces/ns/pods/"+deleting.Name, string(body)); w.Code != http.StatusOK {
		t.Fatalf("adding a finalizer: %d %s", w.Code, w.Body)
	}
	if w := e.do(t, "DELETE", "/api/v1/namespaces/ns/pods/"+deleting.Name, ""); w.Code/100 != 2 {
		t.Fatalf("deleting: %d %s", w.Code, w.Body)
	}
	fresh := e.create(t, "bind-fres-dddd")
	for _, c := range []struct {
		name, pod, uid string
		dryRun         bool
	}{
		{"already bound", fast.Name, "", false},
		{"wrong uid", fresh.Name, "0000", false},
		{"being deleted", deleting.Name, "", false},
		{"absent", "bind-none-eeee", "", false},
		{"dry run", fresh.Name, "", true},
		{"dry run absent", "bind-none-eeee", "", true},
		{"dry run bound", fast.Name, "", true},
	} {
		var before []byte
		if c.pod != "bind-none-eeee" {
			before, _ = e.stored(t, c.pod)
		}
		b, body := bindingJSON(c.pod, c.uid, "node-2", nil)
		path := "/api/v1/namespaces/ns/pods/" + c.pod + "/binding"
		if c.dryRun {
			path += "?dryRun=All"
		}
		gotCode, gotReason := status(e.do(t, "POST", path, body))
		wantCode, wantReason := http.StatusCreated, metav1.StatusReason("")
		if err := e.referenceBind(ctx, c.pod, b, c.dryRun); err != nil {
			se, ok := err.(apierrors.APIStatus)
			if !ok {
				t.Fatalf("%s: reference error %T %v", c.name, err, err)
			}
			wantCode, wantReason = int(se.Status().Code), se.Status().Reason
		}
		if gotCode != wantCode || gotReason != wantReason {
			t.Errorf("%s: %d %s, the generic update answers %d %s", c.name, gotCode, gotReason, wantCode, wantReason)
		}
		if before != nil {
			if after, _ := e.stored(t, c.pod); !bytes.Equal(after, before) {
				t.Errorf("%s: the pod was written", c.name)
			}
		}
	}
}
