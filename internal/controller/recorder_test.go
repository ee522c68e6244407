package controller

import (
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/tools/record/util"
)

// TestIsDNSSubdomain: the hand-written check accepts exactly what
// apimachinery's regular expression does, on every string of up to 6
// characters over an alphabet of each kind of character, and on lengths
// around the limit.
func TestIsDNSSubdomain(t *testing.T) {
	alphabet := []byte("a9-.A_")
	var check func(s []byte)
	n := 0
	check = func(s []byte) {
		want := len(validation.IsDNS1123Subdomain(string(s))) == 0
		if got := isDNSSubdomain(string(s)); got != want {
			t.Fatalf("%q: %v, apimachinery %v", s, got, want)
		}
		n++
		if len(s) == 6 {
			return
		}
		for _, c := range alphabet {
			check(append(s, c))
		}
	}
	check(nil)
	for _, l := range []int{62, 63, 64, 252, 253, 254, 300} {
		for _, s := range []string{strings.Repeat("a", l), strings.Repeat("ab.", l)[:l], "a" + strings.Repeat("-", l-2) + "b"} {
			want := len(validation.IsDNS1123Subdomain(s)) == 0
			if got := isDNSSubdomain(s); got != want {
				t.Fatalf("%d characters %q...: %v, apimachinery %v", len(s), s[:10], got, want)
			}
		}
	}
	if n < 50000 {
		t.Fatalf("only %d strings checked", n)
	}
}

// TestEventName: eventName is client-go's GenerateEventName: the same
// name when valid, a UUID when not.
func TestEventName(t *testing.T) {
	for _, ref := range []string{"web-abc", "a.b", "", "Web", "x-", strings.Repeat("a", 240), strings.Repeat("a", 236)} {
		for _, ts := range []int64{0, 1, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano(), -5} {
			got, want := eventName(ref, ts), util.GenerateEventName(ref, ts)
			_, gotErr := uuid.Parse(got)
			_, wantErr := uuid.Parse(want)
			if got != want && (gotErr != nil || wantErr != nil) {
				t.Errorf("%q at %d: %q, client-go %q", ref, ts, got, want)
			}
		}
	}
}

// TestEventRecorderMatchesUpstream: the events NewEventRecorder
// broadcasts are those of client-go's recorder for the same calls (names
// and times aside, which are the clock's), and the calls client-go
// refuses are refused.
func TestEventRecorderMatchesUpstream(t *testing.T) {
	broadcaster := record.NewBroadcaster(record.WithContext(t.Context()))
	defer broadcaster.Shutdown()
	got := make(chan *v1.Event, 100)
	broadcaster.StartEventWatcher(func(e *v1.Event) { got <- e })
	source := v1.EventSource{Component: "replicaset-controller", Host: "h"}
	upstream := broadcaster.NewRecorder(scheme.Scheme, source)
	ours := NewEventRecorder(broadcaster, scheme.Scheme, source, nil)
	if _, ok := ours.(*eventRecorder); !ok {
		t.Fatalf("NewEventRecorder fell back to %T for client-go's broadcaster", ours)
	}
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "web-abc", Namespace: "ns", UID: "u1", ResourceVersion: "7"}}
	node := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", UID: "u2"}}
	calls := []func(r record.EventRecorder){
		func(r record.EventRecorder) {
			r.Eventf(rs, v1.EventTypeNormal, "SuccessfulCreate", "Created pod: %v", "web-abc-x")
		},
		func(r record.EventRecorder) { r.Event(node, v1.EventTypeWarning, "Bad", "msg") },
		func(r record.EventRecorder) {
			r.AnnotatedEventf(rs, map[string]string{"a": "b"}, v1.EventTypeNormal, "R", "%d pods", 3)
		},
		func(r record.EventRecorder) { r.Eventf(rs, "Unknown", "R", "refused: bad type") },
		func(r record.EventRecorder) { r.Eventf(nil, v1.EventTypeNormal, "R", "refused: no object") },
	}
	next := func() *v1.Event {
		select {
		case e := <-got:
			return e
		case <-time.After(100 * time.Millisecond):
			return nil
		}
	}
	for i, call := range calls {
		call(upstream)
		want := next()
		call(ours)
		e := next()
		if (want == nil) != (e == nil) {
			t.Fatalf("call %d: event %v, client-go's %v", i, e, want)
		}
		if want == nil {
			continue
		}
		if e.Name != e.InvolvedObject.Name+"."+strconv.FormatInt(e.FirstTimestamp.UnixNano(), 16) {
			t.Errorf("call %d: name %q at %v", i, e.Name, e.FirstTimestamp)
		}
		for _, ev := range []*v1.Event{e, want} {
			ev.Name, ev.FirstTimestamp, ev.LastTimestamp = "", metav1.Time{}, metav1.Time{}
		}
		if !reflect.DeepEqual(e, want) {
			t.Errorf("call %d: event\n%+v\nclient-go's\n%+v", i, e, want)
		}
	}
}
