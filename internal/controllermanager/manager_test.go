package controllermanager

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	core "k8s.io/client-go/testing"
)

func fakeClient() *fake.Clientset {
	c := fake.NewClientset()
	var n atomic.Int32
	c.PrependReactor("create", "*", func(a core.Action) (bool, runtime.Object, error) {
		obj := a.(core.CreateAction).GetObject().(metav1.Object)
		if obj.GetName() == "" && obj.GetGenerateName() != "" {
			obj.SetName(fmt.Sprintf("%s%05d", obj.GetGenerateName(), n.Add(1)))
		}
		if obj.GetUID() == "" {
			obj.SetUID(types.UID(fmt.Sprintf("uid-%d", n.Add(1))))
		}
		return false, nil, nil
	})
	return c
}

func TestSelectControllers(t *testing.T) {
	reg := map[string]Registration{
		"a": {New: func(Context) (Runner, error) { return nil, nil }},
		"b": {New: func(Context) (Runner, error) { return nil, nil }},
		"c": {New: func(Context) (Runner, error) { return nil, nil }, DisabledByDefault: true},
	}
	for _, tc := range []struct {
		sel  []string
		want string
	}{
		{nil, "[a b]"},
		{[]string{"*", "-a"}, "[b]"},
		{[]string{"*", "c"}, "[a b c]"},
		{[]string{"b"}, "[b]"},
	} {
		got, err := selectControllers(reg, tc.sel)
		if err != nil || fmt.Sprint(got) != tc.want {
			t.Errorf("%v: got %v %v, want %s", tc.sel, got, err, tc.want)
		}
	}
	if _, err := selectControllers(reg, []string{"nope"}); err == nil {
		t.Error("unknown controller accepted")
	}
}

func TestDefaultRegistryNames(t *testing.T) {
	m, err := NewForClients(Config{}, Clients{Kube: fake.NewClientset()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"replicaset": true, "replicationcontroller": true, "deployment": true}
	for _, n := range m.Enabled() {
		delete(want, n)
	}
	if len(want) != 0 {
		t.Fatalf("missing controllers %v in %v", want, m.Enabled())
	}
}

// TestRunsDeploymentEndToEnd wires the real controllers to shared informers
// over a fake clientset: a Deployment must produce a ReplicaSet and pods.
func TestRunsDeploymentEndToEnd(t *testing.T) {
	client := fakeClient()
	m, err := NewForClients(Config{Controllers: []string{"deployment", "replicaset"}, LeaderElect: true, Identity: "me", RetryPeriod: 10 * time.Millisecond}, Clients{Kube: client}, nil)
	if err != nil {
		t.Fatal(err)
	}
	three := int32(3)
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &three,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: v1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec:       v1.PodSpec{Containers: []v1.Container{{Name: "c", Image: "nginx"}}},
			},
		},
	}
	// Created before Run: the informers' initial list sees it (the fake
	// clientset's watch would miss objects created between list and watch).
	ctx, cancel := context.WithCancel(context.Background())
	if _, err := client.AppsV1().Deployments("default").Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	waitFor(t, func() bool {
		l, err := client.CoordinationV1().Leases("kube-system").Get(ctx, "kube-controller-manager", metav1.GetOptions{})
		return err == nil && l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity == "me"
	})
	waitFor(t, func() bool {
		pods, _ := client.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
		return len(pods.Items) == 3
	})
	rss, _ := client.AppsV1().ReplicaSets("default").List(ctx, metav1.ListOptions{})
	if len(rss.Items) != 1 || *rss.Items[0].Spec.Replicas != 3 {
		t.Fatalf("replicasets %+v", rss.Items)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
