package core

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"skiff.dev/skiff/internal/registry"
)

func eventResource() *registry.Resource {
	return &registry.Resource{
		GroupVersion: corev1.SchemeGroupVersion,
		Resource:     "events", Singular: "event", Kind: "Event", ListKind: "EventList",
		Namespaced: true, ShortNames: []string{"ev"},
		New:      func() runtime.Object { return &corev1.Event{} },
		NewList:  func() runtime.Object { return &corev1.EventList{} },
		Validate: func(obj runtime.Object) field.ErrorList { return validateEvent(obj.(*corev1.Event)) },
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			return nil
		},
		TableColumns:     eventColumns,
		TableRow:         func(obj runtime.Object) []interface{} { return eventRow(obj.(*corev1.Event)) },
		SelectableFields: func(obj runtime.Object) fields.Set { return eventFields(obj.(*corev1.Event)) },
	}
}

func validateEvent(e *corev1.Event) field.ErrorList {
	var errs field.ErrorList
	nsPath := field.NewPath("involvedObject", "namespace")
	if e.InvolvedObject.Namespace == "" {
		// Events about cluster-scoped objects live in "default" (or no
		// namespace for old clients).
		if e.Namespace != metav1.NamespaceNone && e.Namespace != metav1.NamespaceDefault {
			errs = append(errs, field.Invalid(nsPath, e.InvolvedObject.Namespace, "does not match event.namespace"))
		}
	} else if e.Namespace != e.InvolvedObject.Namespace {
		errs = append(errs, field.Invalid(nsPath, e.InvolvedObject.Namespace, "does not match event.namespace"))
	}
	if !e.EventTime.IsZero() {
		// New-style events (those with eventTime, events.k8s.io semantics)
		// have stricter rules; client-go's record package fills
		// reportingController without eventTime or action, which upstream
		// accepts as a legacy event.
		if e.Type != corev1.EventTypeNormal && e.Type != corev1.EventTypeWarning {
			errs = append(errs, field.Invalid(field.NewPath("type"), e.Type, fmt.Sprintf("has invalid value: %v", e.Type)))
		}
		if e.Action == "" {
			errs = append(errs, field.Required(field.NewPath("action"), ""))
		}
		if e.Reason == "" {
			errs = append(errs, field.Required(field.NewPath("reason"), ""))
		}
	}
	return errs
}

func eventSource(e *corev1.Event) string {
	if e.Source.Component != "" {
		return e.Source.Component
	}
	return e.ReportingController
}

func eventFields(e *corev1.Event) fields.Set {
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
		"source":                         eventSource(e),
		"type":                           e.Type,
	}
}

var eventColumns = []metav1.TableColumnDefinition{
	{Name: "Last Seen", Type: "string", Description: corev1.Event{}.SwaggerDoc()["lastTimestamp"]},
	{Name: "Type", Type: "string", Description: corev1.Event{}.SwaggerDoc()["type"]},
	{Name: "Reason", Type: "string", Description: corev1.Event{}.SwaggerDoc()["reason"]},
	{Name: "Object", Type: "string", Description: corev1.Event{}.SwaggerDoc()["involvedObject"]},
	{Name: "Subobject", Type: "string", Priority: 1, Description: corev1.ObjectReference{}.SwaggerDoc()["fieldPath"]},
	{Name: "Source", Type: "string", Priority: 1, Description: corev1.Event{}.SwaggerDoc()["source"]},
	{Name: "Message", Type: "string", Description: corev1.Event{}.SwaggerDoc()["message"]},
	{Name: "First Seen", Type: "string", Priority: 1, Description: corev1.Event{}.SwaggerDoc()["firstTimestamp"]},
	{Name: "Count", Type: "string", Priority: 1, Description: corev1.Event{}.SwaggerDoc()["count"]},
	{Name: "Name", Type: "string", Priority: 1, Format: "name", Description: metav1.ObjectMeta{}.SwaggerDoc()["name"]},
}

func formatEventSource(e *corev1.Event) string {
	component, host := e.Source.Component, e.Source.Host
	if component == "" {
		component, host = e.ReportingController, e.ReportingInstance
	}
	parts := []string{component}
	if host != "" {
		parts = append(parts, host)
	}
	return strings.Join(parts, ", ")
}

func eventRow(e *corev1.Event) []interface{} {
	first := age(e.FirstTimestamp)
	if e.FirstTimestamp.IsZero() {
		first = age(metav1.Time{Time: e.EventTime.Time})
	}
	var last string
	switch {
	case e.Series != nil:
		last = age(metav1.Time{Time: e.Series.LastObservedTime.Time})
	case !e.LastTimestamp.IsZero():
		last = age(e.LastTimestamp)
	default:
		last = first
	}
	count := e.Count
	if e.Series != nil {
		count = e.Series.Count
	}
	target := strings.ToLower(e.InvolvedObject.Kind)
	if e.InvolvedObject.Name != "" {
		target += "/" + e.InvolvedObject.Name
	}
	return []interface{}{last, e.Type, e.Reason, target, e.InvolvedObject.FieldPath, formatEventSource(e),
		strings.TrimSpace(e.Message), first, int64(count), e.Name}
}
