package core

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func running(name string, ready bool, restarts int32) corev1.ContainerStatus {
	return corev1.ContainerStatus{Name: name, Ready: ready, RestartCount: restarts,
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}
}

func TestPodStatusSummary(t *testing.T) {
	fixClock(t)
	twoContainers := corev1.PodSpec{Containers: []corev1.Container{{Name: "a"}, {Name: "b"}}}
	withInit := corev1.PodSpec{InitContainers: []corev1.Container{{Name: "i1"}, {Name: "i2"}}, Containers: []corev1.Container{{Name: "a"}}}
	deleted := metav1.NewTime(testNow)
	cases := []struct {
		name                    string
		pod                     corev1.Pod
		ready, status, restarts string
	}{
		{"pending", corev1.Pod{Spec: twoContainers, Status: corev1.PodStatus{Phase: corev1.PodPending}}, "0/2", "Pending", "0"},
		{"running", corev1.Pod{Spec: twoContainers, Status: corev1.PodStatus{Phase: corev1.PodRunning,
			ContainerStatuses: []corev1.ContainerStatus{running("a", true, 0), running("b", true, 0)}}}, "2/2", "Running", "0"},
		{"crashloop with restart age", corev1.Pod{Spec: twoContainers, Status: corev1.PodStatus{Phase: corev1.PodRunning,
			ContainerStatuses: []corev1.ContainerStatus{running("a", true, 0), {Name: "b", RestartCount: 5,
				State:                corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
				LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{FinishedAt: ago(5 * time.Minute)}}}}}},
			"1/2", "CrashLoopBackOff", "5 (5m ago)"},
		{"image pull", corev1.Pod{Spec: twoContainers, Status: corev1.PodStatus{Phase: corev1.PodPending,
			ContainerStatuses: []corev1.ContainerStatus{{Name: "a", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImagePull"}}}}}},
			"0/2", "ErrImagePull", "0"},
		{"completed", corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "a"}}}, Status: corev1.PodStatus{Phase: corev1.PodSucceeded,
			ContainerStatuses: []corev1.ContainerStatus{{Name: "a", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Completed"}}}}}},
			"0/1", "Completed", "0"},
		{"exit code", corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "a"}}}, Status: corev1.PodStatus{Phase: corev1.PodFailed,
			ContainerStatuses: []corev1.ContainerStatus{{Name: "a", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 2}}}}}},
			"0/1", "ExitCode:2", "0"},
		{"init progress", corev1.Pod{Spec: withInit, Status: corev1.PodStatus{Phase: corev1.PodPending,
			InitContainerStatuses: []corev1.ContainerStatus{
				{Name: "i1", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0}}},
				{Name: "i2", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}}},
			"0/1", "Init:1/2", "0"},
		{"init crash", corev1.Pod{Spec: withInit, Status: corev1.PodStatus{Phase: corev1.PodPending,
			InitContainerStatuses: []corev1.ContainerStatus{
				{Name: "i1", RestartCount: 3, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}}}}},
			"0/1", "Init:CrashLoopBackOff", "3"},
		{"init error", corev1.Pod{Spec: withInit, Status: corev1.PodStatus{Phase: corev1.PodPending,
			InitContainerStatuses: []corev1.ContainerStatus{
				{Name: "i1", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1}}}}}},
			"0/1", "Init:ExitCode:1", "0"},
		{"terminating", corev1.Pod{ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: &deleted}, Spec: twoContainers,
			Status: corev1.PodStatus{Phase: corev1.PodRunning,
				ContainerStatuses: []corev1.ContainerStatus{running("a", true, 0), running("b", true, 0)}}}, "2/2", "Terminating", "0"},
		{"scheduling gated", corev1.Pod{Spec: twoContainers, Status: corev1.PodStatus{Phase: corev1.PodPending,
			Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonSchedulingGated}}}},
			"0/2", "SchedulingGated", "0"},
		{"evicted", corev1.Pod{Spec: twoContainers, Status: corev1.PodStatus{Phase: corev1.PodFailed, Reason: "Evicted"}}, "0/2", "Evicted", "0"},
		{"sidecar counted", corev1.Pod{Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{Name: "side", RestartPolicy: ptr(corev1.ContainerRestartPolicyAlways)}},
			Containers:     []corev1.Container{{Name: "a"}}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning,
				InitContainerStatuses: []corev1.ContainerStatus{{Name: "side", Ready: true, Started: ptr(true), State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}},
				ContainerStatuses:     []corev1.ContainerStatus{running("a", true, 0)}}}, "2/2", "Running", "0"},
	}
	for _, tc := range cases {
		ready, status, restarts := podStatusSummary(&tc.pod)
		if ready != tc.ready || status != tc.status || restarts != tc.restarts {
			t.Errorf("%s: got (%s, %s, %s), want (%s, %s, %s)", tc.name, ready, status, restarts, tc.ready, tc.status, tc.restarts)
		}
	}
}

func TestPodRowWideColumns(t *testing.T) {
	fixClock(t)
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", CreationTimestamp: ago(3 * time.Hour)},
		Spec:   corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "a"}}, ReadinessGates: []corev1.PodReadinessGate{{ConditionType: "x"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIPs: []corev1.PodIP{{IP: "10.0.0.5"}}, Conditions: []corev1.PodCondition{{Type: "x", Status: corev1.ConditionTrue}}}}
	row := podRow(p)
	if len(row) != len(podColumns) {
		t.Fatalf("row has %d cells, columns %d", len(row), len(podColumns))
	}
	want := []interface{}{"p", "0/1", "Running", "0", "3h", "10.0.0.5", "n1", "<none>", "1/1"}
	for i := range want {
		if row[i] != want[i] {
			t.Errorf("cell %d (%s) = %v, want %v", i, podColumns[i].Name, row[i], want[i])
		}
	}
}

func res(cpuReq, cpuLim, memReq, memLim string) corev1.ResourceRequirements {
	r := corev1.ResourceRequirements{Requests: corev1.ResourceList{}, Limits: corev1.ResourceList{}}
	set := func(l corev1.ResourceList, n corev1.ResourceName, v string) {
		if v != "" {
			l[n] = resource.MustParse(v)
		}
	}
	set(r.Requests, corev1.ResourceCPU, cpuReq)
	set(r.Limits, corev1.ResourceCPU, cpuLim)
	set(r.Requests, corev1.ResourceMemory, memReq)
	set(r.Limits, corev1.ResourceMemory, memLim)
	return r
}

func TestPodQOSClass(t *testing.T) {
	cases := []struct {
		name string
		rs   []corev1.ResourceRequirements
		want corev1.PodQOSClass
	}{
		{"no resources", []corev1.ResourceRequirements{{}}, corev1.PodQOSBestEffort},
		{"equal requests and limits", []corev1.ResourceRequirements{res("1", "1", "1Gi", "1Gi")}, corev1.PodQOSGuaranteed},
		{"limits only (defaulted requests)", []corev1.ResourceRequirements{res("", "1", "", "1Gi")}, corev1.PodQOSGuaranteed},
		{"requests below limits", []corev1.ResourceRequirements{res("500m", "1", "1Gi", "1Gi")}, corev1.PodQOSBurstable},
		{"cpu only", []corev1.ResourceRequirements{res("1", "1", "", "")}, corev1.PodQOSBurstable},
		{"one best-effort container", []corev1.ResourceRequirements{res("1", "1", "1Gi", "1Gi"), {}}, corev1.PodQOSBurstable},
		{"only extended resources", []corev1.ResourceRequirements{{Requests: corev1.ResourceList{"example.com/gpu": resource.MustParse("1")}}}, corev1.PodQOSBestEffort},
	}
	for _, tc := range cases {
		p := &corev1.Pod{}
		for i, r := range tc.rs {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: string(rune('a' + i)), Resources: r})
		}
		defaultPod(p)
		if got := PodQOSClass(p); got != tc.want {
			t.Errorf("%s: QoS = %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestPodPrepare(t *testing.T) {
	r := podResource()
	p := validPod()
	p.Status.Phase = corev1.PodRunning
	p.Spec.SchedulingGates = []corev1.PodSchedulingGate{{Name: "g"}}
	r.PrepareForCreate(p)
	if p.Status.Phase != corev1.PodPending || p.Status.QOSClass != corev1.PodQOSBurstable {
		t.Errorf("create status = %+v", p.Status)
	}
	if len(p.Status.Conditions) != 1 || p.Status.Conditions[0].Reason != corev1.PodReasonSchedulingGated {
		t.Errorf("missing SchedulingGated condition: %+v", p.Status.Conditions)
	}

	old := validPod()
	old.Status.Phase = corev1.PodRunning
	upd := old.DeepCopy()
	upd.Status.Phase = corev1.PodFailed
	r.PrepareForUpdate(upd, old)
	if upd.Status.Phase != corev1.PodRunning {
		t.Errorf("main update changed status")
	}
	st := old.DeepCopy()
	st.Spec.NodeName = "sneaky"
	st.Status.Phase = corev1.PodSucceeded
	r.PrepareForStatusUpdate(st, old)
	if st.Spec.NodeName != "" || st.Status.Phase != corev1.PodSucceeded {
		t.Errorf("status update: spec %q phase %s", st.Spec.NodeName, st.Status.Phase)
	}
	f := r.SelectableFields(old)
	if f["status.phase"] != "Running" || f["spec.restartPolicy"] != "Always" || f["spec.hostNetwork"] != "false" {
		t.Errorf("fields = %v", f)
	}
}
