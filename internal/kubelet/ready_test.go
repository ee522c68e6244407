package kubelet

import (
	"context"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// A pod enqueued before the runtime is ready (the agent still importing its
// built-in images) is not synced until Deps.RuntimeReady closes, then is.
func TestWorkersWaitForRuntimeReady(t *testing.T) {
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "uid-ready"},
		Spec:       v1.PodSpec{NodeName: "n1", Containers: []v1.Container{{Name: "app", Image: "img"}}},
	}
	k, f, _, _ := newTestKubelet(t, pod)
	ready := make(chan struct{})
	k.ready = ready
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	k.ctx = ctx
	calls := func() int {
		f.mu.Lock()
		defer f.mu.Unlock()
		return len(f.calls)
	}
	k.enqueue(pod.UID)
	time.Sleep(200 * time.Millisecond)
	if n := calls(); n != 0 {
		t.Fatalf("runtime calls before RuntimeReady: %d", n)
	}
	close(ready)
	deadline := time.Now().Add(10 * time.Second)
	for calls() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("pod not synced after RuntimeReady closed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
