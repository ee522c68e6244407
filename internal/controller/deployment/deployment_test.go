package deployment

import (
	"context"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"skiff.dev/skiff/internal/controller"
)

func TestResolveFenceposts(t *testing.T) {
	for _, tc := range []struct {
		surge, unavail intstr.IntOrString
		replicas       int32
		wantS, wantU   int32
	}{
		{intstr.FromString("25%"), intstr.FromString("25%"), 10, 3, 2},
		{intstr.FromString("25%"), intstr.FromString("25%"), 1, 1, 0},
		{intstr.FromInt32(0), intstr.FromInt32(0), 5, 0, 1},
		{intstr.FromString("0%"), intstr.FromString("10%"), 5, 0, 1},
		{intstr.FromInt32(2), intstr.FromString("50%"), 3, 2, 1},
	} {
		s, u, err := ResolveFenceposts(&tc.surge, &tc.unavail, tc.replicas)
		if err != nil || s != tc.wantS || u != tc.wantU {
			t.Errorf("%v/%v of %d: got %d/%d %v, want %d/%d", tc.surge.String(), tc.unavail.String(), tc.replicas, s, u, err, tc.wantS, tc.wantU)
		}
	}
}

func TestCreatesNewReplicaSet(t *testing.T) {
	d := newDeployment(3, intstr.FromString("25%"), intstr.FromString("25%"))
	d.Annotations = map[string]string{"kubernetes.io/change-cause": "kubectl create", v1.LastAppliedConfigAnnotation: "{}"}
	f := newFixture(t, d)
	f.sync()
	f.expectActions("create replicasets", "update deployments/status", "update deployments/status")

	hash := controller.ComputeHash(&d.Spec.Template, nil)
	rss := f.replicaSets()
	if len(rss) != 1 {
		t.Fatalf("got %d replicasets", len(rss))
	}
	rs := rss[0]
	if rs.Name != "web-"+hash || rs.Labels[appsv1.DefaultDeploymentUniqueLabelKey] != hash ||
		rs.Spec.Selector.MatchLabels[appsv1.DefaultDeploymentUniqueLabelKey] != hash ||
		rs.Spec.Template.Labels[appsv1.DefaultDeploymentUniqueLabelKey] != hash || rs.Spec.Template.Labels["app"] != "web" {
		t.Fatalf("replicaset %s labels %v selector %v template %v", rs.Name, rs.Labels, rs.Spec.Selector, rs.Spec.Template.Labels)
	}
	if *rs.Spec.Replicas != 3 {
		t.Fatalf("replicas %d", *rs.Spec.Replicas)
	}
	want := map[string]string{RevisionAnnotation: "1", DesiredReplicasAnnotation: "3", MaxReplicasAnnotation: "4", "kubernetes.io/change-cause": "kubectl create"}
	for k, v := range want {
		if rs.Annotations[k] != v {
			t.Errorf("annotation %s = %q, want %q", k, rs.Annotations[k], v)
		}
	}
	if _, ok := rs.Annotations[v1.LastAppliedConfigAnnotation]; ok {
		t.Error("last-applied-configuration must not be copied")
	}
	if ref := rs.OwnerReferences; len(ref) != 1 || ref[0].UID != d.UID || !*ref[0].Controller {
		t.Fatalf("owner refs %+v", ref)
	}
	got := f.deployment()
	if got.Annotations[RevisionAnnotation] != "1" {
		t.Fatalf("deployment revision %q", got.Annotations[RevisionAnnotation])
	}
	if c := cond(got, appsv1.DeploymentProgressing); c.Reason != ReasonNewRSCreated || c.Message != `Created new replica set "web-`+hash+`"` {
		t.Fatalf("progressing %+v", c)
	}
	if c := cond(got, appsv1.DeploymentAvailable); c.Status != v1.ConditionFalse || c.Reason != ReasonMinUnavailable {
		t.Fatalf("available %+v", c)
	}
}

func TestRollingUpdateStepByStep(t *testing.T) {
	f := newFixture(t, newDeployment(4, intstr.FromInt32(1), intstr.FromInt32(1)))
	f.sync()
	f.settle(allAvailable)
	f.sync()
	if got := f.deployment(); cond(got, appsv1.DeploymentProgressing).Reason != ReasonNewRSAvailable || got.Status.AvailableReplicas != 4 {
		t.Fatalf("v1 not complete: %+v", got.Status)
	}

	f.update(setImage("v2"))
	// Each step: sync, check the sizes, then let the new pods (all, or none) become available.
	steps := []struct {
		want     string
		newReady bool
	}{
		{"v1=3 v2=1", false}, // surge 1 and one old pod down (total stays 4+1 budget)
		{"v1=3 v2=2", false}, // room from the old scale-down goes to the new RS
		{"v1=3 v2=2", true},  // nothing available: stuck
		{"v1=1 v2=2", true},  // 5 available, min 3: two old pods go
		{"v1=1 v2=4", true},
		{"v1=0 v2=4", true},
	}
	for i, s := range steps {
		f.sync()
		f.refresh()
		if got := sizes(f.replicaSets()); got != s.want {
			t.Fatalf("step %d: %s, want %s", i, got, s.want)
		}
		newReady := s.newReady
		f.settle(func(rs *appsv1.ReplicaSet) int32 {
			if rs.Spec.Template.Spec.Containers[0].Image == "v1" || newReady {
				return *rs.Spec.Replicas
			}
			return 0
		})
	}
	f.sync()
	got := f.deployment()
	if c := cond(got, appsv1.DeploymentProgressing); c.Reason != ReasonNewRSAvailable {
		t.Fatalf("progressing %+v", c)
	}
	if got.Status.UpdatedReplicas != 4 || got.Status.AvailableReplicas != 4 || got.Status.Replicas != 4 || got.Annotations[RevisionAnnotation] != "2" {
		t.Fatalf("status %+v annotations %v", got.Status, got.Annotations)
	}
}

func TestRecreate(t *testing.T) {
	d := newDeployment(3, intstr.FromInt32(1), intstr.FromInt32(1))
	d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}
	f := newFixture(t, d)
	f.sync()
	f.settle(allAvailable)
	f.sync()
	f.update(setImage("v2"))
	f.sync()
	if got := sizes(f.replicaSets()); got != "v1=0" {
		t.Fatalf("after first sync %s", got)
	}
	// Old pods still reported: no new ReplicaSet yet.
	f.refresh()
	f.sync()
	if got := sizes(f.replicaSets()); got != "v1=0" {
		t.Fatalf("new RS created while old pods run: %s", got)
	}
	f.settle(allAvailable)
	f.sync()
	if got := sizes(f.replicaSets()); got != "v1=0 v2=3" {
		t.Fatalf("after old pods gone %s", got)
	}
}

func TestRollbackReusesOldReplicaSet(t *testing.T) {
	f := newFixture(t, newDeployment(2, intstr.FromInt32(1), intstr.FromInt32(0)))
	rollOut := func() {
		for i := 0; i < 10; i++ {
			f.sync()
			f.settle(allAvailable)
		}
	}
	rollOut()
	f.update(setImage("v2"))
	rollOut()
	if got := sizes(f.replicaSets()); got != "v1=0 v2=2" {
		t.Fatalf("after v2 %s", got)
	}
	// kubectl rollout undo: the template of revision 1 is written back.
	f.update(func(d *appsv1.Deployment) {
		setImage("v1")(d)
		d.Annotations["kubernetes.io/change-cause"] = "undo"
	})
	rollOut()
	rss := f.replicaSets()
	if len(rss) != 2 || sizes(rss) != "v1=2 v2=0" {
		t.Fatalf("after undo %s", sizes(rss))
	}
	v1rs := rss[0]
	if v1rs.Annotations[RevisionAnnotation] != "3" || v1rs.Annotations[RevisionHistoryAnnotation] != "1" || v1rs.Annotations["kubernetes.io/change-cause"] != "undo" {
		t.Fatalf("annotations of reused RS %v", v1rs.Annotations)
	}
	if got := f.deployment(); got.Annotations[RevisionAnnotation] != "3" {
		t.Fatalf("deployment revision %q", got.Annotations[RevisionAnnotation])
	}
}

func TestRevisionHistoryLimit(t *testing.T) {
	d := newDeployment(1, intstr.FromInt32(1), intstr.FromInt32(0))
	one := int32(1)
	d.Spec.RevisionHistoryLimit = &one
	f := newFixture(t, d)
	for _, img := range []string{"v1", "v2", "v3", "v4"} {
		f.update(setImage(img))
		for i := 0; i < 6; i++ {
			f.sync()
			f.settle(allAvailable)
		}
	}
	if got := sizes(f.replicaSets()); got != "v3=0 v4=1" {
		t.Fatalf("replicasets %s, want the newest old one kept", got)
	}
}

func TestPausedOnlyScales(t *testing.T) {
	f := newFixture(t, newDeployment(2, intstr.FromInt32(1), intstr.FromInt32(0)))
	f.sync()
	f.settle(allAvailable)
	f.sync()
	f.update(func(d *appsv1.Deployment) { d.Spec.Paused = true; setImage("v2")(d) })
	f.sync()
	if got := sizes(f.replicaSets()); got != "v1=2" {
		t.Fatalf("paused deployment rolled: %s", got)
	}
	if c := cond(f.deployment(), appsv1.DeploymentProgressing); c.Reason != ReasonPaused || c.Status != v1.ConditionUnknown || c.Message != "Deployment is paused" {
		t.Fatalf("progressing %+v", c)
	}
	f.refresh()
	f.update(func(d *appsv1.Deployment) { five := int32(5); d.Spec.Replicas = &five })
	f.sync()
	if got := sizes(f.replicaSets()); got != "v1=5" {
		t.Fatalf("paused deployment not scaled: %s", got)
	}
	f.refresh()
	f.update(func(d *appsv1.Deployment) { d.Spec.Paused = false })
	f.sync()
	if c := cond(f.deployment(), appsv1.DeploymentProgressing); c.Reason == ReasonPaused {
		t.Fatalf("still paused: %+v", c)
	}
	if got := sizes(f.replicaSets()); got != "v1=5 v2=1" {
		t.Fatalf("resumed rollout %s", got)
	}
}

func TestProgressDeadline(t *testing.T) {
	d := newDeployment(2, intstr.FromInt32(1), intstr.FromInt32(0))
	deadline := int32(30)
	d.Spec.ProgressDeadlineSeconds = &deadline
	f := newFixture(t, d)
	f.sync()
	f.settle(func(*appsv1.ReplicaSet) int32 { return 0 })
	f.sync()
	f.refresh()
	f.clock.Step(20 * time.Second)
	f.sync()
	if c := cond(f.deployment(), appsv1.DeploymentProgressing); c.Status != v1.ConditionTrue {
		t.Fatalf("timed out too early: %+v", c)
	}
	f.refresh()
	f.clock.Step(15 * time.Second)
	f.sync()
	got := f.deployment()
	c := cond(got, appsv1.DeploymentProgressing)
	rs := f.replicaSets()[0]
	if c.Status != v1.ConditionFalse || c.Reason != ReasonTimedOut || c.Message != `ReplicaSet "`+rs.Name+`" has timed out progressing.` {
		t.Fatalf("progressing %+v", c)
	}
	// Once the pods become available the deployment completes after all.
	f.settle(allAvailable)
	f.sync()
	if c := cond(f.deployment(), appsv1.DeploymentProgressing); c.Reason != ReasonNewRSAvailable || c.Message != `ReplicaSet "`+rs.Name+`" has successfully progressed.` {
		t.Fatalf("progressing %+v", c)
	}
	if c := cond(f.deployment(), appsv1.DeploymentAvailable); c.Reason != ReasonMinAvailable || c.Message != messageMinAvailable {
		t.Fatalf("available %+v", c)
	}
}

func TestProportionalScaling(t *testing.T) {
	f := newFixture(t, newDeployment(10, intstr.FromInt32(3), intstr.FromInt32(2)))
	for i := 0; i < 3; i++ {
		f.sync()
		f.settle(allAvailable)
	}
	f.update(setImage("v2"))
	f.sync() // new RS 3 (surge), old 10 -> 8 (unavailable budget 2)
	f.settle(func(rs *appsv1.ReplicaSet) int32 {
		if rs.Spec.Template.Spec.Containers[0].Image == "v1" {
			return *rs.Spec.Replicas
		}
		return 0
	})
	f.sync() // new RS grows to 5 with the freed room
	f.settle(func(rs *appsv1.ReplicaSet) int32 {
		if rs.Spec.Template.Spec.Containers[0].Image == "v1" {
			return *rs.Spec.Replicas
		}
		return 0
	})
	if got := sizes(f.replicaSets()); got != "v1=8 v2=5" {
		t.Fatalf("mid-rollout %s", got)
	}
	f.update(func(d *appsv1.Deployment) { n := int32(20); d.Spec.Replicas = &n })
	f.sync()
	// 23 allowed, 13 present: 10 to add, 8*23/13 -> 14 and 5*23/13 -> 9.
	if got := sizes(f.replicaSets()); got != "v1=14 v2=9" {
		t.Fatalf("after scale-up %s", got)
	}
	for _, rs := range f.replicaSets() {
		if rs.Annotations[DesiredReplicasAnnotation] != "20" || rs.Annotations[MaxReplicasAnnotation] != "23" {
			t.Fatalf("annotations %v", rs.Annotations)
		}
	}
}

func TestSelectingAllIsRefused(t *testing.T) {
	d := newDeployment(1, intstr.FromInt32(1), intstr.FromInt32(0))
	d.Spec.Selector.MatchLabels = nil
	f := newFixture(t, d)
	f.sync()
	f.expectActions("update deployments/status")
	if f.deployment().Status.ObservedGeneration != 1 {
		t.Fatal("observedGeneration not recorded")
	}
}

func TestMissingDeploymentIsNotAnError(t *testing.T) {
	f := newFixture(t)
	f.sync()
	f.expectActions()
}

// A create that finds the name taken while the informer has not delivered
// the holder yet (our own ReplicaSet from an earlier sync) is retried, not
// counted as a hash collision: counting it made a second ReplicaSet for
// the same template.
func TestAlreadyExistsBeforeCacheIsNotACollision(t *testing.T) {
	d := newDeployment(3, intstr.FromString("25%"), intstr.FromString("25%"))
	f := newFixture(t, d)
	f.sync()
	if n := len(f.replicaSets()); n != 1 {
		t.Fatalf("got %d replicasets after the first sync", n)
	}
	// The informer cache still shows no ReplicaSet (as if the create's
	// watch event were late): the next sync tries to create it again.
	if err := f.factory.Apps().V1().ReplicaSets().Informer().GetIndexer().Replace(nil, ""); err != nil {
		t.Fatal(err)
	}
	f.client.ClearActions()
	if err := f.c.Sync(context.Background(), "default/web"); err == nil {
		t.Fatal("sync with the ReplicaSet missing from the cache succeeded; want an error to retry")
	}
	if got := f.deployment().Status.CollisionCount; got != nil && *got != 0 {
		t.Fatalf("collisionCount %d, want unset: the existing ReplicaSet is ours", *got)
	}
	f.refresh()
	f.sync()
	if n := len(f.replicaSets()); n != 1 {
		t.Fatalf("got %d replicasets after the cache caught up, want 1", n)
	}
}
