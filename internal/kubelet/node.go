package kubelet

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// As upstream's kubelet: status.images lists at most nodeStatusMaxImages
// images (its default), largest first, each with at most
// maxNamesPerImage names.
const (
	nodeStatusMaxImages = 50
	maxNamesPerImage    = 5
)

// nodeStatusReportInterval is how often an unchanged node status is
// written anyway, as upstream's nodeStatusReportFrequency: liveness is the
// Lease (renewed every 10 s), so the status's own heartbeat times only
// need to stay roughly current for readers that show them.
const nodeStatusReportInterval = 5 * time.Minute

// imageListTimeout bounds the CRI image listing of one status update.
const imageListTimeout = 10 * time.Second

// Machine is what the node reports about its host; readMachine fills it
// from /proc and friends, tests construct it.
type Machine struct {
	CPUs             int
	MemoryBytes      int64
	EphemeralBytes   int64
	KernelVersion    string
	OSImage          string
	MachineID        string
	BootID           string
	ContainerRuntime string // e.g. containerd://1.6.20
}

func readMachine(dataDir string) Machine {
	m := Machine{CPUs: runtime.NumCPU(), OSImage: "Linux"}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		s := bufio.NewScanner(f)
		for s.Scan() {
			if fs := strings.Fields(s.Text()); len(fs) >= 2 && fs[0] == "MemTotal:" {
				kb, _ := strconv.ParseInt(fs[1], 10, 64)
				m.MemoryBytes = kb * 1024
			}
		}
		f.Close()
	}
	var st syscall.Statfs_t
	if syscall.Statfs(dataDir, &st) == nil {
		m.EphemeralBytes = int64(st.Blocks) * st.Bsize
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.KernelVersion = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
				m.OSImage = strings.Trim(v, `"`)
			}
		}
	}
	if b, err := os.ReadFile("/etc/machine-id"); err == nil {
		m.MachineID = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/sys/kernel/random/boot_id"); err == nil {
		m.BootID = strings.TrimSpace(string(b))
	}
	return m
}

// Reserved is subtracted from capacity to give allocatable.
type Reserved struct {
	CPUMilli    int64
	MemoryBytes int64
}

// nodeStatus builds the node's status; pure.
func nodeStatus(m Machine, reserved Reserved, nodeIP, hostname string, port int32, maxPods int64, version string, now time.Time, old *v1.NodeStatus) v1.NodeStatus {
	capacity := v1.ResourceList{
		v1.ResourceCPU:              *resource.NewQuantity(int64(m.CPUs), resource.DecimalSI),
		v1.ResourceMemory:           *resource.NewQuantity(m.MemoryBytes, resource.BinarySI),
		v1.ResourceEphemeralStorage: *resource.NewQuantity(m.EphemeralBytes, resource.BinarySI),
		v1.ResourcePods:             *resource.NewQuantity(maxPods, resource.DecimalSI),
	}
	alloc := capacity.DeepCopy()
	alloc[v1.ResourceCPU] = *resource.NewMilliQuantity(max(0, int64(m.CPUs)*1000-reserved.CPUMilli), resource.DecimalSI)
	alloc[v1.ResourceMemory] = *resource.NewQuantity(max(0, m.MemoryBytes-reserved.MemoryBytes), resource.BinarySI)
	cond := func(t v1.NodeConditionType, s v1.ConditionStatus, reason, msg string) v1.NodeCondition {
		c := v1.NodeCondition{Type: t, Status: s, Reason: reason, Message: msg, LastHeartbeatTime: metav1.NewTime(now), LastTransitionTime: metav1.NewTime(now)}
		if old != nil {
			for _, o := range old.Conditions {
				if o.Type == t && o.Status == s {
					c.LastTransitionTime = o.LastTransitionTime
				}
			}
		}
		return c
	}
	s := v1.NodeStatus{
		Capacity:    capacity,
		Allocatable: alloc,
		Phase:       v1.NodeRunning,
		Conditions: []v1.NodeCondition{
			cond(v1.NodeMemoryPressure, v1.ConditionFalse, "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
			cond(v1.NodeDiskPressure, v1.ConditionFalse, "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
			cond(v1.NodePIDPressure, v1.ConditionFalse, "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
			cond(v1.NodeReady, v1.ConditionTrue, "KubeletReady", "kubelet is posting ready status"),
		},
		Addresses:       []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: nodeIP}, {Type: v1.NodeHostName, Address: hostname}},
		DaemonEndpoints: v1.NodeDaemonEndpoints{KubeletEndpoint: v1.DaemonEndpoint{Port: port}},
		NodeInfo: v1.NodeSystemInfo{
			MachineID:               m.MachineID,
			SystemUUID:              m.MachineID,
			BootID:                  m.BootID,
			KernelVersion:           m.KernelVersion,
			OSImage:                 m.OSImage,
			ContainerRuntimeVersion: m.ContainerRuntime,
			KubeletVersion:          version,
			KubeProxyVersion:        "",
			OperatingSystem:         runtime.GOOS,
			Architecture:            runtime.GOARCH,
		},
	}
	if old != nil {
		s.Images = old.Images
		s.VolumesInUse, s.VolumesAttached = old.VolumesInUse, old.VolumesAttached
	}
	return s
}

// nodeImages turns the runtime's images into status.images; pure. Names
// are the repo digests then the repo tags; images with neither (nothing
// can refer to them) are left out. Equal sizes are ordered by image ID so
// an unchanged set renders the same list every time.
func nodeImages(imgs []*runtimeapi.Image) []v1.ContainerImage {
	imgs = slices.Clone(imgs)
	slices.SortFunc(imgs, func(a, b *runtimeapi.Image) int {
		if a.GetSize() != b.GetSize() {
			if a.GetSize() > b.GetSize() {
				return -1
			}
			return 1
		}
		return strings.Compare(a.GetId(), b.GetId())
	})
	var out []v1.ContainerImage
	for _, img := range imgs {
		if len(out) == nodeStatusMaxImages {
			break
		}
		names := append(slices.Clone(img.GetRepoDigests()), img.GetRepoTags()...)
		if len(names) == 0 {
			continue
		}
		if len(names) > maxNamesPerImage {
			names = names[:maxNamesPerImage]
		}
		out = append(out, v1.ContainerImage{Names: names, SizeBytes: int64(img.GetSize())})
	}
	return out
}

// statusChanged reports whether next differs from old in anything but the
// conditions' heartbeat times.
func statusChanged(old, next *v1.NodeStatus) bool {
	strip := func(s *v1.NodeStatus) *v1.NodeStatus {
		c := s.DeepCopy()
		for i := range c.Conditions {
			c.Conditions[i].LastHeartbeatTime = metav1.Time{}
		}
		return c
	}
	return !equality.Semantic.DeepEqual(strip(old), strip(next))
}

// lastHeartbeat is the latest condition heartbeat in s (zero when none).
func lastHeartbeat(s *v1.NodeStatus) time.Time {
	var t time.Time
	for _, c := range s.Conditions {
		if c.LastHeartbeatTime.After(t) {
			t = c.LastHeartbeatTime.Time
		}
	}
	return t
}

// listImages asks the runtime for its images.
func (k *Kubelet) listImages(ctx context.Context) ([]v1.ContainerImage, error) {
	ctx, cancel := context.WithTimeout(ctx, imageListTimeout)
	defer cancel()
	resp, err := k.rt.img.ListImages(ctx, &runtimeapi.ListImagesRequest{})
	if err != nil {
		return nil, fmt.Errorf("listing images: %w", err)
	}
	return nodeImages(resp.GetImages()), nil
}

// registerNode creates the Node or, when it exists, refreshes its labels
// and status. The pod CIDR is only set at creation (it is immutable once
// set); the registered node's CIDR wins over the configured one.
func (k *Kubelet) registerNode(ctx context.Context) (*v1.Node, error) {
	nodes := k.client.CoreV1().Nodes()
	now := k.clock.Now()
	labels := map[string]string{
		v1.LabelHostname:   k.cfg.NodeName,
		v1.LabelOSStable:   runtime.GOOS,
		v1.LabelArchStable: runtime.GOARCH,
	}
	node, err := nodes.Get(ctx, k.cfg.NodeName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		node = &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: k.cfg.NodeName, Labels: labels}}
		if k.cfg.PodCIDR.IsValid() {
			node.Spec.PodCIDR = k.cfg.PodCIDR.String()
			node.Spec.PodCIDRs = []string{node.Spec.PodCIDR}
		}
		node, err = nodes.Create(ctx, node, metav1.CreateOptions{})
	}
	if err != nil {
		return nil, fmt.Errorf("registering node %s: %w", k.cfg.NodeName, err)
	}
	node = node.DeepCopy()
	changed := false
	if node.Labels == nil {
		node.Labels = map[string]string{}
	}
	for l, v := range labels {
		if node.Labels[l] != v {
			node.Labels[l], changed = v, true
		}
	}
	if changed {
		if node, err = nodes.Update(ctx, node, metav1.UpdateOptions{}); err != nil {
			return nil, fmt.Errorf("updating labels of node %s: %w", k.cfg.NodeName, err)
		}
	}
	return k.writeNodeStatus(ctx, node, now, true)
}

// updateNodeStatus is the periodic status update: it writes the node's
// status when it changed (conditions, images, addresses, ...) or when the
// last write is nodeStatusReportInterval old, and otherwise leaves the
// node alone.
func (k *Kubelet) updateNodeStatus(ctx context.Context, node *v1.Node, now time.Time) (*v1.Node, error) {
	return k.writeNodeStatus(ctx, node, now, false)
}

// writeNodeStatus computes the node's status and writes it (always when
// force), re-reading the node when another writer (the node IPAM
// controller setting spec.podCIDR, the node lifecycle controller) changed
// it in between. The image list comes from the runtime; when listing
// fails the reported images are kept.
func (k *Kubelet) writeNodeStatus(ctx context.Context, node *v1.Node, now time.Time, force bool) (*v1.Node, error) {
	images, ierr := k.listImages(ctx)
	if ierr != nil && ctx.Err() == nil {
		k.log.Warn("node status keeps its previous images", "err", ierr)
	}
	var out *v1.Node
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		next := node.DeepCopy()
		next.Status = nodeStatus(k.machine, k.cfg.Reserved, k.cfg.NodeIP, k.cfg.NodeName, k.cfg.KubeletPort, k.cfg.MaxPods, k.cfg.Version, now, &node.Status)
		if ierr == nil {
			next.Status.Images = images
		}
		if !force && !statusChanged(&node.Status, &next.Status) && now.Sub(lastHeartbeat(&node.Status)) < nodeStatusReportInterval {
			out = node
			return nil
		}
		var err error
		out, err = k.client.CoreV1().Nodes().UpdateStatus(ctx, next, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			if fresh, gerr := k.client.CoreV1().Nodes().Get(ctx, node.Name, metav1.GetOptions{}); gerr == nil {
				node = fresh
			}
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("updating status of node %s: %w", node.Name, err)
	}
	return out, nil
}

// renewLease creates or renews the node's Lease in kube-node-lease.
func (k *Kubelet) renewLease(ctx context.Context, nodeUID string) error {
	leases := k.client.CoordinationV1().Leases(v1.NamespaceNodeLease)
	name := k.cfg.NodeName
	now := metav1.NewMicroTime(k.clock.Now())
	dur := int32(40)
	l, err := leases.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = leases.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: v1.NamespaceNodeLease,
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: name, UID: types.UID(nodeUID)}}},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: &name, LeaseDurationSeconds: &dur, RenewTime: &now},
		}, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("creating lease: %w", err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("getting lease: %w", err)
	}
	l = l.DeepCopy()
	l.Spec.RenewTime, l.Spec.HolderIdentity, l.Spec.LeaseDurationSeconds = &now, &name, &dur
	if _, err := leases.Update(ctx, l, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("renewing lease: %w", err)
	}
	return nil
}
