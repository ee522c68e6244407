package generic_test

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/applyconfigurations"

	"skiff.dev/skiff/internal/cputime"
	"skiff.dev/skiff/internal/registry"
	"skiff.dev/skiff/internal/registry/generic"
)

func benchPod(r *registry.Resource) *corev1.Pod {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default", Labels: map[string]string{"app": "bench"},
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "rs", UID: "uid-rs"}}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "registry.k8s.io/pause:3.10",
			Ports: []corev1.ContainerPort{{ContainerPort: 80}}}}}}
	r.Default(pod)
	// As decoded from a request or from storage.
	pod.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}
	return pod
}

// BenchmarkCreateManagedFields measures the managedFields bookkeeping of a
// small pod create (structured-merge-diff typing of the empty live object
// and the new one, and their comparison): the largest single cost in
// Store.Create, see docs/PERFORMANCE.md.
func BenchmarkCreateManagedFields(b *testing.B) {
	scheme := registry.NewScheme()
	fms := generic.NewFieldManagers(scheme, applyconfigurations.NewTypeConverter(scheme))
	r := podsResource(b)
	pod := benchPod(r)
	fms.Update(r, "", r.New(), pod.DeepCopy(), "bench") // builds the field manager
	b.ReportAllocs()
	cpu0 := cputime.Process()
	for b.Loop() {
		out := fms.Update(r, "", r.New(), pod.DeepCopy(), "bench")
		if len(out.(*corev1.Pod).ManagedFields) != 1 {
			b.Fatal("no managedFields entry recorded")
		}
	}
	b.ReportMetric(float64(cputime.Process()-cpu0)/float64(b.N), "cpu-ns/op")
}

// BenchmarkStatusUpdateManagedFields is a node agent's first status
// update of a pod (running: phase, host and pod IPs, start time, three
// more conditions, the container's status) created by a controller and
// bound by the scheduler (nodeName and PodScheduled, which the binding
// subresource does not record in managedFields), as the hollow nodes of
// the Deployment benchmark write it: the most frequent write there.
func BenchmarkStatusUpdateManagedFields(b *testing.B) {
	scheme := registry.NewScheme()
	fms := generic.NewFieldManagers(scheme, applyconfigurations.NewTypeConverter(scheme))
	r := podsResource(b)
	live := fms.Update(r, "", r.New(), benchPod(r), "replicaset-controller").(*corev1.Pod)
	// As stored, then bound.
	now := metav1.Now()
	live.UID, live.ResourceVersion = "6c4a1e0e-2f7b-4d51-9a8c-3b1f0e6d2a17", "12"
	live.Status = corev1.PodStatus{Phase: corev1.PodPending, QOSClass: corev1.PodQOSBestEffort}
	live.Spec.NodeName = "node-1"
	live.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now}}
	st := live.DeepCopy()
	started := true
	st.Status.Phase = corev1.PodRunning
	st.Status.HostIP, st.Status.PodIP = "10.0.0.1", "10.42.0.5"
	st.Status.HostIPs = []corev1.HostIP{{IP: st.Status.HostIP}}
	st.Status.PodIPs = []corev1.PodIP{{IP: st.Status.PodIP}}
	st.Status.StartTime = &now
	for _, c := range []corev1.PodConditionType{corev1.PodInitialized, corev1.PodReady, corev1.ContainersReady} {
		st.Status.Conditions = append(st.Status.Conditions, corev1.PodCondition{Type: c, Status: corev1.ConditionTrue, LastTransitionTime: now})
	}
	st.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "c", Image: "registry.k8s.io/pause:3.10", ImageID: "hollow://registry.k8s.io/pause:3.10",
		ContainerID: "hollow://6c4a1e0e/c", Ready: true, Started: &started,
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}}}
	fms.Update(r, "status", live, st.DeepCopy(), "hollow-node")
	// Update writes only obj's managedFields: the same object serves
	// every round, with the managedFields it came with, so that the
	// numbers are the field manager's alone.
	sent := st.ManagedFields
	b.ReportAllocs()
	cpu0 := cputime.Process()
	for b.Loop() {
		st.ManagedFields = sent
		out := fms.Update(r, "status", live, st, "hollow-node")
		if len(out.(*corev1.Pod).ManagedFields) != 2 {
			b.Fatalf("managedFields entries: %d, want 2", len(out.(*corev1.Pod).ManagedFields))
		}
	}
	b.ReportMetric(float64(cputime.Process()-cpu0)/float64(b.N), "cpu-ns/op")
}
