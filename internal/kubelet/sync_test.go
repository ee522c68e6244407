package kubelet

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	testingclock "k8s.io/utils/clock/testing"
)

// fakeCRI is an in-memory CRI runtime: containers start running at once
// and exit when the test says so.
type fakeCRI struct {
	runtimeapi.RuntimeServiceClient
	runtimeapi.ImageServiceClient
	mu         sync.Mutex
	next       int
	now        func() time.Time
	sandboxes  map[string]*runtimeapi.PodSandbox
	containers map[string]*runtimeapi.ContainerStatus
	meta       map[string]*runtimeapi.Container
	calls      []string
}

func newFakeCRI(now func() time.Time) *fakeCRI {
	return &fakeCRI{now: now, sandboxes: map[string]*runtimeapi.PodSandbox{}, containers: map[string]*runtimeapi.ContainerStatus{}, meta: map[string]*runtimeapi.Container{}}
}

func (f *fakeCRI) record(s string) { f.calls = append(f.calls, s) }

func matches(labels, sel map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func (f *fakeCRI) RunPodSandbox(_ context.Context, r *runtimeapi.RunPodSandboxRequest, _ ...grpc.CallOption) (*runtimeapi.RunPodSandboxResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.next++
	id := fmt.Sprintf("sb%d", f.next)
	f.sandboxes[id] = &runtimeapi.PodSandbox{Id: id, Metadata: r.Config.Metadata, State: runtimeapi.PodSandboxState_SANDBOX_READY, CreatedAt: f.now().UnixNano() + int64(f.next), Labels: r.Config.Labels, Annotations: r.Config.Annotations}
	f.record("RunPodSandbox")
	return &runtimeapi.RunPodSandboxResponse{PodSandboxId: id}, nil
}

func (f *fakeCRI) StopPodSandbox(_ context.Context, r *runtimeapi.StopPodSandboxRequest, _ ...grpc.CallOption) (*runtimeapi.StopPodSandboxResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if sb, ok := f.sandboxes[r.PodSandboxId]; ok {
		sb.State = runtimeapi.PodSandboxState_SANDBOX_NOTREADY
	}
	f.record("StopPodSandbox")
	return &runtimeapi.StopPodSandboxResponse{}, nil
}

func (f *fakeCRI) RemovePodSandbox(_ context.Context, r *runtimeapi.RemovePodSandboxRequest, _ ...grpc.CallOption) (*runtimeapi.RemovePodSandboxResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.sandboxes, r.PodSandboxId)
	f.record("RemovePodSandbox")
	return &runtimeapi.RemovePodSandboxResponse{}, nil
}

func (f *fakeCRI) PodSandboxStatus(_ context.Context, r *runtimeapi.PodSandboxStatusRequest, _ ...grpc.CallOption) (*runtimeapi.PodSandboxStatusResponse, error) {
	return &runtimeapi.PodSandboxStatusResponse{Status: &runtimeapi.PodSandboxStatus{Id: r.PodSandboxId, Network: &runtimeapi.PodSandboxNetworkStatus{Ip: "10.88.0.7"}}}, nil
}

func (f *fakeCRI) ListPodSandbox(_ context.Context, r *runtimeapi.ListPodSandboxRequest, _ ...grpc.CallOption) (*runtimeapi.ListPodSandboxResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := &runtimeapi.ListPodSandboxResponse{}
	for _, sb := range f.sandboxes {
		if matches(sb.Labels, r.GetFilter().GetLabelSelector()) {
			out.Items = append(out.Items, sb)
		}
	}
	return out, nil
}

func (f *fakeCRI) CreateContainer(_ context.Context, r *runtimeapi.CreateContainerRequest, _ ...grpc.CallOption) (*runtimeapi.CreateContainerResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.next++
	id := fmt.Sprintf("c%d-%s", f.next, r.Config.Metadata.Name)
	f.meta[id] = &runtimeapi.Container{Id: id, PodSandboxId: r.PodSandboxId, Metadata: r.Config.Metadata, Labels: r.Config.Labels, Image: r.Config.Image, ImageRef: "sha256:img", CreatedAt: f.now().UnixNano() + int64(f.next)}
	f.containers[id] = &runtimeapi.ContainerStatus{Id: id, State: runtimeapi.ContainerState_CONTAINER_CREATED}
	f.record("CreateContainer " + r.Config.Metadata.Name)
	return &runtimeapi.CreateContainerResponse{ContainerId: id}, nil
}

func (f *fakeCRI) StartContainer(_ context.Context, r *runtimeapi.StartContainerRequest, _ ...grpc.CallOption) (*runtimeapi.StartContainerResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.containers[r.ContainerId].State = runtimeapi.ContainerState_CONTAINER_RUNNING
	f.containers[r.ContainerId].StartedAt = f.now().UnixNano()
	f.record("StartContainer")
	return &runtimeapi.StartContainerResponse{}, nil
}

// exit makes the running container named name exit with code.
func (f *fakeCRI) exit(name string, code int32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, m := range f.meta {
		if m.Metadata.Name == name && f.containers[id].State == runtimeapi.ContainerState_CONTAINER_RUNNING {
			f.containers[id].State = runtimeapi.ContainerState_CONTAINER_EXITED
			f.containers[id].ExitCode = code
			f.containers[id].FinishedAt = f.now().UnixNano()
		}
	}
}

func (f *fakeCRI) StopContainer(_ context.Context, r *runtimeapi.StopContainerRequest, _ ...grpc.CallOption) (*runtimeapi.StopContainerResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.containers[r.ContainerId]
	c.State, c.ExitCode, c.FinishedAt = runtimeapi.ContainerState_CONTAINER_EXITED, 137, f.now().UnixNano()
	f.record(fmt.Sprintf("StopContainer grace=%d", r.Timeout))
	return &runtimeapi.StopContainerResponse{}, nil
}

func (f *fakeCRI) RemoveContainer(_ context.Context, r *runtimeapi.RemoveContainerRequest, _ ...grpc.CallOption) (*runtimeapi.RemoveContainerResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.containers, r.ContainerId)
	delete(f.meta, r.ContainerId)
	f.record("RemoveContainer")
	return &runtimeapi.RemoveContainerResponse{}, nil
}

func (f *fakeCRI) ListContainers(_ context.Context, r *runtimeapi.ListContainersRequest, _ ...grpc.CallOption) (*runtimeapi.ListContainersResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := &runtimeapi.ListContainersResponse{}
	for id, m := range f.meta {
		if matches(m.Labels, r.GetFilter().GetLabelSelector()) {
			c := proto.Clone(m).(*runtimeapi.Container)
			c.State = f.containers[id].State
			out.Containers = append(out.Containers, c)
		}
	}
	return out, nil
}

func (f *fakeCRI) ContainerStatus(_ context.Context, r *runtimeapi.ContainerStatusRequest, _ ...grpc.CallOption) (*runtimeapi.ContainerStatusResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := proto.Clone(f.containers[r.ContainerId]).(*runtimeapi.ContainerStatus)
	return &runtimeapi.ContainerStatusResponse{Status: st}, nil
}

func (f *fakeCRI) ImageStatus(_ context.Context, r *runtimeapi.ImageStatusRequest, _ ...grpc.CallOption) (*runtimeapi.ImageStatusResponse, error) {
	return &runtimeapi.ImageStatusResponse{Image: &runtimeapi.Image{Id: "sha256:img"}}, nil
}

func newTestKubelet(t *testing.T, pod *v1.Pod) (*Kubelet, *fakeCRI, *fake.Clientset, *testingclock.FakeClock) {
	clk := testingclock.NewFakeClock(t0)
	f := newFakeCRI(clk.Now)
	client := fake.NewClientset(pod)
	k, err := New(Config{NodeName: "n1", NodeIP: "192.0.2.1", DataDir: t.TempDir(), CgroupRoot: "/skiff-unit"},
		Deps{Client: client, Runtime: f, Image: f, Clock: clk, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	k.ctx = context.Background()
	k.podIndex = cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{uidIndex: podUIDIndex})
	if err := k.podIndex.Add(pod); err != nil {
		t.Fatal(err)
	}
	return k, f, client, clk
}

// latestStatus is the pod status from the last UpdateStatus action, fed
// back into the index as the informer would.
func latestStatus(t *testing.T, k *Kubelet, client *fake.Clientset, pod *v1.Pod) *v1.Pod {
	t.Helper()
	p, err := client.CoreV1().Pods(pod.Namespace).Get(context.Background(), pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := k.podIndex.Update(p); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSyncPodLifecycle(t *testing.T) {
	grace := int64(7)
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "uid-1"},
		Spec: v1.PodSpec{
			NodeName: "n1", RestartPolicy: v1.RestartPolicyAlways, TerminationGracePeriodSeconds: &grace,
			InitContainers: []v1.Container{{Name: "init", Image: "img"}},
			Containers:     []v1.Container{{Name: "app", Image: "img"}},
		},
	}
	k, f, client, clk := newTestKubelet(t, pod)
	ctx := context.Background()
	sync := func() syncResult {
		t.Helper()
		res, err := k.syncPod(ctx, pod.UID)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}

	res := sync()
	if want := []string{"RunPodSandbox", "CreateContainer init", "StartContainer"}; fmt.Sprint(f.calls) != fmt.Sprint(want) {
		t.Fatalf("first sync calls %v, want %v", f.calls, want)
	}
	if res.requeue != initPollInterval {
		t.Errorf("running init container should be polled, requeue %s", res.requeue)
	}
	p := latestStatus(t, k, client, pod)
	if p.Status.Phase != v1.PodPending || p.Status.PodIP != "10.88.0.7" || p.Status.HostIP != "192.0.2.1" {
		t.Errorf("after first sync: %+v", p.Status)
	}

	f.calls = nil
	f.exit("init", 0)
	sync()
	if want := []string{"CreateContainer app", "StartContainer"}; fmt.Sprint(f.calls) != fmt.Sprint(want) {
		t.Fatalf("second sync calls %v, want %v", f.calls, want)
	}
	p = latestStatus(t, k, client, pod)
	if p.Status.Phase != v1.PodRunning || !podIsReady(p) {
		t.Errorf("after app start: %+v", p.Status)
	}

	// A resync with nothing changed neither calls CRI mutations nor writes status.
	f.calls = nil
	client.ClearActions()
	sync()
	if len(f.calls) != 0 || len(client.Actions()) != 0 {
		t.Errorf("idle sync did work: cri %v api %v", f.calls, client.Actions())
	}

	// Crash: first exit restarts at once with attempt 1.
	f.exit("app", 2)
	sync()
	p = latestStatus(t, k, client, pod)
	if cs := p.Status.ContainerStatuses[0]; cs.RestartCount != 1 || cs.State.Running == nil || cs.LastTerminationState.Terminated.ExitCode != 2 {
		t.Errorf("after first crash: %+v", cs)
	}
	// Second exit backs off 10 s.
	f.exit("app", 2)
	clk.Step(3 * time.Second)
	f.calls = nil
	res = sync()
	if len(f.calls) != 0 || res.requeue != 7*time.Second {
		t.Errorf("in back-off: calls %v requeue %s", f.calls, res.requeue)
	}
	p = latestStatus(t, k, client, pod)
	if w := p.Status.ContainerStatuses[0].State.Waiting; w == nil || w.Reason != "CrashLoopBackOff" {
		t.Errorf("want CrashLoopBackOff: %+v", p.Status.ContainerStatuses[0])
	}
	clk.Step(10 * time.Second)
	sync()
	p = latestStatus(t, k, client, pod)
	if cs := p.Status.ContainerStatuses[0]; cs.RestartCount != 2 || cs.State.Running == nil {
		t.Errorf("after back-off: %+v", cs)
	}

	// Graceful deletion: stop with the grace period, remove everything,
	// delete the object with grace 0 and a UID precondition.
	f.calls = nil
	client.ClearActions()
	deleting := p.DeepCopy()
	now := metav1.NewTime(clk.Now())
	deleting.DeletionTimestamp, deleting.DeletionGracePeriodSeconds = &now, &grace
	k.podIndex.Update(deleting)
	if res := sync(); !res.done {
		t.Error("terminated pod should end its worker")
	}
	if len(f.sandboxes) != 0 || len(f.containers) != 0 {
		t.Errorf("runtime not empty: %v %v", f.sandboxes, f.containers)
	}
	stops := 0
	for _, c := range f.calls {
		if c == "StopContainer grace=7" {
			stops++
		}
	}
	if stops != 1 {
		t.Errorf("want one StopContainer with grace 7 (the only running container), calls %v", f.calls)
	}
	var deleted bool
	for _, a := range client.Actions() {
		if d, ok := a.(k8stesting.DeleteAction); ok && d.GetName() == "p" {
			opts := d.GetDeleteOptions()
			deleted = opts.GracePeriodSeconds != nil && *opts.GracePeriodSeconds == 0 && opts.Preconditions != nil && *opts.Preconditions.UID == pod.UID
		}
	}
	if !deleted {
		t.Errorf("want delete with grace 0 and uid precondition, actions %v", client.Actions())
	}
}

func TestSyncPodAdoptsAndCleansOrphans(t *testing.T) {
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "uid-1"},
		Spec:       v1.PodSpec{NodeName: "n1", Containers: []v1.Container{{Name: "app", Image: "img"}}},
	}
	k, f, _, _ := newTestKubelet(t, pod)
	ctx := context.Background()
	if _, err := k.syncPod(ctx, pod.UID); err != nil {
		t.Fatal(err)
	}
	// A new kubelet on the same runtime adopts the pod: no CRI mutations.
	k2, _, _, _ := newTestKubelet(t, pod)
	k2.rt = k.rt
	f.calls = nil
	if _, err := k2.syncPod(ctx, pod.UID); err != nil {
		t.Fatal(err)
	}
	if len(f.calls) != 0 {
		t.Errorf("adoption mutated the runtime: %v", f.calls)
	}
	// Gone from the API: the orphan is removed.
	k2.podIndex.Delete(pod)
	res, err := k2.syncPod(ctx, pod.UID)
	if err != nil || !res.done {
		t.Fatalf("orphan sync: %v %+v", err, res)
	}
	if len(f.sandboxes) != 0 || len(f.meta) != 0 {
		t.Errorf("orphan left behind: %v %v", f.sandboxes, f.meta)
	}
}

func podIsReady(p *v1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == v1.PodReady {
			return c.Status == v1.ConditionTrue
		}
	}
	return false
}

func TestSyncPodCompletes(t *testing.T) {
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "job", Namespace: "ns", UID: "uid-2"},
		Spec:       v1.PodSpec{NodeName: "n1", RestartPolicy: v1.RestartPolicyNever, Containers: []v1.Container{{Name: "app", Image: "img"}}},
	}
	k, f, client, _ := newTestKubelet(t, pod)
	ctx := context.Background()
	if _, err := k.syncPod(ctx, pod.UID); err != nil {
		t.Fatal(err)
	}
	latestStatus(t, k, client, pod)
	f.exit("app", 0)
	if _, err := k.syncPod(ctx, pod.UID); err != nil {
		t.Fatal(err)
	}
	p := latestStatus(t, k, client, pod)
	if p.Status.Phase != v1.PodSucceeded {
		t.Fatalf("phase %s", p.Status.Phase)
	}
	for _, sb := range f.sandboxes {
		if sb.State == runtimeapi.PodSandboxState_SANDBOX_READY {
			t.Errorf("sandbox %s still ready after the pod succeeded", sb.Id)
		}
	}
	if len(f.meta) != 1 {
		t.Errorf("the exited container should be kept for logs, have %d", len(f.meta))
	}
}
