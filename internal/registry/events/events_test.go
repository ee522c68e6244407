package events

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func fullEvent() *eventsv1.Event {
	ts := time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC)
	return &eventsv1.Event{
		ObjectMeta:               metav1.ObjectMeta{Name: "web.1", Namespace: "default", Labels: map[string]string{"a": "b"}},
		EventTime:                metav1.NewMicroTime(ts),
		Series:                   &eventsv1.EventSeries{Count: 3, LastObservedTime: metav1.NewMicroTime(ts.Add(time.Minute))},
		ReportingController:      "skiff.dev/scheduler",
		ReportingInstance:        "node-1",
		Action:                   "Binding",
		Reason:                   "Scheduled",
		Regarding:                corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: "web", UID: "u1", FieldPath: "spec.containers{c}"},
		Related:                  &corev1.ObjectReference{Kind: "Node", Name: "node-1"},
		Note:                     "assigned default/web to node-1",
		Type:                     corev1.EventTypeNormal,
		DeprecatedSource:         corev1.EventSource{Component: "scheduler", Host: "h"},
		DeprecatedFirstTimestamp: metav1.NewTime(ts),
		DeprecatedLastTimestamp:  metav1.NewTime(ts.Add(time.Minute)),
		DeprecatedCount:          3,
	}
}

func TestConversionRoundTrip(t *testing.T) {
	r := Resources()[0]
	if r.StorageGVR() != corev1.SchemeGroupVersion.WithResource("events") {
		t.Fatalf("storage = %v", r.StorageGVR())
	}
	in := fullEvent()
	stored, err := r.ToStorage(in)
	if err != nil {
		t.Fatal(err)
	}
	c := stored.(*corev1.Event)
	if c.Message != in.Note || c.InvolvedObject != in.Regarding || c.Source != in.DeprecatedSource || c.Count != 3 ||
		c.ReportingController != in.ReportingController || c.Series.Count != 3 || c.Related.Name != "node-1" ||
		!c.FirstTimestamp.Equal(&in.DeprecatedFirstTimestamp) || c.Action != "Binding" || c.Type != "Normal" {
		t.Errorf("bad core event: %+v", c)
	}
	back, err := r.FromStorage(stored)
	if err != nil {
		t.Fatal(err)
	}
	out := back.(*eventsv1.Event)
	out.TypeMeta = in.TypeMeta
	if !apiequality.Semantic.DeepEqual(in, out) {
		t.Errorf("round trip changed event:\n in %+v\nout %+v", in, out)
	}
	// The conversion must not alias the input.
	c.Labels["a"] = "changed"
	c.Related.Name = "other"
	if in.Labels["a"] != "b" || in.Related.Name != "node-1" {
		t.Errorf("conversion aliases its input")
	}
	// Core -> v1 -> core is lossless too.
	core := ToCore(fullEvent())
	if !apiequality.Semantic.DeepEqual(core, ToCore(FromCore(core))) {
		t.Errorf("core round trip not lossless")
	}
	if _, err := r.ToStorage(&corev1.Event{}); err == nil {
		t.Errorf("ToStorage accepted a core event")
	}
}

func TestValidation(t *testing.T) {
	r := Resources()[0]
	cases := []struct {
		name   string
		mutate func(*eventsv1.Event)
		want   string
	}{
		{"valid", func(*eventsv1.Event) {}, ""},
		{"no eventTime", func(e *eventsv1.Event) { e.EventTime = metav1.MicroTime{} }, "FieldValueRequired eventTime"},
		{"bad type", func(e *eventsv1.Event) { e.Type = "Info" }, "FieldValueInvalid type"},
		{"no controller", func(e *eventsv1.Event) { e.ReportingController = "" }, "FieldValueRequired reportingController"},
		{"no action", func(e *eventsv1.Event) { e.Action = "" }, "FieldValueRequired action"},
		{"long note", func(e *eventsv1.Event) { e.Note = strings.Repeat("x", 1025) }, "FieldValueInvalid note"},
		{"short series", func(e *eventsv1.Event) { e.Series.Count = 1 }, "FieldValueInvalid series.count"},
		{"foreign namespace", func(e *eventsv1.Event) { e.Regarding.Namespace = "other" }, "FieldValueInvalid regarding.namespace"},
	}
	for _, c := range cases {
		e := fullEvent()
		c.mutate(e)
		errs := r.Validate(e)
		if c.want == "" && len(errs) != 0 || c.want != "" && (len(errs) != 1 || string(errs[0].Type)+" "+errs[0].Field != c.want) {
			t.Errorf("%s: errs %v, want %q", c.name, errs, c.want)
		}
	}
	old := fullEvent()
	upd := fullEvent()
	upd.Note = "changed"
	upd.Series.Count = 4
	if errs := r.ValidateUpdate(upd, old); len(errs) != 0 {
		t.Errorf("note/series update rejected: %v", errs)
	}
	upd.Reason = "Other"
	if errs := r.ValidateUpdate(upd, old); len(errs) != 1 || errs[0].Field != "reason" {
		t.Errorf("reason update: %v", errs)
	}
}

func TestTableAndFields(t *testing.T) {
	r := Resources()[0]
	e := fullEvent()
	e.Series = nil
	e.DeprecatedCount = 0
	e.DeprecatedSource = corev1.EventSource{}
	e.DeprecatedFirstTimestamp = metav1.NewTime(time.Now().Add(-5 * time.Hour))
	e.DeprecatedLastTimestamp = metav1.Time{}
	row := r.TableRow(e)
	want := []interface{}{"5h", "Normal", "Scheduled", "pod/web", "spec.containers{c}", "skiff.dev/scheduler, node-1",
		"assigned default/web to node-1", "5h", int64(1), "web.1"}
	if len(row) != len(r.TableColumns) {
		t.Fatalf("row %v", row)
	}
	for i := range want {
		if row[i] != want[i] {
			t.Errorf("cell %d (%s) = %#v, want %#v", i, r.TableColumns[i].Name, row[i], want[i])
		}
	}
	f := r.SelectableFields(e)
	if f["involvedObject.name"] != "web" || f["regarding.kind"] != "Pod" || f["reason"] != "Scheduled" || f["type"] != "Normal" {
		t.Errorf("fields %v", f)
	}
}
