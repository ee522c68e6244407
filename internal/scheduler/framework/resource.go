package framework

import (
	"maps"

	v1 "k8s.io/api/core/v1"
)

// Defaults used for scoring pods that request nothing, as upstream does, so
// that "best effort" pods still spread.
const (
	DefaultMilliCPURequest int64 = 100               // 0.1 core
	DefaultMemoryRequest   int64 = 200 * 1024 * 1024 // 200 MiB
)

// Resource is a compact, allocation-free form of a ResourceList.
type Resource struct {
	MilliCPU         int64
	Memory           int64
	EphemeralStorage int64
	AllowedPodNumber int64
	// Scalar holds extended resources (and hugepages); nil when none.
	Scalar map[v1.ResourceName]int64
}

// equal reports whether r and o hold the same amounts (a nil and an empty
// Scalar map are equal).
func (r *Resource) equal(o *Resource) bool {
	return r.MilliCPU == o.MilliCPU && r.Memory == o.Memory && r.EphemeralStorage == o.EphemeralStorage &&
		r.AllowedPodNumber == o.AllowedPodNumber && maps.Equal(r.Scalar, o.Scalar)
}

// NewResource converts a ResourceList.
func NewResource(rl v1.ResourceList) Resource {
	var r Resource
	r.Add(rl)
	return r
}

// Add adds a ResourceList into r.
func (r *Resource) Add(rl v1.ResourceList) {
	for name, q := range rl {
		switch name {
		case v1.ResourceCPU:
			r.MilliCPU += q.MilliValue()
		case v1.ResourceMemory:
			r.Memory += q.Value()
		case v1.ResourceEphemeralStorage:
			r.EphemeralStorage += q.Value()
		case v1.ResourcePods:
			r.AllowedPodNumber += q.Value()
		default:
			if isScalar(name) {
				if r.Scalar == nil {
					r.Scalar = map[v1.ResourceName]int64{}
				}
				r.Scalar[name] += q.Value()
			}
		}
	}
}

// isScalar reports whether a resource is counted as a scalar (extended,
// hugepages, attachable volumes): anything except the native four with a
// domain prefix or the hugepages- prefix.
func isScalar(name v1.ResourceName) bool {
	s := string(name)
	if len(s) > 10 && s[:10] == "hugepages-" {
		return true
	}
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			return true
		}
	}
	return false
}

// AddResource adds o into r.
func (r *Resource) AddResource(o *Resource) {
	r.MilliCPU += o.MilliCPU
	r.Memory += o.Memory
	r.EphemeralStorage += o.EphemeralStorage
	r.AllowedPodNumber += o.AllowedPodNumber
	for k, v := range o.Scalar {
		if r.Scalar == nil {
			r.Scalar = map[v1.ResourceName]int64{}
		}
		r.Scalar[k] += v
	}
}

// SubResource subtracts o from r.
func (r *Resource) SubResource(o *Resource) {
	r.MilliCPU -= o.MilliCPU
	r.Memory -= o.Memory
	r.EphemeralStorage -= o.EphemeralStorage
	r.AllowedPodNumber -= o.AllowedPodNumber
	for k, v := range o.Scalar {
		if r.Scalar != nil {
			r.Scalar[k] -= v
		}
	}
}

// maxResource sets r to the element-wise maximum of r and o.
func (r *Resource) maxResource(o *Resource) {
	r.MilliCPU = max(r.MilliCPU, o.MilliCPU)
	r.Memory = max(r.Memory, o.Memory)
	r.EphemeralStorage = max(r.EphemeralStorage, o.EphemeralStorage)
	for k, v := range o.Scalar {
		if r.Scalar == nil {
			r.Scalar = map[v1.ResourceName]int64{}
		}
		if v > r.Scalar[k] {
			r.Scalar[k] = v
		}
	}
}

// Clone returns a deep copy.
func (r Resource) Clone() Resource {
	if r.Scalar != nil {
		m := make(map[v1.ResourceName]int64, len(r.Scalar))
		for k, v := range r.Scalar {
			m[k] = v
		}
		r.Scalar = m
	}
	return r
}

// PodRequests computes what a pod needs on a node, as the kubelet admits it
// and as upstream's scheduler counts it:
//
//	max( sum(app containers) + sum(restartable init "sidecar" containers),
//	     max over regular init containers i of
//	         (request_i + sum(sidecars declared before i)) ) + overhead
//
// Sidecars keep running, so they add to everything started after them.
func PodRequests(pod *v1.Pod) Resource {
	var app Resource
	for i := range pod.Spec.Containers {
		app.Add(pod.Spec.Containers[i].Resources.Requests)
	}
	var sidecars, initMax Resource
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		if c.RestartPolicy != nil && *c.RestartPolicy == v1.ContainerRestartPolicyAlways {
			sidecars.Add(c.Resources.Requests)
			// A sidecar is itself started after the sidecars before it.
			s := sidecars.Clone()
			initMax.maxResource(&s)
			continue
		}
		step := sidecars.Clone()
		step.Add(c.Resources.Requests)
		initMax.maxResource(&step)
	}
	app.AddResource(&sidecars)
	app.maxResource(&initMax)
	if pod.Spec.Overhead != nil {
		app.Add(pod.Spec.Overhead)
	}
	app.AllowedPodNumber = 0
	return app
}

// NonZeroRequests is PodRequests' cpu and memory with upstream's defaults
// substituted per container when a container requests nothing, used only
// for scoring.
func NonZeroRequests(pod *v1.Pod, req *Resource) (milliCPU, memory int64) {
	milliCPU, memory = req.MilliCPU, req.Memory
	var addCPU, addMem int64
	for i := range pod.Spec.Containers {
		r := pod.Spec.Containers[i].Resources.Requests
		if _, ok := r[v1.ResourceCPU]; !ok {
			addCPU += DefaultMilliCPURequest
		}
		if _, ok := r[v1.ResourceMemory]; !ok {
			addMem += DefaultMemoryRequest
		}
	}
	return milliCPU + addCPU, memory + addMem
}
