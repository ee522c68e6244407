package framework

import (
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func ctr(cpu string, sidecar bool) v1.Container {
	c := v1.Container{Resources: v1.ResourceRequirements{Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse(cpu)}}}
	if sidecar {
		always := v1.ContainerRestartPolicyAlways
		c.RestartPolicy = &always
	}
	return c
}

func TestPodRequests(t *testing.T) {
	tests := []struct {
		name      string
		init, app []v1.Container
		overhead  string
		wantMilli int64
	}{
		{"app only sums", nil, []v1.Container{ctr("1", false), ctr("500m", false)}, "", 1500},
		{"big init container dominates", []v1.Container{ctr("3", false)}, []v1.Container{ctr("1", false)}, "", 3000},
		{"sidecar adds to app", []v1.Container{ctr("1", true)}, []v1.Container{ctr("1", false)}, "", 2000},
		// init after a sidecar runs alongside it: 1 + 2.5 = 3.5 > app 1+1
		{"init after sidecar counts the sidecar", []v1.Container{ctr("1", true), ctr("2500m", false)}, []v1.Container{ctr("1", false)}, "", 3500},
		// init before the sidecar does not: max(2.5, 1+1) = 2.5
		{"init before sidecar does not", []v1.Container{ctr("2500m", false), ctr("1", true)}, []v1.Container{ctr("1", false)}, "", 2500},
		{"overhead added", nil, []v1.Container{ctr("1", false)}, "250m", 1250},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := &v1.Pod{Spec: v1.PodSpec{InitContainers: tt.init, Containers: tt.app}}
			if tt.overhead != "" {
				pod.Spec.Overhead = v1.ResourceList{v1.ResourceCPU: resource.MustParse(tt.overhead)}
			}
			if got := PodRequests(pod).MilliCPU; got != tt.wantMilli {
				t.Errorf("got %dm, want %dm", got, tt.wantMilli)
			}
		})
	}
}
