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
//   - The Snapshot carries an Index (index.go): pods by label, nodes per
//     topology domain, existing pods' (anti-)affinity terms grouped and
//     counted per domain, and on-demand per-domain counters of pods matching
//     a selector. It is maintained incrementally by the only mutators of a
//     snapshot (SetNodeInfo/DeleteNodeInfo from the cache, AddPod from
//     benchmarks), so InterPodAffinity and PodTopologySpread pay
//     O(matching domains) per cycle instead of scanning every pod.
//   - Everything here is pure: no API calls, no clocks, no goroutines other
//     than the Parallelizer's, so plugins are tested against in-memory
//     snapshots built with NewSnapshot.
package framework
