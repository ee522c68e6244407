package localwatch

import (
	"bytes"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/scheme"
)

// benchPod is a bound, running pod of a ReplicaSet with the managedFields
// of its creator and kubelet, as the controllers benchmark's pods are.
func benchPod() *corev1.Pod {
	ctrl := true
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name: "web-7d9f8b6c5d-x2k4q", Namespace: "default", UID: "0b6f4c1e-8a57-4b3e-9d1c-2f7f0f1e9a10",
			ResourceVersion: "123456", GenerateName: "web-7d9f8b6c5d-",
			Labels:          map[string]string{"app": "web", "pod-template-hash": "7d9f8b6c5d"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-7d9f8b6c5d", UID: "5f0c", Controller: &ctrl, BlockOwnerDeletion: &ctrl}},
			ManagedFields: []metav1.ManagedFieldsEntry{
				{Manager: "skiff-controller-manager", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1", FieldsType: "FieldsV1",
					FieldsV1: &metav1.FieldsV1{Raw: bytes.Repeat([]byte(`{"f:metadata":{"f:labels":{}}}`), 20)}},
				{Manager: "hollow", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1", FieldsType: "FieldsV1", Subresource: "status",
					FieldsV1: &metav1.FieldsV1{Raw: bytes.Repeat([]byte(`{"f:status":{"f:conditions":{}}}`), 15)}},
			},
		},
		Spec: corev1.PodSpec{
			NodeName: "hollow-node-17", SchedulerName: "default-scheduler", RestartPolicy: corev1.RestartPolicyAlways,
			Containers: []corev1.Container{{Name: "app", Image: "localhost/skiff/testapp:v1",
				Resources:              corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m")}},
				TerminationMessagePath: "/dev/termination-log", ImagePullPolicy: corev1.PullIfNotPresent}},
			Tolerations: []corev1.Toleration{{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute}},
		},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.42.17.5", HostIP: "10.0.0.17",
			Conditions:        []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}, {Type: corev1.PodScheduled, Status: corev1.ConditionTrue}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Ready: true, Image: "localhost/skiff/testapp:v1", ImageID: "sha256:abc"}}},
	}
}

// BenchmarkEventCopy is what the local path spends per watch event: a
// deep copy of the cache's object.
func BenchmarkEventCopy(b *testing.B) {
	ev := watch.Event{Type: watch.Modified, Object: benchPod()}
	b.ReportAllocs()
	for b.Loop() {
		_ = copyEvent(ev)
	}
}

// BenchmarkEventDecode is what the HTTP path's client spends per event on
// the object alone (the protobuf the server sends, decoded as client-go's
// typed clients do), without the frame, the WatchEvent envelope or the
// server's encoding.
func BenchmarkEventDecode(b *testing.B) {
	info, _ := runtime.SerializerInfoForMediaType(scheme.Codecs.SupportedMediaTypes(), runtime.ContentTypeProtobuf)
	var buf bytes.Buffer
	if err := info.Serializer.Encode(benchPod(), &buf); err != nil {
		b.Fatal(err)
	}
	raw := buf.Bytes()
	dec := scheme.Codecs.WithoutConversion().DecoderToVersion(info.Serializer, corev1.SchemeGroupVersion)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := dec.Decode(raw, nil, nil); err != nil {
			b.Fatal(err)
		}
	}
}
