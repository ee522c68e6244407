// Package volumetopology is a lite VolumeBinding: a pod whose
// PersistentVolumeClaim is bound to a PersistentVolume with
// spec.nodeAffinity (a local PV) fits only nodes that affinity selects.
//
// Not implemented yet: binding unbound WaitForFirstConsumer claims (they
// are ignored: the pod is scheduled as if it had no such claim) and
// capacity checks for dynamic provisioning.
package volumetopology

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"

	"skiff.dev/skiff/internal/scheduler/framework"
)

// Name is the plugin name.
const Name = "VolumeTopology"

// ErrReasonNodeConflict is upstream's VolumeBinding reason.
const ErrReasonNodeConflict = "node(s) had volume node affinity conflict"

const stateKey framework.StateKey = "PreFilter" + Name

type state struct{ selectors []*nodeaffinity.NodeSelector }

func (s *state) Clone() framework.StateData { return s }

// VolumeTopology is the plugin.
type VolumeTopology struct {
	pvcs corelisters.PersistentVolumeClaimLister
	pvs  corelisters.PersistentVolumeLister
}

var (
	_ framework.PreFilterPlugin   = (*VolumeTopology)(nil)
	_ framework.FilterPlugin      = (*VolumeTopology)(nil)
	_ framework.EnqueueExtensions = (*VolumeTopology)(nil)
)

// New builds the plugin from PVC and PV listers.
func New(pvcs corelisters.PersistentVolumeClaimLister, pvs corelisters.PersistentVolumeLister) *VolumeTopology {
	return &VolumeTopology{pvcs: pvcs, pvs: pvs}
}

func (*VolumeTopology) Name() string { return Name }

func (*VolumeTopology) EventsToRegister() []framework.ClusterEvent {
	return []framework.ClusterEvent{
		{Resource: framework.KindPersistentVolume, ActionType: framework.All},
		{Resource: framework.KindPersistentVolumeClaim, ActionType: framework.All},
		{Resource: framework.KindNode, ActionType: framework.Add | framework.UpdateNodeLabel},
	}
}

// PreFilter resolves the pod's claims to node selectors; Skip when the pod
// has no claims.
func (p *VolumeTopology) PreFilter(_ context.Context, cs *framework.CycleState, pi *framework.PodInfo, _ *framework.Snapshot) (*framework.PreFilterResult, *framework.Status) {
	st := &state{}
	hasClaims := false
	for _, vol := range pi.Pod.Spec.Volumes {
		if vol.PersistentVolumeClaim == nil {
			continue
		}
		hasClaims = true
		name := vol.PersistentVolumeClaim.ClaimName
		pvc, err := p.pvcs.PersistentVolumeClaims(pi.Pod.Namespace).Get(name)
		if apierrors.IsNotFound(err) {
			return nil, framework.NewStatus(framework.UnschedulableAndUnresolvable, fmt.Sprintf("persistentvolumeclaim %q not found", name))
		}
		if err != nil {
			return nil, framework.AsStatus(fmt.Errorf("getting pvc %s: %w", name, err))
		}
		if pvc.DeletionTimestamp != nil {
			return nil, framework.NewStatus(framework.UnschedulableAndUnresolvable, fmt.Sprintf("persistentvolumeclaim %q is being deleted", name))
		}
		if pvc.Spec.VolumeName == "" {
			continue // unbound: see the package comment
		}
		pv, err := p.pvs.Get(pvc.Spec.VolumeName)
		if apierrors.IsNotFound(err) {
			return nil, framework.NewStatus(framework.UnschedulableAndUnresolvable, fmt.Sprintf("persistentvolume %q not found", pvc.Spec.VolumeName))
		}
		if err != nil {
			return nil, framework.AsStatus(fmt.Errorf("getting pv %s: %w", pvc.Spec.VolumeName, err))
		}
		if pv.Spec.NodeAffinity == nil || pv.Spec.NodeAffinity.Required == nil {
			continue
		}
		sel, err := nodeaffinity.NewNodeSelector(pv.Spec.NodeAffinity.Required)
		if err != nil {
			return nil, framework.NewStatus(framework.UnschedulableAndUnresolvable, fmt.Sprintf("persistentvolume %q has an invalid node affinity: %v", pv.Name, err))
		}
		st.selectors = append(st.selectors, sel)
	}
	if !hasClaims {
		return nil, framework.NewStatus(framework.Skip)
	}
	cs.Write(stateKey, st)
	return nil, nil
}

func (*VolumeTopology) PreFilterExtensions() framework.PreFilterExtensions { return nil }

// Filter rejects nodes outside any bound PV's node affinity.
func (*VolumeTopology) Filter(_ context.Context, cs *framework.CycleState, _ *framework.PodInfo, ni *framework.NodeInfo) *framework.Status {
	d, ok := cs.Read(stateKey)
	if !ok {
		return nil
	}
	for _, sel := range d.(*state).selectors {
		if !sel.Match(ni.Node()) {
			return framework.NewStatus(framework.UnschedulableAndUnresolvable, ErrReasonNodeConflict)
		}
	}
	return nil
}
