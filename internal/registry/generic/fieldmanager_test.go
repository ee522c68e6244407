package generic

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"reflect"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/apitesting/fuzzer"
	"k8s.io/apimachinery/pkg/api/meta"
	metafuzzer "k8s.io/apimachinery/pkg/apis/meta/fuzzer"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/applyconfigurations"

	"skiff.dev/skiff/internal/registry"
	"skiff.dev/skiff/internal/registry/apps"
	"skiff.dev/skiff/internal/registry/autoscaling"
	"skiff.dev/skiff/internal/registry/batch"
	"skiff.dev/skiff/internal/registry/certificates"
	"skiff.dev/skiff/internal/registry/coordination"
	"skiff.dev/skiff/internal/registry/core"
	"skiff.dev/skiff/internal/registry/discovery"
	"skiff.dev/skiff/internal/registry/events"
	"skiff.dev/skiff/internal/registry/networking"
	"skiff.dev/skiff/internal/registry/policy"
	"skiff.dev/skiff/internal/registry/rbac"
	"skiff.dev/skiff/internal/registry/scheduling"
	storagereg "skiff.dev/skiff/internal/registry/storage"
)

func allResources() []*registry.Resource {
	var out []*registry.Resource
	for _, f := range []func() []*registry.Resource{
		core.Resources, apps.Resources, batch.Resources, autoscaling.Resources,
		policy.Resources, coordination.Resources, discovery.Resources,
		networking.Resources, storagereg.Resources, rbac.Resources,
		scheduling.Resources, events.Resources, certificates.Resources,
	} {
		out = append(out, f()...)
	}
	return out
}

// managedFieldsPair runs the reference field managers (the type
// converter's own validating typing) and the ones the server uses side by
// side.
type managedFieldsPair struct {
	ref, fast *FieldManagers
}

func newManagedFieldsPair() managedFieldsPair {
	scheme := registry.NewScheme()
	tc := applyconfigurations.NewTypeConverter(scheme)
	return managedFieldsPair{ref: newFieldManagers(scheme, tc), fast: NewFieldManagers(scheme, tc)}
}

// canonical is obj as JSON with the managedFields timestamps cleared
// (second resolution: the two runs may straddle a second boundary); that a
// timestamp is present at all is kept.
func canonical(t *testing.T, obj runtime.Object) []byte {
	t.Helper()
	obj = obj.DeepCopyObject()
	if m, err := meta.Accessor(obj); err == nil {
		mf := m.GetManagedFields()
		for i := range mf {
			if mf[i].Time != nil {
				mf[i].Time = &metav1.Time{}
			}
		}
		m.SetManagedFields(mf)
	}
	b, err := json.Marshal(obj)
	if err != nil {
		t.Fatalf("encoding %T: %v", obj, err)
	}
	return b
}

// check runs one Update through both and fails if the objects differ.
func (p managedFieldsPair) check(t *testing.T, what string, r *registry.Resource, sub string, live, obj runtime.Object, manager string) runtime.Object {
	t.Helper()
	want := p.ref.Update(r, sub, live.DeepCopyObject(), obj.DeepCopyObject(), manager)
	got := p.fast.Update(r, sub, live.DeepCopyObject(), obj.DeepCopyObject(), manager)
	if w, g := canonical(t, want), canonical(t, got); !bytes.Equal(w, g) {
		t.Fatalf("%s %s (subresource %q): managedFields differ\nreference: %s\nfast:      %s", what, r.GroupResource(), sub, w, g)
	}
	// JSON compacts the FieldsV1 bytes: compare them as written too.
	wm, _ := meta.Accessor(want)
	gm, _ := meta.Accessor(got)
	if wm != nil && gm != nil {
		w, g := wm.GetManagedFields(), gm.GetManagedFields()
		for i := range min(len(w), len(g)) {
			if !bytes.Equal(w[i].FieldsV1.GetRawBytes(), g[i].FieldsV1.GetRawBytes()) {
				t.Fatalf("%s %s (subresource %q): entry %d's FieldsV1 bytes differ\nreference: %s\nfast:      %s", what, r.GroupResource(), sub, i,
					w[i].FieldsV1.GetRawBytes(), g[i].FieldsV1.GetRawBytes())
			}
		}
	}
	return want
}

func subresources(r *registry.Resource) []string {
	subs := []string{""}
	if _, ok := reflect.TypeOf(r.New()).Elem().FieldByName("Status"); ok {
		subs = append(subs, "status")
	}
	return subs
}

// TestUnvalidatedConverterSameManagedFields compares managedFields computed
// with and without validation of the typed objects, for random objects of
// every resource: creates (empty live object), updates by another manager
// and by the same one, on the main resource and the status subresource.
func TestUnvalidatedConverterSameManagedFields(t *testing.T) {
	p := newManagedFieldsPair()
	codecs := serializer.NewCodecFactory(registry.NewScheme())
	rounds := 8
	if testing.Short() {
		rounds = 3
	}
	changed, trimmed := 0, 0
	for i, r := range allResources() {
		if !r.StorageResource.Empty() {
			continue
		}
		f := fuzzer.FuzzerFor(metafuzzer.Funcs, rand.NewSource(int64(i)), codecs)
		for _, sub := range subresources(r) {
			for round := range rounds {
				a, b := r.New(), r.New()
				f.Fill(a)
				f.Fill(b)
				for _, o := range []runtime.Object{a, b} {
					m, _ := meta.Accessor(o)
					m.SetManagedFields(nil)
					if r.Default != nil {
						r.Default(o)
					}
					// As the server's objects (decoded from storage
					// or a request) do, half of the time: the field
					// manager then types them without a copy.
					if round%2 == 0 {
						setTypeMeta(o, r)
					}
				}
				created := p.check(t, "create", r, sub, r.New(), a, "creator")
				// The same object again under another name, namespace and
				// uid: served from the create cache.
				again := a.DeepCopyObject()
				if m, _ := meta.Accessor(again); m != nil {
					m.SetName(m.GetName() + "x")
					m.SetNamespace(m.GetNamespace() + "x")
					m.SetUID(m.GetUID() + "x")
				}
				p.check(t, "create again", r, sub, r.New(), again, "creator")
				// Another manager creating the same object.
				p.check(t, "create by another", r, sub, r.New(), a, "other")
				if m, _ := meta.Accessor(created); len(m.GetManagedFields()) > 0 {
					changed++
				}
				// b replaces a, written by another manager and then by
				// the creator again.
				updated := p.check(t, "update", r, sub, created, b, "updater")
				back := a.DeepCopyObject()
				m, _ := meta.Accessor(back)
				um, _ := meta.Accessor(updated)
				m.SetManagedFields(um.GetManagedFields())
				p.check(t, "update back", r, sub, updated, back, "creator")
				// An update that keeps managedFields as sent.
				p.check(t, "no-op update", r, sub, updated, updated, "updater")
				// Updates that change one top-level field and keep the
				// others, as status and main-resource updates do: the
				// kept ones are left out of the comparison.
				for _, name := range topLevelFields(r) {
					one := created.DeepCopyObject()
					copyField(one, b, name)
					if _, _, ok := trimUnchanged(created, one); ok {
						trimmed++
					}
					next := p.check(t, "update of "+name, r, sub, created, one, "updater")
					// And back by a third manager, from that state.
					back := next.DeepCopyObject()
					copyField(back, created, name)
					p.check(t, "update of "+name+" back", r, sub, next, back, "third")
				}
			}
		}
	}
	t.Logf("%d of the creates recorded managedFields, %d updates were trimmed", changed, trimmed)
	if changed == 0 {
		t.Fatal("no create recorded any managedFields: the comparison tested nothing")
	}
	if trimmed == 0 {
		t.Fatal("no update left an unchanged field out: the trimmed path was not tested")
	}
}

// topLevelFields are the fields of r's type besides TypeMeta and
// ObjectMeta (spec, status, data, ...).
func topLevelFields(r *registry.Resource) []string {
	var out []string
	t := reflect.TypeOf(r.New()).Elem()
	for i := range t.NumField() {
		if f := t.Field(i); !f.Anonymous && f.Name != "ObjectMeta" && f.IsExported() {
			out = append(out, f.Name)
		}
	}
	return out
}

// TestTrimmedPodStatusUpdate: a kubelet-style pod status update (spec
// unchanged) is trimmed and records the same managedFields as the full
// comparison, over a chain of writers.
func TestTrimmedPodStatusUpdate(t *testing.T) {
	p := newManagedFieldsPair()
	var pods *registry.Resource
	for _, r := range core.Resources() {
		if r.Resource == "pods" && r.StorageResource.Empty() {
			pods = r
		}
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "default", UID: "u1", ResourceVersion: "3", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "img", Ports: []corev1.ContainerPort{{ContainerPort: 80}}}}}}
	pods.Default(pod)
	live := p.check(t, "create", pods, "", pods.New(), pod, "replicaset-controller")
	bound := live.DeepCopyObject().(*corev1.Pod)
	bound.Spec.NodeName = "node-1"
	live = p.check(t, "bind", pods, "", live, bound, "scheduler")
	for i, phase := range []corev1.PodPhase{corev1.PodPending, corev1.PodRunning, corev1.PodSucceeded} {
		st := live.DeepCopyObject().(*corev1.Pod)
		st.Status.Phase = phase
		st.Status.PodIP = fmt.Sprintf("10.0.0.%d", i+1)
		st.Status.Conditions = append(st.Status.Conditions, corev1.PodCondition{Type: corev1.PodConditionType(fmt.Sprintf("C%d", i)), Status: corev1.ConditionTrue})
		if i == 2 {
			st.Status.PodIP = ""
		}
		if _, _, ok := trimUnchanged(live, st); !ok {
			t.Fatalf("status update %d was not trimmed", i)
		}
		live = p.check(t, "status update", pods, "status", live, st, "kubelet")
	}
	m, _ := meta.Accessor(live)
	if n := len(m.GetManagedFields()); n != 3 {
		t.Fatalf("%d managedFields entries, want 3 (replicaset-controller, scheduler, kubelet)", n)
	}
}

// TestUnvalidatedConverterSeeds does the same for the seed manifests
// (realistic objects, applied then edited).
func TestUnvalidatedConverterSeeds(t *testing.T) {
	p := newManagedFieldsPair()
	scheme := registry.NewScheme()
	codecs := serializer.NewCodecFactory(scheme)
	byKind := map[string]*registry.Resource{}
	for _, r := range allResources() {
		if r.StorageResource.Empty() {
			byKind[r.GroupVersionKind().String()] = r
		}
	}
	decode := func(path string) []runtime.Object {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var out []runtime.Object
		d := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			var raw runtime.RawExtension
			if err := d.Decode(&raw); err != nil {
				break
			}
			if len(bytes.TrimSpace(raw.Raw)) == 0 {
				continue
			}
			obj, _, err := codecs.UniversalDeserializer().Decode(raw.Raw, nil, nil)
			if err != nil {
				t.Fatalf("decoding %s: %v", path, err)
			}
			out = append(out, obj)
		}
		return out
	}
	seeds := decode("../../../test/integration/apiserver/testdata/seeds.yaml")
	edited := decode("../../../test/integration/apiserver/testdata/seeds-edited.yaml")
	if len(seeds) == 0 {
		t.Fatal("no seed objects")
	}
	for i, obj := range seeds {
		r := byKind[obj.GetObjectKind().GroupVersionKind().String()]
		if r == nil {
			t.Fatalf("no resource for %v", obj.GetObjectKind().GroupVersionKind())
		}
		if r.Default != nil {
			r.Default(obj)
		}
		created := p.check(t, "create", r, "", r.New(), obj, "kubectl-client-side-apply")
		if i < len(edited) && edited[i].GetObjectKind().GroupVersionKind() == obj.GetObjectKind().GroupVersionKind() {
			e := edited[i]
			if r.Default != nil {
				r.Default(e)
			}
			p.check(t, "edit", r, "", created, e, "kubectl-edit")
		}
	}
}

// TestCreateCacheReplicaSetPods: pods of one template share one cached
// entry, and each gets the same managedFields as the uncached path; a pod
// with another field set gets its own.
func TestCreateCacheReplicaSetPods(t *testing.T) {
	p := newManagedFieldsPair()
	var pods *registry.Resource
	for _, r := range core.Resources() {
		if r.Resource == "pods" && r.StorageResource.Empty() {
			pods = r
		}
	}
	tmpl := func(name string, lbls map[string]string) runtime.Object {
		o := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, GenerateName: "web-", Namespace: "default", UID: types.UID("uid-" + name), Labels: lbls,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web", UID: "uid-web"}}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "img", Ports: []corev1.ContainerPort{{ContainerPort: 80}}}}}}
		pods.Default(o)
		return o
	}
	web := map[string]string{"app": "web"}
	for i := range 5 {
		p.check(t, "create", pods, "", pods.New(), tmpl(fmt.Sprintf("web-%d", i), web), "replicaset-controller")
	}
	if n := len(p.fast.creates); n != 1 {
		t.Fatalf("%d cached entries after five pods of one template, want 1", n)
	}
	p.check(t, "create", pods, "", pods.New(), tmpl("other", map[string]string{"app": "web", "extra": "x"}), "replicaset-controller")
	if n := len(p.fast.creates); n != 2 {
		t.Fatalf("%d cached entries after a pod with another label, want 2", n)
	}
	// Not a create: the live object exists.
	live := p.fast.Update(pods, "", pods.New(), tmpl("web-0", web), "replicaset-controller")
	lm, _ := meta.Accessor(live)
	lm.SetUID("uid-web-0")
	lm.SetResourceVersion("5")
	p.check(t, "update", pods, "", live, tmpl("web-0", map[string]string{"app": "web", "changed": "y"}), "kubectl")
	if n := len(p.fast.creates); n != 2 {
		t.Fatalf("an update added to the create cache: %d entries", n)
	}
}

// TestStatusTrimSameManagedFields: status-subresource updates compared
// without spec and metadata (trimForStatus) record the same managedFields
// as the full comparison, for a pod's life: status-only changes, status
// with label and annotation changes (which the status subresource's reset
// fields leave unowned), a second writer taking over and removing fields
// of the first, a no-op, an entry of another API version (compared on
// whole objects), more managers than the cap, and a live object without
// managedFields. The objects passed in are not modified.
func TestStatusTrimSameManagedFields(t *testing.T) {
	p := newManagedFieldsPair()
	var pods *registry.Resource
	for _, r := range core.Resources() {
		if r.Resource == "pods" && r.StorageResource.Empty() {
			pods = r
		}
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "default", UID: "u1", ResourceVersion: "3",
		Labels:          map[string]string{"app": "web"},
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web", UID: "uid-web"}}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "img", Ports: []corev1.ContainerPort{{ContainerPort: 80}}}}}}
	pods.Default(pod)
	pod.Status = corev1.PodStatus{Phase: corev1.PodPending}
	setTypeMeta(pod, pods)
	live := p.check(t, "create", pods, "", pods.New(), pod, "replicaset-controller").(*corev1.Pod)
	// The binding: nodeName and PodScheduled, owned by nobody.
	live.Spec.NodeName = "node-1"
	live.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}}

	now := metav1.Now()
	// The live entries' times lie in the past: the reference and the
	// fast run may stamp the new entry in different seconds, and an
	// entry of the same second as a live one is ordered by manager.
	past := func(o *corev1.Pod) {
		for i := range o.ManagedFields {
			o.ManagedFields[i].Time = &metav1.Time{Time: now.Add(-time.Hour).Truncate(time.Second)}
		}
	}
	step := func(what, manager string, mutate func(*corev1.Pod)) {
		t.Helper()
		past(live)
		obj := live.DeepCopy()
		mutate(obj)
		if _, _, ok := trimForStatus(live, obj); !ok {
			t.Fatalf("%s: not trimmed", what)
		}
		liveBefore, objBefore := live.DeepCopy(), obj.DeepCopy()
		got := p.fast.Update(pods, "status", live, obj, manager).(*corev1.Pod)
		if !reflect.DeepEqual(live, liveBefore) {
			t.Fatalf("%s: the live object was modified", what)
		}
		objBefore.ManagedFields = got.ManagedFields
		if !reflect.DeepEqual(obj, objBefore) {
			t.Fatalf("%s: the new object was modified beyond its managedFields", what)
		}
		live = p.check(t, what, pods, "status", live, objBefore, manager).(*corev1.Pod)
	}
	step("running", "kubelet", func(o *corev1.Pod) {
		o.Status.Phase = corev1.PodRunning
		o.Status.HostIP, o.Status.PodIP = "10.0.0.1", "10.1.0.5"
		o.Status.PodIPs = []corev1.PodIP{{IP: "10.1.0.5"}}
		o.Status.StartTime = &now
		o.Status.Conditions = append(o.Status.Conditions,
			corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
			corev1.PodCondition{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now})
		o.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "c", Ready: true, Image: "img", ImageID: "sha256:abc",
			ContainerID: "containerd://1", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}}}
	})
	step("status and metadata", "kubelet", func(o *corev1.Pod) {
		o.Labels["extra"] = "x"
		o.Annotations = map[string]string{"note": "y"}
		o.Finalizers = []string{"example.com/f"}
		o.Spec.NodeName = "elsewhere"
		o.Status.PodIP = "10.1.0.6"
		o.Status.PodIPs = []corev1.PodIP{{IP: "10.1.0.6"}}
	})
	step("no-op", "kubelet", func(o *corev1.Pod) {})
	step("metadata only", "kubelet", func(o *corev1.Pod) { o.Labels["other"] = "z" })
	step("another writer takes over and removes", "node-problem-detector", func(o *corev1.Pod) {
		o.Status.Phase = corev1.PodFailed
		o.Status.Conditions = o.Status.Conditions[:2]
		o.Status.Conditions[1].Status = corev1.ConditionFalse
		o.Status.PodIPs = nil
		o.Status.Message = "evicted"
	})
	step("first writer again", "kubelet", func(o *corev1.Pod) {
		o.Status.Reason = "Evicted"
		o.Status.ContainerStatuses[0].Ready = false
	})

	// An entry recorded in another version is compared on the whole
	// objects: not trimmed, and still the same answer.
	other := live.DeepCopy()
	past(other)
	other.ManagedFields = append(other.ManagedFields, metav1.ManagedFieldsEntry{Manager: "old", Operation: metav1.ManagedFieldsOperationUpdate,
		APIVersion: "v1beta1", FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:status":{"f:message":{}}}`)}})
	if sameVersionManagers(other, pods) {
		t.Fatal("an entry of another version was not noticed")
	}
	obj := other.DeepCopy()
	obj.Status.Message = "changed"
	p.check(t, "with an entry of another version", pods, "status", other, obj, "kubelet")

	// More update managers than the cap (10): the oldest are merged.
	for i := range 12 {
		step(fmt.Sprintf("manager %d", i), fmt.Sprintf("writer-%d", i), func(o *corev1.Pod) {
			o.Status.Message = fmt.Sprintf("message %d", i)
			o.Status.NominatedNodeName = fmt.Sprintf("n%d", i%3)
		})
	}
	if n := len(live.ManagedFields); n > 11 {
		t.Fatalf("%d managedFields entries: the cap did not apply", n)
	}

	// A live object without managedFields: nothing is tracked.
	bare := live.DeepCopy()
	bare.ManagedFields = nil
	obj = bare.DeepCopy()
	obj.Status.Message = "untracked"
	if got := p.check(t, "without managedFields", pods, "status", bare, obj, "kubelet"); len(got.(*corev1.Pod).ManagedFields) != 0 {
		t.Fatal("managedFields recorded on an object that had none")
	}
}

// TestSameKindConvertor: an object already of the target kind comes back
// as it is; anything else as the scheme converts it.
func TestSameKindConvertor(t *testing.T) {
	scheme := registry.NewScheme()
	c := sameKindConvertor{scheme}
	pod := &corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, ObjectMeta: metav1.ObjectMeta{Name: "p"}}
	got, err := c.ConvertToVersion(pod, corev1.SchemeGroupVersion)
	if err != nil || got != runtime.Object(pod) {
		t.Fatalf("typed pod of the target kind: got %p, %v; want the same object %p", got, err, pod)
	}
	bare := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}}
	got, err = c.ConvertToVersion(bare, corev1.SchemeGroupVersion)
	if err != nil || got == runtime.Object(bare) {
		t.Fatalf("pod without TypeMeta: got %p, %v; want a copy", got, err)
	}
	want, _ := scheme.ConvertToVersion(bare, corev1.SchemeGroupVersion)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("pod without TypeMeta: %#v, scheme gives %#v", got, want)
	}
	other := &corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v2", Kind: "Pod"}}
	if got, _ := c.ConvertToVersion(other, corev1.SchemeGroupVersion); got == runtime.Object(other) {
		t.Fatal("pod claiming another version came back unconverted")
	}
}
