package scheduler

import (
	"context"
	"testing"

	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8stesting "k8s.io/client-go/testing"
)

// A pod with an unbound WaitForFirstConsumer claim: the scheduler picks
// the node of the only matching local PV, pre-binds the PV in PreBind,
// waits until the claim is bound, and only then binds the pod.
func TestSchedulerPreBindsVolumeBeforeBindingPod(t *testing.T) {
	mode := storagev1.VolumeBindingWaitForFirstConsumer
	class := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "local"}, Provisioner: "kubernetes.io/no-provisioner", VolumeBindingMode: &mode}
	pv := &v1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-n2"}, Spec: v1.PersistentVolumeSpec{
		Capacity: v1.ResourceList{v1.ResourceStorage: resource.MustParse("1Gi")}, AccessModes: []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce},
		StorageClassName: "local",
		NodeAffinity: &v1.VolumeNodeAffinity{Required: &v1.NodeSelector{NodeSelectorTerms: []v1.NodeSelectorTerm{{
			MatchExpressions: []v1.NodeSelectorRequirement{{Key: v1.LabelHostname, Operator: v1.NodeSelectorOpIn, Values: []string{"n2"}}}}}}},
	}, Status: v1.PersistentVolumeStatus{Phase: v1.VolumeAvailable}}
	sc := "local"
	pvc := &v1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "data", Namespace: "default", UID: "uid-data"}, Spec: v1.PersistentVolumeClaimSpec{
		StorageClassName: &sc, AccessModes: []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce},
		Resources: v1.VolumeResourceRequirements{Requests: v1.ResourceList{v1.ResourceStorage: resource.MustParse("1Gi")}},
	}}
	pod := testPod("user", "100m")
	pod.Spec.Volumes = []v1.Volume{{Name: "d", VolumeSource: v1.VolumeSource{PersistentVolumeClaim: &v1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}}}
	client, _, _ := startScheduler(t, testNode("n1", "4"), testNode("n2", "4"), testNode("n3", "4"), class, pv, pvc, pod)

	var preBound *v1.PersistentVolume
	waitFor(t, "the PV pre-binding", func() bool {
		for _, a := range client.Actions() {
			if u, ok := a.(k8stesting.UpdateAction); ok && a.GetResource().Resource == "persistentvolumes" {
				preBound = u.GetObject().(*v1.PersistentVolume)
			}
		}
		return preBound != nil
	})
	if ref := preBound.Spec.ClaimRef; ref == nil || ref.Name != "data" || ref.UID != "uid-data" {
		t.Fatalf("pre-bound claimRef = %+v", ref)
	}
	if b := bindings(client); len(b) != 0 {
		t.Fatalf("pod bound before its claim: %v", b)
	}
	// The PV binder's part: bind the claim.
	bound := pvc.DeepCopy()
	bound.Spec.VolumeName = "pv-n2"
	bound.Annotations = map[string]string{"pv.kubernetes.io/bind-completed": "yes"}
	if _, err := client.CoreV1().PersistentVolumeClaims("default").Update(context.Background(), bound, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the pod's binding", func() bool { return bindings(client)["user"] == "n2" })
}
