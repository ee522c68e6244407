package kubelet

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	testingclock "k8s.io/utils/clock/testing"
)

// hookCRI wraps fakeCRI to record which container each stop, exec and
// create concerns, in order, and to fail exec hooks on demand.
type hookCRI struct {
	*fakeCRI
	mu       sync.Mutex
	events   []string
	execFail bool
	creates  []*runtimeapi.CreateContainerRequest
	sandbox  *runtimeapi.PodSandboxConfig
	onStop   func()
}

func (h *hookCRI) name(id string) string {
	h.fakeCRI.mu.Lock()
	defer h.fakeCRI.mu.Unlock()
	if m, ok := h.fakeCRI.meta[id]; ok {
		return m.Metadata.Name
	}
	return id
}

func (h *hookCRI) log(s string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events = append(h.events, s)
}

func (h *hookCRI) StopContainer(ctx context.Context, r *runtimeapi.StopContainerRequest, o ...grpc.CallOption) (*runtimeapi.StopContainerResponse, error) {
	h.log(fmt.Sprintf("stop %s grace=%d", h.name(r.ContainerId), r.Timeout))
	if h.onStop != nil {
		h.onStop()
	}
	return h.fakeCRI.StopContainer(ctx, r, o...)
}

func (h *hookCRI) ExecSync(_ context.Context, r *runtimeapi.ExecSyncRequest, _ ...grpc.CallOption) (*runtimeapi.ExecSyncResponse, error) {
	h.log(fmt.Sprintf("exec %s %s", h.name(r.ContainerId), strings.Join(r.Cmd, " ")))
	if h.execFail {
		return &runtimeapi.ExecSyncResponse{ExitCode: 1, Stderr: []byte("boom")}, nil
	}
	return &runtimeapi.ExecSyncResponse{}, nil
}

func (h *hookCRI) CreateContainer(ctx context.Context, r *runtimeapi.CreateContainerRequest, o ...grpc.CallOption) (*runtimeapi.CreateContainerResponse, error) {
	h.mu.Lock()
	h.creates = append(h.creates, r)
	h.mu.Unlock()
	h.log("create " + r.Config.Metadata.Name)
	return h.fakeCRI.CreateContainer(ctx, r, o...)
}

func (h *hookCRI) RunPodSandbox(ctx context.Context, r *runtimeapi.RunPodSandboxRequest, o ...grpc.CallOption) (*runtimeapi.RunPodSandboxResponse, error) {
	h.mu.Lock()
	h.sandbox = r.Config
	h.mu.Unlock()
	return h.fakeCRI.RunPodSandbox(ctx, r, o...)
}

func (h *hookCRI) takeEvents() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	e := h.events
	h.events = nil
	return e
}

// recMounter records tmpfs mounts instead of making them.
type recMounter struct {
	mu     sync.Mutex
	mounts map[string]bool
}

func (r *recMounter) MountTmpfs(target string, _ int64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mounts[target] = true
	return nil
}

func (r *recMounter) Unmount(target string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.mounts, target)
	return nil
}

func (r *recMounter) MountPoints(dir string) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for m := range r.mounts {
		if m == dir || strings.HasPrefix(m, dir+"/") {
			out = append(out, m)
		}
	}
	return out, nil
}

func newFeatureKubelet(t *testing.T, pod *v1.Pod, objs ...runtime.Object) (*Kubelet, *hookCRI, *fake.Clientset, *testingclock.FakeClock, *recMounter) {
	t.Helper()
	clk := testingclock.NewFakeClock(t0)
	h := &hookCRI{fakeCRI: newFakeCRI(clk.Now)}
	client := fake.NewClientset(append([]runtime.Object{pod}, objs...)...)
	mnt := &recMounter{mounts: map[string]bool{}}
	dir := t.TempDir()
	resolv := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver 192.0.2.53\nsearch corp.example\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	k, err := New(Config{NodeName: "n1", NodeIP: "192.0.2.1", DataDir: dir, CgroupRoot: "/skiff-unit", ResolvConf: resolv},
		Deps{Client: client, Runtime: h, Image: h.fakeCRI, Clock: clk, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Mounter: mnt})
	if err != nil {
		t.Fatal(err)
	}
	k.ctx = context.Background()
	k.podIndex = cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{uidIndex: podUIDIndex})
	if err := k.podIndex.Add(pod); err != nil {
		t.Fatal(err)
	}
	return k, h, client, clk, mnt
}

func mustSync(t *testing.T, k *Kubelet, uid types.UID) syncResult {
	t.Helper()
	res, err := k.syncPod(context.Background(), uid)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func always() *v1.ContainerRestartPolicy {
	p := v1.ContainerRestartPolicyAlways
	return &p
}

func featurePod(name string) *v1.Pod {
	grace := int64(10)
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID("uid-" + name)},
		Spec:       v1.PodSpec{NodeName: "n1", RestartPolicy: v1.RestartPolicyAlways, TerminationGracePeriodSeconds: &grace},
	}
}

func ctr(name string) v1.Container {
	return v1.Container{Name: name, Image: "img:v1", ImagePullPolicy: v1.PullIfNotPresent}
}

func deleteInIndex(t *testing.T, k *Kubelet, client *fake.Clientset, pod *v1.Pod, clk *testingclock.FakeClock) {
	t.Helper()
	p := latestStatus(t, k, client, pod).DeepCopy()
	now := metav1.NewTime(clk.Now())
	p.DeletionTimestamp, p.DeletionGracePeriodSeconds = &now, p.Spec.TerminationGracePeriodSeconds
	if err := k.podIndex.Update(p); err != nil {
		t.Fatal(err)
	}
}

func TestSidecarsStartInOrderRestartAndStopLast(t *testing.T) {
	pod := featurePod("side")
	pod.Spec.InitContainers = []v1.Container{ctr("setup"), ctr("proxy"), ctr("logger")}
	pod.Spec.InitContainers[1].RestartPolicy = always()
	pod.Spec.InitContainers[2].RestartPolicy = always()
	pod.Spec.Containers = []v1.Container{ctr("app")}
	pod.Spec.Containers[0].Lifecycle = &v1.Lifecycle{PreStop: &v1.LifecycleHandler{Exec: &v1.ExecAction{Command: []string{"drain"}}}}
	k, h, client, clk, _ := newFeatureKubelet(t, pod)

	mustSync(t, k, pod.UID)
	h.fakeCRI.exit("setup", 0)
	mustSync(t, k, pod.UID) // starts proxy: not waited to complete
	mustSync(t, k, pod.UID) // proxy running: starts logger
	mustSync(t, k, pod.UID) // logger running: starts app
	var order []string
	for _, e := range h.takeEvents() {
		if strings.HasPrefix(e, "create ") {
			order = append(order, strings.TrimPrefix(e, "create "))
		}
	}
	if got := strings.Join(order, ","); got != "setup,proxy,logger,app" {
		t.Fatalf("start order %s", got)
	}
	p := latestStatus(t, k, client, pod)
	if p.Status.Phase != v1.PodRunning || !podIsReady(p) || cond(p.Status, v1.PodInitialized) != v1.ConditionTrue {
		t.Fatalf("pod with sidecars: %+v", p.Status)
	}
	if cs := p.Status.InitContainerStatuses[1]; cs.State.Running == nil || !cs.Ready || cs.Started == nil || !*cs.Started {
		t.Errorf("sidecar status %+v", cs)
	}

	// A sidecar that exits is restarted while the app keeps running.
	h.fakeCRI.exit("proxy", 1)
	mustSync(t, k, pod.UID)
	p = latestStatus(t, k, client, pod)
	if cs := p.Status.InitContainerStatuses[1]; cs.RestartCount != 1 || cs.State.Running == nil {
		t.Errorf("sidecar not restarted: %+v", cs)
	}
	if cs := p.Status.ContainerStatuses[0]; cs.RestartCount != 0 || cs.State.Running == nil {
		t.Errorf("app touched by a sidecar restart: %+v", cs)
	}
	if cond(p.Status, v1.PodInitialized) != v1.ConditionTrue {
		t.Error("a sidecar restart un-initialized the pod")
	}

	// Deletion: the app's preStop, then the app, then sidecars in reverse.
	h.takeEvents()
	deleteInIndex(t, k, client, pod, clk)
	mustSync(t, k, pod.UID)
	want := "exec app drain,stop app grace=10,stop logger grace=10,stop proxy grace=10"
	if got := strings.Join(h.takeEvents(), ","); got != want {
		t.Errorf("termination\n got %s\nwant %s", got, want)
	}
}

func TestSidecarsStoppedWhenAppsFinish(t *testing.T) {
	pod := featurePod("job")
	pod.Spec.RestartPolicy = v1.RestartPolicyNever
	pod.Spec.InitContainers = []v1.Container{ctr("proxy")}
	pod.Spec.InitContainers[0].RestartPolicy = always()
	pod.Spec.Containers = []v1.Container{ctr("work")}
	k, h, client, _, _ := newFeatureKubelet(t, pod)
	mustSync(t, k, pod.UID)
	mustSync(t, k, pod.UID)
	h.fakeCRI.exit("work", 0)
	mustSync(t, k, pod.UID)
	p := latestStatus(t, k, client, pod)
	if p.Status.Phase != v1.PodSucceeded {
		t.Fatalf("phase %s", p.Status.Phase)
	}
	stopped := false
	for _, e := range h.takeEvents() {
		if strings.HasPrefix(e, "stop proxy") {
			stopped = true
		}
	}
	if !stopped {
		t.Error("sidecar not stopped once the app finished")
	}
}

func TestStartupProbeGatesSidecarAndStatus(t *testing.T) {
	pod := testPod(v1.RestartPolicyAlways, []string{"proxy", "next"}, "app")
	pod.Spec.InitContainers[0].RestartPolicy = always()
	now := t0.Add(time.Hour)
	st := PodState{Sandboxes: []SandboxState{ready("s")}, Containers: []ContainerState{running("proxy", "s", 0)}}
	a := computePodActions(pod, st, now, map[string]bool{"proxy-0": true})
	if a.StartInit != -1 || a.InitDone {
		t.Errorf("unstarted sidecar should hold back the next init container: %+v", a)
	}
	a = computePodActions(pod, st, now, nil)
	if a.StartInit != 1 {
		t.Errorf("started sidecar should let the next init container run: %+v", a)
	}

	app := testPod(v1.RestartPolicyAlways, nil, "app")
	app.Spec.Containers[0].StartupProbe = &v1.Probe{}
	st = PodState{Sandboxes: []SandboxState{ready("s")}, Containers: []ContainerState{running("app", "s", 0)}}
	s := generatePodStatus(app, statusInput{State: st, Actions: computePodActions(app, st, now, nil), Now: now, NotStarted: map[string]bool{"app-0": true}})
	if cs := s.ContainerStatuses[0]; cs.Started == nil || *cs.Started || cs.Ready {
		t.Errorf("container before its startup probe passes: %+v", cs)
	}
	s = generatePodStatus(app, statusInput{State: st, Actions: computePodActions(app, st, now, nil), Now: now})
	if cs := s.ContainerStatuses[0]; cs.Started == nil || !*cs.Started || !cs.Ready {
		t.Errorf("container after its startup probe passed: %+v", cs)
	}
}

func TestOOMKilledReported(t *testing.T) {
	pod := testPod(v1.RestartPolicyAlways, nil, "app")
	now := t0.Add(time.Hour)
	oom := exited("app", "s", 0, 137, now.Add(-time.Minute))
	oom.Reason = "OOMKilled"
	st := PodState{Sandboxes: []SandboxState{ready("s")}, Containers: []ContainerState{running("app", "s", 1), oom}}
	sortState(&st)
	s := generatePodStatus(pod, statusInput{State: st, Actions: computePodActions(pod, st, now, nil), Now: now})
	last := s.ContainerStatuses[0].LastTerminationState.Terminated
	if last == nil || last.Reason != "OOMKilled" || last.ExitCode != 137 {
		t.Errorf("lastState %+v", s.ContainerStatuses[0].LastTerminationState)
	}
	st = PodState{Sandboxes: []SandboxState{ready("s")}, Containers: []ContainerState{oom}}
	never := testPod(v1.RestartPolicyNever, nil, "app")
	s = generatePodStatus(never, statusInput{State: st, Actions: computePodActions(never, st, now, nil), Now: now})
	if term := s.ContainerStatuses[0].State.Terminated; term == nil || term.Reason != "OOMKilled" || s.Phase != v1.PodFailed {
		t.Errorf("state %+v phase %s", s.ContainerStatuses[0].State, s.Phase)
	}
}

func TestPostStartHookFailureKillsContainer(t *testing.T) {
	pod := featurePod("hooked")
	pod.Spec.Containers = []v1.Container{ctr("app")}
	pod.Spec.Containers[0].Lifecycle = &v1.Lifecycle{PostStart: &v1.LifecycleHandler{Exec: &v1.ExecAction{Command: []string{"warm", "up"}}}}
	k, h, client, _, _ := newFeatureKubelet(t, pod)
	h.execFail = true
	mustSync(t, k, pod.UID)
	ev := strings.Join(h.takeEvents(), ",")
	if !strings.Contains(ev, "create app,exec app warm up,stop app") {
		t.Errorf("events %s", ev)
	}
	p := latestStatus(t, k, client, pod)
	cs := p.Status.ContainerStatuses[0]
	if cs.State.Running != nil {
		t.Errorf("container with a failed postStart hook still running: %+v", cs)
	}
	h.execFail = false
	mustSync(t, k, pod.UID) // restarted (first restart has no back-off) and the hook passes
	p = latestStatus(t, k, client, pod)
	if cs := p.Status.ContainerStatuses[0]; cs.State.Running == nil || cs.RestartCount != 1 {
		t.Errorf("after a passing hook: %+v", cs)
	}
}

func TestVolumesMountsDNSAndCleanup(t *testing.T) {
	pod := featurePod("vols")
	pod.Spec.Hostname, pod.Spec.Subdomain = "web-0", "web"
	pod.Spec.HostAliases = []v1.HostAlias{{IP: "192.0.2.9", Hostnames: []string{"db", "db.local"}}}
	pod.Spec.DNSConfig = &v1.PodDNSConfig{Options: []v1.PodDNSConfigOption{{Name: "ndots", Value: ptr("2")}}}
	pod.Spec.Volumes = []v1.Volume{
		{Name: "cfg", VolumeSource: v1.VolumeSource{ConfigMap: &v1.ConfigMapVolumeSource{LocalObjectReference: v1.LocalObjectReference{Name: "cfg"}}}},
		{Name: "sec", VolumeSource: v1.VolumeSource{Secret: &v1.SecretVolumeSource{SecretName: "sec"}}},
		{Name: "mem", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{Medium: v1.StorageMediumMemory}}},
	}
	pod.Spec.Containers = []v1.Container{ctr("app")}
	pod.Spec.Containers[0].VolumeMounts = []v1.VolumeMount{
		{Name: "cfg", MountPath: "/etc/cfg"}, {Name: "sec", MountPath: "/etc/sec"}, {Name: "mem", MountPath: "/scratch"},
	}
	cm := &v1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cfg", Namespace: "ns"}, Data: map[string]string{"color": "blue"}}
	sec := &v1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "sec", Namespace: "ns"}, Data: map[string][]byte{"pw": []byte("x")}}
	k, h, client, clk, mnt := newFeatureKubelet(t, pod, cm, sec)

	// A missing volume source holds the container in ContainerCreating.
	if err := client.CoreV1().Secrets("ns").Delete(context.Background(), "sec", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	mustSync(t, k, pod.UID)
	p := latestStatus(t, k, client, pod)
	if w := p.Status.ContainerStatuses[0].State.Waiting; w == nil || w.Reason != "ContainerCreating" || !strings.Contains(w.Message, `volume "sec"`) {
		t.Errorf("waiting on a missing secret: %+v", p.Status.ContainerStatuses[0].State)
	}
	if len(h.creates) != 0 {
		t.Fatalf("container created without its volumes")
	}
	if _, err := client.CoreV1().Secrets("ns").Create(context.Background(), sec, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	mustSync(t, k, pod.UID)
	if len(h.creates) != 1 {
		t.Fatalf("creates %d", len(h.creates))
	}
	mounts := map[string]*runtimeapi.Mount{}
	for _, m := range h.creates[0].Config.Mounts {
		mounts[m.ContainerPath] = m
	}
	if m := mounts["/etc/cfg"]; m == nil || !m.Readonly || readFile(t, filepath.Join(m.HostPath, "color")) != "blue" {
		t.Errorf("configMap mount %+v", m)
	}
	if m := mounts["/scratch"]; m == nil || m.Readonly || !mnt.mounts[m.HostPath] {
		t.Errorf("memory emptyDir mount %+v (tmpfs %v)", m, mnt.mounts)
	}
	hosts := mounts["/etc/hosts"]
	if hosts == nil {
		t.Fatal("no /etc/hosts mount")
	}
	wantHosts := "10.88.0.7\tweb-0.web.ns.svc.cluster.local\tweb-0\n\n# Entries added by HostAliases.\n192.0.2.9\tdb\tdb.local\n"
	if got := readFile(t, hosts.HostPath); !strings.HasSuffix(got, wantHosts) || !strings.HasPrefix(got, "# Kubernetes-managed hosts file.") {
		t.Errorf("hosts file:\n%s", got)
	}
	dns := h.sandbox.DnsConfig
	if fmt.Sprint(dns.Servers, dns.Searches, dns.Options) != "[10.43.0.10] [ns.svc.cluster.local svc.cluster.local cluster.local corp.example] [ndots:2]" {
		t.Errorf("dns config %v", dns)
	}
	if h.sandbox.Hostname != "web-0" {
		t.Errorf("hostname %q", h.sandbox.Hostname)
	}

	// An update of the ConfigMap reaches the volume on the next sync.
	cm.Data["color"] = "red"
	if _, err := client.CoreV1().ConfigMaps("ns").Update(context.Background(), cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	mustSync(t, k, pod.UID)
	if got := readFile(t, filepath.Join(mounts["/etc/cfg"].HostPath, "color")); got != "red" {
		t.Errorf("configMap volume after update: %q", got)
	}

	// Deletion leaves no tmpfs and no pod directory.
	podDir := k.volumes.PodDir(pod.UID)
	deleteInIndex(t, k, client, pod, clk)
	if res := mustSync(t, k, pod.UID); !res.done {
		t.Error("deleted pod's worker should end")
	}
	if len(mnt.mounts) != 0 {
		t.Errorf("mounts left: %v", mnt.mounts)
	}
	if _, err := os.Stat(podDir); !os.IsNotExist(err) {
		t.Errorf("pod dir left: %v", err)
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func ptr[T any](v T) *T { return &v }

func TestDNSConfig(t *testing.T) {
	host := parseResolvConf("# comment\nnameserver 127.0.0.53\nnameserver 192.0.2.53\nnameserver 192.0.2.54\nsearch a.example b.example\noptions edns0 ndots:1\n")
	pod := func(policy v1.DNSPolicy, hostNet bool, dc *v1.PodDNSConfig) *v1.Pod {
		return &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "team"}, Spec: v1.PodSpec{DNSPolicy: policy, HostNetwork: hostNet, DNSConfig: dc}}
	}
	tests := []struct {
		name string
		pod  *v1.Pod
		want string
	}{
		{"cluster first", pod(v1.DNSClusterFirst, false, nil), "[10.43.0.10] [team.svc.cluster.local svc.cluster.local cluster.local a.example b.example] [ndots:5]"},
		{"unset is cluster first", pod("", false, nil), "[10.43.0.10] [team.svc.cluster.local svc.cluster.local cluster.local a.example b.example] [ndots:5]"},
		{"host network falls back to Default", pod(v1.DNSClusterFirst, true, nil), "[192.0.2.53 192.0.2.54] [a.example b.example] [edns0 ndots:1]"},
		{"ClusterFirstWithHostNet", pod(v1.DNSClusterFirstWithHostNet, true, nil), "[10.43.0.10] [team.svc.cluster.local svc.cluster.local cluster.local a.example b.example] [ndots:5]"},
		{"Default", pod(v1.DNSDefault, false, nil), "[192.0.2.53 192.0.2.54] [a.example b.example] [edns0 ndots:1]"},
		{"None with dnsConfig", pod(v1.DNSNone, false, &v1.PodDNSConfig{Nameservers: []string{"1.1.1.1"}, Searches: []string{"x.example"}, Options: []v1.PodDNSConfigOption{{Name: "rotate"}}}), "[1.1.1.1] [x.example] [rotate]"},
		{"dnsConfig merges", pod(v1.DNSClusterFirst, false, &v1.PodDNSConfig{Nameservers: []string{"10.43.0.10", "9.9.9.9"}, Options: []v1.PodDNSConfigOption{{Name: "ndots", Value: ptr("1")}, {Name: "edns0"}}}), "[10.43.0.10 9.9.9.9] [team.svc.cluster.local svc.cluster.local cluster.local a.example b.example] [ndots:1 edns0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dnsConfig(tt.pod, "10.43.0.10", "cluster.local", host)
			if got := fmt.Sprint(c.Servers, c.Searches, c.Options); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
	hn := pod(v1.DNSClusterFirst, true, nil)
	hn.Spec.HostAliases = []v1.HostAlias{{IP: "10.0.0.1", Hostnames: []string{"foo"}}}
	if got := string(hostsFile(hn, nil, "cluster.local", "127.0.0.1 localhost\n")); got != "127.0.0.1 localhost\n\n# Entries added by HostAliases.\n10.0.0.1\tfoo\n" {
		t.Errorf("host network hosts file %q", got)
	}
}

func TestSecurityContext(t *testing.T) {
	uid, gid, other := int64(1000), int64(2000), int64(3000)
	yes, no := true, false
	pod := featurePod("sec")
	pod.Spec.SecurityContext = &v1.PodSecurityContext{RunAsUser: &uid, RunAsGroup: &gid, SupplementalGroups: []int64{5}, FSGroup: &other,
		Sysctls: []v1.Sysctl{{Name: "net.ipv4.ip_unprivileged_port_start", Value: "0"}}}
	pod.Spec.Containers = []v1.Container{ctr("app"), ctr("priv")}
	pod.Spec.Containers[0].SecurityContext = &v1.SecurityContext{RunAsUser: &other, ReadOnlyRootFilesystem: &yes, AllowPrivilegeEscalation: &no,
		Capabilities: &v1.Capabilities{Add: []v1.Capability{"NET_ADMIN"}, Drop: []v1.Capability{"ALL"}}}
	pod.Spec.Containers[1].SecurityContext = &v1.SecurityContext{Privileged: &yes}
	lsc := containerSecurity(pod, &pod.Spec.Containers[0], nil)
	if lsc.RunAsUser.GetValue() != 3000 || lsc.RunAsGroup.GetValue() != 2000 || !lsc.ReadonlyRootfs || !lsc.NoNewPrivs || lsc.Privileged ||
		fmt.Sprint(lsc.Capabilities.AddCapabilities, lsc.Capabilities.DropCapabilities) != "[NET_ADMIN] [ALL]" || fmt.Sprint(lsc.SupplementalGroups) != "[5 3000]" {
		t.Errorf("container security %+v", lsc)
	}
	if lsc := containerSecurity(pod, &pod.Spec.Containers[1], nil); !lsc.Privileged || lsc.RunAsUser.GetValue() != 1000 {
		t.Errorf("privileged container security %+v", lsc)
	}
	k, _, _, _, _ := newFeatureKubelet(t, pod)
	sb := k.sandboxConfig(pod, 0)
	if !sb.Linux.SecurityContext.Privileged || sb.Linux.Sysctls["net.ipv4.ip_unprivileged_port_start"] != "0" {
		t.Errorf("sandbox must be privileged for a privileged container and carry sysctls: %+v", sb.Linux)
	}
	hostNet := featurePod("hn")
	hostNet.Spec.HostNetwork, hostNet.Spec.HostPID = true, true
	if ns := k.sandboxConfig(hostNet, 0).Linux.SecurityContext.NamespaceOptions; ns.Network != runtimeapi.NamespaceMode_NODE || ns.Pid != runtimeapi.NamespaceMode_NODE {
		t.Errorf("host namespaces %+v", ns)
	}

	root := int64(0)
	nonRoot := featurePod("nr")
	nonRoot.Spec.Containers = []v1.Container{ctr("app")}
	nonRoot.Spec.Containers[0].SecurityContext = &v1.SecurityContext{RunAsNonRoot: &yes}
	if err := checkNonRoot(nonRoot, &nonRoot.Spec.Containers[0], &root, ""); err == nil {
		t.Error("runAsNonRoot with a root image should be refused")
	}
	if err := checkNonRoot(nonRoot, &nonRoot.Spec.Containers[0], &uid, ""); err != nil {
		t.Errorf("non-root image: %v", err)
	}
	nonRoot.Spec.Containers[0].SecurityContext.RunAsUser = &root
	if _, ok := checkNonRoot(nonRoot, &nonRoot.Spec.Containers[0], nil, "").(*envError); !ok {
		t.Error("runAsUser 0 with runAsNonRoot should be a config error")
	}
}

func TestObjectCacheKicksPodsOnChange(t *testing.T) {
	cm := &v1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cfg", Namespace: "ns"}, Data: map[string]string{"k": "1"}}
	client := fake.NewClientset(cm)
	kicked := make(chan types.UID, 10)
	oc := newObjectCache(client, func(uid types.UID) { kicked <- uid })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	oc.start(ctx)
	pod := featurePod("watcher")
	pod.Spec.Volumes = []v1.Volume{{Name: "v", VolumeSource: v1.VolumeSource{Projected: &v1.ProjectedVolumeSource{Sources: []v1.VolumeProjection{{ConfigMap: &v1.ConfigMapProjection{LocalObjectReference: v1.LocalObjectReference{Name: "cfg"}}}}}}}}
	oc.register(pod)
	get := clientGetter{c: client, cache: oc}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, ok, _ := oc.get(objKey{"configmaps", "ns", "cfg"}); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("watch never synced")
		}
		time.Sleep(10 * time.Millisecond)
	}
	drain := func() {
		for len(kicked) > 0 {
			<-kicked
		}
	}
	drain()
	cm.Data["k"] = "2"
	if _, err := client.CoreV1().ConfigMaps("ns").Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case uid := <-kicked:
		if uid != pod.UID {
			t.Errorf("kicked %s", uid)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("update did not kick the pod")
	}
	waitUntil := time.Now().Add(5 * time.Second)
	for {
		got, err := get.ConfigMap(ctx, "ns", "cfg")
		if err == nil && got.Data["k"] == "2" {
			break
		}
		if time.Now().After(waitUntil) {
			t.Fatalf("cache not updated: %v %v", got, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	oc.unregister(pod.UID)
	oc.mu.Lock()
	n := len(oc.watches)
	oc.mu.Unlock()
	if n != 0 {
		t.Errorf("%d watches left after the last pod went", n)
	}
}

func TestOrphanVolumesRemoved(t *testing.T) {
	pod := featurePod("gone")
	pod.Spec.Volumes = []v1.Volume{{Name: "mem", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{Medium: v1.StorageMediumMemory}}}}
	pod.Spec.Containers = []v1.Container{ctr("app")}
	k, h, _, _, mnt := newFeatureKubelet(t, pod)
	mustSync(t, k, pod.UID)
	// The agent was down while the pod was force-deleted and its
	// containers removed: only the volume directory and tmpfs remain.
	if err := k.podIndex.Delete(pod); err != nil {
		t.Fatal(err)
	}
	st, err := k.rt.podState(context.Background(), pod.UID)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.rt.killPod(context.Background(), st, 0, "", true); err != nil {
		t.Fatal(err)
	}
	h.takeEvents()
	if uids, _ := k.volumes.PodUIDs(); len(uids) != 1 || len(mnt.mounts) != 1 {
		t.Fatalf("before: dirs %v mounts %v", uids, mnt.mounts)
	}
	if res := mustSync(t, k, pod.UID); !res.done {
		t.Error("orphan sync should finish the worker")
	}
	if uids, _ := k.volumes.PodUIDs(); len(uids) != 0 || len(mnt.mounts) != 0 {
		t.Errorf("after: dirs %v mounts %v", uids, mnt.mounts)
	}
}

func TestPreStopHTTPHookRunsBeforeStop(t *testing.T) {
	var mu sync.Mutex
	var hits []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits = append(hits, r.URL.Path)
		mu.Unlock()
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	port, _ := strconv.Atoi(u.Port())
	pod := featurePod("web")
	pod.Spec.Containers = []v1.Container{ctr("app")}
	pod.Spec.Containers[0].Lifecycle = &v1.Lifecycle{PreStop: &v1.LifecycleHandler{HTTPGet: &v1.HTTPGetAction{Host: u.Hostname(), Port: intstr.FromInt(port), Path: "/drain"}}}
	k, h, client, clk, _ := newFeatureKubelet(t, pod)
	// The stop only happens once the hook's request has been served.
	h.onStop = func() {
		mu.Lock()
		defer mu.Unlock()
		if len(hits) != 1 || hits[0] != "/drain" {
			t.Errorf("container stopped before its preStop hook: hits %v", hits)
		}
	}
	mustSync(t, k, pod.UID)
	deleteInIndex(t, k, client, pod, clk)
	mustSync(t, k, pod.UID)
	mu.Lock()
	defer mu.Unlock()
	if len(hits) != 1 {
		t.Errorf("preStop hook requests %v", hits)
	}
}

func TestTerminationMessages(t *testing.T) {
	pod := featurePod("msgs")
	pod.Spec.RestartPolicy = v1.RestartPolicyNever
	pod.Spec.Containers = []v1.Container{ctr("file"), ctr("logs")}
	pod.Spec.Containers[0].TerminationMessagePath = "/dev/termination-log"
	pod.Spec.Containers[1].TerminationMessagePath = "/dev/termination-log"
	pod.Spec.Containers[1].TerminationMessagePolicy = v1.TerminationMessageFallbackToLogsOnError
	k, h, client, _, _ := newFeatureKubelet(t, pod)
	mustSync(t, k, pod.UID)
	var host string
	for _, cr := range h.creates {
		for _, m := range cr.Config.Mounts {
			if m.ContainerPath == "/dev/termination-log" && cr.Config.Metadata.Name == "file" {
				host = m.HostPath
			}
		}
	}
	if host == "" {
		t.Fatal("no termination log mount")
	}
	if err := os.WriteFile(host, []byte("disk full"), 0o644); err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(k.rt.podLogDir(pod), "logs", "0.log")
	if err := os.MkdirAll(filepath.Dir(logFile), 0o755); err != nil {
		t.Fatal(err)
	}
	log := "2026-01-01T00:00:00Z stdout F starting\n2026-01-01T00:00:01Z stderr P panic: \n2026-01-01T00:00:01Z stderr F boom\n"
	if err := os.WriteFile(logFile, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	h.fakeCRI.exit("file", 1)
	h.fakeCRI.exit("logs", 2)
	mustSync(t, k, pod.UID)
	p := latestStatus(t, k, client, pod)
	got := map[string]string{}
	for _, cs := range p.Status.ContainerStatuses {
		if cs.State.Terminated == nil {
			t.Fatalf("%s not terminated: %+v", cs.Name, cs.State)
		}
		got[cs.Name] = cs.State.Terminated.Message
	}
	if got["file"] != "disk full" || got["logs"] != "starting\npanic: boom\n" {
		t.Errorf("termination messages %q", got)
	}
}
