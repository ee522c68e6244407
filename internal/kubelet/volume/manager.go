package volume

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"

	"skiff.dev/skiff/internal/kubelet/downward"
)

// Getter reads the API objects volumes refer to and requests tokens.
type Getter interface {
	ConfigMap(ctx context.Context, namespace, name string) (*v1.ConfigMap, error)
	Secret(ctx context.Context, namespace, name string) (*v1.Secret, error)
	PersistentVolumeClaim(ctx context.Context, namespace, name string) (*v1.PersistentVolumeClaim, error)
	PersistentVolume(ctx context.Context, name string) (*v1.PersistentVolume, error)
	Token(ctx context.Context, namespace, serviceAccount string, req *authv1.TokenRequest) (*authv1.TokenRequest, error)
}

// Mounter mounts and unmounts tmpfs; the real one is SysMounter.
type Mounter interface {
	MountTmpfs(target string, sizeBytes int64) error
	Unmount(target string) error
	// MountPoints lists the mount points at or under dir.
	MountPoints(dir string) ([]string, error)
}

// Config configures a Manager.
type Config struct {
	// Root holds one directory per pod UID.
	Root string
	// Allocatable is the node's allocatable, which resourceFieldRef
	// reports for a limit a container does not set.
	Allocatable v1.ResourceList
}

// Deps are the Manager's collaborators.
type Deps struct {
	Objects Getter
	Mounter Mounter // default SysMounter
	Clock   clock.PassiveClock
}

// Mounted is a set-up volume: where it is on the node and whether the
// volume itself is read-only (payload volumes, readOnly claims).
type Mounted struct {
	Path     string
	ReadOnly bool
}

// Manager sets up and tears down pod volumes.
type Manager struct {
	root       string
	objects    Getter
	mounter    Mounter
	clock      clock.PassiveClock
	downwardRT downward.Runtime

	mu     sync.Mutex
	tokens map[tokenKey]cachedToken
	// static holds volumes whose setup is one-off (emptyDir, hostPath,
	// claims, tmpfs mounts) per pod, so later syncs skip it.
	static map[types.UID]map[string]Mounted
	// written is the digest of the payload last written to each payload
	// volume, so an unchanged one costs a hash, not a read of every file.
	written map[types.UID]map[string][sha256.Size]byte
}

type tokenKey struct {
	uid    types.UID
	volume string
	index  int
}

type cachedToken struct {
	token              string
	audience           string
	exp                int64
	refreshAt, expires time.Time
}

// New returns a Manager.
func New(cfg Config, deps Deps) (*Manager, error) {
	if cfg.Root == "" {
		return nil, errors.New("creating volume manager: root is required")
	}
	if deps.Objects == nil {
		return nil, errors.New("creating volume manager: an object getter is required")
	}
	if deps.Mounter == nil {
		deps.Mounter = SysMounter{}
	}
	if deps.Clock == nil {
		deps.Clock = clock.RealClock{}
	}
	return &Manager{
		root: cfg.Root, objects: deps.Objects, mounter: deps.Mounter, clock: deps.Clock,
		downwardRT: downward.Runtime{Allocatable: cfg.Allocatable},
		tokens:     map[tokenKey]cachedToken{}, static: map[types.UID]map[string]Mounted{},
		written: map[types.UID]map[string][sha256.Size]byte{},
	}, nil
}

// PodDir is the directory holding everything of pod uid.
func (m *Manager) PodDir(uid types.UID) string { return filepath.Join(m.root, string(uid)) }

func (m *Manager) volumeDir(uid types.UID, name string) string {
	return filepath.Join(m.PodDir(uid), "volumes", name)
}

// Setup makes every volume of pod ready and its payloads current. It is
// idempotent and cheap when nothing changed, so the kubelet calls it on
// every sync. refreshIn, when non-zero, is when a token needs renewing.
// Volumes that fail are left out of the result and their errors joined.
func (m *Manager) Setup(ctx context.Context, pod *v1.Pod) (vols map[string]Mounted, refreshIn time.Duration, err error) {
	vols = map[string]Mounted{}
	var errs []error
	for i := range pod.Spec.Volumes {
		v := &pod.Spec.Volumes[i]
		mv, err := m.setupOne(ctx, pod, v)
		if err != nil {
			errs = append(errs, fmt.Errorf("MountVolume.SetUp failed for volume %q: %w", v.Name, err))
			continue
		}
		vols[v.Name] = mv
	}
	now := m.clock.Now()
	m.mu.Lock()
	for k, t := range m.tokens {
		if k.uid != pod.UID {
			continue
		}
		if d := t.refreshAt.Sub(now); refreshIn == 0 || d < refreshIn {
			refreshIn = max(d, time.Second)
		}
	}
	m.mu.Unlock()
	return vols, refreshIn, errors.Join(errs...)
}

func (m *Manager) setupOne(ctx context.Context, pod *v1.Pod, v *v1.Volume) (Mounted, error) {
	m.mu.Lock()
	mv, done := m.static[pod.UID][v.Name]
	m.mu.Unlock()
	dir := m.volumeDir(pod.UID, v.Name)
	src := v.VolumeSource
	switch {
	case src.EmptyDir != nil, src.HostPath != nil, src.PersistentVolumeClaim != nil:
		if done {
			return mv, nil
		}
		var err error
		switch {
		case src.EmptyDir != nil:
			mv, err = m.emptyDir(dir, src.EmptyDir, fsGroup(pod))
		case src.HostPath != nil:
			mv, err = hostPath(src.HostPath.Path, src.HostPath.Type)
		default:
			mv, err = m.claim(ctx, pod, src.PersistentVolumeClaim)
		}
		if err != nil {
			return Mounted{}, err
		}
		m.remember(pod.UID, v.Name, mv)
		return mv, nil
	case src.ConfigMap != nil:
		s := src.ConfigMap
		files := map[string]File{}
		if err := m.configMapFiles(ctx, pod, files, s.Name, s.Items, modeOr(s.DefaultMode, defaultMode), isTrue(s.Optional)); err != nil {
			return Mounted{}, err
		}
		return m.payload(pod, v.Name, dir, files, false)
	case src.Secret != nil:
		s := src.Secret
		files := map[string]File{}
		if err := m.secretFiles(ctx, pod, files, s.SecretName, s.Items, modeOr(s.DefaultMode, defaultMode), isTrue(s.Optional)); err != nil {
			return Mounted{}, err
		}
		return m.payload(pod, v.Name, dir, files, true)
	case src.DownwardAPI != nil:
		files := map[string]File{}
		if err := m.downwardFiles(pod, files, src.DownwardAPI.Items, modeOr(src.DownwardAPI.DefaultMode, defaultMode)); err != nil {
			return Mounted{}, err
		}
		return m.payload(pod, v.Name, dir, files, false)
	case src.Projected != nil:
		files, err := m.projectedFiles(ctx, pod, v.Name, src.Projected)
		if err != nil {
			return Mounted{}, err
		}
		return m.payload(pod, v.Name, dir, files, true)
	}
	return Mounted{}, fmt.Errorf("unsupported volume type (skiff supports emptyDir, hostPath, configMap, secret, downwardAPI, projected and persistentVolumeClaim)")
}

func (m *Manager) remember(uid types.UID, name string, mv Mounted) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.static[uid] == nil {
		m.static[uid] = map[string]Mounted{}
	}
	m.static[uid][name] = mv
}

// payload writes files atomically into dir, on a tmpfs first when the
// volume holds secrets.
func (m *Manager) payload(pod *v1.Pod, name, dir string, files map[string]File, memory bool) (Mounted, error) {
	if memory {
		m.mu.Lock()
		_, mounted := m.static[pod.UID][name]
		m.mu.Unlock()
		if !mounted {
			if err := m.ensureTmpfs(dir, 0); err != nil {
				return Mounted{}, err
			}
			m.remember(pod.UID, name, Mounted{Path: dir, ReadOnly: true})
		}
	}
	gid := fsGroup(pod)
	sum := payloadDigest(files, gid)
	m.mu.Lock()
	last, ok := m.written[pod.UID][name]
	m.mu.Unlock()
	if ok && last == sum {
		return Mounted{Path: dir, ReadOnly: true}, nil
	}
	if _, err := writeAtomic(dir, files, gid); err != nil {
		return Mounted{}, err
	}
	m.mu.Lock()
	if m.written[pod.UID] == nil {
		m.written[pod.UID] = map[string][sha256.Size]byte{}
	}
	m.written[pod.UID][name] = sum
	m.mu.Unlock()
	return Mounted{Path: dir, ReadOnly: true}, nil
}

func payloadDigest(files map[string]File, gid int64) [sha256.Size]byte {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	h := sha256.New()
	fmt.Fprintf(h, "gid=%d\n", gid)
	for _, n := range names {
		f := files[n]
		fmt.Fprintf(h, "%q %o %d\n", n, f.Mode.Perm(), len(f.Data))
		h.Write(f.Data)
	}
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

// fsGroup is the pod's fsGroup, or -1.
func fsGroup(pod *v1.Pod) int64 {
	if sc := pod.Spec.SecurityContext; sc != nil && sc.FSGroup != nil {
		return *sc.FSGroup
	}
	return -1
}

func (m *Manager) ensureTmpfs(dir string, size int64) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating volume dir: %w", err)
	}
	mps, err := m.mounter.MountPoints(dir)
	if err != nil {
		return err
	}
	for _, mp := range mps {
		if mp == dir {
			return nil // mounted before an agent restart
		}
	}
	if err := m.mounter.MountTmpfs(dir, size); err != nil {
		return fmt.Errorf("mounting tmpfs: %w", err)
	}
	return nil
}

// emptyDir makes a world-writable directory (a tmpfs for medium Memory);
// with an fsGroup it belongs to that group and is setgid, so files the
// pod creates do too, as upstream.
func (m *Manager) emptyDir(dir string, e *v1.EmptyDirVolumeSource, gid int64) (Mounted, error) {
	mode := os.FileMode(0o777)
	if gid >= 0 {
		mode |= os.ModeSetgid
	}
	switch e.Medium {
	case v1.StorageMediumDefault:
		if err := os.MkdirAll(dir, 0o777); err != nil {
			return Mounted{}, fmt.Errorf("creating emptyDir: %w", err)
		}
		// Any user in the container may write to an emptyDir, as upstream.
		if err := os.Chmod(dir, mode); err != nil {
			return Mounted{}, fmt.Errorf("setting emptyDir mode: %w", err)
		}
	case v1.StorageMediumMemory:
		var size int64
		if e.SizeLimit != nil {
			size = e.SizeLimit.Value()
		}
		if err := m.ensureTmpfs(dir, size); err != nil {
			return Mounted{}, err
		}
		if err := os.Chmod(dir, mode); err != nil {
			return Mounted{}, fmt.Errorf("setting emptyDir mode: %w", err)
		}
	default:
		return Mounted{}, fmt.Errorf("emptyDir medium %q is not supported", e.Medium)
	}
	if gid >= 0 {
		if err := os.Chown(dir, -1, int(gid)); err != nil {
			return Mounted{}, fmt.Errorf("setting emptyDir group: %w", err)
		}
	}
	return Mounted{Path: dir}, nil
}

// hostPath checks (or creates) a node path according to its type.
func hostPath(p string, t *v1.HostPathType) (Mounted, error) {
	if !filepath.IsAbs(p) {
		return Mounted{}, fmt.Errorf("hostPath %q is not absolute", p)
	}
	typ := v1.HostPathUnset
	if t != nil {
		typ = *t
	}
	info, statErr := os.Stat(p)
	want := func(ok bool, what string) (Mounted, error) {
		if statErr != nil {
			return Mounted{}, fmt.Errorf("hostPath type check failed: %s is not a %s: %w", p, what, statErr)
		}
		if !ok {
			return Mounted{}, fmt.Errorf("hostPath type check failed: %s is not a %s", p, what)
		}
		return Mounted{Path: p}, nil
	}
	switch typ {
	case v1.HostPathUnset:
		return Mounted{Path: p}, nil
	case v1.HostPathDirectoryOrCreate:
		if errors.Is(statErr, fs.ErrNotExist) {
			if err := os.MkdirAll(p, 0o755); err != nil {
				return Mounted{}, fmt.Errorf("creating hostPath directory: %w", err)
			}
			return Mounted{Path: p}, nil
		}
		return want(statErr == nil && info.IsDir(), "directory")
	case v1.HostPathDirectory:
		return want(statErr == nil && info.IsDir(), "directory")
	case v1.HostPathFileOrCreate:
		if errors.Is(statErr, fs.ErrNotExist) {
			// As upstream, the parent directory must exist.
			f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
			if err != nil && !errors.Is(err, fs.ErrExist) {
				return Mounted{}, fmt.Errorf("creating hostPath file: %w", err)
			}
			if f != nil {
				f.Close()
			}
			return Mounted{Path: p}, nil
		}
		return want(statErr == nil && info.Mode().IsRegular(), "file")
	case v1.HostPathFile:
		return want(statErr == nil && info.Mode().IsRegular(), "file")
	case v1.HostPathSocket:
		return want(statErr == nil && info.Mode()&fs.ModeSocket != 0, "socket")
	case v1.HostPathCharDev:
		return want(statErr == nil && info.Mode()&fs.ModeCharDevice != 0, "character device")
	case v1.HostPathBlockDev:
		return want(statErr == nil && info.Mode()&fs.ModeDevice != 0 && info.Mode()&fs.ModeCharDevice == 0, "block device")
	}
	return Mounted{}, fmt.Errorf("unknown hostPath type %q", typ)
}

// claim resolves a bound claim to its hostPath or local volume.
func (m *Manager) claim(ctx context.Context, pod *v1.Pod, src *v1.PersistentVolumeClaimVolumeSource) (Mounted, error) {
	pvc, err := m.objects.PersistentVolumeClaim(ctx, pod.Namespace, src.ClaimName)
	if err != nil {
		return Mounted{}, fmt.Errorf("getting persistentvolumeclaim %q: %w", src.ClaimName, err)
	}
	if pvc.Spec.VolumeName == "" || pvc.Status.Phase != v1.ClaimBound {
		return Mounted{}, fmt.Errorf("persistentvolumeclaim %q is not bound", src.ClaimName)
	}
	pv, err := m.objects.PersistentVolume(ctx, pvc.Spec.VolumeName)
	if err != nil {
		return Mounted{}, fmt.Errorf("getting persistentvolume %q: %w", pvc.Spec.VolumeName, err)
	}
	if ref := pv.Spec.ClaimRef; ref != nil && ref.UID != "" && ref.UID != pvc.UID {
		return Mounted{}, fmt.Errorf("persistentvolume %q is bound to another claim", pv.Name)
	}
	var mv Mounted
	switch {
	case pv.Spec.HostPath != nil:
		mv, err = hostPath(pv.Spec.HostPath.Path, pv.Spec.HostPath.Type)
	case pv.Spec.Local != nil:
		mv, err = hostPath(pv.Spec.Local.Path, nil)
		if err == nil {
			if _, serr := os.Stat(mv.Path); serr != nil {
				err = fmt.Errorf("local volume path: %w", serr)
			}
		}
	default:
		return Mounted{}, fmt.Errorf("persistentvolume %q: only hostPath and local volumes are supported", pv.Name)
	}
	if err != nil {
		return Mounted{}, fmt.Errorf("persistentvolume %q: %w", pv.Name, err)
	}
	mv.ReadOnly = src.ReadOnly
	return mv, nil
}

// TearDown unmounts and removes everything of pod uid. It is safe to call
// for a pod it never saw (after an agent restart) and when nothing is left.
func (m *Manager) TearDown(uid types.UID) error {
	m.mu.Lock()
	delete(m.static, uid)
	delete(m.written, uid)
	for k := range m.tokens {
		if k.uid == uid {
			delete(m.tokens, k)
		}
	}
	m.mu.Unlock()
	dir := m.PodDir(uid)
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	mps, err := m.mounter.MountPoints(dir)
	if err != nil {
		return err
	}
	// Deepest first, so nested mounts come off before their parents.
	sort.Slice(mps, func(i, j int) bool { return len(mps[i]) > len(mps[j]) })
	for _, mp := range mps {
		if err := m.mounter.Unmount(mp); err != nil {
			return fmt.Errorf("unmounting %s: %w", mp, err)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("removing pod volume dir: %w", err)
	}
	return nil
}

// PodUIDs lists the pods that have a directory, for orphan cleanup.
func (m *Manager) PodUIDs() ([]types.UID, error) {
	ents, err := os.ReadDir(m.root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing pod volume dirs: %w", err)
	}
	out := make([]types.UID, 0, len(ents))
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, types.UID(e.Name()))
		}
	}
	return out, nil
}

// Mount is one bind mount of a container.
type Mount struct {
	HostPath, ContainerPath string
	ReadOnly                bool
	Propagation             v1.MountPropagationMode
}

// MountError is a volumeMount the pod spec gets wrong (unknown volume, bad
// subPath): a configuration error, not a node problem.
type MountError struct{ Msg string }

func (e *MountError) Error() string { return e.Msg }

// ContainerMounts turns c's volumeMounts into bind mounts. env expands
// subPathExpr. Missing subPath directories are created, as upstream; a
// subPath that resolves outside its volume (through ".." or a symlink) is
// refused.
func ContainerMounts(c *v1.Container, vols map[string]Mounted, env map[string]string) ([]Mount, error) {
	out := make([]Mount, 0, len(c.VolumeMounts))
	for _, vm := range c.VolumeMounts {
		v, ok := vols[vm.Name]
		if !ok {
			return nil, &MountError{Msg: fmt.Sprintf("volumeMount %q of container %q: volume not ready or not defined", vm.Name, c.Name)}
		}
		host := v.Path
		sub := vm.SubPath
		if vm.SubPathExpr != "" {
			sub = expandVars(vm.SubPathExpr, env)
		}
		if sub != "" {
			if err := checkSubPath(sub); err != nil {
				return nil, &MountError{Msg: fmt.Sprintf("volumeMount %q of container %q: %v", vm.Name, c.Name, err)}
			}
			full := filepath.Join(v.Path, sub)
			if _, err := os.Lstat(full); errors.Is(err, fs.ErrNotExist) && !v.ReadOnly {
				if err := os.MkdirAll(full, 0o755); err != nil {
					return nil, fmt.Errorf("creating subPath %q: %w", sub, err)
				}
			}
			resolved, err := filepath.EvalSymlinks(full)
			if err != nil {
				return nil, &MountError{Msg: fmt.Sprintf("volumeMount %q of container %q: subPath %q: %v", vm.Name, c.Name, sub, err)}
			}
			base, err := filepath.EvalSymlinks(v.Path)
			if err != nil {
				return nil, fmt.Errorf("resolving volume %q: %w", vm.Name, err)
			}
			if resolved != base && !strings.HasPrefix(resolved, base+string(filepath.Separator)) {
				return nil, &MountError{Msg: fmt.Sprintf("volumeMount %q of container %q: subPath %q resolves outside the volume", vm.Name, c.Name, sub)}
			}
			host = resolved
		}
		prop := v1.MountPropagationNone
		if vm.MountPropagation != nil {
			prop = *vm.MountPropagation
		}
		out = append(out, Mount{HostPath: host, ContainerPath: vm.MountPath, ReadOnly: vm.ReadOnly || v.ReadOnly, Propagation: prop})
	}
	return out, nil
}

func checkSubPath(p string) error {
	if filepath.IsAbs(p) {
		return fmt.Errorf("subPath %q must be relative", p)
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return fmt.Errorf("subPath %q must not contain '..'", p)
		}
	}
	return nil
}

// expandVars replaces $(VAR) with env values, leaving unknown references.
func expandVars(s string, env map[string]string) string {
	var b strings.Builder
	for {
		i := strings.Index(s, "$(")
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		j := strings.IndexByte(s[i:], ')')
		if j < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i])
		name := s[i+2 : i+j]
		if v, ok := env[name]; ok {
			b.WriteString(v)
		} else {
			b.WriteString(s[i : i+j+1])
		}
		s = s[i+j+1:]
	}
}

// SysMounter mounts with mount(2) and reads /proc/self/mountinfo.
type SysMounter struct{}

var _ Mounter = SysMounter{}

// MountTmpfs mounts a tmpfs at target, limited to sizeBytes when non-zero.
func (SysMounter) MountTmpfs(target string, sizeBytes int64) error {
	opts := "mode=0755"
	if sizeBytes > 0 {
		opts += fmt.Sprintf(",size=%d", sizeBytes)
	}
	if err := syscall.Mount("tmpfs", target, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, opts); err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", target, err)
	}
	return nil
}

// Unmount unmounts target; a mount that is already gone is not an error.
func (SysMounter) Unmount(target string) error {
	err := syscall.Unmount(target, 0)
	if err == syscall.EBUSY {
		// Something (a dying container's shim) still holds it: detach it
		// now, the kernel frees it when the last user goes.
		err = syscall.Unmount(target, syscall.MNT_DETACH)
	}
	if err != nil && err != syscall.EINVAL && err != syscall.ENOENT {
		return err
	}
	return nil
}

// MountPoints lists mount points at or under dir from /proc/self/mountinfo.
func (SysMounter) MountPoints(dir string) ([]string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("reading mountinfo: %w", err)
	}
	return mountPointsUnder(string(b), filepath.Clean(dir)), nil
}

// mountPointsUnder parses mountinfo text (mount point is the fifth field,
// with spaces and friends octal-escaped).
func mountPointsUnder(mountinfo, dir string) []string {
	var out []string
	for _, line := range strings.Split(mountinfo, "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeOctal(f[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	return out
}

func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			v := 0
			ok := true
			for _, c := range s[i+1 : i+4] {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + int(c-'0')
			}
			if ok {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
