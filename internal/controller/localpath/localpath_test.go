package localpath

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestVolume(t *testing.T) {
	retain := corev1.PersistentVolumeReclaimRetain
	sc := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "local-path"}, Provisioner: ProvisionerName,
		Parameters: map[string]string{"basePath": "/data/storage"}, ReclaimPolicy: &retain}
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "c", Namespace: "ns", UID: "u1"},
		Spec: corev1.PersistentVolumeClaimSpec{Resources: corev1.VolumeResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("3Gi")}}},
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{corev1.LabelHostname: "host-1"}}}
	pv := Volume(pvc, sc, "n1", node, DefaultBasePath)
	if pv.Name != "pvc-u1" || pv.Spec.HostPath.Path != "/data/storage/pvc-u1" {
		t.Errorf("name %s path %s", pv.Name, pv.Spec.HostPath.Path)
	}
	if v := pv.Spec.NodeAffinity.Required.NodeSelectorTerms[0].MatchExpressions[0].Values; len(v) != 1 || v[0] != "host-1" {
		t.Errorf("node affinity values = %v, want the node's hostname label", v)
	}
	if pv.Spec.ClaimRef.UID != "u1" || pv.Spec.PersistentVolumeReclaimPolicy != retain || pv.Spec.Capacity.Storage().String() != "3Gi" ||
		pv.Spec.AccessModes[0] != corev1.ReadWriteOnce || pv.Spec.StorageClassName != "local-path" {
		t.Errorf("spec = %+v", pv.Spec)
	}
	sc.Parameters = nil
	if p := Volume(pvc, sc, "n1", nil, "/base").Spec.HostPath.Path; p != "/base/pvc-u1" {
		t.Errorf("path without class parameter = %s", p)
	}
}
