package apiserver

import (
	"encoding/json"
	"net/http"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"skiff.dev/skiff/internal/registry"
	"skiff.dev/skiff/internal/storage/storagetest"
)

// A pod status PUT starts from the watch cache's own pod
// (Resource.StatusUpdateSharesCurrent): it must leave that pod exactly as
// it was, and store what the same PUT stores when it starts from a
// private copy, for every kind of status write (first write of a
// manager, a second one, another manager, metadata changes, no change, a
// stale resourceVersion, a pod being deleted).
func TestPodStatusUpdateSharesCurrent(t *testing.T) {
	e := newBindingEnv(t)
	if !e.pods.R.StatusUpdateSharesCurrent {
		t.Fatal("pods do not share the current object on status updates")
	}
	codec := storagetest.ProtobufCodec(registry.NewScheme())
	now := metav1.NewTime(e.now)
	// Each step changes the pod as read back from the server and PUTs it
	// to status as manager; want is the expected status code.
	type step struct {
		name, manager string
		change        func(p *corev1.Pod)
		want          int
	}
	steps := []step{
		{"kubelet first status", "kubelet", func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodRunning
			p.Status.HostIP = "10.0.0.1"
			p.Status.PodIP, p.Status.PodIPs = "10.1.0.7", []corev1.PodIP{{IP: "10.1.0.7"}}
			p.Status.StartTime = &now
			p.Status.Conditions = append(p.Status.Conditions,
				corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now})
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "app", Ready: true, Image: "bench:v1",
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}}}
		}, http.StatusOK},
		{"kubelet again", "kubelet", func(p *corev1.Pod) {
			p.Status.Conditions[0].Status = corev1.ConditionTrue
			p.Status.ContainerStatuses[0].RestartCount = 1
		}, http.StatusOK},
		{"other manager with labels and spec", "other", func(p *corev1.Pod) {
			p.Labels["status-writer"] = "other"
			p.Spec.Containers[0].Image = "ignored:v2" // status writes keep the stored spec
			p.Spec.NodeName = "ignored"
			p.Status.Message = "hello"
			p.Status.Conditions = p.Status.Conditions[:1]
		}, http.StatusOK},
		{"no change", "kubelet", func(p *corev1.Pod) {}, http.StatusOK},
		{"invalid", "kubelet", func(p *corev1.Pod) { p.Status.PodIP = "not-an-ip" }, http.StatusUnprocessableEntity},
		{"stale", "kubelet", func(p *corev1.Pod) { p.ResourceVersion = "1"; p.Status.Message = "stale" }, http.StatusConflict},
		{"finalizer", "kubelet", func(p *corev1.Pod) {}, http.StatusOK},
		{"deleting", "kubelet", func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }, http.StatusOK},
	}
	fast, ref := e.create(t, "stat-fast-aaaa"), e.create(t, "stat-refr-bbbb")
	read := func(name string) *corev1.Pod {
		w := e.do(t, "GET", "/api/v1/namespaces/ns/pods/"+name, "")
		p := &corev1.Pod{}
		if err := json.Unmarshal(w.Body.Bytes(), p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// stored returns name's pod as etcd holds it, with what differs
	// between the two pods by construction (name, uid, revisions,
	// managedFields times) normalized.
	stored := func(name string) *corev1.Pod {
		data, _ := e.stored(t, name)
		obj, _, err := codec.Decode(data, nil, &corev1.Pod{})
		if err != nil {
			t.Fatal(err)
		}
		p := obj.(*corev1.Pod)
		p.Name, p.UID, p.ResourceVersion = "", "", ""
		for i := range p.ManagedFields {
			p.ManagedFields[i].Time = nil
		}
		return p
	}
	put := func(name, manager string, change func(*corev1.Pod)) int {
		p := read(name)
		if p.Labels == nil {
			p.Labels = map[string]string{}
		}
		change(p)
		body, _ := json.Marshal(p)
		return e.do(t, "PUT", "/api/v1/namespaces/ns/pods/"+name+"/status?fieldManager="+manager, string(body)).Code
	}
	for _, s := range steps {
		switch s.name {
		case "finalizer":
			for _, name := range []string{fast.Name, ref.Name} {
				p := read(name)
				p.Finalizers = []string{"example.com/hold"}
				body, _ := json.Marshal(p)
				if w := e.do(t, "PUT", "/api/v1/namespaces/ns/pods/"+name, string(body)); w.Code != http.StatusOK {
					t.Fatalf("adding a finalizer: %d %s", w.Code, w.Body)
				}
			}
		case "deleting":
			for _, name := range []string{fast.Name, ref.Name} {
				if w := e.do(t, "DELETE", "/api/v1/namespaces/ns/pods/"+name, ""); w.Code/100 != 2 {
					t.Fatalf("deleting: %d %s", w.Code, w.Body)
				}
			}
		}
		_, rev := e.stored(t, fast.Name)
		cached := e.cached(t, fast.Name, rev)
		pristine := cached.DeepCopyObject()
		e.pods.R.StatusUpdateSharesCurrent = true
		got := put(fast.Name, s.manager, s.change)
		if !reflect.DeepEqual(cached, pristine) {
			t.Fatalf("%s: the status update modified the cached pod:\n%+v\n%+v", s.name, cached, pristine)
		}
		e.pods.R.StatusUpdateSharesCurrent = false
		want := put(ref.Name, s.manager, s.change)
		e.pods.R.StatusUpdateSharesCurrent = true
		if got != s.want || want != s.want {
			t.Fatalf("%s: shared %d, copied %d, want %d", s.name, got, want, s.want)
		}
		if g, w := stored(fast.Name), stored(ref.Name); !reflect.DeepEqual(g, w) {
			t.Errorf("%s: shared and copied updates stored different pods:\n%+v\n%+v", s.name, g, w)
		}
	}
	if p := read(fast.Name); p.Status.Phase != corev1.PodSucceeded || p.Labels["status-writer"] != "other" || p.Spec.NodeName != "" {
		t.Errorf("final pod: phase %s labels %v node %q", p.Status.Phase, p.Labels, p.Spec.NodeName)
	}
}
