package volume

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	testingclock "k8s.io/utils/clock/testing"
)

type fakeObjects struct {
	mu      sync.Mutex
	cms     map[string]*v1.ConfigMap
	secrets map[string]*v1.Secret
	pvcs    map[string]*v1.PersistentVolumeClaim
	pvs     map[string]*v1.PersistentVolume
	clock   *testingclock.FakeClock
	tokens  []*authv1.TokenRequest
}

func notFound(res, name string) error {
	return apierrors.NewNotFound(schema.GroupResource{Resource: res}, name)
}

func (f *fakeObjects) ConfigMap(_ context.Context, _, name string) (*v1.ConfigMap, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if cm, ok := f.cms[name]; ok {
		return cm, nil
	}
	return nil, notFound("configmaps", name)
}

func (f *fakeObjects) Secret(_ context.Context, _, name string) (*v1.Secret, error) {
	if s, ok := f.secrets[name]; ok {
		return s, nil
	}
	return nil, notFound("secrets", name)
}

func (f *fakeObjects) PersistentVolumeClaim(_ context.Context, _, name string) (*v1.PersistentVolumeClaim, error) {
	if c, ok := f.pvcs[name]; ok {
		return c, nil
	}
	return nil, notFound("persistentvolumeclaims", name)
}

func (f *fakeObjects) PersistentVolume(_ context.Context, name string) (*v1.PersistentVolume, error) {
	if pv, ok := f.pvs[name]; ok {
		return pv, nil
	}
	return nil, notFound("persistentvolumes", name)
}

func (f *fakeObjects) Token(_ context.Context, ns, sa string, req *authv1.TokenRequest) (*authv1.TokenRequest, error) {
	f.tokens = append(f.tokens, req)
	out := req.DeepCopy()
	out.Status.Token = fmt.Sprintf("token-%d-%s-%s-%v", len(f.tokens), ns, sa, req.Spec.Audiences)
	out.Status.ExpirationTimestamp = metav1.NewTime(f.clock.Now().Add(time.Duration(*req.Spec.ExpirationSeconds) * time.Second))
	return out, nil
}

// fakeMounter records tmpfs mounts instead of making them.
type fakeMounter struct {
	mu      sync.Mutex
	mounts  map[string]int64
	unmount []string
}

func (f *fakeMounter) MountTmpfs(target string, size int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mounts[target] = size
	return nil
}

func (f *fakeMounter) Unmount(target string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.mounts, target)
	f.unmount = append(f.unmount, target)
	return nil
}

func (f *fakeMounter) MountPoints(dir string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for mp := range f.mounts {
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	return out, nil
}

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func newTestManager(t *testing.T) (*Manager, *fakeObjects, *fakeMounter, *testingclock.FakeClock) {
	t.Helper()
	clk := testingclock.NewFakeClock(t0)
	objs := &fakeObjects{cms: map[string]*v1.ConfigMap{}, secrets: map[string]*v1.Secret{}, pvcs: map[string]*v1.PersistentVolumeClaim{}, pvs: map[string]*v1.PersistentVolume{}, clock: clk}
	mnt := &fakeMounter{mounts: map[string]int64{}}
	m, err := New(Config{Root: filepath.Join(t.TempDir(), "pods")}, Deps{Objects: objs, Mounter: mnt, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	return m, objs, mnt, clk
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mode(t *testing.T, p string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func listVisible(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out
}

func TestWriteAtomic(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "vol")
	changed, err := writeAtomic(dir, map[string]File{"a": {Data: []byte("1"), Mode: 0o600}, "sub/b": {Data: []byte("2"), Mode: 0o644}}, -1)
	if err != nil || !changed {
		t.Fatalf("first write: changed=%v err=%v", changed, err)
	}
	if got := readFile(t, filepath.Join(dir, "a")); got != "1" {
		t.Errorf("a = %q", got)
	}
	if got := readFile(t, filepath.Join(dir, "sub", "b")); got != "2" {
		t.Errorf("sub/b = %q", got)
	}
	if m := mode(t, filepath.Join(dir, "a")); m != 0o600 {
		t.Errorf("mode of a = %o", m)
	}
	if l, err := os.Readlink(filepath.Join(dir, "a")); err != nil || l != "..data/a" {
		t.Errorf("a should link through ..data: %q %v", l, err)
	}
	first, _ := os.Readlink(filepath.Join(dir, dataLink))

	// The same payload again changes nothing.
	if changed, err := writeAtomic(dir, map[string]File{"a": {Data: []byte("1"), Mode: 0o600}, "sub/b": {Data: []byte("2"), Mode: 0o644}}, -1); err != nil || changed {
		t.Errorf("unchanged payload: changed=%v err=%v", changed, err)
	}

	// An update switches ..data, drops removed names and the old payload.
	if changed, err := writeAtomic(dir, map[string]File{"a": {Data: []byte("one"), Mode: 0o644}, "c": {Data: []byte("3"), Mode: 0o644}}, -1); err != nil || !changed {
		t.Fatalf("update: changed=%v err=%v", changed, err)
	}
	if got := readFile(t, filepath.Join(dir, "a")); got != "one" {
		t.Errorf("a after update = %q", got)
	}
	second, _ := os.Readlink(filepath.Join(dir, dataLink))
	if second == first {
		t.Error("..data still points at the old payload")
	}
	if _, err := os.Stat(filepath.Join(dir, first)); !os.IsNotExist(err) {
		t.Errorf("old payload dir %s left behind: %v", first, err)
	}
	if got, want := strings.Join(listVisible(t, dir), " "), second+" ..data a c"; got != want {
		t.Errorf("entries %q, want %q", got, want)
	}

	for _, bad := range []string{"../x", "/abs", "..data", "a/../../b", ""} {
		if _, err := writeAtomic(dir, map[string]File{bad: {Data: []byte("x"), Mode: 0o644}}, -1); err == nil {
			t.Errorf("path %q should be refused", bad)
		}
	}
}

func TestSetupPayloadVolumesAndUpdates(t *testing.T) {
	m, objs, mnt, _ := newTestManager(t)
	objs.cms["cfg"] = &v1.ConfigMap{Data: map[string]string{"color": "blue", "size": "L"}}
	objs.secrets["sec"] = &v1.Secret{Data: map[string][]byte{"pw": []byte("s3cret")}}
	mode0600, mode0400 := int32(0o600), int32(0o400)
	optional := true
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "uid-1", Labels: map[string]string{"app": "web", "tier": "front"}},
		Spec: v1.PodSpec{
			Containers: []v1.Container{{Name: "app", Resources: v1.ResourceRequirements{Limits: v1.ResourceList{v1.ResourceMemory: resource.MustParse("64Mi")}}}},
			Volumes: []v1.Volume{
				{Name: "cfg", VolumeSource: v1.VolumeSource{ConfigMap: &v1.ConfigMapVolumeSource{LocalObjectReference: v1.LocalObjectReference{Name: "cfg"}, DefaultMode: &mode0600}}},
				{Name: "items", VolumeSource: v1.VolumeSource{ConfigMap: &v1.ConfigMapVolumeSource{LocalObjectReference: v1.LocalObjectReference{Name: "cfg"},
					Items: []v1.KeyToPath{{Key: "color", Path: "dir/colour", Mode: &mode0400}}}}},
				{Name: "sec", VolumeSource: v1.VolumeSource{Secret: &v1.SecretVolumeSource{SecretName: "sec"}}},
				{Name: "missing", VolumeSource: v1.VolumeSource{Secret: &v1.SecretVolumeSource{SecretName: "nope", Optional: &optional}}},
				{Name: "info", VolumeSource: v1.VolumeSource{DownwardAPI: &v1.DownwardAPIVolumeSource{Items: []v1.DownwardAPIVolumeFile{
					{Path: "labels", FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.labels"}},
					{Path: "name", FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.name"}},
					{Path: "mem", ResourceFieldRef: &v1.ResourceFieldSelector{ContainerName: "app", Resource: "limits.memory", Divisor: resource.MustParse("1Mi")}},
				}}}},
			},
		},
	}
	vols, _, err := m.Setup(context.Background(), pod)
	if err != nil {
		t.Fatal(err)
	}
	cfg := vols["cfg"].Path
	if got := readFile(t, filepath.Join(cfg, "color")); got != "blue" || mode(t, filepath.Join(cfg, "color")) != 0o600 || !vols["cfg"].ReadOnly {
		t.Errorf("cfg/color = %q mode %o ro %v", got, mode(t, filepath.Join(cfg, "color")), vols["cfg"].ReadOnly)
	}
	if got := listVisible(t, vols["items"].Path); strings.Join(got, " ") != mustLink(t, vols["items"].Path)+" ..data dir" {
		t.Errorf("items volume entries %v", got)
	}
	if got := readFile(t, filepath.Join(vols["items"].Path, "dir/colour")); got != "blue" || mode(t, filepath.Join(vols["items"].Path, "dir/colour")) != 0o400 {
		t.Errorf("items dir/colour = %q", got)
	}
	if got := readFile(t, filepath.Join(vols["sec"].Path, "pw")); got != "s3cret" {
		t.Errorf("secret pw = %q", got)
	}
	if _, ok := mnt.mounts[vols["sec"].Path]; !ok {
		t.Errorf("secret volume not on tmpfs: %v", mnt.mounts)
	}
	if _, ok := vols["missing"]; !ok {
		t.Error("an optional missing secret should give an empty volume")
	}
	if got := readFile(t, filepath.Join(vols["info"].Path, "labels")); got != "app=\"web\"\ntier=\"front\"" {
		t.Errorf("downward labels = %q", got)
	}
	if got := readFile(t, filepath.Join(vols["info"].Path, "mem")); got != "64" {
		t.Errorf("downward mem = %q", got)
	}

	// The ConfigMap changes: the next Setup updates the files in place.
	objs.mu.Lock()
	objs.cms["cfg"] = &v1.ConfigMap{Data: map[string]string{"color": "red"}}
	objs.mu.Unlock()
	if _, _, err := m.Setup(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(cfg, "color")); got != "red" {
		t.Errorf("cfg/color after update = %q", got)
	}
	if _, err := os.Lstat(filepath.Join(cfg, "size")); !os.IsNotExist(err) {
		t.Errorf("removed key still visible: %v", err)
	}

	// A missing non-optional key is an error naming the volume.
	pod.Spec.Volumes[1].ConfigMap.Items[0].Key = "nokey"
	if _, _, err := m.Setup(context.Background(), pod); err == nil || !strings.Contains(err.Error(), `volume "items"`) {
		t.Errorf("missing key: %v", err)
	}

	dir := m.PodDir(pod.UID)
	if err := m.TearDown(pod.UID); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("pod dir left: %v", err)
	}
	if len(mnt.mounts) != 0 {
		t.Errorf("mounts left: %v", mnt.mounts)
	}
}

func mustLink(t *testing.T, dir string) string {
	t.Helper()
	l, err := os.Readlink(filepath.Join(dir, dataLink))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestProjectedTokenRefresh(t *testing.T) {
	m, objs, _, clk := newTestManager(t)
	objs.cms["kube-root-ca.crt"] = &v1.ConfigMap{Data: map[string]string{"ca.crt": "CA"}}
	exp := int64(3600)
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "uid-2"},
		Spec: v1.PodSpec{ServiceAccountName: "robot", Volumes: []v1.Volume{{Name: "api", VolumeSource: v1.VolumeSource{Projected: &v1.ProjectedVolumeSource{Sources: []v1.VolumeProjection{
			{ServiceAccountToken: &v1.ServiceAccountTokenProjection{Audience: "vault", ExpirationSeconds: &exp, Path: "token"}},
			{ConfigMap: &v1.ConfigMapProjection{LocalObjectReference: v1.LocalObjectReference{Name: "kube-root-ca.crt"}}},
			{DownwardAPI: &v1.DownwardAPIProjection{Items: []v1.DownwardAPIVolumeFile{{Path: "namespace", FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}}}},
		}}}}}},
	}
	vols, refresh, err := m.Setup(context.Background(), pod)
	if err != nil {
		t.Fatal(err)
	}
	dir := vols["api"].Path
	if got := readFile(t, filepath.Join(dir, "token")); got != "token-1-ns-robot-[vault]" || mode(t, filepath.Join(dir, "token")) != 0o600 {
		t.Errorf("token = %q mode %o", got, mode(t, filepath.Join(dir, "token")))
	}
	if got := readFile(t, filepath.Join(dir, "ca.crt")) + "/" + readFile(t, filepath.Join(dir, "namespace")); got != "CA/ns" {
		t.Errorf("ca.crt/namespace = %q", got)
	}
	req := objs.tokens[0]
	if req.Spec.BoundObjectRef == nil || req.Spec.BoundObjectRef.UID != pod.UID || *req.Spec.ExpirationSeconds != 3600 {
		t.Errorf("token request %+v", req.Spec)
	}
	if refresh != 48*time.Minute {
		t.Errorf("refresh in %s, want 80%% of 1h", refresh)
	}
	// Before 80% of the lifetime the cached token is reused...
	clk.Step(47 * time.Minute)
	if _, _, err := m.Setup(context.Background(), pod); err != nil || len(objs.tokens) != 1 {
		t.Fatalf("early resync requested a token: %d %v", len(objs.tokens), err)
	}
	// ...after it a new one is written in place.
	clk.Step(2 * time.Minute)
	if _, _, err := m.Setup(context.Background(), pod); err != nil || len(objs.tokens) != 2 {
		t.Fatalf("no refresh after 80%%: %d %v", len(objs.tokens), err)
	}
	if got := readFile(t, filepath.Join(dir, "token")); got != "token-2-ns-robot-[vault]" {
		t.Errorf("refreshed token = %q", got)
	}
}

func TestEmptyDirHostPathAndClaims(t *testing.T) {
	m, objs, mnt, _ := newTestManager(t)
	host := t.TempDir()
	doc := v1.HostPathDirectoryOrCreate
	foc := v1.HostPathFileOrCreate
	dirT := v1.HostPathDirectory
	size := resource.MustParse("16Mi")
	objs.pvcs["claim"] = &v1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{UID: "c1"}, Spec: v1.PersistentVolumeClaimSpec{VolumeName: "pv1"}, Status: v1.PersistentVolumeClaimStatus{Phase: v1.ClaimBound}}
	objs.pvs["pv1"] = &v1.PersistentVolume{Spec: v1.PersistentVolumeSpec{PersistentVolumeSource: v1.PersistentVolumeSource{Local: &v1.LocalVolumeSource{Path: host}}, ClaimRef: &v1.ObjectReference{UID: "c1"}}}
	objs.pvcs["pending"] = &v1.PersistentVolumeClaim{Status: v1.PersistentVolumeClaimStatus{Phase: v1.ClaimPending}}
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "uid-3"},
		Spec: v1.PodSpec{Volumes: []v1.Volume{
			{Name: "scratch", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{}}},
			{Name: "mem", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{Medium: v1.StorageMediumMemory, SizeLimit: &size}}},
			{Name: "made", VolumeSource: v1.VolumeSource{HostPath: &v1.HostPathVolumeSource{Path: filepath.Join(host, "a/b"), Type: &doc}}},
			{Name: "file", VolumeSource: v1.VolumeSource{HostPath: &v1.HostPathVolumeSource{Path: filepath.Join(host, "f"), Type: &foc}}},
			{Name: "data", VolumeSource: v1.VolumeSource{PersistentVolumeClaim: &v1.PersistentVolumeClaimVolumeSource{ClaimName: "claim", ReadOnly: true}}},
		}},
	}
	gid := int64(os.Getgid()) // a group this test may chown to, root or not
	pod.Spec.SecurityContext = &v1.PodSecurityContext{FSGroup: &gid}
	vols, _, err := m.Setup(context.Background(), pod)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(vols["scratch"].Path); err != nil || fi.Mode().Perm() != 0o777 || fi.Mode()&os.ModeSetgid == 0 ||
		fi.Sys().(*syscall.Stat_t).Gid != uint32(gid) || !strings.HasPrefix(vols["scratch"].Path, m.PodDir(pod.UID)) {
		t.Errorf("emptyDir %s with fsGroup: %v %v", vols["scratch"].Path, fi.Mode(), err)
	}
	if got, ok := mnt.mounts[vols["mem"].Path]; !ok || got != 16<<20 {
		t.Errorf("memory emptyDir: tmpfs mounts %v", mnt.mounts)
	}
	if fi, err := os.Stat(filepath.Join(host, "a/b")); err != nil || !fi.IsDir() {
		t.Errorf("DirectoryOrCreate did not create: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(host, "f")); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("FileOrCreate did not create: %v", err)
	}
	if v := vols["data"]; v.Path != host || !v.ReadOnly {
		t.Errorf("claim volume %+v", v)
	}

	bad := pod.DeepCopy()
	bad.UID = "uid-4"
	bad.Spec.Volumes = []v1.Volume{
		{Name: "nodir", VolumeSource: v1.VolumeSource{HostPath: &v1.HostPathVolumeSource{Path: filepath.Join(host, "nope"), Type: &dirT}}},
		{Name: "pending", VolumeSource: v1.VolumeSource{PersistentVolumeClaim: &v1.PersistentVolumeClaimVolumeSource{ClaimName: "pending"}}},
		{Name: "nfs", VolumeSource: v1.VolumeSource{NFS: &v1.NFSVolumeSource{Server: "x", Path: "/"}}},
	}
	vols, _, err = m.Setup(context.Background(), bad)
	if len(vols) != 0 || err == nil {
		t.Fatalf("bad volumes: %v %v", vols, err)
	}
	for _, want := range []string{`"nodir"`, `"pending" is not bound`, `"nfs"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %s", err, want)
		}
	}

	if err := m.TearDown(pod.UID); err != nil {
		t.Fatal(err)
	}
	if len(mnt.mounts) != 0 {
		t.Errorf("tmpfs left mounted: %v", mnt.mounts)
	}
	if _, err := os.Stat(host); err != nil {
		t.Errorf("teardown touched a hostPath: %v", err)
	}
	if _, err := os.Stat(m.PodDir(pod.UID)); !os.IsNotExist(err) {
		t.Errorf("pod dir left: %v", err)
	}
}

func TestContainerMounts(t *testing.T) {
	vol := t.TempDir()
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(vol, "escape")); err != nil {
		t.Fatal(err)
	}
	vols := map[string]Mounted{"data": {Path: vol}, "cfg": {Path: t.TempDir(), ReadOnly: true}}
	c := &v1.Container{Name: "app", VolumeMounts: []v1.VolumeMount{
		{Name: "data", MountPath: "/data"},
		{Name: "data", MountPath: "/logs", SubPathExpr: "logs/$(POD)", ReadOnly: true},
		{Name: "cfg", MountPath: "/etc/cfg"},
	}}
	ms, err := ContainerMounts(c, vols, map[string]string{"POD": "p1"})
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(ms)
	want := fmt.Sprint([]Mount{
		{HostPath: vol, ContainerPath: "/data", Propagation: v1.MountPropagationNone},
		{HostPath: filepath.Join(vol, "logs/p1"), ContainerPath: "/logs", ReadOnly: true, Propagation: v1.MountPropagationNone},
		{HostPath: vols["cfg"].Path, ContainerPath: "/etc/cfg", ReadOnly: true, Propagation: v1.MountPropagationNone},
	})
	if got != want {
		t.Errorf("mounts\n got %s\nwant %s", got, want)
	}
	if fi, err := os.Stat(filepath.Join(vol, "logs/p1")); err != nil || !fi.IsDir() {
		t.Errorf("subPath dir not created: %v", err)
	}
	for _, vm := range []v1.VolumeMount{
		{Name: "data", MountPath: "/x", SubPath: "../etc"},
		{Name: "data", MountPath: "/x", SubPath: "escape"},
		{Name: "nope", MountPath: "/x"},
	} {
		_, err := ContainerMounts(&v1.Container{Name: "app", VolumeMounts: []v1.VolumeMount{vm}}, vols, nil)
		if _, ok := err.(*MountError); !ok {
			t.Errorf("mount %+v: want *MountError, got %T %v", vm, err, err)
		}
	}
}

func TestMountPointsUnder(t *testing.T) {
	info := `22 1 8:1 / / rw - ext4 /dev/sda1 rw
30 22 0:40 / /var/lib/skiff/pod-volumes/u1/volumes/mem rw - tmpfs tmpfs rw
31 22 0:41 / /var/lib/skiff/pod-volumes/u1/volumes/with\040space rw - tmpfs tmpfs rw
32 22 0:42 / /var/lib/skiff/pod-volumes/u10/volumes/x rw - tmpfs tmpfs rw`
	got := mountPointsUnder(info, "/var/lib/skiff/pod-volumes/u1")
	want := []string{"/var/lib/skiff/pod-volumes/u1/volumes/mem", "/var/lib/skiff/pod-volumes/u1/volumes/with space"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %q want %q", got, want)
	}
}

// TestTmpfsTearDownReal mounts a real tmpfs (root only) and checks that
// TearDown leaves neither the mount nor the directory.
func TestTmpfsTearDownReal(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting tmpfs needs root")
	}
	clk := testingclock.NewFakeClock(t0)
	root := filepath.Join(t.TempDir(), "pods")
	m, err := New(Config{Root: root}, Deps{Objects: &fakeObjects{clock: clk}, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		mps, _ := SysMounter{}.MountPoints(root)
		for _, mp := range mps {
			_ = SysMounter{}.Unmount(mp)
		}
	})
	size := resource.MustParse("1Mi")
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{UID: "real"}, Spec: v1.PodSpec{Volumes: []v1.Volume{
		{Name: "mem", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{Medium: v1.StorageMediumMemory, SizeLimit: &size}}},
	}}}
	vols, _, err := m.Setup(context.Background(), pod)
	if err != nil {
		t.Fatal(err)
	}
	mps, _ := SysMounter{}.MountPoints(root)
	if len(mps) != 1 || mps[0] != vols["mem"].Path {
		t.Fatalf("mount points %v", mps)
	}
	// The size limit holds.
	if err := os.WriteFile(filepath.Join(vols["mem"].Path, "big"), make([]byte, 2<<20), 0o644); err == nil {
		t.Error("writing 2 MiB into a 1 MiB tmpfs succeeded")
	}
	// A second Setup (agent restart) does not mount again.
	m2, _ := New(Config{Root: root}, Deps{Objects: &fakeObjects{clock: clk}, Clock: clk})
	if _, _, err := m2.Setup(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	if mps, _ := (SysMounter{}).MountPoints(root); len(mps) != 1 {
		t.Errorf("mounted twice: %v", mps)
	}
	if err := m2.TearDown(pod.UID); err != nil {
		t.Fatal(err)
	}
	if mps, _ := (SysMounter{}).MountPoints(root); len(mps) != 0 {
		t.Errorf("mounts left: %v", mps)
	}
	if _, err := os.Stat(m.PodDir(pod.UID)); !os.IsNotExist(err) {
		t.Errorf("pod dir left: %v", err)
	}
}

// BenchmarkSetupUnchanged is the cost Setup adds to every pod sync when
// nothing changed: reading the payloads back and comparing them.
func BenchmarkSetupUnchanged(b *testing.B) {
	clk := testingclock.NewFakeClock(t0)
	objs := &fakeObjects{cms: map[string]*v1.ConfigMap{}, secrets: map[string]*v1.Secret{}, clock: clk}
	data := map[string]string{}
	for i := 0; i < 10; i++ {
		data[fmt.Sprintf("key-%d", i)] = strings.Repeat("x", 1024)
	}
	objs.cms["cfg"] = &v1.ConfigMap{Data: data}
	objs.secrets["sec"] = &v1.Secret{Data: map[string][]byte{"pw": []byte("s3cret")}}
	m, err := New(Config{Root: filepath.Join(b.TempDir(), "pods")}, Deps{Objects: objs, Mounter: &fakeMounter{mounts: map[string]int64{}}, Clock: clk})
	if err != nil {
		b.Fatal(err)
	}
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "bench", Labels: map[string]string{"app": "web"}},
		Spec: v1.PodSpec{Volumes: []v1.Volume{
			{Name: "cfg", VolumeSource: v1.VolumeSource{ConfigMap: &v1.ConfigMapVolumeSource{LocalObjectReference: v1.LocalObjectReference{Name: "cfg"}}}},
			{Name: "sec", VolumeSource: v1.VolumeSource{Secret: &v1.SecretVolumeSource{SecretName: "sec"}}},
			{Name: "info", VolumeSource: v1.VolumeSource{DownwardAPI: &v1.DownwardAPIVolumeSource{Items: []v1.DownwardAPIVolumeFile{{Path: "labels", FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.labels"}}}}}},
			{Name: "scratch", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{}}},
		}},
	}
	if _, _, err := m.Setup(context.Background(), pod); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, err := m.Setup(context.Background(), pod); err != nil {
			b.Fatal(err)
		}
	}
}
