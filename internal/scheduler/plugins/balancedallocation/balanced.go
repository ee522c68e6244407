// Package balancedallocation is the NodeResourcesBalancedAllocation score:
// nodes whose cpu and memory utilisation (after placing the pod) are closer
// to each other score higher, so no resource is stranded. Like upstream it
// uses the real requests, not the non-zero scoring defaults.
package balancedallocation

import (
	"context"
	"math"

	"skiff.dev/skiff/internal/scheduler/framework"
)

// Name is the plugin name.
const Name = "NodeResourcesBalancedAllocation"

// BalancedAllocation is the plugin.
type BalancedAllocation struct{}

var _ framework.ScorePlugin = (*BalancedAllocation)(nil)

// New builds the plugin.
func New(framework.Handle) (framework.Plugin, error) { return &BalancedAllocation{}, nil }

func (*BalancedAllocation) Name() string { return Name }

func fraction(req, capacity int64) float64 {
	if capacity <= 0 {
		return 1
	}
	return min(float64(req)/float64(capacity), 1)
}

// Score is (1 - standard deviation of the utilisation fractions) * 100;
// for two resources the deviation is |cpu - mem| / 2.
func (*BalancedAllocation) Score(_ context.Context, _ *framework.CycleState, pi *framework.PodInfo, ni *framework.NodeInfo) (int64, *framework.Status) {
	cpu := fraction(ni.Requested.MilliCPU+pi.Requests.MilliCPU, ni.Allocatable.MilliCPU)
	mem := fraction(ni.Requested.Memory+pi.Requests.Memory, ni.Allocatable.Memory)
	std := math.Abs(cpu-mem) / 2
	return int64((1 - std) * float64(framework.MaxNodeScore)), nil
}

func (*BalancedAllocation) ScoreExtensions() framework.ScoreExtensions { return nil }
