package hollow

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	clocktesting "k8s.io/utils/clock/testing"
)

// richPod has every kind of field the stored form does not decode.
func richPod() *v1.Pod {
	now := metav1.Unix(900, 0)
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "default", UID: "u-1", ResourceVersion: "41", GenerateName: "web-",
			Labels: map[string]string{"app": "web", "pod-template-hash": "abc"}, Annotations: map[string]string{"a": "b"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web", UID: "rs"}},
			Finalizers:      []string{"f"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager", Operation: metav1.ManagedFieldsOperationUpdate,
				APIVersion: "v1", Time: &now, FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:metadata":{}}`)}}},
			CreationTimestamp: now},
		Spec: v1.PodSpec{NodeName: "hollow-node-3", SchedulerName: "default-scheduler",
			Tolerations: []v1.Toleration{{Key: "k", Operator: v1.TolerationOpExists}},
			Containers:  []v1.Container{{Name: "app", Image: "bench:v1", Args: []string{"x"}}, {Name: "side", Image: "side:v2"}}},
		Status: v1.PodStatus{Phase: v1.PodPending, QOSClass: v1.PodQOSBestEffort,
			Conditions: []v1.PodCondition{{Type: v1.PodScheduled, Status: v1.ConditionTrue, LastTransitionTime: now}}},
	}
}

// TestStoredPodStatusBodies: a pod decoded from the API server's
// protobuf into the stored form (metadata and spec kept as bytes) gets
// status writes byte for byte equal to those of the whole decoded pod:
// for a pod starting, one being deleted with a running container, and
// one deleted with no grace period.
func TestStoredPodStatusBodies(t *testing.T) {
	srv := &recordingServer{}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	client, err := kubernetes.NewForConfig(&rest.Config{Host: hs.URL})
	if err != nil {
		t.Fatal(err)
	}
	starting := richPod()
	deleting := richPod()
	deleting.DeletionTimestamp = &metav1.Time{Time: time.Unix(990, 0)}
	grace := int64(30)
	deleting.DeletionGracePeriodSeconds = &grace
	deleting.Status.Phase = v1.PodRunning
	deleting.Status.ContainerStatuses = []v1.ContainerStatus{{Name: "app", ContainerID: "hollow://x", State: v1.ContainerState{Running: &v1.ContainerStateRunning{StartedAt: metav1.Unix(950, 0)}}}}
	killed := deleting.DeepCopy()
	zero := int64(0)
	killed.DeletionGracePeriodSeconds = &zero

	for _, pod := range []*v1.Pod{starting, deleting, killed} {
		wire, err := pod.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		obj, err := decodeStoredPod(watch.Modified, wire)
		if err != nil {
			t.Fatal(err)
		}
		sp := obj.(*storedPod)
		if sp.metaSpec == nil {
			t.Fatal("the server's encoding was not kept")
		}
		if sp.Name != pod.Name || sp.Namespace != pod.Namespace || sp.UID != pod.UID || sp.ResourceVersion != pod.ResourceVersion ||
			!reflect.DeepEqual(sp.DeletionTimestamp, pod.DeletionTimestamp) || !reflect.DeepEqual(sp.DeletionGracePeriodSeconds, pod.DeletionGracePeriodSeconds) ||
			sp.Spec.NodeName != pod.Spec.NodeName || len(sp.Spec.Containers) != 2 || sp.Spec.Containers[1].Image != "side:v2" ||
			!reflect.DeepEqual(sp.Status, pod.Status) {
			t.Fatalf("stored pod %+v, from %+v", sp.Pod, pod)
		}
		srv.requests, srv.bodies = nil, nil
		for _, cached := range []any{pod, sp} {
			idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
			if err := idx.Add(cached); err != nil {
				t.Fatal(err)
			}
			n := New(client, Options{Count: 4, Clock: clocktesting.NewFakeClock(time.Unix(1000, 0))})
			n.pods = idx
			if err := n.SyncPod(context.Background(), "default/web-1"); err != nil {
				t.Fatal(err)
			}
		}
		if len(srv.requests) == 0 || len(srv.requests)%2 != 0 {
			t.Fatalf("requests %q", srv.requests)
		}
		half := len(srv.requests) / 2
		for i := 0; i < half; i++ {
			if srv.requests[i] != srv.requests[half+i] || !bytes.Equal(srv.bodies[i], srv.bodies[half+i]) {
				t.Errorf("stored pod sent %q %x, the whole pod %q %x", srv.requests[half+i], srv.bodies[half+i], srv.requests[i], srv.bodies[i])
			}
		}
		if wire2, _ := pod.Marshal(); !bytes.Equal(wire, wire2) {
			t.Error("the cached pod was modified")
		}
	}
}

// TestStoredPodOtherEncodings: a pod whose protobuf is not the server's
// canonical field order is decoded whole (no bytes kept); a bookmark keeps
// its annotations.
func TestStoredPodOtherEncodings(t *testing.T) {
	pod := richPod()
	meta, _ := pod.ObjectMeta.Marshal()
	spec, _ := pod.Spec.Marshal()
	status, _ := pod.Status.Marshal()
	var b []byte
	for _, f := range []struct {
		num protowire.Number
		v   []byte
	}{{3, status}, {1, meta}, {2, spec}} {
		b = protowire.AppendTag(b, f.num, protowire.BytesType)
		b = protowire.AppendBytes(b, f.v)
	}
	obj, err := decodeStoredPod(watch.Added, b)
	if err != nil {
		t.Fatal(err)
	}
	if sp := obj.(*storedPod); sp.metaSpec != nil || !reflect.DeepEqual(sp.Pod, pod) {
		t.Fatalf("reordered pod decoded %+v, want whole %+v", sp.Pod, pod)
	}
	bm := &v1.Pod{ObjectMeta: metav1.ObjectMeta{ResourceVersion: "9", Annotations: map[string]string{metav1.InitialEventsAnnotationKey: "true"}}}
	wire, _ := bm.Marshal()
	obj, err = decodeStoredPod(watch.Bookmark, wire)
	if err != nil {
		t.Fatal(err)
	}
	if sp := obj.(*storedPod); sp.ResourceVersion != "9" || sp.Annotations[metav1.InitialEventsAnnotationKey] != "true" {
		t.Fatalf("bookmark %+v", sp.ObjectMeta)
	}
}

// TestPodIPString: the pod IP text is fmt's for every node index byte
// and host part.
func TestPodIPString(t *testing.T) {
	for _, i := range []int{0, 1, 255, 256, 999, 65535, 70000} {
		for _, host := range []int{2, 9, 10, 99, 100, 255} {
			if got, want := podIPString(i, host), fmt.Sprintf("10.%d.%d.%d", (i>>8)&255, i&255, host); got != want {
				t.Fatalf("podIPString(%d, %d) = %q, want %q", i, host, got, want)
			}
		}
	}
}
