package generic

import (
	"math/rand"
	"strings"
	"testing"
	"time"

	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"skiff.dev/skiff/internal/registry"
)

// metaStrings mixes strings that pass and fail each of upstream's string
// rules (lengths at and past the limits, case, separators, characters).
var metaStrings = []string{
	"", "a", "app", "web", "App", "-a", "a-", "a.b", "a..b", ".a", "a.", "a-b", "a--b", "a_b", "a b",
	"0", "9x", "x-.y", "x.-y", "web-7d9f8c6b5d-x2x4z", "pod-template-hash", "5d8f7c9b6",
	"example.com/app", "Example.com/x", "example.com/App", "a/b/c", "/a", "a/", "kubernetes.io/created-by",
	"x_y", "x.y_z", "_x", "x_", "ü", "é.com", "a/ü", "foo.-bar", "%", "..", ".", "a%b", "b/c",
	strings.Repeat("a", 63), strings.Repeat("a", 64), strings.Repeat("a", 253), strings.Repeat("a", 254),
	strings.Repeat("a.", 126) + "a", strings.Repeat("b", 62) + "-", "x-", "web-",
	"orphan", "foregroundDeletion", "kubernetes", "example.com/finalizer", "kubectl-client-side-apply", "bad\x01manager",
}

// validStrings pass every rule but the name rules' length limits.
var validStrings = []string{"a", "app", "web", "a.b", "a-b", "0", "9x", "web-7d9f8c6b5d-x2x4z", "5d8f7c9b6"}

// pick is mostly a valid string, so that whole objects pass often enough
// to exercise the fast path.
func pick(rng *rand.Rand) string {
	if rng.Intn(10) < 8 {
		return validStrings[rng.Intn(len(validStrings))]
	}
	return metaStrings[rng.Intn(len(metaStrings))]
}

func randomMeta(rng *rand.Rand) *metav1.ObjectMeta {
	m := &metav1.ObjectMeta{Name: pick(rng), Namespace: pick(rng), Generation: int64(rng.Intn(4) - 1)}
	if rng.Intn(3) == 0 {
		m.GenerateName = pick(rng)
	}
	if rng.Intn(2) == 0 {
		m.Name = "web-" + []string{"x2x4z", "abcde", "q"}[rng.Intn(3)]
	}
	if rng.Intn(2) == 0 {
		m.Namespace = []string{"default", "bench", "kube-system"}[rng.Intn(3)]
	}
	for range rng.Intn(4) {
		if m.Labels == nil {
			m.Labels = map[string]string{}
		}
		m.Labels[pick(rng)] = pick(rng)
	}
	for range rng.Intn(3) {
		if m.Annotations == nil {
			m.Annotations = map[string]string{}
		}
		v := pick(rng)
		if rng.Intn(200) == 0 {
			v = strings.Repeat("v", apimachineryvalidation.TotalAnnotationSizeLimitB)
		}
		m.Annotations[pick(rng)] = v
	}
	for range rng.Intn(3) {
		ctrl := rng.Intn(2) == 0
		ref := metav1.OwnerReference{
			APIVersion: []string{"apps/v1", "v1", "apps/v1", "v1", "", "a/b/c", "events.k8s.io/v1", "/v1", "apps/"}[rng.Intn(9)],
			Kind:       []string{"ReplicaSet", "Node", "ReplicaSet", "Event", ""}[rng.Intn(5)],
			Name:       []string{"rs", "rs", "rs", ""}[rng.Intn(4)],
			UID:        types.UID([]string{"8a4b2c1e", "8a4b2c1e", "8a4b2c1e", ""}[rng.Intn(4)]),
		}
		if rng.Intn(2) == 0 {
			ref.Controller = &ctrl
		}
		m.OwnerReferences = append(m.OwnerReferences, ref)
	}
	for range rng.Intn(2) {
		m.Finalizers = append(m.Finalizers, pick(rng))
	}
	for range rng.Intn(2) {
		m.ManagedFields = append(m.ManagedFields, metav1.ManagedFieldsEntry{
			Manager:     []string{"kube-controller-manager", "", "kubelet", "bad\x01manager", strings.Repeat("m", 129)}[rng.Intn(5)],
			Operation:   []metav1.ManagedFieldsOperationType{"Update", "Apply", "Update", "", "Patch"}[rng.Intn(5)],
			FieldsType:  []string{"FieldsV1", "", "FieldsV1", "FieldsV2"}[rng.Intn(4)],
			Subresource: []string{"", "status", "", strings.Repeat("s", 257)}[rng.Intn(4)],
		})
	}
	return m
}

func metaTestResources() []*registry.Resource {
	var out []*registry.Resource
	for _, gr := range []struct {
		gr         schema.GroupResource
		namespaced bool
	}{
		{schema.GroupResource{Resource: "pods"}, true},
		{schema.GroupResource{Resource: "namespaces"}, false},
		{schema.GroupResource{Resource: "services"}, true},
		{schema.GroupResource{Resource: "nodes"}, false},
		{schema.GroupResource{Resource: "serviceaccounts"}, true},
		{schema.GroupResource{Group: "rbac.authorization.k8s.io", Resource: "roles"}, true},
		{schema.GroupResource{Group: "rbac.authorization.k8s.io", Resource: "clusterrolebindings"}, false},
		{schema.GroupResource{Group: "certificates.k8s.io", Resource: "certificatesigningrequests"}, false},
		{schema.GroupResource{Group: "apps", Resource: "deployments"}, true},
		{schema.GroupResource{Group: "example.com", Resource: "namespaces"}, true},
	} {
		out = append(out, &registry.Resource{GroupVersion: schema.GroupVersion{Group: gr.gr.Group, Version: "v1"}, Resource: gr.gr.Resource, Namespaced: gr.namespaced})
	}
	return out
}

// TestMetaValidMatchesUpstream: the fast path only skips validations that
// upstream passes, and it does pass typical objects (or it saves nothing).
func TestMetaValidMatchesUpstream(t *testing.T) {
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewSource(seed))
	resources := metaTestResources()
	fast := 0
	for i := range 10000 {
		r := resources[rng.Intn(len(resources))]
		m := randomMeta(rng)
		want := apimachineryvalidation.ValidateObjectMetaAccessor(m, r.Namespaced, NameValidator(r), field.NewPath("metadata"))
		if metaValid(r, m) {
			fast++
			if len(want) > 0 {
				t.Fatalf("seed %d case %d: %s %+v: fast path says valid, upstream: %v", seed, i, r.GroupResource(), m, want)
			}
		}
		if got := validateObjectMeta(r, m); len(got) != len(want) {
			t.Fatalf("seed %d case %d: %d errors, upstream %d", seed, i, len(got), len(want))
		}

		old := randomMeta(rng)
		if rng.Intn(2) == 0 {
			old = m.DeepCopy()
			old.ResourceVersion = "7"
			m.ResourceVersion = []string{"7", ""}[rng.Intn(2)]
			now := metav1.NewTime(time.Unix(1700000000, 0))
			if rng.Intn(2) == 0 {
				old.CreationTimestamp, m.CreationTimestamp = now, now
			}
			switch rng.Intn(6) {
			case 0:
				old.DeletionTimestamp = &now
			case 1:
				g := int64(30)
				old.DeletionGracePeriodSeconds = &g
			case 2:
				m.UID = "other"
			case 3:
				old.Generation = m.Generation + 1
			}
		}
		wantU := apimachineryvalidation.ValidateObjectMetaAccessorUpdate(m, old, field.NewPath("metadata"))
		wantU = append(wantU, want...)
		if metaUpdateValid(m, old) && metaValid(r, m) && len(wantU) > 0 {
			t.Fatalf("seed %d case %d: update fast path says valid, upstream: %v", seed, i, wantU)
		}
		if got := validateObjectMetaUpdate(r, m, old); len(got) != len(wantU) {
			t.Fatalf("seed %d case %d: %d update errors, upstream %d", seed, i, len(got), len(wantU))
		}
	}
	t.Logf("fast path taken for %d of 10000 objects", fast)
	if fast < 500 {
		t.Errorf("fast path taken %d times in 10000 random objects", fast)
	}

	pod := &metav1.ObjectMeta{Name: "web-7d9f8c6b5d-x2x4z", GenerateName: "web-7d9f8c6b5d-", Namespace: "default", Generation: 1,
		Labels:          map[string]string{"app": "web", "pod-template-hash": "7d9f8c6b5d"},
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-7d9f8c6b5d", UID: "8a4b2c1e", Controller: new(true)}},
		ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager", Operation: "Update", FieldsType: "FieldsV1", APIVersion: "v1"}}}
	if !metaValid(resources[0], pod) {
		t.Error("a ReplicaSet's pod does not take the fast path")
	}
	upd := pod.DeepCopy()
	upd.ResourceVersion = "12"
	if !metaUpdateValid(upd, pod) {
		t.Error("a pod update that keeps its metadata does not take the fast path")
	}
}

func TestIsDNS1123SubdomainMatchesUpstream(t *testing.T) {
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewSource(seed))
	alphabet := "ab09-.A_/"
	for _, s := range metaStrings {
		if got, want := isDNS1123Subdomain(s), len(validation.IsDNS1123Subdomain(s)) == 0; got != want {
			t.Errorf("%q: %v, upstream %v", s, got, want)
		}
	}
	for range 200000 {
		b := make([]byte, rng.Intn(8))
		for i := range b {
			b[i] = alphabet[rng.Intn(len(alphabet))]
		}
		s := string(b)
		if got, want := isDNS1123Subdomain(s), len(validation.IsDNS1123Subdomain(s)) == 0; got != want {
			t.Fatalf("seed %d: %q: %v, upstream %v", seed, s, got, want)
		}
	}
}

func FuzzIsDNS1123Subdomain(f *testing.F) {
	for _, s := range metaStrings {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := isDNS1123Subdomain(s), len(validation.IsDNS1123Subdomain(s)) == 0; got != want {
			t.Fatalf("%q: %v, upstream %v", s, got, want)
		}
	})
}

// TestMetaValidOneChange starts from valid metadata and changes one thing:
// the fast path must agree with upstream on each (it is exact on these),
// so every one of its checks is exercised on its own.
func TestMetaValidOneChange(t *testing.T) {
	pods := metaTestResources()[0]
	base := func() *metav1.ObjectMeta {
		return &metav1.ObjectMeta{Name: "web-x2x4z", GenerateName: "web-", Namespace: "default", Generation: 1, ResourceVersion: "5",
			CreationTimestamp: metav1.NewTime(time.Unix(1700000000, 0)),
			Labels:            map[string]string{"app": "web", "example.com/tier": "front"},
			Annotations:       map[string]string{"Example.com/Note": "x"},
			OwnerReferences:   []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web", UID: "u1", Controller: new(true)}},
			Finalizers:        []string{"example.com/f"},
			ManagedFields:     []metav1.ManagedFieldsEntry{{Manager: "kcm", Operation: "Update", FieldsType: "FieldsV1", APIVersion: "v1"}}}
	}
	ctrl := func(m *metav1.ObjectMeta) *metav1.OwnerReference {
		m.OwnerReferences = append(m.OwnerReferences, metav1.OwnerReference{APIVersion: "v1", Kind: "Node", Name: "n", UID: "u2"})
		return &m.OwnerReferences[1]
	}
	for name, change := range map[string]func(m *metav1.ObjectMeta){
		"none":                     func(m *metav1.ObjectMeta) {},
		"bad generateName":         func(m *metav1.ObjectMeta) { m.GenerateName = "Web-" },
		"no name":                  func(m *metav1.ObjectMeta) { m.Name = "" },
		"bad name":                 func(m *metav1.ObjectMeta) { m.Name = "web_1" },
		"no namespace":             func(m *metav1.ObjectMeta) { m.Namespace = "" },
		"bad namespace":            func(m *metav1.ObjectMeta) { m.Namespace = "a.b" },
		"negative generation":      func(m *metav1.ObjectMeta) { m.Generation = -1 },
		"bad label key":            func(m *metav1.ObjectMeta) { m.Labels["-x"] = "v" },
		"bad label value":          func(m *metav1.ObjectMeta) { m.Labels["x"] = "v v" },
		"bad annotation key":       func(m *metav1.ObjectMeta) { m.Annotations["a/b/c"] = "v" },
		"annotations too large":    func(m *metav1.ObjectMeta) { m.Annotations["big"] = strings.Repeat("v", 300000) },
		"owner without uid":        func(m *metav1.ObjectMeta) { m.OwnerReferences[0].UID = "" },
		"owner without name":       func(m *metav1.ObjectMeta) { m.OwnerReferences[0].Name = "" },
		"owner without kind":       func(m *metav1.ObjectMeta) { m.OwnerReferences[0].Kind = "" },
		"owner bad apiVersion":     func(m *metav1.ObjectMeta) { m.OwnerReferences[0].APIVersion = "a/b/c" },
		"event owner":              func(m *metav1.ObjectMeta) { m.OwnerReferences[0].APIVersion, m.OwnerReferences[0].Kind = "v1", "Event" },
		"second owner":             func(m *metav1.ObjectMeta) { ctrl(m) },
		"two controllers":          func(m *metav1.ObjectMeta) { ctrl(m).Controller = new(true) },
		"bad finalizer":            func(m *metav1.ObjectMeta) { m.Finalizers = append(m.Finalizers, "a/b/c") },
		"orphan and foreground":    func(m *metav1.ObjectMeta) { m.Finalizers = []string{"orphan", "foregroundDeletion"} },
		"orphan":                   func(m *metav1.ObjectMeta) { m.Finalizers = []string{"orphan"} },
		"no operation":             func(m *metav1.ObjectMeta) { m.ManagedFields[0].Operation = "" },
		"bad operation":            func(m *metav1.ObjectMeta) { m.ManagedFields[0].Operation = "Patch" },
		"bad fieldsType":           func(m *metav1.ObjectMeta) { m.ManagedFields[0].FieldsType = "FieldsV2" },
		"empty fieldsType":         func(m *metav1.ObjectMeta) { m.ManagedFields[0].FieldsType = "" },
		"manager too long":         func(m *metav1.ObjectMeta) { m.ManagedFields[0].Manager = strings.Repeat("m", 129) },
		"manager unprintable":      func(m *metav1.ObjectMeta) { m.ManagedFields[0].Manager = "a\x01" },
		"subresource too long":     func(m *metav1.ObjectMeta) { m.ManagedFields[0].Subresource = strings.Repeat("s", 257) },
		"generateName masked dash": func(m *metav1.ObjectMeta) { m.GenerateName = "a-" },
	} {
		m := base()
		change(m)
		want := len(apimachineryvalidation.ValidateObjectMetaAccessor(m, true, NameValidator(pods), field.NewPath("metadata"))) == 0
		if got := metaValid(pods, m); got != want {
			t.Errorf("%s: fast path %v, upstream valid %v", name, got, want)
		}
	}

	for name, change := range map[string]func(m, old *metav1.ObjectMeta){
		"none":                 func(m, old *metav1.ObjectMeta) {},
		"no resourceVersion":   func(m, old *metav1.ObjectMeta) { m.ResourceVersion = "" },
		"generation decrement": func(m, old *metav1.ObjectMeta) { old.Generation = 2 },
		"generation increment": func(m, old *metav1.ObjectMeta) { m.Generation = 2 },
		"name":                 func(m, old *metav1.ObjectMeta) { m.Name = "other" },
		"namespace":            func(m, old *metav1.ObjectMeta) { m.Namespace = "other" },
		"uid":                  func(m, old *metav1.ObjectMeta) { m.UID = "other" },
		"creationTimestamp":    func(m, old *metav1.ObjectMeta) { m.CreationTimestamp = metav1.NewTime(time.Unix(1, 0)) },
		"grace period":         func(m, old *metav1.ObjectMeta) { m.DeletionGracePeriodSeconds = new(int64(3)) },
		"same grace period": func(m, old *metav1.ObjectMeta) {
			m.DeletionGracePeriodSeconds, old.DeletionGracePeriodSeconds = new(int64(3)), new(int64(3))
		},
		"other grace period": func(m, old *metav1.ObjectMeta) {
			m.DeletionGracePeriodSeconds, old.DeletionGracePeriodSeconds = new(int64(3)), new(int64(4))
		},
		"bad label": func(m, old *metav1.ObjectMeta) { m.Labels["x"] = "v v" },
	} {
		m, old := base(), base()
		change(m, old)
		want := len(apimachineryvalidation.ValidateObjectMetaAccessorUpdate(m, old, field.NewPath("metadata"))) == 0 &&
			len(apimachineryvalidation.ValidateObjectMetaAccessor(m, true, NameValidator(pods), field.NewPath("metadata"))) == 0
		if got := metaUpdateValid(m, old) && metaValid(pods, m); got != want {
			t.Errorf("update %s: fast path %v, upstream valid %v", name, got, want)
		}
	}
}

// BenchmarkPodMetaValidation: the metadata validation of a pod status
// update (both validators) as the store ran it before ("upstream") and
// with the fast path.
func BenchmarkPodMetaValidation(b *testing.B) {
	pods := metaTestResources()[0]
	old := &metav1.ObjectMeta{Name: "web-7d9f8c6b5d-x2x4z", GenerateName: "web-7d9f8c6b5d-", Namespace: "default", Generation: 1, ResourceVersion: "5",
		UID: "0c2a1f8e-6c47-4a64-9a4c-2f1f0d7c1a11", CreationTimestamp: metav1.NewTime(time.Unix(1700000000, 0)),
		Labels:          map[string]string{"app": "web", "pod-template-hash": "7d9f8c6b5d"},
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-7d9f8c6b5d", UID: "8a4b2c1e", Controller: new(true), BlockOwnerDeletion: new(true)}},
		ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager", Operation: "Update", FieldsType: "FieldsV1", APIVersion: "v1"}}}
	m := old.DeepCopy()
	b.Run("upstream", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			errs := apimachineryvalidation.ValidateObjectMetaAccessorUpdate(m, old, field.NewPath("metadata"))
			errs = append(errs, apimachineryvalidation.ValidateObjectMetaAccessor(m, true, NameValidator(pods), field.NewPath("metadata"))...)
			if len(errs) > 0 {
				b.Fatal(errs)
			}
		}
	})
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if errs := validateObjectMetaUpdate(pods, m, old); len(errs) > 0 {
				b.Fatal(errs)
			}
		}
	})
}
