package kubelet

import (
	"sort"
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// CRI labels identifying what a sandbox or container belongs to. The names
// are upstream's, so tools that know them (crictl filters) work on skiff
// nodes too.
const (
	labelPodUID        = "io.kubernetes.pod.uid"
	labelPodName       = "io.kubernetes.pod.name"
	labelPodNamespace  = "io.kubernetes.pod.namespace"
	labelContainerName = "io.kubernetes.container.name"
	// annotationGrace keeps the pod's grace period on the sandbox so an
	// orphan (pod gone from the API while the agent was down) stops gently.
	annotationGrace = "skiff.dev/termination-grace-period"
)

// SandboxState is one CRI sandbox of a pod.
type SandboxState struct {
	ID        string
	Attempt   uint32
	Ready     bool
	IPs       []string
	CreatedAt time.Time
	Grace     int64 // seconds, from annotationGrace; -1 when unknown
}

// ContainerRunState is a CRI container state.
type ContainerRunState int

const (
	ContainerCreated ContainerRunState = iota
	ContainerRunning
	ContainerExited
	ContainerUnknown
)

// ContainerState is one CRI container of a pod.
type ContainerState struct {
	ID        string
	SandboxID string
	Name      string
	Attempt   uint32 // restart count
	State     ContainerRunState
	ExitCode  int32
	Reason    string
	Message   string
	CreatedAt time.Time
	StartedAt time.Time
	// FinishedAt is zero unless State is ContainerExited.
	FinishedAt time.Time
	Image      string
	ImageRef   string
}

// PodState is everything the runtime holds for one pod, newest first.
type PodState struct {
	UID        types.UID
	Name       string
	Namespace  string
	Sandboxes  []SandboxState
	Containers []ContainerState
}

// Empty reports whether the runtime holds nothing for the pod.
func (s PodState) Empty() bool { return len(s.Sandboxes) == 0 && len(s.Containers) == 0 }

// ReadySandbox is the newest sandbox when it is ready.
func (s PodState) ReadySandbox() (SandboxState, bool) {
	if len(s.Sandboxes) == 0 || !s.Sandboxes[0].Ready {
		return SandboxState{}, false
	}
	return s.Sandboxes[0], true
}

// Latest is the newest container named name, restricted to sandboxID unless
// it is empty.
func (s PodState) Latest(name, sandboxID string) (ContainerState, bool) {
	for _, c := range s.Containers {
		if c.Name == name && (sandboxID == "" || c.SandboxID == sandboxID) {
			return c, true
		}
	}
	return ContainerState{}, false
}

// Previous is the attempt before c, when the runtime still has it.
func (s PodState) Previous(c ContainerState) (ContainerState, bool) {
	for _, o := range s.Containers {
		if o.Name == c.Name && o.Attempt < c.Attempt && o.State == ContainerExited {
			return o, true
		}
	}
	return ContainerState{}, false
}

// MaxAttempt is the highest attempt of any container named name, or -1.
func (s PodState) MaxAttempt(name string) int64 {
	m := int64(-1)
	for _, c := range s.Containers {
		if c.Name == name && int64(c.Attempt) > m {
			m = int64(c.Attempt)
		}
	}
	return m
}

func sandboxState(sb *runtimeapi.PodSandbox, st *runtimeapi.PodSandboxStatus) SandboxState {
	s := SandboxState{
		ID:        sb.GetId(),
		Attempt:   sb.GetMetadata().GetAttempt(),
		Ready:     sb.GetState() == runtimeapi.PodSandboxState_SANDBOX_READY,
		CreatedAt: time.Unix(0, sb.GetCreatedAt()),
		Grace:     -1,
	}
	if g, err := strconv.ParseInt(sb.GetAnnotations()[annotationGrace], 10, 64); err == nil {
		s.Grace = g
	}
	if st != nil {
		if ip := st.GetNetwork().GetIp(); ip != "" {
			s.IPs = append(s.IPs, ip)
		}
		for _, ip := range st.GetNetwork().GetAdditionalIps() {
			s.IPs = append(s.IPs, ip.GetIp())
		}
	}
	return s
}

func containerState(c *runtimeapi.Container, st *runtimeapi.ContainerStatus) ContainerState {
	s := ContainerState{
		ID:        c.GetId(),
		SandboxID: c.GetPodSandboxId(),
		Name:      c.GetLabels()[labelContainerName],
		Attempt:   c.GetMetadata().GetAttempt(),
		CreatedAt: time.Unix(0, c.GetCreatedAt()),
		Image:     c.GetImage().GetImage(),
		ImageRef:  c.GetImageRef(),
	}
	switch c.GetState() {
	case runtimeapi.ContainerState_CONTAINER_CREATED:
		s.State = ContainerCreated
	case runtimeapi.ContainerState_CONTAINER_RUNNING:
		s.State = ContainerRunning
	case runtimeapi.ContainerState_CONTAINER_EXITED:
		s.State = ContainerExited
	default:
		s.State = ContainerUnknown
	}
	if st != nil {
		s.ExitCode = st.GetExitCode()
		s.Reason = st.GetReason()
		s.Message = st.GetMessage()
		if st.GetStartedAt() > 0 {
			s.StartedAt = time.Unix(0, st.GetStartedAt())
		}
		if st.GetFinishedAt() > 0 && s.State == ContainerExited {
			s.FinishedAt = time.Unix(0, st.GetFinishedAt())
		}
		if st.GetImageRef() != "" {
			s.ImageRef = st.GetImageRef()
		}
	}
	return s
}

func sortState(s *PodState) {
	sort.SliceStable(s.Sandboxes, func(i, j int) bool { return s.Sandboxes[i].CreatedAt.After(s.Sandboxes[j].CreatedAt) })
	sort.SliceStable(s.Containers, func(i, j int) bool {
		a, b := s.Containers[i], s.Containers[j]
		if a.Attempt != b.Attempt {
			return a.Attempt > b.Attempt
		}
		return a.CreatedAt.After(b.CreatedAt)
	})
}

// shortID is the 12-character prefix of a runtime ID, as tools print it.
func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
