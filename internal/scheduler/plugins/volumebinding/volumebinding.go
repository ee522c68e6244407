// Package volumebinding is skiff's VolumeBinding scheduler plugin: it
// places pods whose PersistentVolumeClaims tie them to nodes, and binds
// the claims of WaitForFirstConsumer classes for the chosen node, as
// upstream's plugin of the same name does.
//
//   - PreFilter sorts the pod's claims (including generic ephemeral
//     volumes' claims): bound ones contribute their volume's node affinity;
//     unbound ones of a WaitForFirstConsumer class are kept with the volumes
//     they could take; an unbound claim of any other class (Immediate) makes
//     the pod wait for the PV binder ("pod has unbound immediate
//     PersistentVolumeClaims").
//   - Filter rejects a node outside a bound volume's node affinity ("node(s)
//     had volume node affinity conflict") and a node where some unbound
//     claim has neither a free matching volume with node affinity to it
//     nor a class that can provision there (provisioner set, not
//     kubernetes.io/no-provisioner, allowedTopologies admitting the node):
//     "node(s) didn't find available persistent volumes to bind". A claim
//     whose volume.kubernetes.io/selected-node is set fits only that node.
//   - Reserve records the node's decisions in an assume cache shared by
//     all cycles, so two pods never get the same volume.
//   - PreBind writes them: spec.claimRef on each chosen volume (the PV
//     binder then completes the binding) and the selected-node annotation
//     on each claim to provision (the local-path provisioner creates the
//     volume on that node); then it waits, up to BindTimeout, until every
//     claim is bound. Unreserve forgets the decisions.
//
// Listers are read-only and the cycle state is per pod; the assume cache
// is the plugin's only shared mutable state.
package volumebinding

import (
	"context"
	"fmt"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	storagelisters "k8s.io/client-go/listers/storage/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"

	"skiff.dev/skiff/internal/controller/volume"
	"skiff.dev/skiff/internal/scheduler/framework"
)

// Name is the plugin name.
const Name = "VolumeBinding"

// Upstream's reasons.
const (
	ErrReasonNodeConflict     = "node(s) had volume node affinity conflict"
	ErrReasonBindConflict     = "node(s) didn't find available persistent volumes to bind"
	ErrReasonPVNotExist       = "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)"
	ErrReasonUnboundImmediate = "pod has unbound immediate PersistentVolumeClaims"
)

// DefaultBindTimeout is how long PreBind waits for claims to bind
// (upstream's bindTimeoutSeconds default).
const DefaultBindTimeout = 10 * time.Minute

const stateKey framework.StateKey = "PreFilter" + Name

// Deps are the plugin's listers and client.
type Deps struct {
	Client  kubernetes.Interface
	PVCs    corelisters.PersistentVolumeClaimLister
	PVs     corelisters.PersistentVolumeLister
	Classes storagelisters.StorageClassLister
}

// Args tunes the plugin.
type Args struct {
	// BindTimeout bounds PreBind's wait for the claims to bind (default
	// DefaultBindTimeout).
	BindTimeout time.Duration
	// PollInterval is how often PreBind looks at the listers (default 100 ms).
	PollInterval time.Duration
}

// VolumeBinding is the plugin.
type VolumeBinding struct {
	deps   Deps
	args   Args
	assume *assumeCache
}

var (
	_ framework.PreFilterPlugin   = (*VolumeBinding)(nil)
	_ framework.FilterPlugin      = (*VolumeBinding)(nil)
	_ framework.ReservePlugin     = (*VolumeBinding)(nil)
	_ framework.PreBindPlugin     = (*VolumeBinding)(nil)
	_ framework.EnqueueExtensions = (*VolumeBinding)(nil)
)

// New builds the plugin.
func New(deps Deps, args Args) (*VolumeBinding, error) {
	if deps.PVCs == nil || deps.PVs == nil || deps.Classes == nil {
		return nil, fmt.Errorf("volume binding needs claim, volume and storage class listers")
	}
	if args.BindTimeout <= 0 {
		args.BindTimeout = DefaultBindTimeout
	}
	if args.PollInterval <= 0 {
		args.PollInterval = 100 * time.Millisecond
	}
	return &VolumeBinding{deps: deps, args: args, assume: newAssumeCache()}, nil
}

func (*VolumeBinding) Name() string { return Name }

func (*VolumeBinding) EventsToRegister() []framework.ClusterEvent {
	return []framework.ClusterEvent{
		{Resource: framework.KindPersistentVolume, ActionType: framework.All},
		{Resource: framework.KindPersistentVolumeClaim, ActionType: framework.All},
		{Resource: framework.KindStorageClass, ActionType: framework.All},
		{Resource: framework.KindNode, ActionType: framework.Add | framework.UpdateNodeLabel},
	}
}

// boundVolume is a bound claim's volume, with its compiled node affinity
// (nil: the volume does not exist).
type boundVolume struct {
	name string
	sel  *nodeaffinity.NodeSelector
	any  bool // no node affinity
}

// check returns the reason node cannot use the volume, or "".
func (bv boundVolume) check(node *v1.Node) string {
	switch {
	case bv.any:
		return ""
	case bv.sel == nil:
		return ErrReasonPVNotExist
	case !bv.sel.Match(node):
		return ErrReasonNodeConflict
	}
	return ""
}

// state is the pod's cycle state. byNode is written by concurrent Filter
// calls; reserved by Reserve and read by PreBind/Unreserve.
type state struct {
	bound   []boundVolume
	unbound []*claimToBind // WaitForFirstConsumer claims, smallest first

	mu       sync.Mutex
	byNode   map[string]*podVolumes
	reserved *podVolumes
}

// Clone shares the state: preemption's simulations never change volumes.
func (s *state) Clone() framework.StateData { return s }

// podClaims returns the names of the claims the pod uses, with an error
// status for an ephemeral volume whose claim the pod does not own.
func (p *VolumeBinding) podClaims(pod *v1.Pod) ([]*v1.PersistentVolumeClaim, *framework.Status) {
	var out []*v1.PersistentVolumeClaim
	for _, vol := range pod.Spec.Volumes {
		var name string
		switch {
		case vol.PersistentVolumeClaim != nil:
			name = vol.PersistentVolumeClaim.ClaimName
		case vol.Ephemeral != nil:
			name = pod.Name + "-" + vol.Name
		default:
			continue
		}
		pvc, err := p.deps.PVCs.PersistentVolumeClaims(pod.Namespace).Get(name)
		if apierrors.IsNotFound(err) {
			return nil, framework.NewStatus(framework.UnschedulableAndUnresolvable, fmt.Sprintf("persistentvolumeclaim %q not found", name))
		}
		if err != nil {
			return nil, framework.AsStatus(fmt.Errorf("getting persistentvolumeclaim %s: %w", name, err))
		}
		if pvc.DeletionTimestamp != nil {
			return nil, framework.NewStatus(framework.UnschedulableAndUnresolvable, fmt.Sprintf("persistentvolumeclaim %q is being deleted", name))
		}
		if vol.Ephemeral != nil && !metav1.IsControlledBy(pvc, pod) {
			return nil, framework.NewStatus(framework.UnschedulableAndUnresolvable,
				fmt.Sprintf("PVC %s/%s was not created for pod %s/%s (pod is not owner)", pvc.Namespace, pvc.Name, pod.Namespace, pod.Name))
		}
		out = append(out, pvc)
	}
	return out, nil
}

// PreFilter classifies the pod's claims; Skip when it has none.
func (p *VolumeBinding) PreFilter(_ context.Context, cs *framework.CycleState, pi *framework.PodInfo, _ *framework.Snapshot) (*framework.PreFilterResult, *framework.Status) {
	pod := pi.Pod
	claims, st := p.podClaims(pod)
	if st != nil {
		return nil, st
	}
	if len(claims) == 0 {
		return nil, framework.NewStatus(framework.Skip)
	}
	p.assume.prune(p.deps.PVs, p.deps.PVCs)
	s := &state{byNode: map[string]*podVolumes{}}
	var allPVs []*v1.PersistentVolume
	immediate := false
	for _, pvc := range claims {
		key := pvc.Namespace + "/" + pvc.Name
		volumeName := pvc.Spec.VolumeName
		assumed, isAssumed := p.assume.claim(key)
		if volumeName == "" && isAssumed && assumed.pv != "" {
			volumeName = assumed.pv
		}
		if volumeName != "" {
			bv, st := p.boundVolume(volumeName)
			if st != nil {
				return nil, st
			}
			s.bound = append(s.bound, bv)
			continue
		}
		class, err := p.claimClass(pvc)
		if err != nil {
			return nil, framework.AsStatus(err)
		}
		if class == nil || class.VolumeBindingMode == nil || *class.VolumeBindingMode != storagev1.VolumeBindingWaitForFirstConsumer {
			immediate = true
			continue
		}
		c := &claimToBind{pvc: pvc, class: class, selectedNode: pvc.Annotations[volume.AnnSelectedNode]}
		if c.selectedNode == "" && isAssumed {
			c.selectedNode = assumed.node
		}
		if c.selectedNode == "" {
			if allPVs == nil {
				allPVs, err = p.deps.PVs.List(labels.Everything())
				if err != nil {
					return nil, framework.AsStatus(fmt.Errorf("listing persistentvolumes: %w", err))
				}
			}
			c.candidates = buildCandidates(pvc, allPVs, p.assume.takenBy)
		}
		s.unbound = append(s.unbound, c)
	}
	if immediate {
		return nil, framework.NewStatus(framework.UnschedulableAndUnresolvable, ErrReasonUnboundImmediate)
	}
	sortClaims(s.unbound)
	cs.Write(stateKey, s)
	return nil, nil
}

func (p *VolumeBinding) boundVolume(name string) (boundVolume, *framework.Status) {
	pv, err := p.deps.PVs.Get(name)
	if apierrors.IsNotFound(err) {
		return boundVolume{name: name}, nil
	}
	if err != nil {
		return boundVolume{}, framework.AsStatus(fmt.Errorf("getting persistentvolume %s: %w", name, err))
	}
	if pv.Spec.NodeAffinity == nil || pv.Spec.NodeAffinity.Required == nil {
		return boundVolume{name: name, any: true}, nil
	}
	sel, err := nodeaffinity.NewNodeSelector(pv.Spec.NodeAffinity.Required)
	if err != nil {
		return boundVolume{}, framework.NewStatus(framework.UnschedulableAndUnresolvable,
			fmt.Sprintf("persistentvolume %q has an invalid node affinity: %v", name, err))
	}
	return boundVolume{name: name, sel: sel}, nil
}

// claimClass returns the claim's StorageClass; nil when it names none or
// one that does not exist (then the claim is treated as Immediate, as
// upstream).
func (p *VolumeBinding) claimClass(pvc *v1.PersistentVolumeClaim) (*storagev1.StorageClass, error) {
	name := ""
	if pvc.Spec.StorageClassName != nil {
		name = *pvc.Spec.StorageClassName
	}
	if name == "" {
		return nil, nil
	}
	sc, err := p.deps.Classes.Get(name)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("getting storageclass %s: %w", name, err)
	}
	return sc, nil
}

func (*VolumeBinding) PreFilterExtensions() framework.PreFilterExtensions { return nil }

func getState(cs *framework.CycleState) (*state, bool) {
	d, ok := cs.Read(stateKey)
	if !ok {
		return nil, false
	}
	s, ok := d.(*state)
	return s, ok
}

// Filter checks bound volumes' node affinity and finds volumes (or
// provisioning) for the unbound claims on this node.
func (p *VolumeBinding) Filter(_ context.Context, cs *framework.CycleState, _ *framework.PodInfo, ni *framework.NodeInfo) *framework.Status {
	s, ok := getState(cs)
	if !ok {
		return nil
	}
	node := ni.Node()
	var reasons []string
	for _, bv := range s.bound {
		if r := bv.check(node); r != "" {
			reasons = append(reasons, r)
			break
		}
	}
	if len(s.unbound) > 0 {
		pv, ok := findPodVolumes(s.unbound, node)
		if !ok {
			reasons = append(reasons, ErrReasonBindConflict)
		} else {
			s.mu.Lock()
			s.byNode[node.Name] = pv
			s.mu.Unlock()
		}
	}
	if len(reasons) > 0 {
		return framework.NewStatus(framework.UnschedulableAndUnresolvable, reasons...)
	}
	return nil
}

// Reserve assumes the chosen node's volume decisions.
func (p *VolumeBinding) Reserve(_ context.Context, cs *framework.CycleState, _ *v1.Pod, node string) *framework.Status {
	s, ok := getState(cs)
	if !ok || len(s.unbound) == 0 {
		return nil
	}
	s.mu.Lock()
	pv := s.byNode[node]
	s.mu.Unlock()
	if pv == nil {
		return framework.AsStatus(fmt.Errorf("no volume decisions for node %s", node))
	}
	// The listers may have moved since PreFilter: a volume taken meanwhile
	// sends the pod back to the queue.
	for _, b := range pv.bindings {
		cur, err := p.deps.PVs.Get(b.pv.Name)
		if err != nil || (cur.Spec.ClaimRef != nil && !boundTo(cur, b.pvc)) {
			return framework.NewStatus(framework.Unschedulable, fmt.Sprintf("persistentvolume %q is no longer available", b.pv.Name))
		}
	}
	if err := p.assume.assume(pv, node); err != nil {
		return framework.NewStatus(framework.Unschedulable, err.Error())
	}
	s.mu.Lock()
	s.reserved = pv
	s.mu.Unlock()
	return nil
}

// Unreserve forgets what Reserve assumed.
func (p *VolumeBinding) Unreserve(_ context.Context, cs *framework.CycleState, _ *v1.Pod, node string) {
	s, ok := getState(cs)
	if !ok {
		return
	}
	s.mu.Lock()
	pv := s.reserved
	s.reserved = nil
	s.mu.Unlock()
	if pv != nil {
		p.assume.revert(pv, node)
	}
}

// PreBind writes the reserved decisions and waits until every unbound
// claim of the pod is bound.
func (p *VolumeBinding) PreBind(ctx context.Context, cs *framework.CycleState, pod *v1.Pod, node string) *framework.Status {
	s, ok := getState(cs)
	if !ok || len(s.unbound) == 0 {
		return nil
	}
	s.mu.Lock()
	pv := s.reserved
	s.mu.Unlock()
	if pv == nil {
		return framework.AsStatus(fmt.Errorf("pod %s/%s has no reserved volumes", pod.Namespace, pod.Name))
	}
	for _, b := range pv.bindings {
		if err := p.preBindVolume(ctx, b); err != nil {
			return framework.AsStatus(err)
		}
	}
	for _, c := range pv.provisions {
		if err := p.selectNode(ctx, c, node); err != nil {
			return framework.AsStatus(err)
		}
	}
	claims := make([]*v1.PersistentVolumeClaim, 0, len(s.unbound))
	for _, c := range s.unbound {
		claims = append(claims, c.pvc)
	}
	var lastErr error
	err := wait.PollUntilContextTimeout(ctx, p.args.PollInterval, p.args.BindTimeout, true, func(context.Context) (bool, error) {
		done, err := p.allBound(claims, node)
		lastErr = err
		return done, err
	})
	if err != nil {
		if lastErr != nil {
			err = lastErr
		}
		return framework.AsStatus(fmt.Errorf("binding volumes of pod %s/%s: %w", pod.Namespace, pod.Name, err))
	}
	return nil
}

// preBindVolume sets the volume's claimRef to the claim, as upstream's
// binder does; the PV binder sees a pre-bound volume and binds the claim.
func (p *VolumeBinding) preBindVolume(ctx context.Context, b binding) error {
	pvs := p.deps.Client.CoreV1().PersistentVolumes()
	pv := b.pv.DeepCopy()
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if boundTo(pv, b.pvc) && pv.Spec.ClaimRef.UID == b.pvc.UID {
			return nil
		}
		if pv.Spec.ClaimRef != nil && !boundTo(pv, b.pvc) {
			return fmt.Errorf("persistentvolume %q was bound to %s/%s meanwhile", pv.Name, pv.Spec.ClaimRef.Namespace, pv.Spec.ClaimRef.Name)
		}
		if pv.Spec.ClaimRef == nil {
			metav1.SetMetaDataAnnotation(&pv.ObjectMeta, volume.AnnBoundByController, "yes")
		}
		pv.Spec.ClaimRef = &v1.ObjectReference{
			Kind: "PersistentVolumeClaim", APIVersion: "v1", Namespace: b.pvc.Namespace, Name: b.pvc.Name,
			UID: b.pvc.UID, ResourceVersion: b.pvc.ResourceVersion,
		}
		_, err := pvs.Update(ctx, pv, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			if cur, gerr := pvs.Get(ctx, pv.Name, metav1.GetOptions{}); gerr == nil {
				pv = cur
			}
		}
		if err != nil {
			return fmt.Errorf("pre-binding persistentvolume %s to claim %s/%s: %w", pv.Name, b.pvc.Namespace, b.pvc.Name, err)
		}
		return nil
	})
}

// selectNode records node in the claim's selected-node annotation, which
// asks the provisioner for a volume there.
func (p *VolumeBinding) selectNode(ctx context.Context, c *v1.PersistentVolumeClaim, node string) error {
	pvcs := p.deps.Client.CoreV1().PersistentVolumeClaims(c.Namespace)
	pvc := c.DeepCopy()
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if pvc.Annotations[volume.AnnSelectedNode] == node {
			return nil
		}
		if pvc.Spec.VolumeName != "" {
			return nil // bound meanwhile; allBound judges whether it fits
		}
		metav1.SetMetaDataAnnotation(&pvc.ObjectMeta, volume.AnnSelectedNode, node)
		_, err := pvcs.Update(ctx, pvc, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			if cur, gerr := pvcs.Get(ctx, pvc.Name, metav1.GetOptions{}); gerr == nil {
				pvc = cur
			}
		}
		if err != nil {
			return fmt.Errorf("selecting node %s for claim %s/%s: %w", node, c.Namespace, c.Name, err)
		}
		return nil
	})
}

// allBound reports whether every claim is bound to a volume that names it
// back; an error ends the wait (claim gone, or its provisioning moved to
// another node, so the pod must be scheduled again).
func (p *VolumeBinding) allBound(claims []*v1.PersistentVolumeClaim, node string) (bool, error) {
	for _, c := range claims {
		pvc, err := p.deps.PVCs.PersistentVolumeClaims(c.Namespace).Get(c.Name)
		if apierrors.IsNotFound(err) {
			return false, fmt.Errorf("persistentvolumeclaim %q was deleted", c.Name)
		}
		if err != nil {
			return false, fmt.Errorf("getting persistentvolumeclaim %s: %w", c.Name, err)
		}
		if pvc.UID != c.UID {
			return false, fmt.Errorf("persistentvolumeclaim %q was recreated", c.Name)
		}
		if pvc.Spec.VolumeName == "" {
			if sel := pvc.Annotations[volume.AnnSelectedNode]; sel != "" && sel != node {
				return false, fmt.Errorf("persistentvolumeclaim %q is being provisioned on node %s, not %s", c.Name, sel, node)
			}
			return false, nil
		}
		if !metav1.HasAnnotation(pvc.ObjectMeta, volume.AnnBindCompleted) {
			return false, nil
		}
		pv, err := p.deps.PVs.Get(pvc.Spec.VolumeName)
		if err != nil || !boundTo(pv, pvc) {
			return false, nil
		}
	}
	return true, nil
}
