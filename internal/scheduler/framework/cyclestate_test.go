package framework

import (
	"fmt"
	"sync"
	"testing"
)

type intState struct{ v int }

func (s *intState) Clone() StateData { c := *s; return &c }

// TestCycleStateReadWrite holds the slice-backed state to a map's
// semantics: last write wins, keys are independent, a key built at run
// time finds data written under an equal constant, and a clone is deep
// and unaffected by later writes to the original.
func TestCycleStateReadWrite(t *testing.T) {
	cs := NewCycleState()
	if _, ok := cs.Read("missing"); ok {
		t.Fatal("empty state returned data")
	}
	want := map[StateKey]int{}
	for i := 0; i < 12; i++ {
		k := StateKey(fmt.Sprintf("key-%d", i%7))
		cs.Write(k, &intState{i})
		want[k] = i
	}
	for k, v := range want {
		d, ok := cs.Read(StateKey(string([]byte(k)))) // equal, not identical, bytes
		if !ok || d.(*intState).v != v {
			t.Fatalf("Read(%q) = %v, %v; want %d", k, d, ok, v)
		}
	}
	if _, ok := cs.Read("key-7"); ok {
		t.Fatal("Read of a key never written succeeded")
	}
	c := cs.Clone()
	cs.Write("key-0", &intState{100})
	cs.Write("new", &intState{1})
	d, _ := c.Read("key-0")
	if d.(*intState).v != want["key-0"] {
		t.Fatalf("clone saw a later write: %d", d.(*intState).v)
	}
	if _, ok := c.Read("new"); ok {
		t.Fatal("clone saw a key written after it")
	}
	orig, _ := cs.Read("key-1")
	cl, _ := c.Read("key-1")
	if orig == cl {
		t.Fatal("clone shares its data with the original")
	}
}

// TestCycleStateConcurrentReads reads from many goroutines while a writer
// adds keys (run with -race): a reader sees either no data or the data
// written under its key.
func TestCycleStateConcurrentReads(t *testing.T) {
	cs := NewCycleState()
	cs.Write("a", &intState{1})
	var wg sync.WaitGroup
	for r := 0; r < 4; r++ {
		wg.Go(func() {
			for i := 0; i < 1000; i++ {
				if d, ok := cs.Read("a"); !ok || d.(*intState).v != 1 {
					t.Errorf("Read(a) = %v, %v", d, ok)
					return
				}
				if d, ok := cs.Read("b"); ok && d.(*intState).v != 2 {
					t.Errorf("Read(b) = %v", d)
					return
				}
			}
		})
	}
	for i := 0; i < 100; i++ {
		cs.Write("b", &intState{2})
		cs.Write(StateKey(fmt.Sprintf("k%d", i)), &intState{i})
	}
	wg.Wait()
}

// BenchmarkCycleStateRead is one Filter/Score read with a cycle's usual
// number of keys (go test -bench CycleStateRead -benchmem).
func BenchmarkCycleStateRead(b *testing.B) {
	cs := NewCycleState()
	keys := []StateKey{"PreFilterNodeAffinity", "PreScoreNodeAffinity", "PreFilterNodePorts", "PreFilterPodTopologySpread",
		"PreScorePodTopologySpread", "PreFilterInterPodAffinity", "PreScoreTaintToleration"}
	for i, k := range keys {
		cs.Write(k, &intState{i})
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, ok := cs.Read(keys[i%len(keys)]); !ok {
			b.Fatal("missing")
		}
	}
}
