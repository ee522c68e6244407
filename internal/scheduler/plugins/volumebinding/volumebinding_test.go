package volumebinding

import (
	"context"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	corelisters "k8s.io/client-go/listers/core/v1"
	storagelisters "k8s.io/client-go/listers/storage/v1"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"

	"skiff.dev/skiff/internal/controller/volume"
	"skiff.dev/skiff/internal/scheduler/framework"
	"skiff.dev/skiff/internal/scheduler/schedtest"
)

func class(name string, wffc bool, provisioner string, zones ...string) *storagev1.StorageClass {
	mode := storagev1.VolumeBindingImmediate
	if wffc {
		mode = storagev1.VolumeBindingWaitForFirstConsumer
	}
	sc := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Provisioner: provisioner, VolumeBindingMode: &mode}
	if len(zones) > 0 {
		sc.AllowedTopologies = []v1.TopologySelectorTerm{{MatchLabelExpressions: []v1.TopologySelectorLabelRequirement{{Key: v1.LabelTopologyZone, Values: zones}}}}
	}
	return sc
}

type pvOpt func(*v1.PersistentVolume)

func on(nodes ...string) pvOpt {
	return func(pv *v1.PersistentVolume) {
		pv.Spec.NodeAffinity = &v1.VolumeNodeAffinity{Required: &v1.NodeSelector{NodeSelectorTerms: []v1.NodeSelectorTerm{{
			MatchExpressions: []v1.NodeSelectorRequirement{{Key: v1.LabelHostname, Operator: v1.NodeSelectorOpIn, Values: nodes}}}}}}
	}
}

func modes(m ...v1.PersistentVolumeAccessMode) pvOpt {
	return func(pv *v1.PersistentVolume) { pv.Spec.AccessModes = m }
}

func claimRef(name string) pvOpt {
	return func(pv *v1.PersistentVolume) {
		pv.Spec.ClaimRef = &v1.ObjectReference{Namespace: "default", Name: name}
	}
}

func newPV(name, size, sc string, opts ...pvOpt) *v1.PersistentVolume {
	pv := &v1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: name, ResourceVersion: "1"}, Spec: v1.PersistentVolumeSpec{
		Capacity:         v1.ResourceList{v1.ResourceStorage: resource.MustParse(size)},
		AccessModes:      []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce},
		StorageClassName: sc,
	}, Status: v1.PersistentVolumeStatus{Phase: v1.VolumeAvailable}}
	for _, o := range opts {
		o(pv)
	}
	return pv
}

type pvcOpt func(*v1.PersistentVolumeClaim)

func newPVC(name, size, sc string, opts ...pvcOpt) *v1.PersistentVolumeClaim {
	pvc := &v1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("uid-" + name), ResourceVersion: "1"},
		Spec: v1.PersistentVolumeClaimSpec{
			StorageClassName: &sc,
			AccessModes:      []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce},
			Resources:        v1.VolumeResourceRequirements{Requests: v1.ResourceList{v1.ResourceStorage: resource.MustParse(size)}},
		}}
	for _, o := range opts {
		o(pvc)
	}
	return pvc
}

// fixture is a plugin over indexers the test can change, and a fake client.
type fixture struct {
	p      *VolumeBinding
	pvcs   cache.Indexer
	pvs    cache.Indexer
	client *fake.Clientset
	snap   *framework.Snapshot
	fwk    *framework.Framework
}

func newFixture(t *testing.T, classes []*storagev1.StorageClass, pvs []*v1.PersistentVolume, pvcs []*v1.PersistentVolumeClaim, args Args) *fixture {
	t.Helper()
	f := &fixture{
		pvcs: cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc}),
		pvs:  cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{}),
	}
	scs := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	var objs []runtime.Object
	for _, c := range classes {
		_ = scs.Add(c)
	}
	for _, pv := range pvs {
		_ = f.pvs.Add(pv)
		objs = append(objs, pv)
	}
	for _, pvc := range pvcs {
		_ = f.pvcs.Add(pvc)
		objs = append(objs, pvc)
	}
	f.client = fake.NewSimpleClientset(objs...)
	p, err := New(Deps{Client: f.client, PVCs: corelisters.NewPersistentVolumeClaimLister(f.pvcs),
		PVs: corelisters.NewPersistentVolumeLister(f.pvs), Classes: storagelisters.NewStorageClassLister(scs)}, args)
	if err != nil {
		t.Fatal(err)
	}
	f.p = p
	nodes := []*v1.Node{
		schedtest.Node("a", "1", "1Gi", map[string]string{v1.LabelTopologyZone: "z1"}),
		schedtest.Node("b", "1", "1Gi", map[string]string{v1.LabelTopologyZone: "z1"}),
		schedtest.Node("c", "1", "1Gi", map[string]string{v1.LabelTopologyZone: "z2"}),
	}
	f.snap = framework.NewSnapshot(nil, nodes)
	f.fwk = schedtest.Handle(f.snap, nil, p).Fwk
	return f
}

func podWith(name string, claims ...string) *v1.Pod {
	pod := schedtest.Pod(name, "", "", nil)
	for _, c := range claims {
		pod.Spec.Volumes = append(pod.Spec.Volumes, v1.Volume{Name: c, VolumeSource: v1.VolumeSource{
			PersistentVolumeClaim: &v1.PersistentVolumeClaimVolumeSource{ClaimName: c}}})
	}
	return pod
}

func standardFixture(t *testing.T, args Args) *fixture {
	block := v1.PersistentVolumeBlock
	classes := []*storagev1.StorageClass{
		class("static", true, noProvisioner),
		class("local", true, "skiff.io/local-path"),
		class("zonal", true, "example.com/zonal", "z2"),
		class("immediate", false, "example.com/immediate"),
		class("bound", false, ""),
	}
	pvs := []*v1.PersistentVolume{
		newPV("pv-a-1g", "1Gi", "static", on("a")),
		newPV("pv-a-rox", "1Gi", "static", on("a"), modes(v1.ReadOnlyMany)),
		newPV("pv-a-taken", "100Gi", "static", on("a"), claimRef("someone-else")),
		newPV("pv-b-5g", "5Gi", "static", on("b")),
		newPV("pv-b-block", "10Gi", "static", on("b"), func(pv *v1.PersistentVolume) { pv.Spec.VolumeMode = &block }),
		newPV("pv-c-fast", "2Gi", "static", on("c"), func(pv *v1.PersistentVolume) { pv.Labels = map[string]string{"tier": "fast"} }),
		newPV("pv-c-prebound", "1Gi", "static", on("c"), claimRef("prebound")),
		newPV("pv-released", "100Gi", "static", on("b"), func(pv *v1.PersistentVolume) { pv.Status.Phase = v1.VolumeReleased }),
		newPV("pv-bound-a", "1Gi", "bound", on("a")),
		newPV("pv-bound-net", "1Gi", "bound"),
	}
	selected := func(n string) pvcOpt {
		return func(c *v1.PersistentVolumeClaim) { c.Annotations = map[string]string{volume.AnnSelectedNode: n} }
	}
	boundTo := func(pv string) pvcOpt { return func(c *v1.PersistentVolumeClaim) { c.Spec.VolumeName = pv } }
	pvcs := []*v1.PersistentVolumeClaim{
		newPVC("small", "500Mi", "static"),
		newPVC("big", "3Gi", "static"),
		newPVC("big2", "3Gi", "static"),
		newPVC("huge", "50Gi", "static"),
		newPVC("fast", "500Mi", "static", func(c *v1.PersistentVolumeClaim) {
			c.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "fast"}}
		}),
		newPVC("block", "1Gi", "static", func(c *v1.PersistentVolumeClaim) { c.Spec.VolumeMode = &block }),
		newPVC("rwx", "500Mi", "static", func(c *v1.PersistentVolumeClaim) {
			c.Spec.AccessModes = []v1.PersistentVolumeAccessMode{v1.ReadWriteMany}
		}),
		newPVC("rox", "500Mi", "static", func(c *v1.PersistentVolumeClaim) {
			c.Spec.AccessModes = []v1.PersistentVolumeAccessMode{v1.ReadOnlyMany}
		}),
		newPVC("prebound", "20Gi", "static"),
		newPVC("local", "500Mi", "local"),
		newPVC("local2", "500Mi", "local"),
		newPVC("zonal", "500Mi", "zonal"),
		newPVC("selected", "500Mi", "local", selected("b")),
		newPVC("immediate", "500Mi", "immediate"),
		newPVC("noclass", "500Mi", ""),
		newPVC("unknown-class", "500Mi", "nope"),
		newPVC("bound-a", "1Gi", "bound", boundTo("pv-bound-a")),
		newPVC("bound-net", "1Gi", "bound", boundTo("pv-bound-net")),
		newPVC("bound-missing", "1Gi", "bound", boundTo("pv-gone")),
		newPVC("deleting", "1Gi", "static", func(c *v1.PersistentVolumeClaim) {
			now := metav1.NewTime(time.Unix(1000, 0))
			c.DeletionTimestamp = &now
		}),
	}
	return newFixture(t, classes, pvs, pvcs, args)
}

const (
	bindConflict = "UnschedulableAndUnresolvable: " + ErrReasonBindConflict
	nodeConflict = "UnschedulableAndUnresolvable: " + ErrReasonNodeConflict
	pvNotExist   = "UnschedulableAndUnresolvable: " + ErrReasonPVNotExist
	immediate    = "UnschedulableAndUnresolvable: " + ErrReasonUnboundImmediate
)

func TestFilter(t *testing.T) {
	f := standardFixture(t, Args{})
	ok := ""
	tests := []struct {
		name    string
		claims  []string
		a, b, c string
	}{
		{"no claims", nil, ok, ok, ok},
		{"smallest matching volume on every node", []string{"small"}, ok, ok, ok},
		{"capacity: only b has a free volume of 3Gi", []string{"big"}, bindConflict, ok, bindConflict},
		{"capacity: nothing big enough (taken and released volumes do not count)", []string{"huge"}, bindConflict, bindConflict, bindConflict},
		{"label selector", []string{"fast"}, bindConflict, bindConflict, ok},
		{"volume mode", []string{"block"}, bindConflict, ok, bindConflict},
		{"access modes: no RWX volume", []string{"rwx"}, bindConflict, bindConflict, bindConflict},
		{"access modes: ROX volume only on a", []string{"rox"}, ok, bindConflict, bindConflict},
		{"pre-bound volume wins regardless of size", []string{"prebound"}, bindConflict, bindConflict, ok},
		{"two claims cannot share b's only volume", []string{"small", "big"}, bindConflict, bindConflict, bindConflict},
		{"local-path provisioner provisions on any node", []string{"local"}, ok, ok, ok},
		{"static plus provisioned", []string{"big", "local"}, bindConflict, ok, bindConflict},
		{"allowedTopologies restricts provisioning", []string{"zonal"}, bindConflict, bindConflict, ok},
		{"selected node only", []string{"selected"}, bindConflict, ok, bindConflict},
		{"bound local volume", []string{"bound-a"}, ok, nodeConflict, nodeConflict},
		{"bound volume without node affinity", []string{"bound-net"}, ok, ok, ok},
		{"bound to a missing volume", []string{"bound-missing"}, pvNotExist, pvNotExist, pvNotExist},
		{"bound conflict and bind conflict together", []string{"bound-a", "block"},
			bindConflict, nodeConflict, nodeConflict + ", " + ErrReasonBindConflict},
		{"unbound Immediate claim", []string{"immediate", "local"}, immediate, immediate, immediate},
		{"claim without a class is Immediate", []string{"noclass"}, immediate, immediate, immediate},
		{"claim of a missing class is Immediate", []string{"unknown-class"}, immediate, immediate, immediate},
		{"missing claim", []string{"nope"}, `UnschedulableAndUnresolvable: persistentvolumeclaim "nope" not found`, "", ""},
		{"claim being deleted", []string{"deleting"}, `UnschedulableAndUnresolvable: persistentvolumeclaim "deleting" is being deleted`, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := schedtest.FilterAll(f.fwk, f.snap, podWith("p", tt.claims...))
			want := map[string]string{"a": tt.a, "b": tt.b, "c": tt.c}
			for _, n := range []string{"a", "b", "c"} {
				if strings.HasPrefix(tt.a, "UnschedulableAndUnresolvable: persistentvolumeclaim") {
					want[n] = tt.a
				}
				if got[n] != want[n] {
					t.Errorf("node %s: got %q, want %q", n, got[n], want[n])
				}
			}
		})
	}
}

// cycle runs PreFilter, Filter on every node and Reserve on node, as one
// scheduling cycle does; it returns the state and the Reserve status.
func (f *fixture) cycle(t *testing.T, pod *v1.Pod, node string) (*framework.CycleState, *framework.Status) {
	t.Helper()
	ctx := context.Background()
	pi := framework.NewPodInfo(pod)
	cs := framework.NewCycleState()
	if _, st := f.fwk.RunPreFilterPlugins(ctx, cs, pi, f.snap); !st.IsSuccess() {
		t.Fatalf("prefilter: %v", st)
	}
	ni, err := f.snap.Get(node)
	if err != nil {
		t.Fatal(err)
	}
	if st := f.fwk.RunFilterPlugins(ctx, cs, pi, ni); !st.IsSuccess() {
		return cs, st
	}
	return cs, f.fwk.RunReservePluginsReserve(ctx, cs, pod, node)
}

// Two pods whose claims fit only one volume: the first reserves it, the
// second then fits nowhere until the first is unreserved.
func TestAssumedVolumeIsNotGivenTwice(t *testing.T) {
	f := standardFixture(t, Args{})
	ctx := context.Background()
	pod1, pod2 := podWith("p1", "big"), podWith("p2", "big2")
	cs1, st := f.cycle(t, pod1, "b")
	if !st.IsSuccess() {
		t.Fatalf("reserve p1: %v", st)
	}
	if got := schedtest.FilterAll(f.fwk, f.snap, pod2); got["b"] != bindConflict {
		t.Errorf("p2 on b after p1 reserved pv-b-5g: %q, want %q", got["b"], bindConflict)
	}
	// A second pod sharing p1's claim follows p1's choice.
	if got := schedtest.FilterAll(f.fwk, f.snap, podWith("p3", "big")); got["a"] != nodeConflict || got["b"] != "" || got["c"] != nodeConflict {
		t.Errorf("pod sharing the assumed claim: %v", got)
	}
	f.fwk.RunReservePluginsUnreserve(ctx, cs1, pod1, "b")
	if got := schedtest.FilterAll(f.fwk, f.snap, pod2); got["b"] != "" {
		t.Errorf("p2 on b after p1 unreserved: %q, want fit", got["b"])
	}
}

// A claim assumed for provisioning on a node pins the pods sharing it.
func TestAssumedProvisioningPinsSharedClaim(t *testing.T) {
	f := standardFixture(t, Args{})
	if _, st := f.cycle(t, podWith("p1", "local"), "c"); !st.IsSuccess() {
		t.Fatalf("reserve: %v", st)
	}
	got := schedtest.FilterAll(f.fwk, f.snap, podWith("p2", "local"))
	if got["a"] != bindConflict || got["b"] != bindConflict || got["c"] != "" {
		t.Errorf("second pod of the claim: %v, want only c", got)
	}
	// Another claim of the same class still provisions anywhere.
	if got := schedtest.FilterAll(f.fwk, f.snap, podWith("p3", "local2")); got["a"] != "" || got["b"] != "" {
		t.Errorf("unrelated claim: %v", got)
	}
}

// The informer showing the binding ends the assumption; the lister alone
// then keeps the volume from other claims.
func TestAssumptionPrunedOnceInformerCatchesUp(t *testing.T) {
	f := standardFixture(t, Args{})
	if _, st := f.cycle(t, podWith("p1", "big"), "b"); !st.IsSuccess() {
		t.Fatalf("reserve: %v", st)
	}
	pv := newPV("pv-b-5g", "5Gi", "static", on("b"))
	pv.Spec.ClaimRef = &v1.ObjectReference{Namespace: "default", Name: "big", UID: "uid-big"}
	_ = f.pvs.Update(pv)
	if got := schedtest.FilterAll(f.fwk, f.snap, podWith("p2", "big2")); got["b"] != bindConflict {
		t.Errorf("p2 on b: %q", got["b"])
	}
	if f.p.assume.takenBy("pv-b-5g") != "" {
		t.Errorf("assumption kept after the informer showed the claimRef")
	}
}

// Reserve fails when the chosen volume was taken after PreFilter.
func TestReserveRechecksTheLister(t *testing.T) {
	f := standardFixture(t, Args{})
	ctx := context.Background()
	pod := podWith("p1", "big")
	pi := framework.NewPodInfo(pod)
	cs := framework.NewCycleState()
	if _, st := f.fwk.RunPreFilterPlugins(ctx, cs, pi, f.snap); !st.IsSuccess() {
		t.Fatal(st)
	}
	ni, _ := f.snap.Get("b")
	if st := f.fwk.RunFilterPlugins(ctx, cs, pi, ni); !st.IsSuccess() {
		t.Fatal(st)
	}
	_ = f.pvs.Update(newPV("pv-b-5g", "5Gi", "static", on("b"), claimRef("other")))
	st := f.fwk.RunReservePluginsReserve(ctx, cs, pod, "b")
	if st.Code() != framework.Unschedulable || !strings.Contains(st.Message(), "pv-b-5g") {
		t.Errorf("reserve = %v, want Unschedulable naming pv-b-5g", st)
	}
}

func updates(client *fake.Clientset) []runtime.Object {
	var out []runtime.Object
	for _, a := range client.Actions() {
		if u, ok := a.(k8stesting.UpdateAction); ok {
			out = append(out, u.GetObject())
		}
	}
	return out
}

// PreBind pre-binds the chosen volume, then waits until the binder (here
// the test) has bound the claim.
func TestPreBindStaticVolume(t *testing.T) {
	f := standardFixture(t, Args{PollInterval: 5 * time.Millisecond, BindTimeout: 10 * time.Second})
	pod := podWith("p1", "big")
	cs, st := f.cycle(t, pod, "b")
	if !st.IsSuccess() {
		t.Fatal(st)
	}
	done := make(chan *framework.Status, 1)
	go func() { done <- f.fwk.RunPreBindPlugins(context.Background(), cs, pod, "b") }()
	// The pre-bind write arrives, PreBind keeps waiting.
	deadline := time.Now().Add(5 * time.Second)
	for len(updates(f.client)) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	ups := updates(f.client)
	if len(ups) != 1 {
		t.Fatalf("updates = %d, want the volume's pre-binding", len(ups))
	}
	pv, ok := ups[0].(*v1.PersistentVolume)
	if !ok || pv.Name != "pv-b-5g" || pv.Spec.ClaimRef == nil || pv.Spec.ClaimRef.Name != "big" || pv.Spec.ClaimRef.UID != "uid-big" ||
		pv.Annotations[volume.AnnBoundByController] != "yes" {
		t.Fatalf("update = %#v", ups[0])
	}
	select {
	case st := <-done:
		t.Fatalf("PreBind returned %v before the claim was bound", st)
	case <-time.After(50 * time.Millisecond):
	}
	// The PV binder completes the binding.
	_ = f.pvs.Update(pv)
	pvc := newPVC("big", "3Gi", "static")
	pvc.Spec.VolumeName = "pv-b-5g"
	pvc.Annotations = map[string]string{volume.AnnBindCompleted: "yes"}
	_ = f.pvcs.Update(pvc)
	select {
	case st := <-done:
		if !st.IsSuccess() {
			t.Fatalf("PreBind = %v", st)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("PreBind did not return after the claim was bound")
	}
}

// PreBind asks for provisioning on the node through the selected-node
// annotation, and gives up after the bind timeout.
func TestPreBindProvisioningTimesOut(t *testing.T) {
	f := standardFixture(t, Args{PollInterval: 5 * time.Millisecond, BindTimeout: 100 * time.Millisecond})
	pod := podWith("p1", "local")
	cs, st := f.cycle(t, pod, "a")
	if !st.IsSuccess() {
		t.Fatal(st)
	}
	st = f.fwk.RunPreBindPlugins(context.Background(), cs, pod, "a")
	if st.Code() != framework.Error || !strings.Contains(st.Message(), "binding volumes of pod default/p1") {
		t.Errorf("PreBind = %v, want a timeout error", st)
	}
	ups := updates(f.client)
	if len(ups) != 1 {
		t.Fatalf("updates = %v", ups)
	}
	if pvc, ok := ups[0].(*v1.PersistentVolumeClaim); !ok || pvc.Name != "local" || pvc.Annotations[volume.AnnSelectedNode] != "a" {
		t.Errorf("update = %#v, want claim local with selected node a", ups[0])
	}
}

// A claim whose provisioning moved to another node (the provisioner
// rescheduled it) fails PreBind at once, so the pod is scheduled again.
func TestPreBindFailsWhenSelectedNodeChanges(t *testing.T) {
	f := standardFixture(t, Args{PollInterval: 5 * time.Millisecond, BindTimeout: 10 * time.Second})
	pod := podWith("p1", "local")
	cs, st := f.cycle(t, pod, "a")
	if !st.IsSuccess() {
		t.Fatal(st)
	}
	moved := newPVC("local", "500Mi", "local")
	moved.Annotations = map[string]string{volume.AnnSelectedNode: "c"}
	_ = f.pvcs.Update(moved)
	start := time.Now()
	st = f.fwk.RunPreBindPlugins(context.Background(), cs, pod, "a")
	if st.Code() != framework.Error || !strings.Contains(st.Message(), "being provisioned on node c") {
		t.Errorf("PreBind = %v", st)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("PreBind waited %v", time.Since(start))
	}
}

func TestMatchTopology(t *testing.T) {
	terms := []v1.TopologySelectorTerm{
		{MatchLabelExpressions: []v1.TopologySelectorLabelRequirement{{Key: "zone", Values: []string{"z1", "z2"}}, {Key: "rack", Values: []string{"r1"}}}},
		{MatchLabelExpressions: []v1.TopologySelectorLabelRequirement{{Key: "zone", Values: []string{"z9"}}}},
	}
	tests := []struct {
		labels map[string]string
		terms  []v1.TopologySelectorTerm
		want   bool
	}{
		{nil, nil, true},
		{map[string]string{"zone": "z1", "rack": "r1"}, terms, true},
		{map[string]string{"zone": "z1"}, terms, false},
		{map[string]string{"zone": "z3", "rack": "r1"}, terms, false},
		{map[string]string{"zone": "z9"}, terms, true},
	}
	for i, tt := range tests {
		if got := matchTopology(tt.terms, tt.labels); got != tt.want {
			t.Errorf("%d: matchTopology(%v) = %v, want %v", i, tt.labels, got, tt.want)
		}
	}
}
