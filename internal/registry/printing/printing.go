// Package printing holds the small helpers the per-group registries share to
// render `kubectl get` tables the way upstream's printers do: column
// definitions for the NAME and AGE columns, ages, container/image cells and
// the "<none>"/"<unset>" placeholders.
//
// Contract: every function is pure except Age, which reads the wall clock;
// AgeAt takes the clock reading explicitly so tests stay deterministic.
package printing

import (
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
)

// NameColumn is the first column of nearly every table.
func NameColumn() metav1.TableColumnDefinition {
	return metav1.TableColumnDefinition{Name: "Name", Type: "string", Format: "name",
		Description: "Name must be unique within a namespace."}
}

// AgeColumn renders creationTimestamp as a relative age.
func AgeColumn() metav1.TableColumnDefinition {
	return metav1.TableColumnDefinition{Name: "Age", Type: "string",
		Description: "CreationTimestamp is a timestamp representing the server time when this object was created."}
}

// Column is a column shown by plain `kubectl get`.
func Column(name, typ, description string) metav1.TableColumnDefinition {
	return metav1.TableColumnDefinition{Name: name, Type: typ, Description: description}
}

// Wide is a column shown only by `kubectl get -o wide` (priority 1).
func Wide(name, typ, description string) metav1.TableColumnDefinition {
	return metav1.TableColumnDefinition{Name: name, Type: typ, Priority: 1, Description: description}
}

// ContainerColumns are the CONTAINERS and IMAGES wide columns of workloads.
func ContainerColumns() []metav1.TableColumnDefinition {
	return []metav1.TableColumnDefinition{
		Wide("Containers", "string", "Names of each container in the template."),
		Wide("Images", "string", "Images referenced by each container in the template."),
	}
}

// Age renders the time elapsed since t like upstream's translateTimestampSince.
func Age(t metav1.Time) string { return AgeAt(t, time.Now()) }

// AgeAt is Age with an explicit clock reading.
func AgeAt(t metav1.Time, now time.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(now.Sub(t.Time))
}

// ContainerCells joins container names and images with commas.
func ContainerCells(containers []corev1.Container) (names, images string) {
	n := make([]string, 0, len(containers))
	im := make([]string, 0, len(containers))
	for _, c := range containers {
		n = append(n, c.Name)
		im = append(im, c.Image)
	}
	return strings.Join(n, ","), strings.Join(im, ",")
}

// BoolPtr renders an optional boolean as upstream does ("<unset>", "True", "False").
func BoolPtr(b *bool) string {
	if b == nil {
		return "<unset>"
	}
	if *b {
		return "True"
	}
	return "False"
}

// ListWithMore joins up to max items and summarises the rest as
// "a,b,c + N more...", or returns "<unset>" for an empty list.
func ListWithMore(items []string, max int) string {
	if len(items) == 0 {
		return "<unset>"
	}
	if len(items) <= max {
		return strings.Join(items, ",")
	}
	return strings.Join(items[:max], ",") + " + " + strconv.Itoa(len(items)-max) + " more..."
}
