package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/tools/record/util"
	"k8s.io/utils/clock"
	"k8s.io/utils/lru"
)

// client-go's record.EventCorrelator aggregates an event, then observes it
// (for a repeat: two JSON encodings of the event and a strategic merge
// patch between them) and only then asks its spam filter (a token bucket
// per source, involved object and event type: burst 25, one more every 5 minutes)
// whether to drop it. A ReplicaSet creating 10,000 pods records 10,000
// SuccessfulCreate events on one object, 25 of which reach the API
// server; building the patch of the 9,975 others was ~0.6 CPU-s per
// 10,000 pods. EventCorrelator below makes the same decisions with the
// filter asked first: a dropped event still updates the aggregation and
// the repeat count (so what is sent later carries upstream's counts), but
// no patch is built for it.

// Upstream's record.EventCorrelator defaults (client-go
// tools/record/events_cache.go), which the controller manager never
// changed.
const (
	eventCacheEntries      = 4096
	eventSpamBurst         = 25
	eventSpamQPS           = 1. / 300.
	eventAggregateMax      = 10
	eventAggregateInterval = 600 // seconds
)

// Upstream's recordToSink retry policy.
const (
	eventWriteTries = 12
	eventWriteSleep = 10 * time.Second
)

// EventCorrelator filters, aggregates and counts core/v1 events like
// record.NewEventCorrelator(clock): for every event it returns the same
// result (skip, or event and patch) as upstream's would after the same
// sequence of events and UpdateState calls.
type EventCorrelator struct {
	filter     *record.EventSourceObjectSpamFilter
	aggregator *record.EventAggregator

	mu sync.Mutex
	// observed is upstream's eventLogger: the last observation of each
	// event (or aggregate) key.
	observed *lru.Cache
}

// eventObservation is what the correlator remembers of an event it
// observed or the API server stored.
type eventObservation struct {
	count           uint
	firstTimestamp  metav1.Time
	name            string
	resourceVersion string
}

// NewEventCorrelator returns an EventCorrelator with upstream's default
// parameters, reading time from clk.
func NewEventCorrelator(clk clock.PassiveClock) *EventCorrelator {
	return newEventCorrelator(clk, eventCacheEntries)
}

// newEventCorrelator is NewEventCorrelator with caches of entries entries
// (upstream's CorrelatorOptions.LRUCacheSize).
func newEventCorrelator(clk clock.PassiveClock, entries int) *EventCorrelator {
	return &EventCorrelator{
		filter: record.NewEventSourceObjectSpamFilter(entries, eventSpamBurst, eventSpamQPS, clk, eventSpamKey),
		aggregator: record.NewEventAggregator(entries, record.EventAggregatorByReasonFunc,
			record.EventAggregatorByReasonMessageFunc, eventAggregateMax, eventAggregateInterval, clk),
		observed: lru.New(entries),
	}
}

// eventSpamKey groups events by source, involved object and type, as
// upstream's default spam key.
func eventSpamKey(e *v1.Event) string {
	return strings.Join([]string{
		e.Source.Component,
		e.Source.Host,
		e.InvolvedObject.Kind,
		e.InvolvedObject.Namespace,
		e.InvolvedObject.Name,
		string(e.InvolvedObject.UID),
		e.InvolvedObject.APIVersion,
		e.Type,
	}, "")
}

// eventKey identifies an exact event (everything but counts and times), as
// upstream's event logger keys the server's answers.
func eventKey(e *v1.Event) string {
	return strings.Join([]string{
		e.Source.Component,
		e.Source.Host,
		e.InvolvedObject.Kind,
		e.InvolvedObject.Namespace,
		e.InvolvedObject.Name,
		e.InvolvedObject.FieldPath,
		string(e.InvolvedObject.UID),
		e.InvolvedObject.APIVersion,
		e.Type,
		e.Reason,
		e.Message,
	}, "")
}

// Correlate decides what to send for e: Skip, or the event to create (or
// patch with Patch when its Count is above 1).
func (c *EventCorrelator) Correlate(e *v1.Event) (*record.EventCorrelateResult, error) {
	if e == nil {
		return nil, errors.New("correlating event: event is nil")
	}
	// Upstream filters the observed event, which has e's source and
	// involved object (aggregation and observation change neither), so
	// its spam key is e's: the decision can come first.
	drop := c.filter.Filter(e)
	aggregated, key := c.aggregator.EventAggregate(e)
	observed, patch, err := c.observe(aggregated, key, !drop)
	if drop {
		return &record.EventCorrelateResult{Skip: true}, nil
	}
	return &record.EventCorrelateResult{Event: observed, Patch: patch}, err
}

// observe records an occurrence of e under key and, when send is true,
// returns the event to send: for a repeat, e carrying the first
// occurrence's name, resource version and first timestamp and the next
// count, with the strategic merge patch from an empty repeat to it.
func (c *EventCorrelator) observe(e *v1.Event, key string, send bool) (*v1.Event, []byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var last eventObservation
	if v, ok := c.observed.Get(key); ok {
		last, _ = v.(eventObservation)
	}
	if last.count == 0 {
		c.observed.Add(key, eventObservation{uint(e.Count), e.FirstTimestamp, e.Name, e.ResourceVersion})
		if !send {
			return nil, nil, nil
		}
		out := *e
		return &out, nil, nil
	}
	c.observed.Add(key, eventObservation{last.count + 1, last.firstTimestamp, last.name, last.resourceVersion})
	if !send {
		return nil, nil, nil
	}
	out := *e
	out.Name = last.name
	out.ResourceVersion = last.resourceVersion
	out.FirstTimestamp = last.firstTimestamp
	out.Count = int32(last.count) + 1
	// The patch sets count, lastTimestamp and message on the stored
	// event: the difference between out and out without them.
	old := out
	old.Count = 0
	old.LastTimestamp = metav1.NewTime(time.Unix(0, 0))
	old.Message = ""
	newData, err := json.Marshal(&out)
	if err != nil {
		return &out, nil, fmt.Errorf("encoding event %s: %w", out.Name, err)
	}
	oldData, err := json.Marshal(&old)
	if err != nil {
		return &out, nil, fmt.Errorf("encoding event %s: %w", out.Name, err)
	}
	patch, err := strategicpatch.CreateTwoWayMergePatch(oldData, newData, &out)
	return &out, patch, err
}

// UpdateState remembers the event the API server stored (its name,
// resource version and count), so the next repeat patches it.
func (c *EventCorrelator) UpdateState(e *v1.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.observed.Add(eventKey(e), eventObservation{uint(e.Count), e.FirstTimestamp, e.Name, e.ResourceVersion})
}

// observedLen is the number of observations held (bounded by the cache
// size).
func (c *EventCorrelator) observedLen() int {
	return c.observed.Len()
}

// StartRecordingToSink is broadcaster.StartRecordingToSink(sink) with an
// EventCorrelator in place of client-go's: the same events, patches and
// retries reach sink, for less CPU per dropped event. It stops with ctx
// (or the broadcaster).
func StartRecordingToSink(ctx context.Context, broadcaster record.EventBroadcaster, sink record.EventSink, logger *slog.Logger) watch.Interface {
	w := &eventWriter{
		sink:       sink,
		correlator: NewEventCorrelator(clock.RealClock{}),
		logger:     logger,
		sleep:      eventWriteSleep,
	}
	if w.logger == nil {
		w.logger = slog.New(slog.DiscardHandler)
	}
	return broadcaster.StartEventWatcher(func(e *v1.Event) { w.write(ctx, e) })
}

// eventWriter sends correlated events to a sink, one at a time, retrying
// what the API server may accept later.
type eventWriter struct {
	sink       record.EventSink
	correlator *EventCorrelator
	logger     *slog.Logger
	sleep      time.Duration
}

func (w *eventWriter) write(ctx context.Context, e *v1.Event) {
	// Other watchers of the broadcaster see the same event: work on a
	// copy.
	cp := *e
	res, err := w.correlator.Correlate(&cp)
	if err != nil {
		w.logger.Error("correlating event", "err", err)
	}
	if res == nil || res.Skip {
		return
	}
	for tries := 1; ; tries++ {
		if w.send(res.Event, res.Patch) {
			return
		}
		if tries >= eventWriteTries {
			w.logger.Error("giving up writing event", "event", res.Event.Name, "reason", res.Event.Reason, "tries", tries)
			return
		}
		delay := w.sleep
		if tries == 1 {
			// A random first wait, so that clients do not retry
			// in step after an API server outage.
			delay = time.Duration(float64(delay) * rand.Float64())
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// send writes e (patching the stored event when it is a repeat) and
// reports whether it is done with it: written, or rejected for good.
func (w *eventWriter) send(e *v1.Event, patch []byte) bool {
	var stored *v1.Event
	var err error
	repeat := e.Count > 1
	if repeat {
		stored, err = w.sink.Patch(e, patch)
	}
	// The stored event may be gone (expired): create it again.
	if !repeat || util.IsKeyNotFoundError(err) {
		e.ResourceVersion = ""
		stored, err = w.sink.Create(e)
	}
	if err == nil {
		w.correlator.UpdateState(stored)
		return true
	}
	var construction *rest.RequestConstructionError
	var status *apierrors.StatusError
	switch {
	case errors.As(err, &construction):
		w.logger.Error("building event request, dropping the event", "event", e.Name, "err", err)
		return true
	case errors.As(err, &status):
		if !apierrors.IsAlreadyExists(err) && !apierrors.HasStatusCause(err, v1.NamespaceTerminatingCause) {
			w.logger.Error("API server rejected event, dropping it", "event", e.Name, "err", err)
		}
		return true
	}
	// Transport errors and unexpected answers: try again.
	w.logger.Error("writing event, will retry", "event", e.Name, "err", err)
	return false
}
