// Package controllers tests skiff's controllers end to end: the in-process
// API server with the controller manager and scheduler, hollow nodes that
// heartbeat and report bound pods Running and Ready, and (for the kubectl
// scenario) real kubectl binaries. Each test starts its own control plane
// (about a second) and works in its own namespace, so tests are independent.
package controllers

import (
	"context"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"

	"skiff.dev/skiff/internal/hollow"
	"skiff.dev/skiff/test/integration/framework"
)

// env is one test's control plane, client and namespace.
type env struct {
	c      *framework.Cluster
	client kubernetes.Interface
	ns     string
	ctx    context.Context
}

// start runs a control plane with the controller manager and scheduler,
// nodes hollow nodes, and a fresh namespace.
func start(t *testing.T, nodes int) *env {
	t.Helper()
	c := framework.Start(t, framework.Options{ControllerManager: true, Scheduler: true})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	e := &env{c: c, client: c.Client, ctx: ctx}
	if nodes > 0 {
		runHollow(t, ctx, c.Client, hollow.Options{Count: nodes, LeaseInterval: time.Second})
	}
	e.ns = e.namespace(t, "test")
	return e
}

// runHollow runs hollow nodes until ctx ends and waits for them to register.
func runHollow(t *testing.T, ctx context.Context, client kubernetes.Interface, opts hollow.Options) *hollow.Nodes {
	t.Helper()
	h := hollow.New(client, opts)
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(ctx)
	go func() { done <- h.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && ctx.Err() == nil {
			t.Errorf("hollow nodes: %v", err)
		}
	})
	waitFor(t, 30*time.Second, "hollow nodes registered", func() (bool, error) {
		for _, name := range h.Names() {
			if _, err := client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{}); err != nil {
				return false, err
			}
		}
		return true, nil
	})
	return h
}

// namespace creates a namespace with a generated name.
func (e *env) namespace(t *testing.T, prefix string) string {
	t.Helper()
	ns, err := e.client.CoreV1().Namespaces().Create(e.ctx, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating namespace: %v", err)
	}
	return ns.Name
}

// waitFor polls cond every 20 ms until it is true, failing the test after
// timeout with the last error.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for {
		ok, err := cond()
		if ok {
			return
		}
		last = err
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s (last error: %v)", timeout, what, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func ptr[T any](v T) *T { return &v }

func podTemplate(app, image string) v1.PodTemplateSpec {
	return v1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": app}},
		Spec: v1.PodSpec{Containers: []v1.Container{{
			Name: "app", Image: image,
			Ports: []v1.ContainerPort{{Name: "http", ContainerPort: 8080}},
		}}},
	}
}

func newDeployment(name string, replicas int32, image string) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: podTemplate(name, image),
		},
	}
}

func newReplicaSet(name string, replicas int32) *appsv1.ReplicaSet {
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: ptr(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: podTemplate(name, "registry.k8s.io/pause:3.10"),
		},
	}
}

// pods lists the namespace's pods matching app=name.
func (e *env) pods(name string) ([]v1.Pod, error) {
	l, err := e.client.CoreV1().Pods(e.ns).List(e.ctx, metav1.ListOptions{LabelSelector: labels.Set{"app": name}.String()})
	if err != nil {
		return nil, fmt.Errorf("listing pods: %w", err)
	}
	return l.Items, nil
}

// live are the pods not being deleted.
func live(pods []v1.Pod) []v1.Pod {
	var out []v1.Pod
	for _, p := range pods {
		if p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out
}

func podReady(p *v1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == v1.PodReady {
			return c.Status == v1.ConditionTrue
		}
	}
	return false
}

// waitRunning waits until exactly n live pods app=name are Running and Ready.
func (e *env) waitRunning(t *testing.T, name string, n int, timeout time.Duration) []v1.Pod {
	t.Helper()
	var got []v1.Pod
	waitFor(t, timeout, fmt.Sprintf("%d running pods app=%s", n, name), func() (bool, error) {
		pods, err := e.pods(name)
		if err != nil {
			return false, err
		}
		got = live(pods)
		if len(got) != n {
			return false, fmt.Errorf("%d live pods", len(got))
		}
		for i := range got {
			if got[i].Status.Phase != v1.PodRunning || !podReady(&got[i]) {
				return false, fmt.Errorf("pod %s is %s", got[i].Name, got[i].Status.Phase)
			}
		}
		return true, nil
	})
	return got
}

// waitGone waits until get returns NotFound.
func waitGone(t *testing.T, what string, timeout time.Duration, get func() error) {
	t.Helper()
	waitFor(t, timeout, what+" to be deleted", func() (bool, error) {
		err := get()
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, err
	})
}

// setPodReady flips a pod's Ready condition through the status subresource,
// as a kubelet whose readiness probe changed would.
func (e *env) setPodReady(t *testing.T, name string, ready bool) {
	t.Helper()
	st := v1.ConditionFalse
	if ready {
		st = v1.ConditionTrue
	}
	for attempt := 0; ; attempt++ {
		p, err := e.client.CoreV1().Pods(e.ns).Get(e.ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("getting pod %s: %v", name, err)
		}
		now := metav1.Now()
		for _, typ := range []v1.PodConditionType{v1.PodReady, v1.ContainersReady} {
			found := false
			for i := range p.Status.Conditions {
				if p.Status.Conditions[i].Type == typ {
					p.Status.Conditions[i].Status, p.Status.Conditions[i].LastTransitionTime, found = st, now, true
				}
			}
			if !found {
				p.Status.Conditions = append(p.Status.Conditions, v1.PodCondition{Type: typ, Status: st, LastTransitionTime: now})
			}
		}
		for i := range p.Status.ContainerStatuses {
			p.Status.ContainerStatuses[i].Ready = ready
		}
		_, err = e.client.CoreV1().Pods(e.ns).UpdateStatus(e.ctx, p, metav1.UpdateOptions{})
		if err == nil {
			return
		}
		if !apierrors.IsConflict(err) || attempt > 10 {
			t.Fatalf("updating pod %s status: %v", name, err)
		}
	}
}

func controllerOf(m metav1.Object) *metav1.OwnerReference {
	for _, r := range m.GetOwnerReferences() {
		if r.Controller != nil && *r.Controller {
			return &r
		}
	}
	return nil
}
