package controllers

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"skiff.dev/skiff/test/integration/framework"
)

// seedDeployment is the Deployment example of the seed document
// (/work/shared/seeds/004_*.txt), started at 2 replicas and with the
// rolling-update parameters of the scenario.
const seedDeployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: my-app
spec:
  replicas: 2
  selector:
    matchLabels:
      app: my-app
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 1
      maxUnavailable: 1
  template:
    metadata:
      labels:
        app: my-app
    spec:
      containers:
      - name: my-app
        image: my-app:v1.2.3
        ports:
        - containerPort: 8080
`

// TestKubectlDeploymentScenario drives a Deployment through its life with
// the real kubectl binaries: apply, scale, rolling update watched with
// rollout status, history, undo, pause, resume, restart.
func TestKubectlDeploymentScenario(t *testing.T) {
	bins := framework.KubectlBinaries()
	if len(bins) == 0 {
		t.Skip("no kubectl binaries installed")
	}
	e := start(t, 3)
	versions := make([]string, 0, len(bins))
	for v := range bins {
		versions = append(versions, v)
	}
	sort.Strings(versions)
	for _, v := range versions {
		t.Run("kubectl-"+v, func(t *testing.T) {
			ns := e.namespace(t, "kubectl-"+strings.ReplaceAll(v, ".", "-"))
			ve := &env{c: e.c, client: e.client, ns: ns, ctx: e.ctx}
			k := func(stdin string, args ...string) string {
				t.Helper()
				out, err := e.c.Kubectl(t, bins[v], stdin, append([]string{"-n", ns}, args...)...)
				if err != nil {
					t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
				}
				return out
			}
			rolloutStatus := func() {
				t.Helper()
				out := k("", "rollout", "status", "deployment/my-app", "--timeout=60s")
				if !strings.Contains(out, "successfully rolled out") {
					t.Fatalf("rollout status: %s", out)
				}
			}
			images := func() map[string]int {
				t.Helper()
				pods := ve.waitRunning(t, "my-app", 3, 30*time.Second)
				m := map[string]int{}
				for _, p := range pods {
					m[p.Spec.Containers[0].Image]++
				}
				return m
			}

			k(seedDeployment, "apply", "-f", "-")
			rolloutStatus()
			ve.waitRunning(t, "my-app", 2, 30*time.Second)
			k("", "scale", "deployment/my-app", "--replicas=3")
			rolloutStatus()
			if m := images(); m["my-app:v1.2.3"] != 3 {
				t.Fatalf("after scale: images %v", m)
			}

			k("", "set", "image", "deployment/my-app", "my-app=my-app:v2.0.0")
			rolloutStatus()
			if m := images(); m["my-app:v2.0.0"] != 3 {
				t.Fatalf("after rollout to v2: images %v", m)
			}
			hist := k("", "rollout", "history", "deployment/my-app")
			if !strings.Contains(hist, "REVISION") || !hasLineStarting(hist, "1") || !hasLineStarting(hist, "2") {
				t.Fatalf("rollout history lacks revisions 1 and 2:\n%s", hist)
			}
			rev1 := k("", "rollout", "history", "deployment/my-app", "--revision=1")
			if !strings.Contains(rev1, "my-app:v1.2.3") {
				t.Errorf("history of revision 1 does not show v1:\n%s", rev1)
			}

			k("", "rollout", "undo", "deployment/my-app")
			rolloutStatus()
			if m := images(); m["my-app:v1.2.3"] != 3 {
				t.Fatalf("after undo: images %v", m)
			}
			hist = k("", "rollout", "history", "deployment/my-app")
			if !hasLineStarting(hist, "3") || hasLineStarting(hist, "1") {
				t.Errorf("after undo, history should have revisions 2 and 3 (1 became 3):\n%s", hist)
			}
			k("", "rollout", "undo", "deployment/my-app", "--to-revision=2")
			rolloutStatus()
			if m := images(); m["my-app:v2.0.0"] != 3 {
				t.Fatalf("after undo --to-revision=2: images %v", m)
			}

			// Paused, a template change does not roll out until resumed.
			k("", "rollout", "pause", "deployment/my-app")
			k("", "set", "image", "deployment/my-app", "my-app=my-app:v3.0.0")
			time.Sleep(500 * time.Millisecond)
			if m := images(); m["my-app:v2.0.0"] != 3 {
				t.Fatalf("paused deployment rolled: images %v", m)
			}
			if out, err := e.c.Kubectl(t, bins[v], "", "-n", ns, "rollout", "undo", "deployment/my-app"); err == nil {
				t.Errorf("undo of a paused deployment succeeded; upstream refuses it:\n%s", out)
			}
			k("", "rollout", "resume", "deployment/my-app")
			rolloutStatus()
			if m := images(); m["my-app:v3.0.0"] != 3 {
				t.Fatalf("after resume: images %v", m)
			}

			before := map[string]bool{}
			for _, p := range ve.waitRunning(t, "my-app", 3, 30*time.Second) {
				before[p.Name] = true
			}
			k("", "rollout", "restart", "deployment/my-app")
			rolloutStatus()
			for _, p := range ve.waitRunning(t, "my-app", 3, 30*time.Second) {
				if before[p.Name] {
					t.Errorf("pod %s survived rollout restart", p.Name)
				}
			}
			d, err := e.client.AppsV1().Deployments(ns).Get(e.ctx, "my-app", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if d.Spec.Template.Annotations["kubectl.kubernetes.io/restartedAt"] == "" {
				t.Errorf("restart did not stamp the template: %v", d.Spec.Template.Annotations)
			}
			if got, want := d.Annotations[revisionAnnotation], "6"; got != want {
				t.Errorf("final revision %q, want %q", got, want)
			}
			out := k("", "get", "deployment", "my-app")
			if !strings.Contains(out, "3/3") {
				t.Errorf("kubectl get deployment:\n%s", out)
			}
			t.Log(fmt.Sprintf("final:\n%s", out))
		})
	}
}

func hasLineStarting(s, prefix string) bool {
	for _, l := range strings.Split(s, "\n") {
		f := strings.Fields(l)
		if len(f) > 0 && f[0] == prefix {
			return true
		}
	}
	return false
}
