package garbagecollector

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	metadatafake "k8s.io/client-go/metadata/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
)

var (
	podGVK = schema.GroupVersionKind{Version: "v1", Kind: "Pod"}
	rsGVK  = schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "ReplicaSet"}
	depGVK = schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}
	podGVR = schema.GroupVersionResource{Version: "v1", Resource: "pods"}
	rsGVR  = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "replicasets"}
	depGVR = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
)

func verbs(v ...string) metav1.Verbs { return v }

var resources = []*metav1.APIResourceList{
	{GroupVersion: "v1", APIResources: []metav1.APIResource{
		{Name: "pods", Namespaced: true, Kind: "Pod", Verbs: verbs("get", "list", "watch", "delete", "patch")},
		{Name: "events", Namespaced: true, Kind: "Event", Verbs: verbs("get", "list", "watch", "delete")},
	}},
	{GroupVersion: "apps/v1", APIResources: []metav1.APIResource{
		{Name: "replicasets", Namespaced: true, Kind: "ReplicaSet", Verbs: verbs("get", "list", "watch", "delete", "patch")},
		{Name: "deployments", Namespaced: true, Kind: "Deployment", Verbs: verbs("get", "list", "watch", "delete", "patch")},
	}},
}

func ownerRef(gvk schema.GroupVersionKind, name string, block bool) metav1.OwnerReference {
	r := metav1.OwnerReference{APIVersion: gvk.GroupVersion().String(), Kind: gvk.Kind, Name: name, UID: types.UID(name + "-uid")}
	if block {
		r.BlockOwnerDeletion = &block
	}
	return r
}

func object(gvk schema.GroupVersionKind, name string, owners ...metav1.OwnerReference) *metav1.PartialObjectMetadata {
	apiVersion, kind := gvk.ToAPIVersionAndKind()
	return &metav1.PartialObjectMetadata{
		TypeMeta:   metav1.TypeMeta{APIVersion: apiVersion, Kind: kind},
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, UID: types.UID(name + "-uid"), OwnerReferences: owners},
	}
}

func newMetaClient(objs ...runtime.Object) *metadatafake.FakeMetadataClient {
	scheme := metadatafake.NewTestScheme()
	metav1.AddMetaToScheme(scheme)
	return metadatafake.NewSimpleMetadataClient(scheme, objs...)
}

func newController(t *testing.T, meta *metadatafake.FakeMetadataClient) *Controller {
	t.Helper()
	cs := fake.NewClientset()
	cs.Resources = resources
	c, err := New(Config{}, meta, cs.Discovery(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	c.mappings = map[schema.GroupVersionKind]mapping{
		podGVK: {gvr: podGVR, namespaced: true},
		rsGVK:  {gvr: rsGVR, namespaced: true},
		depGVK: {gvr: depGVR, namespaced: true},
	}
	return c
}

// drain runs the graph builder and both workers synchronously until idle.
func drain(t *testing.T, c *Controller) {
	t.Helper()
	ctx := context.Background()
	for range 100 {
		switch {
		case c.events.Len() > 0:
			c.processGraphChange()
		case c.toDelete.Len() > 0:
			c.processAttemptToDelete(ctx)
		case c.toOrphan.Len() > 0:
			c.processAttemptToOrphan(ctx)
		default:
			return
		}
	}
	t.Fatal("queues did not drain")
}

func observe(c *Controller, typ eventType, gvk schema.GroupVersionKind, o *metav1.PartialObjectMetadata) {
	c.events.Add(&event{typ: typ, gvk: gvk, obj: o})
}

type action struct {
	verb, resource, name string
	opts                 metav1.DeleteOptions
	patch                map[string]any
}

func actions(t *testing.T, meta *metadatafake.FakeMetadataClient) []action {
	t.Helper()
	var out []action
	for _, a := range meta.Actions() {
		x := action{verb: a.GetVerb(), resource: a.GetResource().Resource}
		switch a := a.(type) {
		case k8stesting.DeleteActionImpl:
			x.name, x.opts = a.GetName(), a.DeleteOptions
		case k8stesting.PatchAction:
			x.name = a.GetName()
			var body struct {
				Metadata map[string]any `json:"metadata"`
			}
			if err := json.Unmarshal(a.GetPatch(), &body); err != nil {
				t.Fatal(err)
			}
			x.patch = body.Metadata
		case k8stesting.GetAction:
			x.name = a.GetName()
		}
		if x.verb == "list" || x.verb == "watch" {
			continue
		}
		out = append(out, x)
	}
	return out
}

func mutations(acts []action) []action {
	return slices.DeleteFunc(slices.Clone(acts), func(a action) bool { return a.verb == "get" })
}

func TestDanglingDependentDeletedWithUIDPrecondition(t *testing.T) {
	pod := object(podGVK, "p1", ownerRef(rsGVK, "rs1", true))
	meta := newMetaClient(pod)
	c := newController(t, meta)
	observe(c, addEvent, podGVK, pod)
	drain(t, c)
	acts := actions(t, meta)
	want := []string{"get replicasets rs1", "get pods p1", "delete pods p1"}
	if len(acts) != len(want) {
		t.Fatalf("actions %+v", acts)
	}
	for i, a := range acts {
		if a.verb+" "+a.resource+" "+a.name != want[i] {
			t.Fatalf("action %d = %+v, want %s", i, a, want[i])
		}
	}
	del := acts[2].opts
	if del.Preconditions == nil || *del.Preconditions.UID != "p1-uid" || *del.PropagationPolicy != metav1.DeletePropagationBackground {
		t.Fatalf("delete options %+v", del)
	}
	if c.graph.get("rs1-uid") != nil {
		t.Fatal("absent virtual owner still in graph")
	}
}

func TestOwnerWithOtherUIDCountsAsAbsent(t *testing.T) {
	pod := object(podGVK, "p1", ownerRef(rsGVK, "rs1", false))
	impostor := object(rsGVK, "rs1")
	impostor.UID = "someone-else"
	meta := newMetaClient(pod, impostor)
	c := newController(t, meta)
	observe(c, addEvent, podGVK, pod)
	drain(t, c)
	m := mutations(actions(t, meta))
	if len(m) != 1 || m[0].verb != "delete" || m[0].name != "p1" {
		t.Fatalf("mutations %+v", m)
	}
}

func TestDanglingReferenceRemovedWhenOtherOwnerRemains(t *testing.T) {
	alive := object(rsGVK, "alive")
	pod := object(podGVK, "p1", ownerRef(rsGVK, "gone", true), ownerRef(rsGVK, "alive", false))
	meta := newMetaClient(pod, alive)
	c := newController(t, meta)
	observe(c, addEvent, rsGVK, alive)
	observe(c, addEvent, podGVK, pod)
	drain(t, c)
	m := mutations(actions(t, meta))
	if len(m) != 1 || m[0].verb != "patch" || m[0].resource != "pods" || m[0].name != "p1" {
		t.Fatalf("mutations %+v", m)
	}
	refs := m[0].patch["ownerReferences"].([]any)
	if len(refs) != 1 || refs[0].(map[string]any)["uid"] != "alive-uid" || m[0].patch["uid"] != "p1-uid" {
		t.Fatalf("patch %+v", m[0].patch)
	}
	got, err := meta.Tracker().Get(podGVR, "default", "p1")
	if err != nil {
		t.Fatal(err)
	}
	if r := got.(*metav1.PartialObjectMetadata).OwnerReferences; len(r) != 1 || r[0].Name != "alive" {
		t.Fatalf("stored owner refs %+v", r)
	}
}

func TestOrphanRemovesReferencesThenFinalizer(t *testing.T) {
	now := metav1.Now()
	rs := object(rsGVK, "rs1")
	rs.DeletionTimestamp = &now
	rs.Finalizers = []string{metav1.FinalizerOrphanDependents}
	p1 := object(podGVK, "p1", ownerRef(rsGVK, "rs1", true))
	p2 := object(podGVK, "p2", ownerRef(rsGVK, "rs1", true), ownerRef(depGVK, "other", false))
	meta := newMetaClient(rs, p1, p2, object(depGVK, "other"))
	c := newController(t, meta)
	observe(c, addEvent, podGVK, p1)
	observe(c, addEvent, podGVK, p2)
	observe(c, addEvent, rsGVK, rs)
	drain(t, c)
	m := mutations(actions(t, meta))
	if len(m) != 3 {
		t.Fatalf("mutations %+v", m)
	}
	patched := map[string]int{}
	for _, a := range m[:2] {
		if a.verb != "patch" || a.resource != "pods" {
			t.Fatalf("mutation %+v", a)
		}
		refs, _ := a.patch["ownerReferences"].([]any)
		patched[a.name] = len(refs)
	}
	if patched["p1"] != 0 || patched["p2"] != 1 {
		t.Fatalf("owner refs left after orphaning: %v", patched)
	}
	last := m[2]
	if last.verb != "patch" || last.resource != "replicasets" || last.name != "rs1" {
		t.Fatalf("last mutation %+v", last)
	}
	if fins, _ := last.patch["finalizers"].([]any); len(fins) != 0 {
		t.Fatalf("finalizers patch %+v", last.patch)
	}
}

// apiServer gives the fake metadata client the deletion semantics the
// collector relies on: foreground deletes set the finalizer, objects with
// finalizers only get a deletionTimestamp, and removing the last finalizer of
// a deleting object removes it.
func apiServer(meta *metadatafake.FakeMetadataClient) *[]action {
	var mu sync.Mutex
	var log []action
	tracker := meta.Tracker()
	meta.PrependReactor("delete", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		d := a.(k8stesting.DeleteActionImpl)
		mu.Lock()
		log = append(log, action{verb: "delete", resource: d.Resource.Resource, name: d.Name, opts: d.DeleteOptions})
		mu.Unlock()
		obj, err := tracker.Get(d.Resource, d.Namespace, d.Name)
		if err != nil {
			return true, nil, err
		}
		o := obj.(*metav1.PartialObjectMetadata).DeepCopy()
		if p := d.DeleteOptions.PropagationPolicy; p != nil && *p == metav1.DeletePropagationForeground && !slices.Contains(o.Finalizers, metav1.FinalizerDeleteDependents) {
			o.Finalizers = append(o.Finalizers, metav1.FinalizerDeleteDependents)
		}
		if len(o.Finalizers) == 0 {
			return true, nil, tracker.Delete(d.Resource, d.Namespace, d.Name)
		}
		if o.DeletionTimestamp == nil {
			now := metav1.Now()
			o.DeletionTimestamp = &now
		}
		return true, nil, tracker.Update(d.Resource, o, d.Namespace)
	})
	patch := k8stesting.ObjectReaction(tracker)
	meta.PrependReactor("patch", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		p := a.(k8stesting.PatchActionImpl)
		mu.Lock()
		log = append(log, action{verb: "patch", resource: p.Resource.Resource, name: p.Name})
		mu.Unlock()
		handled, obj, err := patch(a)
		if err != nil {
			return handled, obj, err
		}
		if o, ok := obj.(*metav1.PartialObjectMetadata); ok && o.DeletionTimestamp != nil && len(o.Finalizers) == 0 {
			return true, obj, tracker.Delete(p.Resource, p.Namespace, p.Name)
		}
		return handled, obj, err
	})
	return &log
}

func TestForegroundDeletionEndToEnd(t *testing.T) {
	d := object(depGVK, "d")
	rs1 := object(rsGVK, "rs1", ownerRef(depGVK, "d", true))
	rs2 := object(rsGVK, "rs2", ownerRef(depGVK, "d", false))
	p1 := object(podGVK, "p1", ownerRef(rsGVK, "rs1", true))
	meta := newMetaClient(d, rs1, rs2, p1)
	log := apiServer(meta)
	cs := fake.NewClientset()
	cs.Resources = resources
	c, err := New(Config{}, meta, cs.Discovery(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Run(ctx, 2) }()
	defer func() { cancel(); <-done }()

	// Wait until the graph has seen everything, then delete d in the foreground.
	waitFor(t, func() bool {
		return c.graph.get("p1-uid") != nil && c.graph.get("d-uid") != nil && !c.graph.get("d-uid").virtual
	})
	fg := metav1.DeletePropagationForeground
	if err := meta.Resource(depGVR).Namespace("default").Delete(ctx, "d", metav1.DeleteOptions{PropagationPolicy: &fg}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		for _, x := range []struct {
			gvr  schema.GroupVersionResource
			name string
		}{{depGVR, "d"}, {rsGVR, "rs1"}, {rsGVR, "rs2"}, {podGVR, "p1"}} {
			if _, err := meta.Tracker().Get(x.gvr, "default", x.name); err == nil {
				return false
			}
		}
		return true
	})
	cancel()
	<-done
	done = make(chan error, 1)
	done <- nil

	seq := (*log)[1:] // the first entry is our own delete of d
	idx := func(verb, resource, name string) int {
		return slices.IndexFunc(seq, func(a action) bool { return a.verb == verb && a.resource == resource && a.name == name })
	}
	delRS1, delRS2, delP1 := idx("delete", "replicasets", "rs1"), idx("delete", "replicasets", "rs2"), idx("delete", "pods", "p1")
	finRS1, finD := idx("patch", "replicasets", "rs1"), idx("patch", "deployments", "d")
	if delRS1 < 0 || delRS2 < 0 || delP1 < 0 || finRS1 < 0 || finD < 0 {
		t.Fatalf("missing actions in %+v", seq)
	}
	if *seq[delRS1].opts.PropagationPolicy != metav1.DeletePropagationForeground {
		t.Fatalf("rs1 (which has dependents) deleted with %s", *seq[delRS1].opts.PropagationPolicy)
	}
	if *seq[delRS2].opts.PropagationPolicy != metav1.DeletePropagationBackground {
		t.Fatalf("rs2 deleted with %s", *seq[delRS2].opts.PropagationPolicy)
	}
	for _, i := range []int{delRS1, delRS2, delP1} {
		if seq[i].opts.Preconditions == nil || *seq[i].opts.Preconditions.UID != types.UID(seq[i].name+"-uid") {
			t.Fatalf("delete without UID precondition: %+v", seq[i])
		}
	}
	// The blocking chain (rs1 and its pod: blockOwnerDeletion) goes first,
	// d's finalizer last among it. rs2 does not block its owner (as
	// upstream: only blockOwnerDeletion dependents do), so its delete may
	// land before or after d's finalizer is removed.
	if !(delRS1 < delP1 && delP1 < finRS1 && finRS1 < finD) {
		t.Fatalf("wrong order: %+v", seq)
	}
	for i, a := range seq {
		if i > finD && !(a.verb == "delete" && a.resource == "replicasets" && a.name == "rs2") {
			t.Fatalf("%s %s/%s after d's finalizer was removed: %+v", a.verb, a.resource, a.name, seq)
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSharedTypedInformer: a resource in Config.Shared is watched through
// that (typed) informer, not a metadata informer of the collector's own;
// the collector neither starts nor stops it, and removes its handler when
// it stops.
func TestSharedTypedInformer(t *testing.T) {
	typed := fake.NewClientset(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{
		Namespace: "default", Name: "p1", UID: "p1-uid", OwnerReferences: []metav1.OwnerReference{ownerRef(rsGVK, "rs1", false)},
	}})
	factory := informers.NewSharedInformerFactory(typed, 0)
	pods := factory.Core().V1().Pods().Informer()
	stop := make(chan struct{})
	defer close(stop)
	factory.Start(stop)
	meta := newMetaClient() // the metadata API has no pods: events can only come from the shared informer
	cs := fake.NewClientset()
	cs.Resources = resources
	c, err := New(Config{Shared: map[schema.GroupVersionResource]cache.SharedIndexInformer{podGVR: pods}}, meta, cs.Discovery(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Run(ctx, 1) }()
	waitFor(t, func() bool { n := c.graph.get("p1-uid"); return n != nil && !n.virtual })
	c.mu.RLock()
	m := c.monitors[podGVR]
	c.mu.RUnlock()
	if m == nil || m.informer != pods || m.stop != nil {
		t.Fatalf("pods monitor %+v, want the shared informer", m)
	}
	cancel()
	<-done
	if pods.IsStopped() {
		t.Fatal("the collector stopped a shared informer")
	}
	// Its handler is gone: a new pod reaches no graph.
	if _, err := typed.CoreV1().Pods("default").Create(context.Background(), &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "p2", UID: "p2-uid"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, ok, _ := pods.GetStore().GetByKey("default/p2"); return ok })
	time.Sleep(50 * time.Millisecond)
	if c.graph.get("p2-uid") != nil {
		t.Fatal("a pod created after the collector stopped reached its graph")
	}
}

// TestGraphInputsChanged: only updates of what the graph keeps (owners,
// deletion, finalizers, identity) reach it; status updates do not.
func TestGraphInputsChanged(t *testing.T) {
	tr := true
	base := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "p", UID: "u", ResourceVersion: "1",
		OwnerReferences: []metav1.OwnerReference{ownerRef(rsGVK, "rs1", true)}, Finalizers: []string{"f"}}}
	now := metav1.Now()
	for _, tc := range []struct {
		name   string
		mutate func(p *corev1.Pod)
		want   bool
	}{
		{"status", func(p *corev1.Pod) { p.Status.Phase = corev1.PodRunning; p.ResourceVersion = "2" }, false},
		{"labels", func(p *corev1.Pod) { p.Labels = map[string]string{"a": "b"} }, false},
		{"owner added", func(p *corev1.Pod) { p.OwnerReferences = append(p.OwnerReferences, ownerRef(depGVK, "d", false)) }, true},
		{"owner removed", func(p *corev1.Pod) { p.OwnerReferences = nil }, true},
		{"controller set", func(p *corev1.Pod) { p.OwnerReferences[0].Controller = &tr }, true},
		{"block dropped", func(p *corev1.Pod) { p.OwnerReferences[0].BlockOwnerDeletion = nil }, true},
		{"owner uid", func(p *corev1.Pod) { p.OwnerReferences[0].UID = "other" }, true},
		{"deleting", func(p *corev1.Pod) { p.DeletionTimestamp = &now }, true},
		{"finalizer removed", func(p *corev1.Pod) { p.Finalizers = nil }, true},
		{"recreated", func(p *corev1.Pod) { p.UID = "u2" }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cur := base.DeepCopy()
			tc.mutate(cur)
			if got := graphInputsChanged(base, cur); got != tc.want {
				t.Fatalf("typed: %v, want %v", got, tc.want)
			}
			o, n := &metav1.PartialObjectMetadata{ObjectMeta: base.ObjectMeta}, &metav1.PartialObjectMetadata{ObjectMeta: cur.ObjectMeta}
			if got := graphInputsChanged(o, n); got != tc.want {
				t.Fatalf("metadata: %v, want %v", got, tc.want)
			}
		})
	}
	if got := graphInputsChanged(base, "not an object"); !got {
		t.Fatal("an object without metadata is not reported as a change")
	}
	// It runs on every update of every watched object: it reads the
	// metadata in place.
	cur := base.DeepCopy()
	cur.Status.Phase = corev1.PodRunning
	if n := testing.AllocsPerRun(100, func() { graphInputsChanged(base, cur) }); n != 0 {
		t.Fatalf("%v allocations per update", n)
	}
}
