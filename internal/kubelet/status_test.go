package kubelet

import (
	"context"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"skiff.dev/skiff/internal/kubelet/downward"
)

func cond(s v1.PodStatus, t v1.PodConditionType) v1.ConditionStatus {
	for _, c := range s.Conditions {
		if c.Type == t {
			return c.Status
		}
	}
	return ""
}

func TestGeneratePodStatus(t *testing.T) {
	now := t0.Add(time.Hour)
	pod := testPod(v1.RestartPolicyAlways, []string{"init"}, "app")
	pod.Spec.Containers[0].ReadinessProbe = nil

	// Creating: nothing in the runtime yet.
	st := PodState{}
	s := generatePodStatus(pod, statusInput{State: st, Actions: computePodActions(pod, st, now, nil), HostIP: "192.0.2.1", Now: now})
	if s.Phase != v1.PodPending || cond(s, v1.PodInitialized) != v1.ConditionFalse || cond(s, v1.PodScheduled) != v1.ConditionTrue {
		t.Errorf("creating: phase %s conditions %+v", s.Phase, s.Conditions)
	}
	if w := s.ContainerStatuses[0].State.Waiting; w == nil || w.Reason != "PodInitializing" {
		t.Errorf("app container should wait for PodInitializing: %+v", s.ContainerStatuses[0].State)
	}
	if s.StartTime == nil || !s.StartTime.Time.Equal(now) || s.HostIP != "192.0.2.1" || s.QOSClass != v1.PodQOSBestEffort {
		t.Errorf("startTime %v hostIP %q qos %q", s.StartTime, s.HostIP, s.QOSClass)
	}

	// Running and ready.
	st = PodState{Sandboxes: []SandboxState{ready("s")}, Containers: []ContainerState{running("app", "s", 0), exited("init", "s", 0, 0, t0)}}
	sortState(&st)
	pod.Status = s
	s = generatePodStatus(pod, statusInput{State: st, Actions: computePodActions(pod, st, now, nil), HostIP: "192.0.2.1", Now: now.Add(time.Second)})
	if s.Phase != v1.PodRunning || s.PodIP != "10.88.0.5" || len(s.PodIPs) != 1 {
		t.Errorf("running: phase %s podIP %q", s.Phase, s.PodIP)
	}
	for _, c := range []v1.PodConditionType{v1.PodInitialized, v1.ContainersReady, v1.PodReady, v1.PodScheduled} {
		if cond(s, c) != v1.ConditionTrue {
			t.Errorf("condition %s = %s", c, cond(s, c))
		}
	}
	if !s.StartTime.Time.Equal(now) {
		t.Errorf("startTime changed to %v", s.StartTime)
	}
	cs := s.ContainerStatuses[0]
	if !cs.Ready || cs.State.Running == nil || cs.ContainerID != "containerd://app-0" || cs.Started == nil || !*cs.Started {
		t.Errorf("app status %+v", cs)
	}
	if ic := s.InitContainerStatuses[0]; ic.State.Terminated == nil || ic.State.Terminated.Reason != "Completed" || !ic.Ready {
		t.Errorf("init status %+v", ic)
	}

	// Readiness probe failing makes the pod unready.
	pod.Spec.Containers[0].ReadinessProbe = &v1.Probe{}
	s2 := generatePodStatus(pod, statusInput{State: st, Actions: computePodActions(pod, st, now, nil), Now: now, Ready: map[string]bool{"app-0": false}})
	if cond(s2, v1.PodReady) != v1.ConditionFalse || !strings.Contains(condMsg(s2, v1.PodReady), "app") {
		t.Errorf("unready: %+v", s2.Conditions)
	}
	pod.Spec.Containers[0].ReadinessProbe = nil

	// Crash looping: waiting CrashLoopBackOff with lastState and restartCount.
	st = PodState{Sandboxes: []SandboxState{ready("s")}, Containers: []ContainerState{exited("app", "s", 2, 3, now.Add(-time.Second)), exited("app", "s", 1, 3, now.Add(-time.Minute)), exited("init", "s", 0, 0, t0)}}
	a := computePodActions(pod, st, now, nil)
	s = generatePodStatus(pod, statusInput{State: st, Actions: a, Now: now})
	cs = s.ContainerStatuses[0]
	if w := cs.State.Waiting; w == nil || w.Reason != "CrashLoopBackOff" || !strings.Contains(w.Message, "back-off 20s") {
		t.Errorf("crash loop state %+v", cs.State)
	}
	if cs.RestartCount != 2 || cs.LastTerminationState.Terminated == nil || cs.LastTerminationState.Terminated.ExitCode != 3 || cs.Ready {
		t.Errorf("crash loop status %+v", cs)
	}
	if s.Phase != v1.PodRunning || cond(s, v1.PodReady) != v1.ConditionFalse {
		t.Errorf("crash loop phase %s ready %s", s.Phase, cond(s, v1.PodReady))
	}

	// restartPolicy Never: all exited 0 is Succeeded, any failure Failed.
	never := testPod(v1.RestartPolicyNever, nil, "a", "b")
	st = PodState{Sandboxes: []SandboxState{{ID: "s"}}, Containers: []ContainerState{exited("a", "s", 0, 0, now), exited("b", "s", 0, 0, now)}}
	if s := generatePodStatus(never, statusInput{State: st, Actions: computePodActions(never, st, now, nil), Now: now}); s.Phase != v1.PodSucceeded || cond(s, v1.PodReady) != v1.ConditionFalse {
		t.Errorf("succeeded: phase %s conditions %+v", s.Phase, s.Conditions)
	}
	st.Containers[1].ExitCode = 1
	if s := generatePodStatus(never, statusInput{State: st, Actions: computePodActions(never, st, now, nil), Now: now}); s.Phase != v1.PodFailed {
		t.Errorf("failed: phase %s", s.Phase)
	}
}

func condMsg(s v1.PodStatus, t v1.PodConditionType) string {
	for _, c := range s.Conditions {
		if c.Type == t {
			return c.Message
		}
	}
	return ""
}

func TestQOSClass(t *testing.T) {
	rl := func(cpu, mem string) v1.ResourceList {
		l := v1.ResourceList{}
		if cpu != "" {
			l[v1.ResourceCPU] = resource.MustParse(cpu)
		}
		if mem != "" {
			l[v1.ResourceMemory] = resource.MustParse(mem)
		}
		return l
	}
	pod := testPod(v1.RestartPolicyAlways, nil, "a")
	if q := qosClass(pod); q != v1.PodQOSBestEffort {
		t.Errorf("no resources: %s", q)
	}
	pod.Spec.Containers[0].Resources = v1.ResourceRequirements{Requests: rl("100m", "")}
	if q := qosClass(pod); q != v1.PodQOSBurstable {
		t.Errorf("requests only: %s", q)
	}
	pod.Spec.Containers[0].Resources = v1.ResourceRequirements{Limits: rl("1", "1Gi"), Requests: rl("1", "1Gi")}
	if q := qosClass(pod); q != v1.PodQOSGuaranteed {
		t.Errorf("equal limits: %s", q)
	}
}

type fakeGetter struct {
	cms     map[string]*v1.ConfigMap
	secrets map[string]*v1.Secret
}

func (f fakeGetter) ConfigMap(_ context.Context, ns, name string) (*v1.ConfigMap, error) {
	if cm, ok := f.cms[name]; ok {
		return cm, nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "configmaps"}, name)
}

func (f fakeGetter) Secret(_ context.Context, ns, name string) (*v1.Secret, error) {
	if s, ok := f.secrets[name]; ok {
		return s, nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "secrets"}, name)
}

func TestResolveEnv(t *testing.T) {
	pod := testPod(v1.RestartPolicyAlways, nil, "a")
	pod.Labels = map[string]string{"app": "web"}
	get := fakeGetter{
		cms:     map[string]*v1.ConfigMap{"cfg": {Data: map[string]string{"color": "blue"}}},
		secrets: map[string]*v1.Secret{"sec": {Data: map[string][]byte{"pw": []byte("s3cret")}}},
	}
	c := &v1.Container{
		EnvFrom: []v1.EnvFromSource{{Prefix: "CFG_", ConfigMapRef: &v1.ConfigMapEnvSource{LocalObjectReference: v1.LocalObjectReference{Name: "cfg"}}}},
		Env: []v1.EnvVar{
			{Name: "NAME", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
			{Name: "APP", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.labels['app']"}}},
			{Name: "IP", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
			{Name: "COLOR", ValueFrom: &v1.EnvVarSource{ConfigMapKeyRef: &v1.ConfigMapKeySelector{LocalObjectReference: v1.LocalObjectReference{Name: "cfg"}, Key: "color"}}},
			{Name: "PW", ValueFrom: &v1.EnvVarSource{SecretKeyRef: &v1.SecretKeySelector{LocalObjectReference: v1.LocalObjectReference{Name: "sec"}, Key: "pw"}}},
			{Name: "MSG", Value: "$(NAME) is $(COLOR), $(UNDEFINED) costs $$5"},
		},
	}
	env, err := resolveEnv(context.Background(), pod, c, downward.Runtime{PodIPs: []string{"10.88.0.9"}, HostIP: "192.0.2.1"}, get)
	if err != nil {
		t.Fatal(err)
	}
	want := "CFG_color=blue NAME=p APP=web IP=10.88.0.9 COLOR=blue PW=s3cret MSG=p is blue, $(UNDEFINED) costs $5"
	if got := strings.Join(env, " "); got != want {
		t.Errorf("env\n got %s\nwant %s", got, want)
	}

	c.Env = []v1.EnvVar{{Name: "X", ValueFrom: &v1.EnvVarSource{ConfigMapKeyRef: &v1.ConfigMapKeySelector{LocalObjectReference: v1.LocalObjectReference{Name: "cfg"}, Key: "missing"}}}}
	if _, err := resolveEnv(context.Background(), pod, c, downward.Runtime{}, get); err == nil {
		t.Error("missing key should be a config error")
	} else if _, ok := err.(*envError); !ok {
		t.Errorf("want *envError, got %T %v", err, err)
	}
	optional := true
	c.Env[0].ValueFrom.ConfigMapKeyRef.Optional = &optional
	if env, err := resolveEnv(context.Background(), pod, c, downward.Runtime{}, get); err != nil || len(env) != 1 {
		t.Errorf("optional missing key: env %v err %v", env, err)
	}
}
