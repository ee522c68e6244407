package scheduler

import (
	"time"

	v1 "k8s.io/api/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	policylisters "k8s.io/client-go/listers/policy/v1"
	storagelisters "k8s.io/client-go/listers/storage/v1"

	"skiff.dev/skiff/internal/scheduler/framework"
	"skiff.dev/skiff/internal/scheduler/plugins/balancedallocation"
	"skiff.dev/skiff/internal/scheduler/plugins/defaultbinder"
	"skiff.dev/skiff/internal/scheduler/plugins/defaultpreemption"
	"skiff.dev/skiff/internal/scheduler/plugins/interpodaffinity"
	"skiff.dev/skiff/internal/scheduler/plugins/leastallocated"
	"skiff.dev/skiff/internal/scheduler/plugins/nodeaffinity"
	"skiff.dev/skiff/internal/scheduler/plugins/nodename"
	"skiff.dev/skiff/internal/scheduler/plugins/nodeports"
	"skiff.dev/skiff/internal/scheduler/plugins/noderesourcesfit"
	"skiff.dev/skiff/internal/scheduler/plugins/nodeunschedulable"
	"skiff.dev/skiff/internal/scheduler/plugins/podtopologyspread"
	"skiff.dev/skiff/internal/scheduler/plugins/tainttoleration"
	"skiff.dev/skiff/internal/scheduler/plugins/volumebinding"
)

// PluginDeps are the listers plugins read; any may be nil, which disables
// what needs it (no PVC, PV or StorageClass lister: VolumeBinding is left
// out; no PDB lister: preemption ignores PDBs).
type PluginDeps struct {
	PVCs           corelisters.PersistentVolumeClaimLister
	PVs            corelisters.PersistentVolumeLister
	StorageClasses storagelisters.StorageClassLister
	// VolumeBindTimeout bounds VolumeBinding's wait in PreBind (0: its default).
	VolumeBindTimeout time.Duration
	PDBs              policylisters.PodDisruptionBudgetLister
	SpreadListers     podtopologyspread.Listers
	// DefaultConstraints for PodTopologySpread; nil means system defaults.
	DefaultConstraints []v1.TopologySpreadConstraint
	// DisablePreemption leaves DefaultPreemption out.
	DisablePreemption bool
	// Binder replaces DefaultBinder (benchmarks use a fake one).
	Binder framework.BindPlugin
}

// DefaultScoreWeights are upstream's default score weights.
var DefaultScoreWeights = map[string]int64{
	tainttoleration.Name:    3,
	nodeaffinity.Name:       2,
	podtopologyspread.Name:  2,
	interpodaffinity.Name:   2,
	leastallocated.Name:     1,
	balancedallocation.Name: 1,
}

// DefaultPlugins builds the default profile's plugins, in upstream's order
// (cheap filters first, so most nodes are rejected early).
func DefaultPlugins(h framework.Handle, deps PluginDeps) []framework.Plugin {
	must := func(p framework.Plugin, _ error) framework.Plugin { return p }
	ps := []framework.Plugin{
		must(nodeunschedulable.New(h)),
		must(nodename.New(h)),
		must(tainttoleration.New(h)),
		must(nodeaffinity.New(h)),
		must(nodeports.New(h)),
		must(noderesourcesfit.New(h)),
	}
	if deps.PVCs != nil && deps.PVs != nil && deps.StorageClasses != nil {
		ps = append(ps, must(volumebinding.New(
			volumebinding.Deps{Client: h.ClientSet(), PVCs: deps.PVCs, PVs: deps.PVs, Classes: deps.StorageClasses},
			volumebinding.Args{BindTimeout: deps.VolumeBindTimeout})))
	}
	ps = append(ps,
		podtopologyspread.New(h, podtopologyspread.Args{DefaultConstraints: deps.DefaultConstraints}, deps.SpreadListers),
		must(interpodaffinity.New(h)),
		must(leastallocated.New(h)),
		must(balancedallocation.New(h)),
	)
	if !deps.DisablePreemption {
		ps = append(ps, defaultpreemption.New(h, deps.PDBs))
	}
	if deps.Binder != nil {
		ps = append(ps, deps.Binder)
	} else {
		ps = append(ps, must(defaultbinder.New(h)))
	}
	return ps
}
