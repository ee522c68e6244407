package generic

import (
	"bytes"
	"context"
	"fmt"
	"math/rand"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/applyconfigurations"

	"skiff.dev/skiff/internal/registry"
	"skiff.dev/skiff/internal/storage"
)

// randomCreatePod is one of a few templates (a controller's pods), with
// random per-object metadata and, now and then, a random difference in
// content the entry depends on.
func randomCreatePod(rng *rand.Rand, pods *registry.Resource) *corev1.Pod {
	owner := pickOne(rng, "rs-a", "rs-b", "")
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
		GenerateName: pickOne(rng, "web-", "db-"), Namespace: pickOne(rng, "default", ""),
		Labels: map[string]string{"app": "web"},
	}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "img:v1"}}}}
	if owner != "" {
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: owner, UID: types.UID("uid-" + owner), Controller: new(true)}}
	}
	switch rng.Intn(30) { // mostly the template itself
	case 0:
		p.Labels["extra"] = "x"
	case 1:
		p.Spec.Containers[0].Image = "img:v2"
	case 2:
		p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: int32(80 + rng.Intn(2))}}
	case 3:
		p.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(pickOne(rng, "100m", "0.1", "1"))}
	case 4:
		p.Spec.Containers[0].Env = []corev1.EnvVar{}
	case 5:
		p.Annotations = map[string]string{"note": "x"}
	case 6:
		p.Labels = nil
	case 7:
		p.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "someone", Operation: "Update", APIVersion: "v1", FieldsType: "FieldsV1",
			FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:metadata":{"f:labels":{"f:app":{}}}}`)}}}
	case 8:
		p.Spec.NodeSelector = map[string]string{"disk": "ssd"}
	case 9:
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "side", Image: "side:v1"})
	case 10:
		p.Name = fmt.Sprintf("web-%d", rng.Intn(1000000))
	case 11:
		p.Status.Phase = corev1.PodRunning // reset by PrepareForCreate
	case 12:
		// what the store sets itself
		p.UID = types.UID(fmt.Sprintf("uid-%d", rng.Int()))
		p.CreationTimestamp = metav1.NewTime(time.Unix(int64(1700000000+rng.Intn(1000)), 0))
		p.Generation = 3
	}
	p.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}
	return p
}

// mapStorage implements Create over a map; any other call panics
// (through the nil embedded interface).
type mapStorage struct {
	storage.Interface
	mu   sync.Mutex
	objs map[string]runtime.Object
}

func (c *mapStorage) Create(_ context.Context, key string, obj runtime.Object) (runtime.Object, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.objs[key]; ok {
		return nil, storage.NewError(storage.ErrCodeKeyExists, key, 0, "key already exists")
	}
	c.objs[key] = obj
	return obj, nil
}

// TestCreateEntriesMatchFieldManager: creates of request bodies, JSON and
// protobuf, through a Store that remembers entries by body and through
// one with the plain field manager (no caches at all) record the same
// managedFields, byte for byte.
func TestCreateEntriesMatchFieldManager(t *testing.T) {
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewSource(seed))
	scheme := registry.NewScheme()
	tc := applyconfigurations.NewTypeConverter(scheme)
	codecs := serializer.NewCodecFactory(scheme)
	pods := podsResource(t)
	st := NewStore(pods, &mapStorage{objs: map[string]runtime.Object{}}, "/registry/pods")
	st.FieldManagers = NewFieldManagers(scheme, tc)
	ref := NewStore(pods, &mapStorage{objs: map[string]runtime.Object{}}, "/registry/pods")
	ref.FieldManagers = newFieldManagers(scheme, tc)
	ctx := context.Background()
	for i := range 3000 {
		mediaType := pickOne(rng, "application/json", "application/vnd.kubernetes.protobuf")
		info, ok := runtime.SerializerInfoForMediaType(codecs.SupportedMediaTypes(), mediaType)
		if !ok {
			t.Fatalf("no serializer for %s", mediaType)
		}
		body, err := runtime.Encode(codecs.EncoderForVersion(info.Serializer, corev1.SchemeGroupVersion), randomCreatePod(rng, pods))
		if err != nil {
			t.Fatal(err)
		}
		decode := func() runtime.Object {
			obj, _, err := info.Serializer.Decode(body, nil, pods.New())
			if err != nil {
				t.Fatal(err)
			}
			return obj
		}
		manager := pickOne(rng, "replicaset-controller", "kubectl", "")
		ns := pickOne(rng, "default", "prod")
		hits := st.creates.hits.Load()
		got, gerr := st.Create(ctx, ns, decode(), CreateOptions{FieldManager: manager, Body: body, MediaType: mediaType})
		want, werr := ref.Create(ctx, ns, decode(), CreateOptions{FieldManager: manager})
		hit := st.creates.hits.Load() > hits
		if (gerr != nil) != (werr != nil) {
			t.Fatalf("seed %d case %d: errors %v and %v", seed, i, gerr, werr)
		}
		if gerr != nil {
			continue // e.g. a namespace in the body that is not the URL's
		}
		gm, _ := meta.Accessor(got)
		wm, _ := meta.Accessor(want)
		g, w := gm.GetManagedFields(), wm.GetManagedFields()
		if len(g) != len(w) {
			t.Fatalf("seed %d case %d (hit %v): %d entries, field manager %d", seed, i, hit, len(g), len(w))
		}
		for j := range w {
			ge, we := g[j], w[j]
			if ge.Time == nil || we.Time == nil {
				t.Fatalf("seed %d case %d: entry without a time", seed, i)
			}
			if !bytes.Equal(ge.FieldsV1.GetRawBytes(), we.FieldsV1.GetRawBytes()) {
				t.Fatalf("seed %d case %d (hit %v): FieldsV1 differ\ncache:         %s\nfield manager: %s", seed, i, hit, ge.FieldsV1.GetRawBytes(), we.FieldsV1.GetRawBytes())
			}
			ge.Time, we.Time, ge.FieldsV1, we.FieldsV1 = nil, nil, nil, nil
			if ge != we {
				t.Fatalf("seed %d case %d (hit %v): entry %+v, field manager %+v", seed, i, hit, ge, we)
			}
		}
	}
	t.Logf("%d of 3000 creates answered from the cache", st.creates.hits.Load())
	if hits := st.creates.hits.Load(); hits < 600 {
		t.Errorf("seed %d: %d cache hits in 3000 creates of a few templates", seed, hits)
	}
}

// BenchmarkCreateEntry: the managedFields of a ReplicaSet's pod create,
// from the body-keyed cache (what Store.Create does) and from the field
// manager's own JSON-keyed cache (what it did).
func BenchmarkCreateEntry(b *testing.B) {
	scheme := registry.NewScheme()
	pods := podsResource(b)
	st := NewStore(pods, nil, "/registry/pods")
	st.FieldManagers = NewFieldManagers(scheme, applyconfigurations.NewTypeConverter(scheme))
	pod := &corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, ObjectMeta: metav1.ObjectMeta{GenerateName: "web-7d9f8c6b5d-", Namespace: "default",
		Labels:          map[string]string{"app": "web", "pod-template-hash": "7d9f8c6b5d"},
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-7d9f8c6b5d", UID: "8a4b2c1e", Controller: new(true), BlockOwnerDeletion: new(true)}}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "registry.k8s.io/pause:3.10",
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}}}}}}
	codecs := serializer.NewCodecFactory(scheme)
	info, _ := runtime.SerializerInfoForMediaType(codecs.SupportedMediaTypes(), "application/vnd.kubernetes.protobuf")
	body, err := runtime.Encode(codecs.EncoderForVersion(info.Serializer, corev1.SchemeGroupVersion), pod)
	if err != nil {
		b.Fatal(err)
	}
	pods.Default(pod)
	opts := CreateOptions{FieldManager: "replicaset-controller", Body: body, MediaType: info.MediaType}
	for _, c := range []struct {
		name string
		f    func(p *corev1.Pod) runtime.Object
	}{
		{"store", func(p *corev1.Pod) runtime.Object { return st.createManagedFields(p, opts, true) }},
		{"fieldmanager", func(p *corev1.Pod) runtime.Object {
			return st.FieldManagers.Update(pods, "", pods.New(), p, "replicaset-controller")
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			c.f(pod.DeepCopy())
			in := make([]*corev1.Pod, b.N)
			for i := range in {
				in[i] = pod.DeepCopy()
				in[i].Name = fmt.Sprintf("web-7d9f8c6b5d-%05d", i)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if len(c.f(in[i]).(*corev1.Pod).ManagedFields) != 1 {
					b.Fatal("no entry")
				}
			}
		})
	}
}
