package kubelet

import (
	"reflect"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func testPod(policy v1.RestartPolicy, inits []string, apps ...string) *v1.Pod {
	p := &v1.Pod{Spec: v1.PodSpec{RestartPolicy: policy}}
	p.Name, p.Namespace, p.UID = "p", "ns", "uid-1"
	for _, n := range inits {
		p.Spec.InitContainers = append(p.Spec.InitContainers, v1.Container{Name: n, Image: "img"})
	}
	for _, n := range apps {
		p.Spec.Containers = append(p.Spec.Containers, v1.Container{Name: n, Image: "img"})
	}
	return p
}

func ready(id string) SandboxState {
	return SandboxState{ID: id, Ready: true, IPs: []string{"10.88.0.5"}}
}

func running(name, sb string, attempt uint32) ContainerState {
	return ContainerState{ID: name + "-" + string(rune('0'+attempt)), Name: name, SandboxID: sb, Attempt: attempt, State: ContainerRunning, StartedAt: t0}
}

func exited(name, sb string, attempt uint32, code int32, finished time.Time) ContainerState {
	return ContainerState{ID: name + "-" + string(rune('0'+attempt)), Name: name, SandboxID: sb, Attempt: attempt, State: ContainerExited, ExitCode: code, StartedAt: finished.Add(-time.Second), FinishedAt: finished}
}

func TestComputePodActions(t *testing.T) {
	now := t0.Add(time.Hour)
	tests := []struct {
		name string
		pod  *v1.Pod
		st   PodState
		want Actions
	}{{
		name: "new pod creates a sandbox and starts the first init container",
		pod:  testPod(v1.RestartPolicyAlways, []string{"i1", "i2"}, "a"),
		want: Actions{CreateSandbox: true, StartInit: 0, Attempts: map[string]uint32{"i1": 0}},
	}, {
		name: "new pod without init starts every container",
		pod:  testPod(v1.RestartPolicyAlways, nil, "a", "b"),
		want: Actions{CreateSandbox: true, StartInit: -1, Start: []int{0, 1}, Attempts: map[string]uint32{"a": 0, "b": 0}, InitDone: true},
	}, {
		name: "init containers run in order",
		pod:  testPod(v1.RestartPolicyAlways, []string{"i1", "i2"}, "a"),
		st:   PodState{Sandboxes: []SandboxState{ready("s")}, Containers: []ContainerState{exited("i1", "s", 0, 0, now)}},
		want: Actions{StartInit: 1, Attempts: map[string]uint32{"i2": 0}},
	}, {
		name: "running init container is waited for",
		pod:  testPod(v1.RestartPolicyAlways, []string{"i1"}, "a"),
		st:   PodState{Sandboxes: []SandboxState{ready("s")}, Containers: []ContainerState{running("i1", "s", 0)}},
		want: Actions{StartInit: -1},
	}, {
		name: "failed init with restartPolicy Never fails the pod",
		pod:  testPod(v1.RestartPolicyNever, []string{"i1"}, "a"),
		st:   PodState{Sandboxes: []SandboxState{ready("s")}, Containers: []ContainerState{exited("i1", "s", 0, 1, now)}},
		want: Actions{StartInit: -1, InitFailed: true},
	}, {
		name: "init done starts app containers",
		pod:  testPod(v1.RestartPolicyAlways, []string{"i1"}, "a"),
		st:   PodState{Sandboxes: []SandboxState{ready("s")}, Containers: []ContainerState{exited("i1", "s", 0, 0, now)}},
		want: Actions{StartInit: -1, Start: []int{0}, Attempts: map[string]uint32{"a": 0}, InitDone: true},
	}, {
		name: "first exit restarts at once",
		pod:  testPod(v1.RestartPolicyAlways, nil, "a"),
		st:   PodState{Sandboxes: []SandboxState{ready("s")}, Containers: []ContainerState{exited("a", "s", 0, 1, now)}},
		want: Actions{StartInit: -1, Start: []int{0}, Attempts: map[string]uint32{"a": 1}, InitDone: true},
	}, {
		name: "second exit backs off 10s",
		pod:  testPod(v1.RestartPolicyAlways, nil, "a"),
		st:   PodState{Sandboxes: []SandboxState{ready("s")}, Containers: []ContainerState{exited("a", "s", 1, 1, now.Add(-4*time.Second))}},
		want: Actions{StartInit: -1, InitDone: true, Backoff: map[string]time.Duration{"a": 10 * time.Second}, RequeueAfter: 6 * time.Second},
	}, {
		name: "back-off served restarts",
		pod:  testPod(v1.RestartPolicyAlways, nil, "a"),
		st:   PodState{Sandboxes: []SandboxState{ready("s")}, Containers: []ContainerState{exited("a", "s", 1, 1, now.Add(-10*time.Second))}},
		want: Actions{StartInit: -1, Start: []int{0}, Attempts: map[string]uint32{"a": 2}, InitDone: true},
	}, {
		name: "OnFailure does not restart success",
		pod:  testPod(v1.RestartPolicyOnFailure, nil, "a"),
		st:   PodState{Sandboxes: []SandboxState{ready("s")}, Containers: []ContainerState{exited("a", "s", 0, 0, now)}},
		want: Actions{StartInit: -1, InitDone: true},
	}, {
		name: "dead sandbox is replaced and containers restart with the next attempt",
		pod:  testPod(v1.RestartPolicyAlways, nil, "a"),
		st:   PodState{Sandboxes: []SandboxState{{ID: "s", Attempt: 0}}, Containers: []ContainerState{exited("a", "s", 3, 137, now)}},
		want: Actions{KillPod: true, CreateSandbox: true, SandboxAttempt: 1, StartInit: -1, Start: []int{0}, Attempts: map[string]uint32{"a": 4}, InitDone: true},
	}, {
		name: "restartPolicy Never with a dead sandbox creates nothing",
		pod:  testPod(v1.RestartPolicyNever, nil, "a"),
		st:   PodState{Sandboxes: []SandboxState{{ID: "s"}}, Containers: []ContainerState{exited("a", "s", 0, 0, now)}},
		want: Actions{StartInit: -1, InitDone: true},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := computePodActions(tt.pod, tt.st, now, nil)
			if tt.want.Attempts == nil {
				tt.want.Attempts = map[string]uint32{}
			}
			if tt.want.Backoff == nil {
				tt.want.Backoff = map[string]time.Duration{}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestRestartDelay(t *testing.T) {
	want := []time.Duration{0, 10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second, 160 * time.Second, 300 * time.Second, 300 * time.Second}
	for attempt, w := range want {
		c := exited("a", "s", uint32(attempt), 1, t0)
		if got := restartDelay(c); got != w {
			t.Errorf("attempt %d: delay %s, want %s", attempt, got, w)
		}
	}
	long := exited("a", "s", 5, 1, t0)
	long.StartedAt = t0.Add(-11 * time.Minute)
	if got := restartDelay(long); got != 0 {
		t.Errorf("a container that ran 11m should restart at once, got %s", got)
	}
}
