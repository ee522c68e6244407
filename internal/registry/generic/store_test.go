package generic_test

import (
	"context"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"skiff.dev/skiff/internal/registry"
	"skiff.dev/skiff/internal/registry/core"
	"skiff.dev/skiff/internal/registry/generic"
	"skiff.dev/skiff/internal/storage"
)

// createOnlyStorage implements Create over a map; any other call panics
// (through the nil embedded interface), so a test notices unexpected use.
type createOnlyStorage struct {
	storage.Interface
	mu      sync.Mutex
	objs    map[string]runtime.Object
	creates int
}

func (c *createOnlyStorage) Create(_ context.Context, key string, obj runtime.Object) (runtime.Object, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.creates++
	if _, ok := c.objs[key]; ok {
		return nil, storage.NewError(storage.ErrCodeKeyExists, key, 0, "key already exists")
	}
	c.objs[key] = obj.DeepCopyObject()
	if err := storage.SetResourceVersion(obj, int64(len(c.objs))); err != nil {
		return nil, err
	}
	return obj, nil
}

func podsResource(t testing.TB) *registry.Resource {
	t.Helper()
	for _, r := range core.Resources() {
		if r.Resource == "pods" && r.StorageResource.Empty() {
			return r
		}
	}
	t.Fatal("no pods resource")
	return nil
}

func generatedPod() *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{GenerateName: "web-", Namespace: "default"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "img"}}}}
}

// TestCreateGenerateNameRetriesCollision: a generated name that is already
// taken is replaced by a fresh one instead of failing the request with a
// 500 ServerTimeout (the cause of the few 500s in the 10,000-pod
// Deployment benchmark: 5 random characters collide about 3 times among
// 10,000 pods of one ReplicaSet).
func TestCreateGenerateNameRetriesCollision(t *testing.T) {
	mem := &createOnlyStorage{objs: map[string]runtime.Object{"/registry/pods/default/web-aaaaa": &corev1.Pod{}}}
	st := generic.NewStore(podsResource(t), mem, "/registry/pods")
	names := []string{"aaaaa", "aaaaa", "bbbbb"}
	st.GenerateName = func(prefix string) string {
		n := names[0]
		names = names[1:]
		return prefix + n
	}
	out, err := st.Create(context.Background(), "default", generatedPod(), generic.CreateOptions{FieldManager: "test"})
	if err != nil {
		t.Fatalf("create with a colliding generated name: %v", err)
	}
	if got := out.(*corev1.Pod).Name; got != "web-bbbbb" {
		t.Errorf("name = %q, want web-bbbbb (the first free generated name)", got)
	}
	if _, ok := mem.objs["/registry/pods/default/web-bbbbb"]; !ok {
		t.Errorf("stored keys %v, want web-bbbbb among them", mem.objs)
	}
	if stored := mem.objs["/registry/pods/default/web-bbbbb"].(*corev1.Pod); stored.Name != "web-bbbbb" {
		t.Errorf("stored object's name = %q, want web-bbbbb", stored.Name)
	}
	if mem.creates != 3 {
		t.Errorf("storage creates = %d, want 3", mem.creates)
	}
}

// TestCreateGenerateNameGivesUp: when every attempt collides the client
// gets upstream's ServerTimeout, after a bounded number of attempts.
func TestCreateGenerateNameGivesUp(t *testing.T) {
	mem := &createOnlyStorage{objs: map[string]runtime.Object{"/registry/pods/default/web-aaaaa": &corev1.Pod{}}}
	st := generic.NewStore(podsResource(t), mem, "/registry/pods")
	st.GenerateName = func(prefix string) string { return prefix + "aaaaa" }
	_, err := st.Create(context.Background(), "default", generatedPod(), generic.CreateOptions{})
	if !apierrors.IsServerTimeout(err) {
		t.Fatalf("err = %v, want ServerTimeout", err)
	}
	if mem.creates != 8 {
		t.Errorf("storage creates = %d, want 8 attempts", mem.creates)
	}
}

// TestCreateExplicitNameExists: a client-chosen name is never replaced.
func TestCreateExplicitNameExists(t *testing.T) {
	mem := &createOnlyStorage{objs: map[string]runtime.Object{"/registry/pods/default/web": &corev1.Pod{}}}
	st := generic.NewStore(podsResource(t), mem, "/registry/pods")
	pod := generatedPod()
	pod.GenerateName, pod.Name = "", "web"
	_, err := st.Create(context.Background(), "default", pod, generic.CreateOptions{})
	if !apierrors.IsAlreadyExists(err) {
		t.Fatalf("err = %v, want AlreadyExists", err)
	}
	if mem.creates != 1 {
		t.Errorf("storage creates = %d, want 1", mem.creates)
	}
}
