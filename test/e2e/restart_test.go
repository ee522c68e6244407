package e2e

import (
	"context"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"skiff.dev/skiff/internal/images"
	"skiff.dev/skiff/test/integration/framework"
)

// waitPod polls the pod until cond holds.
func waitPod(t *testing.T, c *framework.Cluster, name string, d time.Duration, what string, cond func(*v1.Pod) bool) *v1.Pod {
	t.Helper()
	deadline := time.Now().Add(d)
	var p *v1.Pod
	for {
		var err error
		p, err = c.Client.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
		if err == nil && cond(p) {
			return p
		}
		if time.Now().After(deadline) {
			if p != nil {
				t.Fatalf("timed out after %s waiting for %s: %+v", d, what, p.Status)
			}
			t.Fatalf("timed out after %s waiting for %s: %v", d, what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestProbesRestartAndCrashLoop(t *testing.T) {
	requireNode(t)
	c := framework.Start(t, framework.Options{})
	n := startNode(t, c, "e2e-node-2", "skiffe2e1", "10.88.1.0/24")
	ctx := context.Background()
	pods := c.Client.CoreV1().Pods("default")

	grace := int64(2)
	web := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: v1.PodSpec{
			NodeName:                      n.name,
			TerminationGracePeriodSeconds: &grace,
			Containers: []v1.Container{{
				Name: "app", Image: images.Testapp,
				Ports: []v1.ContainerPort{{Name: "http", ContainerPort: 8080}},
				ReadinessProbe: &v1.Probe{
					ProbeHandler:  v1.ProbeHandler{HTTPGet: &v1.HTTPGetAction{Path: "/readyz", Port: intstr.FromString("http")}},
					PeriodSeconds: 1, FailureThreshold: 1,
				},
				LivenessProbe: &v1.Probe{
					ProbeHandler:  v1.ProbeHandler{TCPSocket: &v1.TCPSocketAction{Port: intstr.FromInt32(9000)}},
					PeriodSeconds: 1, FailureThreshold: 3,
				},
			}},
		},
	}
	if _, err := pods.Create(ctx, web, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p := waitPod(t, c, "web", time.Minute, "web ready", func(p *v1.Pod) bool { return podReady(p) })
	ip, id := p.Status.PodIP, p.Status.ContainerStatuses[0].ContainerID

	// A readiness flip drives the Ready condition both ways.
	httpGet(t, "http://"+ip+":8080/readyz?set=fail")
	waitPod(t, c, "web", 10*time.Second, "web unready", func(p *v1.Pod) bool { return !podReady(p) && p.Status.Phase == v1.PodRunning })
	httpGet(t, "http://"+ip+":8080/readyz?set=ok")
	waitPod(t, c, "web", 10*time.Second, "web ready again", func(p *v1.Pod) bool { return podReady(p) })

	// Restarting the agent (and its containerd) adopts the running container.
	n.stop()
	n.start()
	time.Sleep(3 * time.Second) // a few relists and probe periods
	p = waitPod(t, c, "web", 10*time.Second, "web ready after restart", func(p *v1.Pod) bool { return podReady(p) })
	if cs := p.Status.ContainerStatuses[0]; cs.ContainerID != id || cs.RestartCount != 0 {
		t.Errorf("after agent restart: container %s restarts %d, want %s and 0", cs.ContainerID, cs.RestartCount, id)
	}
	if got := httpGet(t, "http://"+ip+":8080/hostname"); got != "web" {
		t.Errorf("/hostname after restart = %q", got)
	}
	// A settled pod causes no status writes: relists and probes that find
	// nothing new leave the object alone.
	rv := p.ResourceVersion
	time.Sleep(3 * time.Second)
	if p2 := waitPod(t, c, "web", time.Second, "web", func(*v1.Pod) bool { return true }); p2.ResourceVersion != rv {
		t.Errorf("idle pod rewritten: resourceVersion %s -> %s, status %+v", rv, p2.ResourceVersion, p2.Status)
	}

	// A crashing container restarts, then waits in CrashLoopBackOff.
	crash := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "crash"},
		Spec: v1.PodSpec{
			NodeName:                      n.name,
			TerminationGracePeriodSeconds: &grace,
			Containers:                    []v1.Container{{Name: "app", Image: images.Testapp, Command: []string{"/testapp", "exit", "3"}}},
		},
	}
	if _, err := pods.Create(ctx, crash, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p = waitPod(t, c, "crash", time.Minute, "CrashLoopBackOff", func(p *v1.Pod) bool {
		if len(p.Status.ContainerStatuses) == 0 {
			return false
		}
		cs := p.Status.ContainerStatuses[0]
		return cs.State.Waiting != nil && cs.State.Waiting.Reason == "CrashLoopBackOff"
	})
	cs := p.Status.ContainerStatuses[0]
	if cs.RestartCount < 1 || cs.LastTerminationState.Terminated == nil || cs.LastTerminationState.Terminated.ExitCode != 3 || p.Status.Phase != v1.PodRunning {
		t.Errorf("crash loop status: phase %s %+v", p.Status.Phase, cs)
	}
	t.Logf("crash loop: %s", cs.State.Waiting.Message)

	// A failing liveness probe kills the container; restartPolicy restarts it.
	sick := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "sick"},
		Spec: v1.PodSpec{
			NodeName:                      n.name,
			TerminationGracePeriodSeconds: &grace,
			Containers: []v1.Container{{
				Name: "app", Image: images.Testapp,
				LivenessProbe: &v1.Probe{
					ProbeHandler:  v1.ProbeHandler{HTTPGet: &v1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8081)}},
					PeriodSeconds: 1, FailureThreshold: 2,
				},
			}},
		},
	}
	if _, err := pods.Create(ctx, sick, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p = waitPod(t, c, "sick", time.Minute, "liveness restart", func(p *v1.Pod) bool {
		return len(p.Status.ContainerStatuses) > 0 && p.Status.ContainerStatuses[0].RestartCount >= 1
	})
	if lt := p.Status.ContainerStatuses[0].LastTerminationState.Terminated; lt == nil || lt.ExitCode != 2 && lt.ExitCode != 137 && lt.ExitCode != 143 {
		t.Errorf("liveness kill: last state %+v", lt)
	}

	for _, name := range []string{"web", "crash", "sick"} {
		if err := pods.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, time.Minute, "pods deleted", func() bool {
		l, err := pods.List(ctx, metav1.ListOptions{})
		return err == nil && len(l.Items) == 0
	})
}
