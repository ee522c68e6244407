package controller

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"strconv"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"
)

// testEvent is what a recorder makes for an event on a ReplicaSet.
func testEvent(clk *clocktesting.FakeClock, component, object, typ, reason, message string) *v1.Event {
	now := metav1.NewTime(clk.Now())
	return &v1.Event{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s.%x", object, now.UnixNano()), Namespace: "ns"},
		InvolvedObject: v1.ObjectReference{Kind: "ReplicaSet", Namespace: "ns", Name: object,
			UID: types.UID("uid-" + object), APIVersion: "apps/v1"},
		Reason: reason, Message: message, Type: typ,
		Source:         v1.EventSource{Component: component},
		FirstTimestamp: now, LastTimestamp: now, Count: 1,
	}
}

// fakeServer stores what the sink receives the way the API server would
// answer: the event with a resource version.
type fakeServer struct{ rv int }

func (s *fakeServer) store(e *v1.Event) *v1.Event {
	s.rv++
	out := e.DeepCopy()
	out.ResourceVersion = strconv.Itoa(s.rv)
	return out
}

// TestEventCorrelatorMatchesUpstream feeds the same random event streams
// (several objects and sources, repeated and distinct messages, time
// passing by seconds to tens of minutes, more objects than the caches
// hold) to client-go's EventCorrelator and to ours, and requires the same
// answer to every event: the same skips, events and patch bytes.
func TestEventCorrelatorMatchesUpstream(t *testing.T) {
	for seed := range uint64(6) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 42))
			clk := clocktesting.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
			upstream := record.NewEventCorrelator(clk)
			ours := NewEventCorrelator(clk)
			entries := eventCacheEntries
			var server fakeServer
			objects := 3 + int(seed)
			if seed == 5 {
				// More objects than the caches hold: both must
				// forget the same ones.
				entries, objects = 32, 200
				upstream = record.NewEventCorrelatorWithOptions(record.CorrelatorOptions{Clock: clk, LRUCacheSize: entries})
				ours = newEventCorrelator(clk, entries)
			}
			sent := 0
			for i := range 3000 {
				switch r := rng.IntN(100); {
				case r < 2:
					clk.Step(time.Duration(rng.IntN(900)) * time.Second)
				case r < 20:
					clk.Step(time.Duration(rng.IntN(2000)) * time.Millisecond)
				}
				obj := fmt.Sprint("rs-", rng.IntN(objects))
				if objects > entries && rng.IntN(2) == 0 {
					obj = "rs-0" // one busy object among many
				}
				component := []string{"replicaset-controller", "deployment-controller"}[rng.IntN(2)]
				reason, typ := SuccessfulCreatePodReason, v1.EventTypeNormal
				msg := fmt.Sprint("Created pod: ", obj, "-", i)
				switch rng.IntN(6) {
				case 0:
					reason, typ = FailedCreatePodReason, v1.EventTypeWarning
					msg = "Error creating: quota exceeded"
				case 1:
					reason = SuccessfulDeletePodReason
					msg = fmt.Sprint("Deleted pod: ", obj, "-", rng.IntN(3))
				}
				e := testEvent(clk, component, obj, typ, reason, msg)
				want, wantErr := upstream.EventCorrelate(e.DeepCopy())
				got, gotErr := ours.Correlate(e.DeepCopy())
				if (wantErr == nil) != (gotErr == nil) {
					t.Fatalf("event %d: error %v, upstream %v", i, gotErr, wantErr)
				}
				if got.Skip != want.Skip {
					t.Fatalf("event %d (%s %s): skip %v, upstream %v", i, obj, msg, got.Skip, want.Skip)
				}
				if want.Skip {
					continue
				}
				sent++
				if !reflect.DeepEqual(got.Event, want.Event) {
					t.Fatalf("event %d: sends\n%+v\nupstream\n%+v", i, got.Event, want.Event)
				}
				if !bytes.Equal(got.Patch, want.Patch) {
					t.Fatalf("event %d: patch %s, upstream %s", i, got.Patch, want.Patch)
				}
				// Most writes succeed and the server's answer
				// updates both; some fail and leave no state.
				if rng.IntN(10) > 0 {
					stored := server.store(want.Event)
					upstream.UpdateState(stored.DeepCopy())
					ours.UpdateState(stored.DeepCopy())
				}
			}
			if sent == 0 || sent == 3000 {
				t.Fatalf("%d of 3000 events sent: the stream does not exercise the filter", sent)
			}
			if n := ours.observedLen(); n > entries {
				t.Fatalf("%d observations held, want at most %d", n, entries)
			}
		})
	}
}

// TestEventCorrelatorSpamFilter: a source may send 25 events of a type
// about one object, then one every 5 minutes; another object, or another
// type, has its own budget;
// the event that passes after the refill carries the count of everything
// observed, dropped repeats included.
func TestEventCorrelatorSpamFilter(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	c := NewEventCorrelator(clk)
	var server fakeServer
	send := func(obj string, i int) *record.EventCorrelateResult {
		t.Helper()
		res, err := c.Correlate(testEvent(clk, "replicaset-controller", obj, v1.EventTypeNormal,
			SuccessfulCreatePodReason, fmt.Sprint("Created pod: ", obj, "-", i)))
		if err != nil {
			t.Fatal(err)
		}
		if !res.Skip {
			c.UpdateState(server.store(res.Event))
		}
		return res
	}
	passed := 0
	for i := range 100 {
		if !send("a", i).Skip {
			passed++
		}
	}
	if passed != eventSpamBurst {
		t.Fatalf("%d of 100 events on one object passed, want %d", passed, eventSpamBurst)
	}
	if send("b", 0).Skip {
		t.Fatal("first event on another object dropped: objects share a bucket")
	}
	if res, err := c.Correlate(testEvent(clk, "replicaset-controller", "a", v1.EventTypeWarning,
		FailedCreatePodReason, "Error creating: x")); err != nil || res.Skip {
		t.Fatalf("first warning on the object dropped (%v): event types share a bucket", err)
	}
	clk.Step(299 * time.Second)
	if !send("a", 100).Skip {
		t.Fatal("event passed before a token refilled")
	}
	clk.Step(2 * time.Second)
	res := send("a", 101)
	if res.Skip {
		t.Fatal("event dropped after a token refilled")
	}
	// Events 9..101 on "a" are one aggregate (the 10th similar event
	// starts it): 93 observations, the last of which is sent.
	if res.Event.Count != 93 || !bytes.Contains(res.Patch, []byte(`"count":93`)) {
		t.Fatalf("refilled event has count %d, patch %s; want 93", res.Event.Count, res.Patch)
	}
}

// fakeSink records the calls of an eventWriter and fails as told.
type fakeSink struct {
	calls     []string
	createErr []error
	patchErr  []error
}

func (s *fakeSink) next(errs *[]error) error {
	if len(*errs) == 0 {
		return nil
	}
	err := (*errs)[0]
	*errs = (*errs)[1:]
	return err
}

func (s *fakeSink) Create(e *v1.Event) (*v1.Event, error) {
	s.calls = append(s.calls, "create rv="+e.ResourceVersion)
	if err := s.next(&s.createErr); err != nil {
		return nil, err
	}
	out := e.DeepCopy()
	out.ResourceVersion = "1"
	return out, nil
}

func (s *fakeSink) Update(e *v1.Event) (*v1.Event, error) {
	return nil, errors.New("unexpected update")
}

func (s *fakeSink) Patch(e *v1.Event, _ []byte) (*v1.Event, error) {
	s.calls = append(s.calls, "patch "+e.Name)
	if err := s.next(&s.patchErr); err != nil {
		return nil, err
	}
	return e.DeepCopy(), nil
}

// TestEventWriterRetries: transport errors are retried, an API rejection
// is not, and a repeat whose stored event is gone is created again.
func TestEventWriterRetries(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	gr := schema.GroupResource{Resource: "events"}
	sink := &fakeSink{
		createErr: []error{errors.New("connection refused"), nil, apierrors.NewForbidden(gr, "x", errors.New("no"))},
		patchErr:  []error{apierrors.NewNotFound(gr, "rs-a.1")},
	}
	w := &eventWriter{sink: sink, correlator: NewEventCorrelator(clk), logger: slog.New(slog.DiscardHandler)}
	same := func() *v1.Event {
		return testEvent(clk, "c", "rs-a", v1.EventTypeWarning, FailedCreatePodReason, "Error creating: x")
	}
	w.write(t.Context(), same()) // fails once, then is created
	w.write(t.Context(), same()) // a repeat: patch, not found, created again, which is rejected
	w.write(t.Context(), same()) // the rejected create stored nothing: the repeat is patched again
	want := []string{"create rv=", "create rv=", "patch " + same().Name, "create rv=", "patch " + same().Name}
	if !reflect.DeepEqual(sink.calls, want) {
		t.Fatalf("sink calls %q, want %q", sink.calls, want)
	}
}
