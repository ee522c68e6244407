// Package leastallocated is the NodeResourcesLeastAllocated score: nodes
// with more free cpu and memory (after placing the pod) score higher.
// Requests use upstream's non-zero defaults so best-effort pods spread.
package leastallocated

import (
	"context"

	"skiff.dev/skiff/internal/scheduler/framework"
)

// Name is the plugin name.
const Name = "NodeResourcesLeastAllocated"

// LeastAllocated is the plugin.
type LeastAllocated struct{}

var _ framework.ScorePlugin = (*LeastAllocated)(nil)

// New builds the plugin.
func New(framework.Handle) (framework.Plugin, error) { return &LeastAllocated{}, nil }

func (*LeastAllocated) Name() string { return Name }

func free(requested, capacity int64) int64 {
	if capacity <= 0 || requested > capacity {
		return 0
	}
	return (capacity - requested) * framework.MaxNodeScore / capacity
}

// Score is the mean of cpu and memory free fractions, in [0, 100].
func (*LeastAllocated) Score(_ context.Context, _ *framework.CycleState, pi *framework.PodInfo, ni *framework.NodeInfo) (int64, *framework.Status) {
	cpu := free(ni.NonZeroCPU+pi.NonZeroCPU, ni.Allocatable.MilliCPU)
	mem := free(ni.NonZeroMem+pi.NonZeroMem, ni.Allocatable.Memory)
	return (cpu + mem) / 2, nil
}

func (*LeastAllocated) ScoreExtensions() framework.ScoreExtensions { return nil }
