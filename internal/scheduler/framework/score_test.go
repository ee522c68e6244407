package framework

import (
	"context"
	"fmt"
	"hash/fnv"
	"slices"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// hashScore scores a node by a hash of (salt, node, pod), raw values up
// to 1000 normalized down (norm) or already in range.
type hashScore struct {
	name string
	norm bool
	// skipPods: PreScore returns Skip for these pods.
	skipPods map[string]bool
	// failNode: Score fails on this node.
	failNode string
}

func (p *hashScore) Name() string { return p.name }

func (p *hashScore) PreScore(_ context.Context, _ *CycleState, pi *PodInfo, _ []*NodeInfo) *Status {
	if p.skipPods[pi.Pod.Name] {
		return NewStatus(Skip)
	}
	return nil
}

func (p *hashScore) Score(_ context.Context, _ *CycleState, pi *PodInfo, ni *NodeInfo) (int64, *Status) {
	if ni.Name() == p.failNode {
		return 0, AsStatus(fmt.Errorf("score of %s failed", ni.Name()))
	}
	h := fnv.New64a()
	fmt.Fprintf(h, "%s/%s/%s", p.name, ni.Name(), pi.Pod.Name)
	if p.norm {
		return int64(h.Sum64() % 1000), nil
	}
	return int64(h.Sum64() % uint64(MaxNodeScore+1)), nil
}

func (p *hashScore) ScoreExtensions() ScoreExtensions {
	if p.norm {
		return p
	}
	return nil
}

func (p *hashScore) NormalizeScore(_ context.Context, _ *CycleState, _ *PodInfo, scores []NodeScore) *Status {
	// A normalizing plugin may read the names (PodTopologySpread does):
	// they must be the nodes', in order (scoreNodes names node i node-i).
	for i, s := range scores {
		if want := fmt.Sprintf("node-%d", i); s.Name != want {
			return AsStatus(fmt.Errorf("plugin %s normalizing: score %d is named %q, not %q", p.name, i, s.Name, want))
		}
	}
	DefaultNormalizeScore(MaxNodeScore, false, scores)
	return nil
}

// namelessScore is a normalizing hashScore whose NormalizeScore declares
// it reads no names (its row is filled without them).
type namelessScore struct{ hashScore }

func (p *namelessScore) ScoreExtensions() ScoreExtensions { return p }
func (p *namelessScore) NormalizeScoreIgnoresNames()      {}
func (p *namelessScore) NormalizeScore(_ context.Context, _ *CycleState, _ *PodInfo, scores []NodeScore) *Status {
	DefaultNormalizeScore(MaxNodeScore, true, scores)
	return nil
}

func scoreNodes(n int) []*NodeInfo {
	out := make([]*NodeInfo, n)
	for i := range out {
		out[i] = &NodeInfo{}
		out[i].SetNode(&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("node-%d", i)}})
	}
	return out
}

// TestRunScorePluginsIntoReuse: scoring through one reused ScoreBuffers,
// with node counts and skipped plugins changing from call to call and a
// failed call in between, gives the totals fresh buffers give.
func TestRunScorePluginsIntoReuse(t *testing.T) {
	skip := map[string]bool{"pod-2": true, "pod-5": true}
	plugins := []Plugin{
		&hashScore{name: "a"},
		&hashScore{name: "b", norm: true, skipPods: skip},
		&hashScore{name: "c", norm: true},
		&namelessScore{hashScore{name: "d", norm: true}},
	}
	for _, workers := range []int{1, 2} {
		f := NewFramework(plugins, map[string]int64{"a": 2, "c": 3}, Parallelizer{Workers: workers})
		failing := NewFramework([]Plugin{&hashScore{name: "a"}, &hashScore{name: "x", failNode: "node-3"}}, nil, Parallelizer{Workers: workers})
		var buf ScoreBuffers
		for i, n := range []int{5, 400, 3, 0, 1, 400, 250, 9} {
			pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pod-%d", i)}}
			nodes := scoreNodes(n)
			if i == 4 {
				// A failing call leaves the buffers in use; the next call
				// must not see its leftovers.
				cs := NewCycleState()
				if _, st := failing.RunScorePluginsInto(t.Context(), cs, NewPodInfo(pod), scoreNodes(10), &buf); st.IsSuccess() {
					t.Fatal("failing plugin: no error")
				}
			}
			run := func(b *ScoreBuffers) []NodeScore {
				cs := NewCycleState()
				if st := f.RunPreScorePlugins(t.Context(), cs, NewPodInfo(pod), nodes); !st.IsSuccess() {
					t.Fatal(st.AsError())
				}
				got, st := f.RunScorePluginsInto(t.Context(), cs, NewPodInfo(pod), nodes, b)
				if !st.IsSuccess() {
					t.Fatal(st.AsError())
				}
				return slices.Clone(got)
			}
			want := run(&ScoreBuffers{})
			got := run(&buf)
			if !slices.Equal(got, want) {
				t.Fatalf("workers %d, call %d (%d nodes): reused buffers gave %v, fresh %v", workers, i, n, got, want)
			}
			if len(got) != n {
				t.Fatalf("call %d: %d totals for %d nodes", i, len(got), n)
			}
			for j, s := range got {
				if s.Name != nodes[j].Name() {
					t.Fatalf("call %d: total %d is %q, node %q", i, j, s.Name, nodes[j].Name())
				}
			}
		}
	}
}
