// Package events holds the registry descriptor for events.k8s.io/v1 events.
// They share storage with core/v1 events (StorageResource {"" v1 events}),
// so an event written through either API is visible through both.
//
// Contract: ToStorage/FromStorage convert losslessly between
// events.k8s.io/v1 Event and core/v1 Event with upstream's field mapping
// (note<->message, regarding<->involvedObject, deprecatedSource<->source,
// deprecatedFirstTimestamp/LastTimestamp/Count<->firstTimestamp/
// lastTimestamp/count, reportingController<->reportingComponent, the rest by
// name). Validation applies upstream's stricter events.k8s.io/v1 rules;
// field paths use the events.k8s.io/v1 names the client sent. The table is
// upstream's event table (LAST SEEN TYPE REASON OBJECT MESSAGE + wide).
package events

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"skiff.dev/skiff/internal/registry"
	"skiff.dev/skiff/internal/registry/printing"
)

const (
	maxNoteLength  = 1024
	maxFieldLength = 128
)

// Resources returns the events.k8s.io/v1 resources.
func Resources() []*registry.Resource {
	return []*registry.Resource{{
		GroupVersion: eventsv1.SchemeGroupVersion,
		Resource:     "events", Singular: "event", Kind: "Event", ListKind: "EventList",
		Namespaced: true, ShortNames: []string{"ev"},
		New:             func() runtime.Object { return &eventsv1.Event{} },
		NewList:         func() runtime.Object { return &eventsv1.EventList{} },
		StorageResource: corev1.SchemeGroupVersion.WithResource("events"),
		ToStorage: func(obj runtime.Object) (runtime.Object, error) {
			e, ok := obj.(*eventsv1.Event)
			if !ok {
				return nil, fmt.Errorf("converting to core/v1 event: unexpected type %T", obj)
			}
			return ToCore(e), nil
		},
		FromStorage: func(obj runtime.Object) (runtime.Object, error) {
			e, ok := obj.(*corev1.Event)
			if !ok {
				return nil, fmt.Errorf("converting from core/v1 event: unexpected type %T", obj)
			}
			return FromCore(e), nil
		},
		Validate: func(obj runtime.Object) field.ErrorList { return validate(obj.(*eventsv1.Event)) },
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			return validateUpdate(obj.(*eventsv1.Event), old.(*eventsv1.Event))
		},
		TableColumns: []metav1.TableColumnDefinition{
			printing.Column("Last Seen", "string", "Time when last event occurred"),
			printing.Column("Type", "string", "Type of this event (Normal, Warning), new types could be added in the future."),
			printing.Column("Reason", "string", "This should be a short, machine understandable string that gives the reason for this event being generated."),
			printing.Column("Object", "string", "The object this event is about."),
			printing.Wide("Subobject", "string", "The field of the object this event is about."),
			printing.Wide("Source", "string", "The component reporting this event."),
			printing.Column("Message", "string", "A human-readable description of the status of this operation."),
			printing.Wide("First Seen", "string", "Time when first event occurred"),
			printing.Wide("Count", "integer", "The number of times this event has occurred."),
			{Name: "Name", Type: "string", Format: "name", Priority: 1, Description: "Name must be unique within a namespace."},
		},
		TableRow: func(obj runtime.Object) []interface{} { return row(ToCore(obj.(*eventsv1.Event))) },
		SelectableFields: func(obj runtime.Object) fields.Set {
			switch e := obj.(type) {
			case *eventsv1.Event:
				return selectable(ToCore(e))
			case *corev1.Event:
				return selectable(e)
			}
			return nil
		},
	}}
}

// ToCore converts an events.k8s.io/v1 Event to its core/v1 storage form.
func ToCore(e *eventsv1.Event) *corev1.Event {
	out := &corev1.Event{
		TypeMeta:            metav1.TypeMeta{APIVersion: "v1", Kind: "Event"},
		ObjectMeta:          *e.ObjectMeta.DeepCopy(),
		InvolvedObject:      e.Regarding,
		Reason:              e.Reason,
		Message:             e.Note,
		Source:              e.DeprecatedSource,
		FirstTimestamp:      e.DeprecatedFirstTimestamp,
		LastTimestamp:       e.DeprecatedLastTimestamp,
		Count:               e.DeprecatedCount,
		Type:                e.Type,
		EventTime:           e.EventTime,
		Action:              e.Action,
		ReportingController: e.ReportingController,
		ReportingInstance:   e.ReportingInstance,
	}
	if e.Series != nil {
		out.Series = &corev1.EventSeries{Count: e.Series.Count, LastObservedTime: e.Series.LastObservedTime}
	}
	if e.Related != nil {
		r := *e.Related
		out.Related = &r
	}
	return out
}

// FromCore converts a stored core/v1 Event to events.k8s.io/v1.
func FromCore(e *corev1.Event) *eventsv1.Event {
	out := &eventsv1.Event{
		TypeMeta:                 metav1.TypeMeta{APIVersion: eventsv1.SchemeGroupVersion.String(), Kind: "Event"},
		ObjectMeta:               *e.ObjectMeta.DeepCopy(),
		EventTime:                e.EventTime,
		ReportingController:      e.ReportingController,
		ReportingInstance:        e.ReportingInstance,
		Action:                   e.Action,
		Reason:                   e.Reason,
		Regarding:                e.InvolvedObject,
		Note:                     e.Message,
		Type:                     e.Type,
		DeprecatedSource:         e.Source,
		DeprecatedFirstTimestamp: e.FirstTimestamp,
		DeprecatedLastTimestamp:  e.LastTimestamp,
		DeprecatedCount:          e.Count,
	}
	if e.Series != nil {
		out.Series = &eventsv1.EventSeries{Count: e.Series.Count, LastObservedTime: e.Series.LastObservedTime}
	}
	if e.Related != nil {
		r := *e.Related
		out.Related = &r
	}
	return out
}

func validate(e *eventsv1.Event) field.ErrorList {
	var errs field.ErrorList
	if e.EventTime.IsZero() {
		errs = append(errs, field.Required(field.NewPath("eventTime"), ""))
	}
	if e.Type != corev1.EventTypeNormal && e.Type != corev1.EventTypeWarning {
		errs = append(errs, field.Invalid(field.NewPath("type"), "", fmt.Sprintf("has invalid value: %v", e.Type)))
	}
	if e.ReportingController == "" {
		errs = append(errs, field.Required(field.NewPath("reportingController"), ""))
	}
	for _, msg := range validation.IsQualifiedName(e.ReportingController) {
		if e.ReportingController != "" {
			errs = append(errs, field.Invalid(field.NewPath("reportingController"), e.ReportingController, msg))
		}
	}
	for _, f := range []struct{ name, v string }{
		{"reportingInstance", e.ReportingInstance}, {"action", e.Action}, {"reason", e.Reason}} {
		if f.v == "" {
			errs = append(errs, field.Required(field.NewPath(f.name), ""))
		} else if len(f.v) > maxFieldLength {
			errs = append(errs, field.Invalid(field.NewPath(f.name), "", fmt.Sprintf("can have at most %v characters", maxFieldLength)))
		}
	}
	if len(e.Note) > maxNoteLength {
		errs = append(errs, field.Invalid(field.NewPath("note"), "", fmt.Sprintf("can have at most %v characters", maxNoteLength)))
	}
	if e.Regarding.Namespace != "" && e.Namespace != "" && e.Regarding.Namespace != e.Namespace &&
		e.Regarding.Kind != "Node" && e.Regarding.Kind != "Namespace" {
		errs = append(errs, field.Invalid(field.NewPath("regarding", "namespace"), e.Regarding.Namespace, "does not match event.namespace"))
	}
	if s := e.Series; s != nil {
		if s.Count < 2 {
			errs = append(errs, field.Invalid(field.NewPath("series", "count"), "", "should be at least 2"))
		}
		if s.LastObservedTime.IsZero() {
			errs = append(errs, field.Required(field.NewPath("series", "lastObservedTime"), ""))
		}
	}
	return errs
}

// validateUpdate allows only series and note to change, as upstream does
// for events.k8s.io/v1 clients (metadata is validated generically).
func validateUpdate(n, o *eventsv1.Event) field.ErrorList {
	var errs field.ErrorList
	imm := func(nv, ov interface{}, name string) {
		errs = append(errs, apimachineryvalidation.ValidateImmutableField(nv, ov, field.NewPath(name))...)
	}
	imm(n.Regarding, o.Regarding, "regarding")
	imm(n.Reason, o.Reason, "reason")
	imm(n.DeprecatedSource, o.DeprecatedSource, "deprecatedSource")
	imm(n.DeprecatedFirstTimestamp, o.DeprecatedFirstTimestamp, "deprecatedFirstTimestamp")
	imm(n.DeprecatedLastTimestamp, o.DeprecatedLastTimestamp, "deprecatedLastTimestamp")
	imm(n.DeprecatedCount, o.DeprecatedCount, "deprecatedCount")
	imm(n.Type, o.Type, "type")
	imm(n.EventTime, o.EventTime, "eventTime")
	imm(n.Action, o.Action, "action")
	imm(n.Related, o.Related, "related")
	imm(n.ReportingController, o.ReportingController, "reportingController")
	imm(n.ReportingInstance, o.ReportingInstance, "reportingInstance")
	return errs
}

func selectable(e *corev1.Event) fields.Set {
	source := e.Source.Component
	if source == "" {
		source = e.ReportingController
	}
	return fields.Set{
		"involvedObject.kind":            e.InvolvedObject.Kind,
		"involvedObject.namespace":       e.InvolvedObject.Namespace,
		"involvedObject.name":            e.InvolvedObject.Name,
		"involvedObject.uid":             string(e.InvolvedObject.UID),
		"involvedObject.apiVersion":      e.InvolvedObject.APIVersion,
		"involvedObject.resourceVersion": e.InvolvedObject.ResourceVersion,
		"involvedObject.fieldPath":       e.InvolvedObject.FieldPath,
		"reason":                         e.Reason,
		"reportingComponent":             e.ReportingController,
		"source":                         source,
		"type":                           e.Type,
		"regarding.kind":                 e.InvolvedObject.Kind,
		"regarding.namespace":            e.InvolvedObject.Namespace,
		"regarding.name":                 e.InvolvedObject.Name,
		"regarding.uid":                  string(e.InvolvedObject.UID),
		"regarding.apiVersion":           e.InvolvedObject.APIVersion,
		"regarding.resourceVersion":      e.InvolvedObject.ResourceVersion,
		"regarding.fieldPath":            e.InvolvedObject.FieldPath,
		"reportingController":            e.ReportingController,
	}
}

func microAge(t metav1.MicroTime) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return printing.Age(metav1.NewTime(t.Time))
}

func row(e *corev1.Event) []interface{} {
	first := printing.Age(e.FirstTimestamp)
	if e.FirstTimestamp.IsZero() {
		first = microAge(e.EventTime)
	}
	last := printing.Age(e.LastTimestamp)
	if e.LastTimestamp.IsZero() {
		last = first
	}
	count := e.Count
	if e.Series != nil {
		last = microAge(e.Series.LastObservedTime)
		count = e.Series.Count
	} else if count == 0 {
		count = 1 // singleton events carry no count in the new API
	}
	target := strings.ToLower(e.InvolvedObject.Kind)
	if e.InvolvedObject.Name != "" {
		target += "/" + e.InvolvedObject.Name
	}
	component, instance := e.Source.Component, e.Source.Host
	if component == "" {
		component = e.ReportingController
	}
	if instance == "" {
		instance = e.ReportingInstance
	}
	source := component
	if instance != "" {
		source += ", " + instance
	}
	return []interface{}{last, e.Type, e.Reason, target, e.InvolvedObject.FieldPath, source,
		strings.TrimSpace(e.Message), first, int64(count), e.Name}
}
