package controllers

import (
	"fmt"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func TestNamespaceDeletion(t *testing.T) {
	e := start(t, 2)
	if _, err := e.client.AppsV1().Deployments(e.ns).Create(e.ctx, newDeployment("web", 2, "nginx:1"), metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating deployment: %v", err)
	}
	if _, err := e.client.CoreV1().ConfigMaps(e.ns).Create(e.ctx, &v1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cfg"}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating configmap: %v", err)
	}
	if _, err := e.client.CoreV1().Services(e.ns).Create(e.ctx, &v1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: v1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: []v1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating service: %v", err)
	}
	e.waitRunning(t, "web", 2, 30*time.Second)

	if err := e.client.CoreV1().Namespaces().Delete(e.ctx, e.ns, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("deleting namespace: %v", err)
	}
	ns, err := e.client.CoreV1().Namespaces().Get(e.ctx, e.ns, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("namespace gone immediately (it has content to delete first): %v", err)
	}
	if ns.Status.Phase != v1.NamespaceTerminating || ns.DeletionTimestamp == nil {
		t.Errorf("deleted namespace: phase %q deletionTimestamp %v, want Terminating", ns.Status.Phase, ns.DeletionTimestamp)
	}
	_, err = e.client.CoreV1().ConfigMaps(e.ns).Create(e.ctx, &v1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "late"}}, metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) {
		t.Errorf("creating in a terminating namespace: err = %v, want Forbidden", err)
	}
	waitGone(t, "namespace "+e.ns, 60*time.Second, func() error {
		_, err := e.client.CoreV1().Namespaces().Get(e.ctx, e.ns, metav1.GetOptions{})
		return err
	})
	// Nothing of it is left in storage.
	for what, list := range map[string]func() (int, error){
		"pods": func() (int, error) {
			l, err := e.client.CoreV1().Pods(e.ns).List(e.ctx, metav1.ListOptions{})
			return lenOr(l, err, func() int { return len(l.Items) })
		},
		"configmaps": func() (int, error) {
			l, err := e.client.CoreV1().ConfigMaps(e.ns).List(e.ctx, metav1.ListOptions{})
			return lenOr(l, err, func() int { return len(l.Items) })
		},
		"deployments": func() (int, error) {
			l, err := e.client.AppsV1().Deployments(e.ns).List(e.ctx, metav1.ListOptions{})
			return lenOr(l, err, func() int { return len(l.Items) })
		},
		"endpoints": func() (int, error) {
			l, err := e.client.CoreV1().Endpoints(e.ns).List(e.ctx, metav1.ListOptions{})
			return lenOr(l, err, func() int { return len(l.Items) })
		},
	} {
		if n, err := list(); err != nil || n != 0 {
			t.Errorf("%s left in the deleted namespace: %d (%v)", what, n, err)
		}
	}
	// The name can be used again.
	if _, err := e.client.CoreV1().Namespaces().Create(e.ctx, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: e.ns}}, metav1.CreateOptions{}); err != nil {
		t.Errorf("recreating namespace: %v", err)
	}
}

func lenOr[T any](l *T, err error, n func() int) (int, error) {
	if err != nil {
		return 0, fmt.Errorf("listing: %w", err)
	}
	return n(), nil
}
