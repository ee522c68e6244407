package controllers

import (
	"fmt"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/uuid"
)

func (e *env) deleteRS(t *testing.T, name string, policy metav1.DeletionPropagation) {
	t.Helper()
	if err := e.client.AppsV1().ReplicaSets(e.ns).Delete(e.ctx, name, metav1.DeleteOptions{PropagationPolicy: &policy}); err != nil {
		t.Fatalf("deleting replicaset %s (%s): %v", name, policy, err)
	}
}

func TestGarbageCollectorBackground(t *testing.T) {
	e := start(t, 2)
	if _, err := e.client.AppsV1().ReplicaSets(e.ns).Create(e.ctx, newReplicaSet("web", 3), metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating replicaset: %v", err)
	}
	e.waitRunning(t, "web", 3, 30*time.Second)
	e.deleteRS(t, "web", metav1.DeletePropagationBackground)
	if _, err := e.client.AppsV1().ReplicaSets(e.ns).Get(e.ctx, "web", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("replicaset still present after background delete: %v", err)
	}
	waitFor(t, 30*time.Second, "dependent pods collected", func() (bool, error) {
		pods, err := e.pods("web")
		return err == nil && len(pods) == 0, fmt.Errorf("%d pods (%v)", len(pods), err)
	})
}

func TestGarbageCollectorForeground(t *testing.T) {
	e := start(t, 2)
	if _, err := e.client.AppsV1().Deployments(e.ns).Create(e.ctx, newDeployment("web", 3, "nginx:1"), metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating deployment: %v", err)
	}
	e.waitComplete(t, "web", 30*time.Second)
	pods := e.waitRunning(t, "web", 3, 30*time.Second)
	for _, p := range pods {
		if ref := controllerOf(&p); ref == nil || ref.BlockOwnerDeletion == nil || !*ref.BlockOwnerDeletion {
			t.Errorf("pod %s controllerRef %+v does not block owner deletion", p.Name, ref)
		}
	}
	fg := metav1.DeletePropagationForeground
	if err := e.client.AppsV1().Deployments(e.ns).Delete(e.ctx, "web", metav1.DeleteOptions{PropagationPolicy: &fg}); err != nil {
		t.Fatalf("deleting deployment: %v", err)
	}
	d, err := e.client.AppsV1().Deployments(e.ns).Get(e.ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("deployment gone right after a foreground delete: %v", err)
	}
	if d.DeletionTimestamp == nil || !hasString(d.Finalizers, metav1.FinalizerDeleteDependents) {
		t.Errorf("foreground-deleted deployment: deletionTimestamp %v finalizers %v", d.DeletionTimestamp, d.Finalizers)
	}
	// The owner goes only after its blocking dependents: when the
	// deployment is gone, no ReplicaSet or pod of it may remain.
	waitGone(t, "deployment", 30*time.Second, func() error {
		_, err := e.client.AppsV1().Deployments(e.ns).Get(e.ctx, "web", metav1.GetOptions{})
		return err
	})
	rss, err := e.replicaSets("web")
	if err != nil {
		t.Fatal(err)
	}
	left, err := e.pods("web")
	if err != nil {
		t.Fatal(err)
	}
	if len(rss) != 0 || len(left) != 0 {
		t.Errorf("deployment removed before its dependents: %d replicasets, %d pods remain", len(rss), len(left))
	}
}

func hasString(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func TestGarbageCollectorOrphan(t *testing.T) {
	e := start(t, 2)
	rs, err := e.client.AppsV1().ReplicaSets(e.ns).Create(e.ctx, newReplicaSet("web", 2), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating replicaset: %v", err)
	}
	e.waitRunning(t, "web", 2, 30*time.Second)
	e.deleteRS(t, "web", metav1.DeletePropagationOrphan)
	waitGone(t, "replicaset", 30*time.Second, func() error {
		_, err := e.client.AppsV1().ReplicaSets(e.ns).Get(e.ctx, "web", metav1.GetOptions{})
		return err
	})
	pods, err := e.pods("web")
	if err != nil {
		t.Fatal(err)
	}
	if len(live(pods)) != 2 {
		t.Fatalf("orphan delete left %d live pods, want 2", len(live(pods)))
	}
	for _, p := range pods {
		for _, r := range p.OwnerReferences {
			if r.UID == rs.UID {
				t.Errorf("orphaned pod %s still references its deleted owner", p.Name)
			}
		}
	}
	// And they stay: nothing collects them later.
	time.Sleep(500 * time.Millisecond)
	if pods, err := e.pods("web"); err != nil || len(live(pods)) != 2 {
		t.Errorf("orphans later: %d live (%v)", len(live(pods)), err)
	}
}

func TestGarbageCollectorDanglingAndCrossResource(t *testing.T) {
	e := start(t, 0)
	cms := e.client.CoreV1().ConfigMaps(e.ns)
	owner, err := cms.Create(e.ctx, &v1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "owner"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating owner: %v", err)
	}
	mk := func(name string, ref metav1.OwnerReference) {
		t.Helper()
		_, err := cms.Create(e.ctx, &v1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, OwnerReferences: []metav1.OwnerReference{ref}}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("creating %s: %v", name, err)
		}
	}
	// A dependent whose owner never existed is collected.
	mk("dangling", metav1.OwnerReference{APIVersion: "v1", Kind: "ConfigMap", Name: "ghost", UID: uuid.NewUUID()})
	// A secret owned by a configmap goes with it.
	if _, err := e.client.CoreV1().Secrets(e.ns).Create(e.ctx, &v1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "child",
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: "owner", UID: owner.UID}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating child secret: %v", err)
	}
	// An object with a second, live owner survives the first owner.
	keeper, err := e.client.AppsV1().Deployments(e.ns).Create(e.ctx, newDeployment("keeper", 0, "nginx:1"), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating keeper: %v", err)
	}
	if _, err := cms.Create(e.ctx, &v1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "shared", OwnerReferences: []metav1.OwnerReference{
		{APIVersion: "v1", Kind: "ConfigMap", Name: "owner", UID: owner.UID},
		{APIVersion: "apps/v1", Kind: "Deployment", Name: "keeper", UID: keeper.UID},
	}}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating shared: %v", err)
	}
	waitGone(t, "dangling dependent", 30*time.Second, func() error {
		_, err := cms.Get(e.ctx, "dangling", metav1.GetOptions{})
		return err
	})
	if err := cms.Delete(e.ctx, "owner", metav1.DeleteOptions{}); err != nil {
		t.Fatalf("deleting owner: %v", err)
	}
	waitGone(t, "secret owned by the configmap", 30*time.Second, func() error {
		_, err := e.client.CoreV1().Secrets(e.ns).Get(e.ctx, "child", metav1.GetOptions{})
		return err
	})
	// As upstream, a dependent with a live owner survives and loses the
	// reference to the dead one.
	waitFor(t, 30*time.Second, "shared dependent to lose the deleted owner", func() (bool, error) {
		cm, err := cms.Get(e.ctx, "shared", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return len(cm.OwnerReferences) == 1 && cm.OwnerReferences[0].UID == keeper.UID,
			fmt.Errorf("ownerReferences %v", cm.OwnerReferences)
	})
}
