package apiserver

import (
	"context"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"skiff.dev/skiff/test/integration/framework"
)

// TestPodBinding: pods/binding sets spec.nodeName, the binding's
// annotations and the PodScheduled condition, leaves managedFields as they
// were (as upstream's binding does), and refuses a second binding or a
// wrong UID with 409.
func TestPodBinding(t *testing.T) {
	c := framework.Start(t, framework.Options{})
	ctx := context.Background()
	const ns = "bind"
	createNamespace(t, c, ns)
	pods := c.Client.CoreV1().Pods(ns)
	created, err := pods.Create(ctx, pod("p1", ""), metav1.CreateOptions{FieldManager: "creator"})
	if err != nil {
		t.Fatalf("creating pod: %v", err)
	}
	wrongUID := &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: "p1", UID: "not-it"}, Target: corev1.ObjectReference{Kind: "Node", Name: "n1"}}
	if err := pods.Bind(ctx, wrongUID, metav1.CreateOptions{}); !apierrors.IsConflict(err) {
		t.Fatalf("binding with a wrong UID: %v, want Conflict", err)
	}
	b := &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Name: "p1", UID: created.UID, Annotations: map[string]string{"bound-by": "test"}},
		Target:     corev1.ObjectReference{Kind: "Node", Name: "n1"},
	}
	if err := pods.Bind(ctx, b, metav1.CreateOptions{}); err != nil {
		t.Fatalf("binding: %v", err)
	}
	got, err := pods.Get(ctx, "p1", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("getting pod: %v", err)
	}
	if got.Spec.NodeName != "n1" || got.Annotations["bound-by"] != "test" {
		t.Errorf("after binding: nodeName %q, annotations %v", got.Spec.NodeName, got.Annotations)
	}
	scheduled := false
	for _, cond := range got.Status.Conditions {
		if cond.Type == corev1.PodScheduled && cond.Status == corev1.ConditionTrue {
			scheduled = true
		}
	}
	if !scheduled {
		t.Errorf("no PodScheduled=True condition: %+v", got.Status.Conditions)
	}
	if got.ResourceVersion == created.ResourceVersion {
		t.Errorf("binding did not write the pod (resourceVersion %s unchanged)", got.ResourceVersion)
	}
	if !reflect.DeepEqual(got.ManagedFields, created.ManagedFields) {
		t.Errorf("binding changed managedFields:\nbefore %+v\nafter  %+v", created.ManagedFields, got.ManagedFields)
	}
	again := &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: "p1"}, Target: corev1.ObjectReference{Kind: "Node", Name: "n2"}}
	if err := pods.Bind(ctx, again, metav1.CreateOptions{}); !apierrors.IsConflict(err) {
		t.Fatalf("second binding: %v, want Conflict", err)
	}
}
