package controllers

import (
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
)

const revisionAnnotation = "deployment.kubernetes.io/revision"

// updateDeployment applies mutate to the current Deployment, retrying on
// conflicts.
func (e *env) updateDeployment(t *testing.T, name string, mutate func(*appsv1.Deployment)) {
	t.Helper()
	for attempt := 0; ; attempt++ {
		d, err := e.client.AppsV1().Deployments(e.ns).Get(e.ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("getting deployment: %v", err)
		}
		mutate(d)
		if _, err = e.client.AppsV1().Deployments(e.ns).Update(e.ctx, d, metav1.UpdateOptions{}); err == nil {
			return
		} else if attempt > 10 {
			t.Fatalf("updating deployment: %v", err)
		}
	}
}

// waitComplete waits until the Deployment's latest generation is rolled
// out: every replica updated and available, no old replicas left.
func (e *env) waitComplete(t *testing.T, name string, timeout time.Duration) *appsv1.Deployment {
	t.Helper()
	var d *appsv1.Deployment
	waitFor(t, timeout, "deployment "+name+" complete", func() (bool, error) {
		var err error
		d, err = e.client.AppsV1().Deployments(e.ns).Get(e.ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		s, n := d.Status, *d.Spec.Replicas
		return s.ObservedGeneration >= d.Generation && s.UpdatedReplicas == n && s.Replicas == n && s.AvailableReplicas == n,
			fmt.Errorf("generation %d status %+v", d.Generation, s)
	})
	return d
}

// replicaSets returns the Deployment's ReplicaSets, oldest revision first.
func (e *env) replicaSets(name string) ([]appsv1.ReplicaSet, error) {
	l, err := e.client.AppsV1().ReplicaSets(e.ns).List(e.ctx, metav1.ListOptions{LabelSelector: labels.Set{"app": name}.String()})
	if err != nil {
		return nil, fmt.Errorf("listing replicasets: %w", err)
	}
	sort.Slice(l.Items, func(i, j int) bool {
		return l.Items[i].Annotations[revisionAnnotation] < l.Items[j].Annotations[revisionAnnotation]
	})
	return l.Items, nil
}

// watcher follows a namespace's objects of one kind and checks an
// invariant after every event, on a consistent view (events arrive in
// etcd order).
type watcher[T any] struct {
	mu         sync.Mutex
	objs       map[string]*T
	violations []string
	stop       func()
	done       chan struct{}
}

func startWatch[T any](t *testing.T, list func() ([]T, string, error), watchFrom func(rv string) (watch.Interface, error),
	name func(*T) string, check func(map[string]*T) string) *watcher[T] {
	t.Helper()
	items, rv, err := list()
	if err != nil {
		t.Fatalf("listing: %v", err)
	}
	w, err := watchFrom(rv)
	if err != nil {
		t.Fatalf("watching: %v", err)
	}
	pw := &watcher[T]{objs: map[string]*T{}, stop: w.Stop, done: make(chan struct{})}
	for i := range items {
		pw.objs[name(&items[i])] = &items[i]
	}
	go func() {
		defer close(pw.done)
		for ev := range w.ResultChan() {
			o, ok := ev.Object.(any).(*T)
			if !ok {
				continue
			}
			pw.mu.Lock()
			if ev.Type == watch.Deleted {
				delete(pw.objs, name(o))
			} else {
				pw.objs[name(o)] = o
			}
			if v := check(pw.objs); v != "" {
				pw.violations = append(pw.violations, v)
			}
			pw.mu.Unlock()
		}
	}()
	t.Cleanup(w.Stop)
	return pw
}

// finish stops the watch and returns the violations seen.
func (pw *watcher[T]) finish() []string {
	pw.stop()
	<-pw.done
	pw.mu.Lock()
	defer pw.mu.Unlock()
	return pw.violations
}

func (e *env) watchPods(t *testing.T, check func(map[string]*v1.Pod) string) *watcher[v1.Pod] {
	t.Helper()
	pods := e.client.CoreV1().Pods(e.ns)
	return startWatch(t, func() ([]v1.Pod, string, error) {
		l, err := pods.List(e.ctx, metav1.ListOptions{})
		if err != nil {
			return nil, "", err
		}
		return l.Items, l.ResourceVersion, nil
	}, func(rv string) (watch.Interface, error) {
		return pods.Watch(e.ctx, metav1.ListOptions{ResourceVersion: rv})
	}, func(p *v1.Pod) string { return p.Name }, check)
}

func (e *env) watchReplicaSets(t *testing.T, check func(map[string]*appsv1.ReplicaSet) string) *watcher[appsv1.ReplicaSet] {
	t.Helper()
	rss := e.client.AppsV1().ReplicaSets(e.ns)
	return startWatch(t, func() ([]appsv1.ReplicaSet, string, error) {
		l, err := rss.List(e.ctx, metav1.ListOptions{})
		if err != nil {
			return nil, "", err
		}
		return l.Items, l.ResourceVersion, nil
	}, func(rv string) (watch.Interface, error) {
		return rss.Watch(e.ctx, metav1.ListOptions{ResourceVersion: rv})
	}, func(rs *appsv1.ReplicaSet) string { return rs.Name }, check)
}

func TestDeploymentRollingUpdateRespectsSurgeAndUnavailable(t *testing.T) {
	e := start(t, 4)
	const replicas, surge, unavailable = 8, 2, 1
	d := newDeployment("web", replicas, "nginx:1.0")
	d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType, RollingUpdate: &appsv1.RollingUpdateDeployment{
		MaxSurge: ptr(intstr.FromInt32(surge)), MaxUnavailable: ptr(intstr.FromString("20%")), // 20% of 8 rounds down to 1
	}}
	if _, err := e.client.AppsV1().Deployments(e.ns).Create(e.ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating deployment: %v", err)
	}
	e.waitComplete(t, "web", 30*time.Second)
	e.waitRunning(t, "web", replicas, 30*time.Second)

	// maxSurge bounds the ReplicaSets' replicas (pods of a scaled-down
	// ReplicaSet may take a moment to be marked for deletion, as upstream).
	maxTotal := int32(0)
	rw := e.watchReplicaSets(t, func(rss map[string]*appsv1.ReplicaSet) string {
		total := int32(0)
		for _, rs := range rss {
			total += *rs.Spec.Replicas
		}
		maxTotal = max(maxTotal, total)
		if total > replicas+surge {
			return fmt.Sprintf("replicasets want %d pods, more than replicas+maxSurge = %d (%s)", total, replicas+surge, rsSummaryPtr(rss))
		}
		return ""
	})
	// maxUnavailable bounds the pods that are ready and not being deleted.
	minReady := replicas
	pw := e.watchPods(t, func(pods map[string]*v1.Pod) string {
		nready := 0
		for _, p := range pods {
			if p.DeletionTimestamp == nil && podReady(p) {
				nready++
			}
		}
		minReady = min(minReady, nready)
		if nready < replicas-unavailable {
			return fmt.Sprintf("%d pods ready, fewer than replicas-maxUnavailable = %d", nready, replicas-unavailable)
		}
		return ""
	})
	e.updateDeployment(t, "web", func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].Image = "nginx:2.0" })
	done := e.waitComplete(t, "web", 60*time.Second)
	pods := e.waitRunning(t, "web", replicas, 30*time.Second)
	for _, v := range [][]string{rw.finish(), pw.finish()} {
		if len(v) > 0 {
			t.Errorf("rollout broke its bounds %d times; first: %s", len(v), v[0])
		}
	}
	t.Logf("during the rollout: at most %d replicas wanted, at least %d pods ready", maxTotal, minReady)
	for _, p := range pods {
		if img := p.Spec.Containers[0].Image; img != "nginx:2.0" {
			t.Errorf("pod %s runs %s after the rollout", p.Name, img)
		}
	}
	if done.Annotations[revisionAnnotation] != "2" {
		t.Errorf("revision annotation = %q, want 2", done.Annotations[revisionAnnotation])
	}
	rss, err := e.replicaSets("web")
	if err != nil {
		t.Fatal(err)
	}
	if len(rss) != 2 || *rss[0].Spec.Replicas != 0 || *rss[1].Spec.Replicas != replicas {
		t.Errorf("replicasets after rollout: %v", rsSummary(rss))
	}
	hash := rss[1].Labels[appsv1.DefaultDeploymentUniqueLabelKey]
	if hash == "" || rss[1].Name != "web-"+hash {
		t.Errorf("new replicaset %s has pod-template-hash %q", rss[1].Name, hash)
	}
	for _, c := range []struct {
		typ    appsv1.DeploymentConditionType
		reason string
	}{{appsv1.DeploymentAvailable, "MinimumReplicasAvailable"}, {appsv1.DeploymentProgressing, "NewReplicaSetAvailable"}} {
		cond := deploymentCondition(done, c.typ)
		if cond == nil || cond.Status != v1.ConditionTrue || cond.Reason != c.reason {
			t.Errorf("condition %s = %+v, want True/%s", c.typ, cond, c.reason)
		}
	}
}

func rsSummary(rss []appsv1.ReplicaSet) string {
	s := ""
	for _, rs := range rss {
		s += fmt.Sprintf("[%s rev=%s spec=%d available=%d] ", rs.Name, rs.Annotations[revisionAnnotation], *rs.Spec.Replicas, rs.Status.AvailableReplicas)
	}
	return s
}

func rsSummaryPtr(m map[string]*appsv1.ReplicaSet) string {
	var rss []appsv1.ReplicaSet
	for _, rs := range m {
		rss = append(rss, *rs)
	}
	return rsSummary(rss)
}

func deploymentCondition(d *appsv1.Deployment, t appsv1.DeploymentConditionType) *appsv1.DeploymentCondition {
	for i := range d.Status.Conditions {
		if d.Status.Conditions[i].Type == t {
			return &d.Status.Conditions[i]
		}
	}
	return nil
}

func TestDeploymentRecreate(t *testing.T) {
	e := start(t, 3)
	d := newDeployment("web", 4, "nginx:1.0")
	d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}
	if _, err := e.client.AppsV1().Deployments(e.ns).Create(e.ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating deployment: %v", err)
	}
	e.waitComplete(t, "web", 30*time.Second)
	pw := e.watchPods(t, func(pods map[string]*v1.Pod) string {
		oldRunning, newExists := 0, 0
		for _, p := range pods {
			switch {
			case p.Spec.Containers[0].Image == "nginx:2.0":
				newExists++
			case p.Status.Phase == v1.PodRunning || p.Status.Phase == v1.PodPending:
				oldRunning++
			}
		}
		if newExists > 0 && oldRunning > 0 {
			return fmt.Sprintf("%d new pods exist while %d old pods still run", newExists, oldRunning)
		}
		return ""
	})
	e.updateDeployment(t, "web", func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].Image = "nginx:2.0" })
	e.waitComplete(t, "web", 60*time.Second)
	e.waitRunning(t, "web", 4, 30*time.Second)
	if v := pw.finish(); len(v) > 0 {
		t.Errorf("recreate overlapped old and new pods %d times; first: %s", len(v), v[0])
	}
}

func TestDeploymentRevisionHistoryAndRollback(t *testing.T) {
	e := start(t, 2)
	d := newDeployment("web", 2, "nginx:1")
	d.Spec.RevisionHistoryLimit = ptr(int32(2))
	if _, err := e.client.AppsV1().Deployments(e.ns).Create(e.ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating deployment: %v", err)
	}
	e.waitComplete(t, "web", 30*time.Second)
	for _, img := range []string{"nginx:2", "nginx:3", "nginx:4"} {
		e.updateDeployment(t, "web", func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].Image = img })
		e.waitComplete(t, "web", 30*time.Second)
	}
	// History is limited to two old ReplicaSets besides the current one.
	var rss []appsv1.ReplicaSet
	waitFor(t, 10*time.Second, "old replicasets cleaned up", func() (bool, error) {
		var err error
		rss, err = e.replicaSets("web")
		return len(rss) == 3, fmt.Errorf("replicasets %s (%v)", rsSummary(rss), err)
	})
	for i, want := range []string{"2", "3", "4"} {
		if got := rss[i].Annotations[revisionAnnotation]; got != want {
			t.Errorf("replicaset %d revision %q, want %q (%s)", i, got, want, rsSummary(rss))
		}
	}
	// Rolling back to revision 2's template reuses its ReplicaSet, which
	// becomes revision 5 and remembers revision 2.
	rev2 := rss[0]
	e.updateDeployment(t, "web", func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].Image = "nginx:2" })
	done := e.waitComplete(t, "web", 30*time.Second)
	if got := done.Annotations[revisionAnnotation]; got != "5" {
		t.Errorf("deployment revision after rollback = %q, want 5", got)
	}
	back, err := e.client.AppsV1().ReplicaSets(e.ns).Get(e.ctx, rev2.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("getting the rolled-back replicaset: %v", err)
	}
	if back.Annotations[revisionAnnotation] != "5" || back.Annotations["deployment.kubernetes.io/revision-history"] != "2" || *back.Spec.Replicas != 2 {
		t.Errorf("rolled-back replicaset: replicas %d annotations %v", *back.Spec.Replicas, back.Annotations)
	}
}

func TestDeploymentPauseResume(t *testing.T) {
	e := start(t, 2)
	if _, err := e.client.AppsV1().Deployments(e.ns).Create(e.ctx, newDeployment("web", 2, "nginx:1"), metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating deployment: %v", err)
	}
	e.waitComplete(t, "web", 30*time.Second)
	e.updateDeployment(t, "web", func(d *appsv1.Deployment) {
		d.Spec.Paused = true
		d.Spec.Template.Spec.Containers[0].Image = "nginx:2"
	})
	waitFor(t, 10*time.Second, "paused condition", func() (bool, error) {
		d, err := e.client.AppsV1().Deployments(e.ns).Get(e.ctx, "web", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		c := deploymentCondition(d, appsv1.DeploymentProgressing)
		return d.Status.ObservedGeneration == d.Generation && c != nil && c.Reason == "DeploymentPaused", fmt.Errorf("conditions %+v", d.Status.Conditions)
	})
	// Scaling still works while paused; the template change does not roll.
	e.updateDeployment(t, "web", func(d *appsv1.Deployment) { d.Spec.Replicas = ptr(int32(3)) })
	pods := e.waitRunning(t, "web", 3, 30*time.Second)
	for _, p := range pods {
		if p.Spec.Containers[0].Image != "nginx:1" {
			t.Fatalf("paused deployment rolled pod %s to %s", p.Name, p.Spec.Containers[0].Image)
		}
	}
	if rss, err := e.replicaSets("web"); err != nil || len(rss) != 1 {
		t.Fatalf("paused deployment has replicasets %s (%v)", rsSummary(rss), err)
	}
	e.updateDeployment(t, "web", func(d *appsv1.Deployment) { d.Spec.Paused = false })
	e.waitComplete(t, "web", 30*time.Second)
	for _, p := range e.waitRunning(t, "web", 3, 30*time.Second) {
		if p.Spec.Containers[0].Image != "nginx:2" {
			t.Errorf("resumed deployment left pod %s at %s", p.Name, p.Spec.Containers[0].Image)
		}
	}
}

// stuckRollout starts a rollout whose new pods can never be scheduled.
func stuckTemplate(d *appsv1.Deployment) {
	d.Spec.Template.Spec.Containers[0].Image = "nginx:2"
	d.Spec.Template.Spec.NodeSelector = map[string]string{"skiff.dev/nowhere": "true"}
}

func TestDeploymentProportionalScalingMidRollout(t *testing.T) {
	e := start(t, 3)
	d := newDeployment("web", 10, "nginx:1")
	d.Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{MaxSurge: ptr(intstr.FromInt32(3)), MaxUnavailable: ptr(intstr.FromInt32(2))}
	if _, err := e.client.AppsV1().Deployments(e.ns).Create(e.ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating deployment: %v", err)
	}
	e.waitComplete(t, "web", 30*time.Second)
	e.updateDeployment(t, "web", stuckTemplate)
	// 10+3 pods allowed, 8 must stay available: old 8, new 5 (never ready).
	sizes := func(want [2]int32) func() (bool, error) {
		return func() (bool, error) {
			rss, err := e.replicaSets("web")
			if err != nil || len(rss) != 2 {
				return false, fmt.Errorf("replicasets %s (%v)", rsSummary(rss), err)
			}
			return *rss[0].Spec.Replicas == want[0] && *rss[1].Spec.Replicas == want[1], fmt.Errorf("replicasets %s", rsSummary(rss))
		}
	}
	waitFor(t, 30*time.Second, "rollout stuck at old 8 / new 5", sizes([2]int32{8, 5}))
	// Scaling to 20 adds 10 pods in proportion: 8*23/13 -> 14, 5*23/13 -> 9.
	e.updateDeployment(t, "web", func(d *appsv1.Deployment) { d.Spec.Replicas = ptr(int32(20)) })
	waitFor(t, 30*time.Second, "proportional scale to old 14 / new 9", sizes([2]int32{14, 9}))
}

func TestDeploymentProgressDeadline(t *testing.T) {
	e := start(t, 2)
	d := newDeployment("web", 2, "nginx:1")
	d.Spec.ProgressDeadlineSeconds = ptr(int32(2))
	if _, err := e.client.AppsV1().Deployments(e.ns).Create(e.ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating deployment: %v", err)
	}
	e.waitComplete(t, "web", 30*time.Second)
	e.updateDeployment(t, "web", stuckTemplate)
	waitFor(t, 20*time.Second, "ProgressDeadlineExceeded", func() (bool, error) {
		d, err := e.client.AppsV1().Deployments(e.ns).Get(e.ctx, "web", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		c := deploymentCondition(d, appsv1.DeploymentProgressing)
		return c != nil && c.Status == v1.ConditionFalse && c.Reason == "ProgressDeadlineExceeded", fmt.Errorf("conditions %+v", d.Status.Conditions)
	})
	// Old pods keep serving: the deployment stays Available.
	d, err := e.client.AppsV1().Deployments(e.ns).Get(e.ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c := deploymentCondition(d, appsv1.DeploymentAvailable); c == nil || c.Status != v1.ConditionTrue {
		t.Errorf("Available condition = %+v, want True", c)
	}
}
