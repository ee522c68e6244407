// Package framework is skiff's scheduling framework: the plugin extension
// points (PreFilter, Filter, PostFilter, PreScore, Score with
// NormalizeScore, Reserve/Unreserve, Permit, Bind), the Status type plugins
// answer with, the per-cycle CycleState, and the immutable-per-cycle view of
// the cluster (NodeInfo, PodInfo, Snapshot).
//
// Contract:
//   - "This node does not fit" is a *Status with code Unschedulable or
//     UnschedulableAndUnresolvable and human reasons; a nil *Status is
//     Success. Go errors are reserved for internal failures (code Error).
//   - Plugins never mutate the Snapshot or the pods in it; Filter and Score
//     may be called concurrently for different nodes and must only read
//     CycleState written in PreFilter/PreScore.
//   - Everything here is pure: no API calls, no clocks, no goroutines other
//     than the Parallelizer's, so plugins are tested against in-memory
//     snapshots built with NewSnapshot.
package framework
