package controllers

import (
	"fmt"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestReplicaSetKeepsReplicas(t *testing.T) {
	e := start(t, 3)
	rs, err := e.client.AppsV1().ReplicaSets(e.ns).Create(e.ctx, newReplicaSet("web", 3), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating replicaset: %v", err)
	}
	pods := e.waitRunning(t, "web", 3, 30*time.Second)
	for _, p := range pods {
		ref := controllerOf(&p)
		if ref == nil || ref.UID != rs.UID || ref.Kind != "ReplicaSet" {
			t.Errorf("pod %s controllerRef = %+v, want the replicaset", p.Name, ref)
		}
		if p.Spec.NodeName == "" {
			t.Errorf("pod %s not scheduled", p.Name)
		}
	}
	// A deleted pod is replaced.
	if err := e.client.CoreV1().Pods(e.ns).Delete(e.ctx, pods[0].Name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("deleting pod: %v", err)
	}
	waitFor(t, 30*time.Second, "a replacement pod", func() (bool, error) {
		ps, err := e.pods("web")
		if err != nil {
			return false, err
		}
		l := live(ps)
		for _, p := range l {
			if p.Name == pods[0].Name {
				return false, nil
			}
		}
		return len(l) == 3, nil
	})
	e.waitRunning(t, "web", 3, 30*time.Second)
	waitFor(t, 30*time.Second, "replicaset status 3/3 ready and available", func() (bool, error) {
		rs, err := e.client.AppsV1().ReplicaSets(e.ns).Get(e.ctx, "web", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		s := rs.Status
		return s.Replicas == 3 && s.ReadyReplicas == 3 && s.AvailableReplicas == 3 && s.ObservedGeneration == rs.Generation,
			fmt.Errorf("status %+v", s)
	})
	// Scale up and down through the scale subresource.
	for _, n := range []int32{5, 1} {
		for attempt := 0; ; attempt++ {
			sc, err := e.client.AppsV1().ReplicaSets(e.ns).GetScale(e.ctx, "web", metav1.GetOptions{})
			if err != nil {
				t.Fatalf("getting scale: %v", err)
			}
			sc.Spec.Replicas = n
			if _, err = e.client.AppsV1().ReplicaSets(e.ns).UpdateScale(e.ctx, "web", sc, metav1.UpdateOptions{}); err == nil {
				break
			} else if !apierrors.IsConflict(err) || attempt > 10 {
				t.Fatalf("scaling to %d: %v", n, err)
			}
		}
		e.waitRunning(t, "web", int(n), 30*time.Second)
	}
}

func TestReplicaSetAdoptsAndReleasesOrphans(t *testing.T) {
	e := start(t, 2)
	orphan := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "orphan", Labels: map[string]string{"app": "web"}},
		Spec:       podTemplate("web", "registry.k8s.io/pause:3.10").Spec,
	}
	if _, err := e.client.CoreV1().Pods(e.ns).Create(e.ctx, orphan, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating orphan: %v", err)
	}
	rs, err := e.client.AppsV1().ReplicaSets(e.ns).Create(e.ctx, newReplicaSet("web", 2), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating replicaset: %v", err)
	}
	waitFor(t, 30*time.Second, "orphan adopted", func() (bool, error) {
		p, err := e.client.CoreV1().Pods(e.ns).Get(e.ctx, "orphan", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		ref := controllerOf(p)
		return ref != nil && ref.UID == rs.UID, nil
	})
	// The adopted pod counts: only one more pod is created.
	pods := e.waitRunning(t, "web", 2, 30*time.Second)
	names := map[string]bool{}
	for _, p := range pods {
		names[p.Name] = true
	}
	if !names["orphan"] {
		t.Fatalf("pods %v do not include the adopted orphan", names)
	}
	// Relabelled, the pod is released and replaced.
	for attempt := 0; ; attempt++ {
		p, err := e.client.CoreV1().Pods(e.ns).Get(e.ctx, "orphan", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("getting pod: %v", err)
		}
		p.Labels["app"] = "other"
		if _, err = e.client.CoreV1().Pods(e.ns).Update(e.ctx, p, metav1.UpdateOptions{}); err == nil {
			break
		} else if attempt > 10 {
			t.Fatalf("relabelling pod: %v", err)
		}
	}
	waitFor(t, 30*time.Second, "orphan released", func() (bool, error) {
		p, err := e.client.CoreV1().Pods(e.ns).Get(e.ctx, "orphan", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return len(p.OwnerReferences) == 0, fmt.Errorf("ownerReferences %v", p.OwnerReferences)
	})
	e.waitRunning(t, "web", 2, 30*time.Second)
}

func TestReplicaSetScaleDownDeletesNotReadyFirst(t *testing.T) {
	e := start(t, 2)
	if _, err := e.client.AppsV1().ReplicaSets(e.ns).Create(e.ctx, newReplicaSet("web", 3), metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating replicaset: %v", err)
	}
	pods := e.waitRunning(t, "web", 3, 30*time.Second)
	victim := pods[1].Name
	e.setPodReady(t, victim, false)
	waitFor(t, 10*time.Second, "replicaset to see the not-ready pod", func() (bool, error) {
		rs, err := e.client.AppsV1().ReplicaSets(e.ns).Get(e.ctx, "web", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return rs.Status.ReadyReplicas == 2, nil
	})
	rs, err := e.client.AppsV1().ReplicaSets(e.ns).Get(e.ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("getting replicaset: %v", err)
	}
	rs.Spec.Replicas = ptr(int32(2))
	if _, err := e.client.AppsV1().ReplicaSets(e.ns).Update(e.ctx, rs, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("scaling down: %v", err)
	}
	after := e.waitRunning(t, "web", 2, 30*time.Second)
	for _, p := range after {
		if p.Name == victim {
			t.Fatalf("scale-down kept not-ready pod %s and deleted a ready one", victim)
		}
	}
}
