package core

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
)

// now is the clock the table printers use for ages; tests override it.
var now = time.Now

// age renders the time since ts as kubectl does ("5m", "3d4h"), or
// "<unknown>" for a zero timestamp.
func age(ts metav1.Time) string {
	if ts.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(now().Sub(ts.Time))
}

// Column definitions every table shares.
var (
	nameColumn = metav1.TableColumnDefinition{Name: "Name", Type: "string", Format: "name",
		Description: metav1.ObjectMeta{}.SwaggerDoc()["name"]}
	ageColumn = metav1.TableColumnDefinition{Name: "Age", Type: "string",
		Description: metav1.ObjectMeta{}.SwaggerDoc()["creationTimestamp"]}
)

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}
