package volumetopology

import (
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"skiff.dev/skiff/internal/scheduler/framework"
	"skiff.dev/skiff/internal/scheduler/schedtest"
)

func localPV(name string, hosts ...string) *v1.PersistentVolume {
	return &v1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1.PersistentVolumeSpec{
		NodeAffinity: &v1.VolumeNodeAffinity{Required: &v1.NodeSelector{NodeSelectorTerms: []v1.NodeSelectorTerm{{
			MatchExpressions: []v1.NodeSelectorRequirement{{Key: v1.LabelHostname, Operator: v1.NodeSelectorOpIn, Values: hosts}}}}}}}}
}

func pvc(name, volume string) *v1.PersistentVolumeClaim {
	return &v1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}, Spec: v1.PersistentVolumeClaimSpec{VolumeName: volume}}
}

func TestFilter(t *testing.T) {
	now := metav1.NewTime(time.Unix(1000, 0))
	deleting := pvc("deleting", "pv-a")
	deleting.DeletionTimestamp = &now
	claims := []*v1.PersistentVolumeClaim{
		pvc("on-a", "pv-a"), pvc("on-b-or-c", "pv-bc"), pvc("network", "pv-net"), pvc("unbound", ""),
		pvc("lost", "pv-missing"), deleting,
	}
	pvs := []*v1.PersistentVolume{localPV("pv-a", "a"), localPV("pv-bc", "b", "c"), {ObjectMeta: metav1.ObjectMeta{Name: "pv-net"}}}
	pvcIdx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	for _, c := range claims {
		_ = pvcIdx.Add(c)
	}
	pvIdx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	for _, p := range pvs {
		_ = pvIdx.Add(p)
	}
	p := New(corelisters.NewPersistentVolumeClaimLister(pvcIdx), corelisters.NewPersistentVolumeLister(pvIdx))
	nodes := []*v1.Node{schedtest.Node("a", "1", "1Gi", nil), schedtest.Node("b", "1", "1Gi", nil), schedtest.Node("c", "1", "1Gi", nil)}
	snap := framework.NewSnapshot(nil, nodes)
	fwk := schedtest.Handle(snap, nil, p).Fwk
	conflict := "UnschedulableAndUnresolvable: " + ErrReasonNodeConflict
	tests := []struct {
		name   string
		claims []string
		want   map[string]string
	}{
		{"no claims", nil, map[string]string{"a": "", "b": "", "c": ""}},
		{"local PV on a", []string{"on-a"}, map[string]string{"a": "", "b": conflict, "c": conflict}},
		{"local PV on b or c", []string{"on-b-or-c"}, map[string]string{"a": conflict, "b": "", "c": ""}},
		{"two local PVs with disjoint nodes", []string{"on-a", "on-b-or-c"}, map[string]string{"a": conflict, "b": conflict, "c": conflict}},
		{"PV without node affinity", []string{"network"}, map[string]string{"a": "", "b": "", "c": ""}},
		{"unbound claim is ignored", []string{"unbound", "on-a"}, map[string]string{"a": "", "b": conflict, "c": conflict}},
		{"missing claim", []string{"nope"}, map[string]string{"a": `UnschedulableAndUnresolvable: persistentvolumeclaim "nope" not found`}},
		{"missing volume", []string{"lost"}, map[string]string{"a": `UnschedulableAndUnresolvable: persistentvolume "pv-missing" not found`}},
		{"claim being deleted", []string{"deleting"}, map[string]string{"a": `UnschedulableAndUnresolvable: persistentvolumeclaim "deleting" is being deleted`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := schedtest.Pod("p", "", "", nil)
			for _, c := range tt.claims {
				pod.Spec.Volumes = append(pod.Spec.Volumes, v1.Volume{Name: c, VolumeSource: v1.VolumeSource{
					PersistentVolumeClaim: &v1.PersistentVolumeClaimVolumeSource{ClaimName: c}}})
			}
			got := schedtest.FilterAll(fwk, snap, pod)
			for n, w := range tt.want {
				if got[n] != w {
					t.Errorf("node %s: got %q, want %q", n, got[n], w)
				}
			}
		})
	}
}
