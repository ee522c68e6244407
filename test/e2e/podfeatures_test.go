package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"skiff.dev/skiff/internal/images"
	"skiff.dev/skiff/test/integration/framework"
)

// podVolumeMounts lists the mounts under a pod's volume directory on the
// node, from the agent's (this process's) mount table.
func podVolumeMounts(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			out = append(out, f[4])
		}
	}
	return out
}

// eventually polls fn until it returns "" (success) or d passes, then
// fails with fn's last complaint.
func eventually(t *testing.T, d time.Duration, fn func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		msg := fn()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", d, msg)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var out []int
	var ls []net.Listener
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", ":0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return out
}

func always() *v1.ContainerRestartPolicy {
	p := v1.ContainerRestartPolicyAlways
	return &p
}

// TestPodVolumesHooksSidecarAndCleanup runs one pod that uses every kind of
// volume, env from a ConfigMap and a Secret, an init container, a sidecar,
// postStart and preStop hooks and cluster DNS settings, updates its
// ConfigMap and Secret in place, deletes it gracefully, and checks that
// nothing (mount, tmpfs, directory) is left on the node.
func TestPodVolumesHooksSidecarAndCleanup(t *testing.T) {
	requireNode(t)
	c := framework.Start(t, framework.Options{})
	n := startNode(t, c, "e2e-feat-1", "skiffe2e7", "10.88.7.0/24")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	ns := "default"
	if _, err := c.Client.CoreV1().ServiceAccounts(ns).Create(ctx, &v1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	cms, secrets := c.Client.CoreV1().ConfigMaps(ns), c.Client.CoreV1().Secrets(ns)
	if _, err := cms.Create(ctx, &v1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "app-config"}, Data: map[string]string{"color": "blue"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := secrets.Create(ctx, &v1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "app-secret"}, Data: map[string][]byte{"password": []byte("s3cret")}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	hostDir := filepath.Join(t.TempDir(), "marker")
	grace := int64(10)
	mode0400 := int32(0o400)
	doc := v1.HostPathDirectoryOrCreate
	memLimit := resource.MustParse("8Mi")
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "features", Labels: map[string]string{"app": "features"}},
		Spec: v1.PodSpec{
			NodeName:                      n.name,
			TerminationGracePeriodSeconds: &grace,
			Hostname:                      "feat",
			Subdomain:                     "svc-a",
			HostAliases:                   []v1.HostAlias{{IP: "192.0.2.10", Hostnames: []string{"db.example"}}},
			Volumes: []v1.Volume{
				{Name: "cfg", VolumeSource: v1.VolumeSource{ConfigMap: &v1.ConfigMapVolumeSource{LocalObjectReference: v1.LocalObjectReference{Name: "app-config"}}}},
				{Name: "sec", VolumeSource: v1.VolumeSource{Secret: &v1.SecretVolumeSource{SecretName: "app-secret", DefaultMode: &mode0400}}},
				{Name: "scratch", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{}}},
				{Name: "mem", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{Medium: v1.StorageMediumMemory, SizeLimit: &memLimit}}},
				{Name: "info", VolumeSource: v1.VolumeSource{DownwardAPI: &v1.DownwardAPIVolumeSource{Items: []v1.DownwardAPIVolumeFile{
					{Path: "labels", FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.labels"}},
					{Path: "mem", ResourceFieldRef: &v1.ResourceFieldSelector{ContainerName: "app", Resource: "limits.memory", Divisor: resource.MustParse("1Mi")}},
				}}}},
				{Name: "marker", VolumeSource: v1.VolumeSource{HostPath: &v1.HostPathVolumeSource{Path: hostDir, Type: &doc}}},
				{Name: "api", VolumeSource: v1.VolumeSource{Projected: &v1.ProjectedVolumeSource{Sources: []v1.VolumeProjection{
					{ServiceAccountToken: &v1.ServiceAccountTokenProjection{Audience: "e2e-audience", Path: "token"}},
					{DownwardAPI: &v1.DownwardAPIProjection{Items: []v1.DownwardAPIVolumeFile{{Path: "name", FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.name"}}}}},
					{ConfigMap: &v1.ConfigMapProjection{LocalObjectReference: v1.LocalObjectReference{Name: "app-config"}, Items: []v1.KeyToPath{{Key: "color", Path: "cfg/color"}}}},
				}}}},
			},
			InitContainers: []v1.Container{{
				Name: "init", Image: images.Testapp, Command: []string{"/testapp", "write", "/scratch/init-ran", "yes"},
				VolumeMounts: []v1.VolumeMount{{Name: "scratch", MountPath: "/scratch"}},
			}, {
				Name: "sidecar", Image: images.Testapp, RestartPolicy: always(),
				Env: []v1.EnvVar{{Name: "HTTP_PORT", Value: "8081"}, {Name: "TCP_ECHO_PORT", Value: "9100"}, {Name: "UDP_ECHO_PORT", Value: "9101"}},
				StartupProbe: &v1.Probe{
					ProbeHandler:  v1.ProbeHandler{HTTPGet: &v1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8081)}},
					PeriodSeconds: 1, FailureThreshold: 30,
				},
				VolumeMounts: []v1.VolumeMount{{Name: "scratch", MountPath: "/scratch"}},
			}},
			Containers: []v1.Container{{
				Name: "app", Image: images.Testapp,
				Env: []v1.EnvVar{
					{Name: "COLOR", ValueFrom: &v1.EnvVarSource{ConfigMapKeyRef: &v1.ConfigMapKeySelector{LocalObjectReference: v1.LocalObjectReference{Name: "app-config"}, Key: "color"}}},
					{Name: "PASSWORD", ValueFrom: &v1.EnvVarSource{SecretKeyRef: &v1.SecretKeySelector{LocalObjectReference: v1.LocalObjectReference{Name: "app-secret"}, Key: "password"}}},
				},
				EnvFrom:   []v1.EnvFromSource{{Prefix: "CFG_", ConfigMapRef: &v1.ConfigMapEnvSource{LocalObjectReference: v1.LocalObjectReference{Name: "app-config"}}}},
				Resources: v1.ResourceRequirements{Limits: v1.ResourceList{v1.ResourceMemory: resource.MustParse("64Mi")}},
				VolumeMounts: []v1.VolumeMount{
					{Name: "cfg", MountPath: "/etc/cfg"},
					{Name: "sec", MountPath: "/etc/sec"},
					{Name: "scratch", MountPath: "/scratch"},
					{Name: "mem", MountPath: "/mem"},
					{Name: "info", MountPath: "/etc/info"},
					{Name: "marker", MountPath: "/marker"},
					{Name: "api", MountPath: "/var/run/api"},
					{Name: "scratch", MountPath: "/sub", SubPath: "nested/dir"},
				},
				Lifecycle: &v1.Lifecycle{
					PostStart: &v1.LifecycleHandler{Exec: &v1.ExecAction{Command: []string{"/testapp", "write", "/scratch/poststart", "yes"}}},
					PreStop:   &v1.LifecycleHandler{Exec: &v1.ExecAction{Command: []string{"/testapp", "write", "/marker/prestop", "done"}}},
				},
			}},
		},
	}
	pods := c.Client.CoreV1().Pods(ns)
	if _, err := pods.Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p := waitPod(t, c, pod.Name, 2*time.Minute, "features pod ready", func(p *v1.Pod) bool { return podReady(p) && p.Status.PodIP != "" })
	ip := p.Status.PodIP
	get := func(path string) string { return httpGet(t, "http://"+ip+":8080"+path) }
	cat := func(path string) string { return get("/cat?path=" + path) }

	// The init container ran before the app (its file is there), the
	// sidecar started, passed its startup probe and serves next to it.
	if got := cat("/scratch/init-ran"); got != "yes" {
		t.Errorf("init container output %q", got)
	}
	if got := cat("/scratch/poststart"); got != "yes" {
		t.Errorf("postStart hook output %q", got)
	}
	side := p.Status.InitContainerStatuses[1]
	if side.State.Running == nil || side.Started == nil || !*side.Started || !side.Ready {
		t.Errorf("sidecar status %+v", side)
	}
	if got := httpGet(t, "http://"+ip+":8081/hostname"); got != "feat" {
		t.Errorf("sidecar /hostname = %q", got)
	}

	env := get("/env")
	for _, want := range []string{"COLOR=blue\n", "PASSWORD=s3cret\n", "CFG_color=blue\n"} {
		if !strings.Contains(env, want) {
			t.Errorf("env lacks %q:\n%s", want, env)
		}
	}
	for path, want := range map[string]string{
		"/etc/cfg/color":         "blue",
		"/etc/sec/password":      "s3cret",
		"/etc/info/labels":       `app="features"`,
		"/etc/info/mem":          "64",
		"/var/run/api/cfg/color": "blue",
		"/var/run/api/name":      "features",
	} {
		if got := cat(path); got != want {
			t.Errorf("%s = %q, want %q", path, got, want)
		}
	}
	// The projected token is a JWT for this pod, its node and the asked
	// audience, issued through the TokenRequest API.
	if parts := strings.Split(cat("/var/run/api/token"), "."); len(parts) != 3 {
		t.Errorf("projected token is not a JWT: %q", parts)
	} else if claims, err := base64.RawURLEncoding.DecodeString(parts[1]); err != nil {
		t.Errorf("decoding the token's claims: %v", err)
	} else {
		for _, want := range []string{`"e2e-audience"`, `"name":"features"`, `"name":"` + n.name + `"`} {
			if !strings.Contains(string(claims), want) {
				t.Errorf("token claims lack %s: %s", want, claims)
			}
		}
	}
	if got := get("/write?path=/etc/cfg/new&data=x"); !strings.Contains(got, "read-only") {
		t.Errorf("configMap volume writable: %q", got)
	}
	if got := get("/write?path=/sub/f&data=through-subpath"); got != "ok\n" {
		t.Errorf("writing through subPath: %q", got)
	}
	if got := cat("/scratch/nested/dir/f"); got != "through-subpath" {
		t.Errorf("subPath file seen in the volume as %q", got)
	}
	resolv := cat("/etc/resolv.conf")
	for _, want := range []string{"nameserver 10.43.0.10", "search default.svc.cluster.local svc.cluster.local cluster.local", "options ndots:5"} {
		if !strings.Contains(resolv, want) {
			t.Errorf("resolv.conf lacks %q:\n%s", want, resolv)
		}
	}
	hosts := cat("/etc/hosts")
	for _, want := range []string{ip + "\tfeat.svc-a.default.svc.cluster.local\tfeat", "192.0.2.10\tdb.example"} {
		if !strings.Contains(hosts, want) {
			t.Errorf("/etc/hosts lacks %q:\n%s", want, hosts)
		}
	}

	volDir := filepath.Join(n.agent.Dir(), "pod-volumes", string(p.UID))
	if mounts := podVolumeMounts(t, volDir); len(mounts) != 3 { // mem (emptyDir), sec and api (projected) on tmpfs
		t.Errorf("pod tmpfs mounts %v, want 3", mounts)
	}

	// An agent restart adopts the pod: same containers, no second tmpfs on
	// the volumes, and the ConfigMap/Secret watches come back.
	appID := p.Status.ContainerStatuses[0].ContainerID
	n.stop()
	n.start()
	time.Sleep(2 * time.Second) // a couple of relists and syncs
	p = waitPod(t, c, pod.Name, 30*time.Second, "features pod ready after agent restart", func(p *v1.Pod) bool { return podReady(p) })
	if got := p.Status.ContainerStatuses[0].ContainerID; got != appID {
		t.Errorf("app container %s replaced by %s across an agent restart", appID, got)
	}
	if mounts := podVolumeMounts(t, volDir); len(mounts) != 3 {
		t.Errorf("pod tmpfs mounts after agent restart %v, want the same 3", mounts)
	}

	// In-place updates reach the volumes (atomically, through ..data).
	began := time.Now()
	cm, err := cms.Get(ctx, "app-config", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data["color"] = "red"
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	sec, err := secrets.Get(ctx, "app-secret", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sec.Data["password"] = []byte("rotated")
	if _, err := secrets.Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() string {
		a, b, c := cat("/etc/cfg/color"), cat("/etc/sec/password"), cat("/var/run/api/cfg/color")
		if a == "red" && b == "rotated" && c == "red" {
			return ""
		}
		return fmt.Sprintf("volumes not updated: color=%q password=%q projected=%q", a, b, c)
	})
	t.Logf("ConfigMap and Secret updates reached the volumes in %s", time.Since(began).Round(time.Millisecond))

	// Graceful deletion runs preStop, removes the pod and leaves nothing
	// mounted and no volume directory behind.
	if err := pods.Delete(ctx, pod.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "pod deleted", func() bool {
		_, err := pods.Get(ctx, pod.Name, metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
	if b, err := os.ReadFile(filepath.Join(hostDir, "prestop")); err != nil || string(b) != "done" {
		t.Errorf("preStop hook did not run: %q %v", b, err)
	}
	if mounts := podVolumeMounts(t, volDir); len(mounts) != 0 {
		t.Errorf("mounts left after deletion: %v", mounts)
	}
	if _, err := os.Stat(volDir); !os.IsNotExist(err) {
		t.Errorf("pod volume dir left after deletion: %v", err)
	}
	if _, err := os.Stat(hostDir); err != nil {
		t.Errorf("the hostPath directory must survive the pod: %v", err)
	}
}

// TestOOMKilledSecurityContextAndHostNetwork checks that a claim bound to a
// hostPath PV reaches the node's directory, that a container's termination
// message reaches its status, that a memory-limit breach is
// reported OOMKilled, that securityContext reaches the process
// (user, groups, read-only root, capabilities), that resource limits reach
// the cgroups, and that a host-network pod
// serves on the node's address with ClusterFirstWithHostNet DNS.
func TestOOMKilledSecurityContextAndHostNetwork(t *testing.T) {
	requireNode(t)
	c := framework.Start(t, framework.Options{})
	n := startNode(t, c, "e2e-feat-2", "skiffe2e8", "10.88.8.0/24")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	pods := c.Client.CoreV1().Pods("default")
	grace := int64(1)
	uid, gid, extra := int64(1000), int64(3000), int64(4000)
	yes := true
	ports := freePorts(t, 3)
	create := func(p *v1.Pod) {
		t.Helper()
		p.Spec.NodeName = n.name
		p.Spec.TerminationGracePeriodSeconds = &grace
		if _, err := pods.Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	create(&v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "oom"},
		Spec: v1.PodSpec{RestartPolicy: v1.RestartPolicyNever, Containers: []v1.Container{{
			Name: "hog", Image: images.Testapp, Command: []string{"/testapp", "alloc", "256"},
			Resources: v1.ResourceRequirements{Limits: v1.ResourceList{v1.ResourceMemory: resource.MustParse("48Mi")}},
		}}},
	})
	create(&v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "secure"},
		Spec: v1.PodSpec{
			SecurityContext: &v1.PodSecurityContext{RunAsUser: &uid, RunAsGroup: &gid, SupplementalGroups: []int64{extra}},
			Containers: []v1.Container{{
				Name: "app", Image: images.Testapp,
				Resources: v1.ResourceRequirements{Limits: v1.ResourceList{v1.ResourceCPU: resource.MustParse("250m"), v1.ResourceMemory: resource.MustParse("96Mi")}},
				SecurityContext: &v1.SecurityContext{
					ReadOnlyRootFilesystem: &yes,
					Capabilities:           &v1.Capabilities{Drop: []v1.Capability{"ALL"}, Add: []v1.Capability{"NET_BIND_SERVICE"}},
				},
			}},
		},
	})
	create(&v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "hostnet"},
		Spec: v1.PodSpec{
			HostNetwork: true, DNSPolicy: v1.DNSClusterFirstWithHostNet,
			Containers: []v1.Container{{
				Name: "app", Image: images.Testapp,
				Env: []v1.EnvVar{{Name: "HTTP_PORT", Value: strconv.Itoa(ports[0])}, {Name: "TCP_ECHO_PORT", Value: strconv.Itoa(ports[1])}, {Name: "UDP_ECHO_PORT", Value: strconv.Itoa(ports[2])}},
			}},
		},
	})

	// A claim bound (by hand: no binder runs here) to a hostPath PV.
	pvDir := filepath.Join(t.TempDir(), "pv")
	doc := v1.HostPathDirectoryOrCreate
	if _, err := c.Client.CoreV1().PersistentVolumes().Create(ctx, &v1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e-pv"},
		Spec: v1.PersistentVolumeSpec{
			Capacity:               v1.ResourceList{v1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes:            []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce},
			PersistentVolumeSource: v1.PersistentVolumeSource{HostPath: &v1.HostPathVolumeSource{Path: pvDir, Type: &doc}},
			ClaimRef:               &v1.ObjectReference{Namespace: "default", Name: "data"},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pvc, err := c.Client.CoreV1().PersistentVolumeClaims("default").Create(ctx, &v1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "data"},
		Spec: v1.PersistentVolumeClaimSpec{
			AccessModes: []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce},
			Resources:   v1.VolumeResourceRequirements{Requests: v1.ResourceList{v1.ResourceStorage: resource.MustParse("1Gi")}},
			VolumeName:  "e2e-pv",
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pvc.Status.Phase = v1.ClaimBound
	if _, err := c.Client.CoreV1().PersistentVolumeClaims("default").UpdateStatus(ctx, pvc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	create(&v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "claim"},
		Spec: v1.PodSpec{
			Volumes: []v1.Volume{{Name: "data", VolumeSource: v1.VolumeSource{PersistentVolumeClaim: &v1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}}},
			Containers: []v1.Container{{
				Name: "app", Image: images.Testapp,
				VolumeMounts: []v1.VolumeMount{{Name: "data", MountPath: "/data"}},
			}},
		},
	})

	create(&v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "farewell"},
		Spec: v1.PodSpec{RestartPolicy: v1.RestartPolicyNever, Containers: []v1.Container{{
			Name: "app", Image: images.Testapp, Command: []string{"/testapp", "write", "/dev/termination-log", "goodbye"},
			TerminationMessagePath: "/dev/termination-log",
		}}},
	})

	p := waitPod(t, c, "claim", 2*time.Minute, "claim pod ready", func(p *v1.Pod) bool { return podReady(p) })
	if got := httpGet(t, "http://"+p.Status.PodIP+":8080/write?path=/data/hello&data=persisted"); got != "ok\n" {
		t.Errorf("writing to the claim: %q", got)
	}
	if b, err := os.ReadFile(filepath.Join(pvDir, "hello")); err != nil || string(b) != "persisted" {
		t.Errorf("file written through the claim on the node: %q %v", b, err)
	}

	p = waitPod(t, c, "farewell", 2*time.Minute, "farewell pod succeeded", func(p *v1.Pod) bool { return p.Status.Phase == v1.PodSucceeded })
	if term := p.Status.ContainerStatuses[0].State.Terminated; term == nil || term.Message != "goodbye" || term.Reason != "Completed" {
		t.Errorf("termination message: %+v", p.Status.ContainerStatuses[0].State)
	}

	p = waitPod(t, c, "oom", 2*time.Minute, "oom pod terminated", func(p *v1.Pod) bool {
		return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].State.Terminated != nil
	})
	if term := p.Status.ContainerStatuses[0].State.Terminated; term.Reason != "OOMKilled" || term.ExitCode != 137 || p.Status.Phase != v1.PodFailed {
		t.Errorf("memory-limit breach: phase %s terminated %+v", p.Status.Phase, term)
	}

	p = waitPod(t, c, "secure", 2*time.Minute, "secure pod ready", func(p *v1.Pod) bool { return podReady(p) })
	base := "http://" + p.Status.PodIP + ":8080"
	if got := httpGet(t, base+"/id"); !strings.HasPrefix(got, "uid=1000 gid=3000 ") || !strings.Contains(got, "4000") {
		t.Errorf("/id = %q, want uid 1000, gid 3000 and group 4000", got)
	}
	if got := httpGet(t, base+"/write?path=/newfile&data=x"); !strings.Contains(got, "read-only") {
		t.Errorf("root filesystem writable: %q", got)
	}
	status := httpGet(t, base+"/cat?path=/proc/self/status")
	if !strings.Contains(status, "CapBnd:\t0000000000000400") {
		t.Errorf("capability bounding set is not just NET_BIND_SERVICE:\n%s", status)
	}

	// Limits reach the container's cgroups (v1: the container sees its own
	// cgroup at the root of each hierarchy).
	for path, want := range map[string]string{
		"/sys/fs/cgroup/cpu/cpu.cfs_quota_us":         "25000",
		"/sys/fs/cgroup/cpu/cpu.cfs_period_us":        "100000",
		"/sys/fs/cgroup/cpu/cpu.shares":               "256",
		"/sys/fs/cgroup/memory/memory.limit_in_bytes": strconv.Itoa(96 << 20),
	} {
		if got := strings.TrimSpace(httpGet(t, base+"/cat?path="+path)); got != want {
			t.Errorf("%s = %q, want %s", path, got, want)
		}
	}

	p = waitPod(t, c, "hostnet", 2*time.Minute, "hostnet pod ready", func(p *v1.Pod) bool { return podReady(p) })
	hostname, _ := os.Hostname()
	addr := "http://" + net.JoinHostPort(p.Status.HostIP, strconv.Itoa(ports[0]))
	if p.Status.PodIP != p.Status.HostIP {
		t.Errorf("host-network pod IP %s, host IP %s", p.Status.PodIP, p.Status.HostIP)
	}
	if got := httpGet(t, addr+"/hostname"); got != hostname {
		t.Errorf("host-network /hostname = %q, want the node's %q", got, hostname)
	}
	if got := httpGet(t, addr+"/cat?path=/etc/resolv.conf"); !strings.Contains(got, "nameserver 10.43.0.10") {
		t.Errorf("ClusterFirstWithHostNet resolv.conf:\n%s", got)
	}
}
