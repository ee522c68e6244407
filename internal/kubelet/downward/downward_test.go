package downward

import (
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestPodField(t *testing.T) {
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u1", Labels: map[string]string{"b": "2", "a": `say "hi"`}, Annotations: map[string]string{"x": "y"}},
		Spec:       v1.PodSpec{NodeName: "n1", ServiceAccountName: "sa"},
	}
	rt := Runtime{PodIPs: []string{"10.0.0.1", "fd00::1"}, HostIP: "192.0.2.1"}
	for path, want := range map[string]string{
		"metadata.name":             "p",
		"metadata.namespace":        "ns",
		"metadata.uid":              "u1",
		"metadata.labels['b']":      "2",
		"metadata.annotations['x']": "y",
		"metadata.labels":           "a=\"say \\\"hi\\\"\"\nb=\"2\"",
		"spec.nodeName":             "n1",
		"spec.serviceAccountName":   "sa",
		"status.podIP":              "10.0.0.1",
		"status.podIPs":             "10.0.0.1,fd00::1",
		"status.hostIP":             "192.0.2.1",
	} {
		got, err := PodField(pod, path, rt)
		if err != nil || got != want {
			t.Errorf("%s = %q, %v; want %q", path, got, err, want)
		}
	}
	if _, err := PodField(pod, "spec.nope", rt); err == nil {
		t.Error("unknown path accepted")
	} else if _, ok := err.(*Error); !ok {
		t.Errorf("want *Error, got %T", err)
	}
}

func TestResourceField(t *testing.T) {
	c := &v1.Container{Resources: v1.ResourceRequirements{
		Limits:   v1.ResourceList{v1.ResourceCPU: resource.MustParse("1500m")},
		Requests: v1.ResourceList{v1.ResourceMemory: resource.MustParse("100Mi")},
	}}
	rt := Runtime{Allocatable: v1.ResourceList{v1.ResourceMemory: resource.MustParse("2Gi")}}
	for _, tt := range []struct {
		res, div, want string
	}{
		{"limits.cpu", "", "2"}, // rounded up to whole cores
		{"limits.cpu", "1m", "1500"},
		{"requests.memory", "1Mi", "100"},
		{"limits.memory", "1Mi", "2048"}, // unset limit: node allocatable
		{"requests.cpu", "", "0"},
	} {
		sel := &v1.ResourceFieldSelector{Resource: tt.res}
		if tt.div != "" {
			sel.Divisor = resource.MustParse(tt.div)
		}
		got, err := ResourceField(c, sel, rt)
		if err != nil || got != tt.want {
			t.Errorf("%s / %s = %q, %v; want %s", tt.res, tt.div, got, err, tt.want)
		}
	}
	if _, err := ResourceField(c, &v1.ResourceFieldSelector{Resource: "limits.gpu"}, rt); err == nil {
		t.Error("unknown resource accepted")
	}
}
