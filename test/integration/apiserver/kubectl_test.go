package apiserver

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"skiff.dev/skiff/test/integration/framework"
)

// kubectl is one real kubectl binary bound to a cluster and a namespace of
// its own, so both versions can share one control plane.
type kubectl struct {
	c   *framework.Cluster
	bin string
	ns  string
}

// eachKubectl runs fn once per installed kubectl binary (1.27 and 1.33),
// each against a fresh namespace in the shared cluster c.
func eachKubectl(t *testing.T, c *framework.Cluster, prefix string, fn func(t *testing.T, k *kubectl)) {
	t.Helper()
	bins := framework.KubectlBinaries()
	if len(bins) == 0 {
		t.Skip("no kubectl binaries installed (kubectl.1.27, kubectl.1.33)")
	}
	versions := make([]string, 0, len(bins))
	for v := range bins {
		versions = append(versions, v)
	}
	sort.Strings(versions)
	for _, v := range versions {
		t.Run("kubectl-"+v, func(t *testing.T) {
			ns := prefix + "-" + strings.ReplaceAll(v, ".", "-")
			createNamespace(t, c, ns)
			fn(t, &kubectl{c: c, bin: bins[v], ns: ns})
		})
	}
}

func createNamespace(t *testing.T, c *framework.Cluster, ns string) {
	t.Helper()
	_, err := c.Client.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("creating namespace %s: %v", ns, err)
	}
}

// run runs kubectl in k's namespace and fails the test on a non-zero exit.
func (k *kubectl) run(t *testing.T, args ...string) string {
	t.Helper()
	return k.runIn(t, "", args...)
}

func (k *kubectl) runIn(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, err := k.try(t, stdin, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (k *kubectl) try(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	return k.c.Kubectl(t, k.bin, stdin, append([]string{"-n", k.ns}, args...)...)
}

func testdata(t *testing.T, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("testdata", name))
	if err != nil {
		t.Fatalf("resolving testdata: %v", err)
	}
	return p
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

func mustContain(t *testing.T, what, out string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(out, w) {
			t.Errorf("%s: output lacks %q:\n%s", what, w, out)
		}
	}
}

// headerFields returns the column names of the first line of table output.
func headerFields(out string) []string {
	line, _, _ := strings.Cut(out, "\n")
	return strings.Fields(line)
}

func TestKubectlApplyAndMutate(t *testing.T) {
	c := framework.Start(t, framework.Options{})
	ctx := context.Background()
	eachKubectl(t, c, "apply", func(t *testing.T, k *kubectl) {
		out := k.run(t, "apply", "-f", testdata(t, "seeds.yaml"))
		mustContain(t, "apply", out,
			"deployment.apps/my-app created", "service/my-app-service created",
			"configmap/app-config created", "secret/app-secrets created", "pod/my-app created")
		cm, err := c.Client.CoreV1().ConfigMaps(k.ns).Get(ctx, "app-config", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("getting applied configmap: %v", err)
		}
		if cm.Data["LOG_LEVEL"] != "info" || cm.Annotations[corev1.LastAppliedConfigAnnotation] == "" {
			t.Fatalf("applied configmap = %v (annotations %v)", cm.Data, cm.Annotations)
		}
		sec, err := c.Client.CoreV1().Secrets(k.ns).Get(ctx, "app-secrets", metav1.GetOptions{})
		if err != nil || string(sec.Data["DATABASE_PASSWORD"]) != "password123" {
			t.Fatalf("applied secret: %v %q", err, sec.Data)
		}

		// Re-apply unchanged: nothing to do.
		out = k.run(t, "apply", "-f", testdata(t, "seeds.yaml"))
		mustContain(t, "re-apply", out, "configmap/app-config unchanged", "deployment.apps/my-app unchanged")

		// 3-way merge: LOG_LEVEL removed from the file, replicas 3 -> 5.
		out = k.run(t, "apply", "-f", testdata(t, "seeds-edited.yaml"))
		mustContain(t, "apply edited", out, "configmap/app-config configured", "deployment.apps/my-app configured")
		cm, err = c.Client.CoreV1().ConfigMaps(k.ns).Get(ctx, "app-config", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("getting configmap: %v", err)
		}
		if _, ok := cm.Data["LOG_LEVEL"]; ok || cm.Data["DATABASE_HOST"] == "" {
			t.Errorf("after 3-way merge data = %v, want LOG_LEVEL gone and DATABASE_HOST kept", cm.Data)
		}
		d, err := c.Client.AppsV1().Deployments(k.ns).Get(ctx, "my-app", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("getting deployment: %v", err)
		}
		if d.Spec.Replicas == nil || *d.Spec.Replicas != 5 {
			t.Errorf("replicas = %v, want 5", d.Spec.Replicas)
		}
		if d.Generation != 2 {
			t.Errorf("deployment generation = %d after one spec change, want 2", d.Generation)
		}

		// diff: exit 1 with a difference, 0 without.
		out, err = k.try(t, "", "diff", "-f", testdata(t, "seeds.yaml"))
		if exitCode(err) != 1 || !strings.Contains(out, "LOG_LEVEL") {
			t.Errorf("diff against changed objects: exit %d, want 1; output:\n%s", exitCode(err), out)
		}
		out, err = k.try(t, "", "diff", "-f", testdata(t, "seeds-edited.yaml"))
		if exitCode(err) != 0 {
			t.Errorf("diff against identical objects: exit %d, want 0; output:\n%s", exitCode(err), out)
		}

		// Server-side apply with two managers and a conflict.
		ssa := func(manager, value string, force bool) (string, error) {
			args := []string{"apply", "--server-side", "--field-manager=" + manager, "-f", "-"}
			if force {
				args = append(args, "--force-conflicts")
			}
			return k.try(t, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\ndata:\n  key: "+value+"\n", args...)
		}
		if out, err := ssa("alice", "a", false); err != nil {
			t.Fatalf("server-side apply: %v\n%s", err, out)
		}
		out, err = ssa("bob", "b", false)
		if err == nil || !strings.Contains(strings.ToLower(out), "conflict") {
			t.Errorf("conflicting server-side apply: err %v, want a conflict; output:\n%s", err, out)
		}
		if cm, _ := c.Client.CoreV1().ConfigMaps(k.ns).Get(ctx, "ssa", metav1.GetOptions{}); cm == nil || cm.Data["key"] != "a" {
			t.Errorf("a rejected apply changed the object: %v", cm)
		}
		if out, err := ssa("bob", "b", true); err != nil {
			t.Fatalf("forced server-side apply: %v\n%s", err, out)
		}
		cm, err = c.Client.CoreV1().ConfigMaps(k.ns).Get(ctx, "ssa", metav1.GetOptions{})
		if err != nil || cm.Data["key"] != "b" {
			t.Fatalf("after forced apply: %v %v", err, cm)
		}
		var managers []string
		for _, mf := range cm.ManagedFields {
			managers = append(managers, mf.Manager)
		}
		if !strings.Contains(strings.Join(managers, ","), "bob") {
			t.Errorf("managedFields managers = %v, want bob", managers)
		}

		// label, annotate.
		k.run(t, "label", "configmap", "app-config", "tier=backend")
		k.run(t, "annotate", "configmap", "app-config", "owner=team-a")
		cm, err = c.Client.CoreV1().ConfigMaps(k.ns).Get(ctx, "app-config", metav1.GetOptions{})
		if err != nil || cm.Labels["tier"] != "backend" || cm.Annotations["owner"] != "team-a" {
			t.Fatalf("after label/annotate: %v labels=%v annotations=%v", err, cm.Labels, cm.Annotations)
		}
		k.run(t, "label", "configmap", "app-config", "tier-")
		cm, _ = c.Client.CoreV1().ConfigMaps(k.ns).Get(ctx, "app-config", metav1.GetOptions{})
		if _, ok := cm.Labels["tier"]; ok {
			t.Errorf("label tier- left %v", cm.Labels)
		}

		// patch: strategic, merge, json.
		k.run(t, "patch", "deployment", "my-app", "--type=strategic", "-p",
			`{"spec":{"template":{"spec":{"containers":[{"name":"my-app","image":"my-app:v2"}]}}}}`)
		k.run(t, "patch", "configmap", "app-config", "--type=merge", "-p", `{"data":{"MERGED":"yes"}}`)
		k.run(t, "patch", "configmap", "app-config", "--type=json", "-p", `[{"op":"add","path":"/data/JSON","value":"yes"},{"op":"remove","path":"/data/MERGED"}]`)
		d, _ = c.Client.AppsV1().Deployments(k.ns).Get(ctx, "my-app", metav1.GetOptions{})
		if cs := d.Spec.Template.Spec.Containers; len(cs) != 1 || cs[0].Image != "my-app:v2" || len(cs[0].Ports) != 1 {
			t.Errorf("strategic patch left containers %+v, want one my-app:v2 with its port kept", cs)
		}
		cm, _ = c.Client.CoreV1().ConfigMaps(k.ns).Get(ctx, "app-config", metav1.GetOptions{})
		if _, merged := cm.Data["MERGED"]; merged || cm.Data["JSON"] != "yes" {
			t.Errorf("after merge+json patch data = %v", cm.Data)
		}
		if _, err := k.try(t, "", "patch", "configmap", "app-config", "--type=json", "-p", `[{"op":"test","path":"/data/JSON","value":"no"}]`); err == nil {
			t.Errorf("failing json patch test op succeeded")
		}

		// scale.
		k.run(t, "scale", "deployment", "my-app", "--replicas=7")
		d, _ = c.Client.AppsV1().Deployments(k.ns).Get(ctx, "my-app", metav1.GetOptions{})
		if *d.Spec.Replicas != 7 {
			t.Errorf("after scale replicas = %d, want 7", *d.Spec.Replicas)
		}
		if out, err := k.try(t, "", "scale", "deployment", "my-app", "--replicas=1", "--current-replicas=3"); err == nil {
			t.Errorf("scale with a wrong --current-replicas succeeded:\n%s", out)
		}

		// edit-style replace: get -o json | modify | replace -f -.
		raw := k.run(t, "get", "configmap", "app-config", "-o", "json")
		var obj map[string]any
		if err := json.Unmarshal([]byte(raw), &obj); err != nil {
			t.Fatalf("get -o json is not JSON: %v\n%s", err, raw)
		}
		obj["data"].(map[string]any)["REPLACED"] = "1"
		body, _ := json.Marshal(obj)
		k.runIn(t, string(body), "replace", "-f", "-")
		cm, _ = c.Client.CoreV1().ConfigMaps(k.ns).Get(ctx, "app-config", metav1.GetOptions{})
		if cm.Data["REPLACED"] != "1" {
			t.Errorf("replace did not take: %v", cm.Data)
		}
		// Replacing again with the now stale resourceVersion is a conflict.
		if out, err := k.try(t, string(body), "replace", "-f", "-"); err == nil || !strings.Contains(out, "modified") {
			t.Errorf("stale replace: err %v, output:\n%s", err, out)
		}
	})
}

func TestKubectlReadCommands(t *testing.T) {
	c := framework.Start(t, framework.Options{})
	ctx := context.Background()
	eachKubectl(t, c, "read", func(t *testing.T, k *kubectl) {
		k.run(t, "apply", "-f", testdata(t, "seeds.yaml"))

		tables := []struct {
			args []string
			cols []string
		}{
			{[]string{"get", "pods"}, []string{"NAME", "READY", "STATUS", "RESTARTS", "AGE"}},
			{[]string{"get", "pods", "-o", "wide"}, []string{"NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED", "NODE", "READINESS", "GATES"}},
			{[]string{"get", "deployments"}, []string{"NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"}},
			{[]string{"get", "services"}, []string{"NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"}},
			{[]string{"get", "configmaps"}, []string{"NAME", "DATA", "AGE"}},
			{[]string{"get", "secrets"}, []string{"NAME", "TYPE", "DATA", "AGE"}},
		}
		for _, tc := range tables {
			out := k.run(t, tc.args...)
			if got := headerFields(out); strings.Join(got, " ") != strings.Join(tc.cols, " ") {
				t.Errorf("kubectl %s header = %v, want %v\n%s", strings.Join(tc.args, " "), got, tc.cols, out)
			}
		}
		out := k.run(t, "get", "pods")
		mustContain(t, "get pods", out, "my-app", "0/1", "Pending")
		out = k.run(t, "get", "configmap", "app-config")
		mustContain(t, "get configmap", out, "app-config", " 2 ")

		out = k.run(t, "get", "configmap", "app-config", "-o", "yaml")
		mustContain(t, "-o yaml", out, "kind: ConfigMap", "LOG_LEVEL: info", "name: app-config", "resourceVersion:")
		out = k.run(t, "get", "deployment", "my-app", "-o", "json")
		var d map[string]any
		if err := json.Unmarshal([]byte(out), &d); err != nil || d["kind"] != "Deployment" {
			t.Errorf("-o json: %v kind=%v", err, d["kind"])
		}
		out = k.run(t, "get", "configmap", "app-config", "-o", "jsonpath={.data.LOG_LEVEL}")
		if out != "info" {
			t.Errorf("jsonpath = %q, want info", out)
		}
		out = k.run(t, "get", "pods", "-l", "app=my-app", "-o", "name")
		if strings.TrimSpace(out) != "pod/my-app" {
			t.Errorf("get -l -o name = %q", out)
		}

		// describe.
		out = k.run(t, "describe", "deployment", "my-app")
		mustContain(t, "describe deployment", out, "Name:", "my-app", "Replicas:", "3 desired", "my-app:v1.2.3", "StrategyType:")
		out = k.run(t, "describe", "pod", "my-app")
		mustContain(t, "describe pod", out, "Name:", "my-app", "Status:", "Pending", "Liveness:", "http-get")
		out = k.run(t, "describe", "configmap", "app-config")
		mustContain(t, "describe configmap", out, "DATABASE_HOST", "postgres.default.svc.cluster.local")

		// events: created through client-go, listed by kubectl.
		pod, err := c.Client.CoreV1().Pods(k.ns).Get(ctx, "my-app", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("getting pod: %v", err)
		}
		ev := &corev1.Event{
			ObjectMeta:     metav1.ObjectMeta{Name: "my-app.1", Namespace: k.ns},
			InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: "my-app", Namespace: k.ns, APIVersion: "v1", UID: pod.UID},
			Reason:         "TestedReason", Message: "hello from the test", Type: corev1.EventTypeNormal,
			Source: corev1.EventSource{Component: "test"}, Count: 1,
			FirstTimestamp: metav1.Now(), LastTimestamp: metav1.Now(),
		}
		if _, err := c.Client.CoreV1().Events(k.ns).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating event: %v", err)
		}
		out = k.run(t, "get", "events")
		mustContain(t, "get events", out, "TestedReason", "pod/my-app", "hello from the test")
		mustContain(t, "get events header", strings.Join(headerFields(out), " "), "LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE")
		out = k.run(t, "describe", "pod", "my-app")
		mustContain(t, "describe pod events", out, "TestedReason")

		// discovery-driven commands.
		out = k.run(t, "explain", "deployment.spec.strategy")
		mustContain(t, "explain", out, "rollingUpdate", "type", "DeploymentStrategy")
		out = k.run(t, "api-resources")
		mustContain(t, "api-resources", out, "deployments", "apps/v1", "Deployment", "pods", "po ", "Pod", "configmaps", "cm ")
		out = k.run(t, "api-resources", "--namespaced=false", "-o", "name")
		mustContain(t, "api-resources cluster-scoped", out, "namespaces", "nodes", "clusterroles.rbac.authorization.k8s.io")
		if strings.Contains(out, "\npods\n") {
			t.Errorf("api-resources --namespaced=false lists pods")
		}
		out = k.run(t, "api-versions")
		for _, gv := range []string{"v1", "apps/v1", "batch/v1", "rbac.authorization.k8s.io/v1", "autoscaling/v2"} {
			found := false
			for _, l := range strings.Split(out, "\n") {
				if l == gv {
					found = true
				}
			}
			if !found {
				t.Errorf("api-versions lacks %s:\n%s", gv, out)
			}
		}
	})
}

func TestKubectlCreateDeleteWatch(t *testing.T) {
	c := framework.Start(t, framework.Options{})
	ctx := context.Background()
	eachKubectl(t, c, "cdw", func(t *testing.T, k *kubectl) {
		nsName := k.ns + "-created"
		k.run(t, "create", "namespace", nsName)
		if _, err := c.Client.CoreV1().Namespaces().Get(ctx, nsName, metav1.GetOptions{}); err != nil {
			t.Fatalf("created namespace: %v", err)
		}
		if out, err := k.try(t, "", "create", "namespace", nsName); err == nil || !strings.Contains(out, "AlreadyExists") {
			t.Errorf("creating an existing namespace: err %v\n%s", err, out)
		}
		k.run(t, "create", "configmap", "cm1", "--from-literal=a=1", "--from-literal=b=2")
		k.run(t, "create", "secret", "generic", "s1", "--from-literal=password=hunter2")
		cm, err := c.Client.CoreV1().ConfigMaps(k.ns).Get(ctx, "cm1", metav1.GetOptions{})
		if err != nil || cm.Data["a"] != "1" || cm.Data["b"] != "2" {
			t.Fatalf("created configmap: %v %v", err, cm)
		}
		s, err := c.Client.CoreV1().Secrets(k.ns).Get(ctx, "s1", metav1.GetOptions{})
		if err != nil || string(s.Data["password"]) != "hunter2" || s.Type != corev1.SecretTypeOpaque {
			t.Fatalf("created secret: %v %v", err, s)
		}
		if out, err := k.try(t, "", "create", "configmap", "Bad_Name"); err == nil || !strings.Contains(out, "Invalid") {
			t.Errorf("create with an invalid name: err %v\n%s", err, out)
		}

		// Server-side apply of the whole multi-document manifest, twice:
		// the second is a no-op that writes nothing.
		out := k.run(t, "apply", "--server-side", "-f", testdata(t, "seeds.yaml"))
		mustContain(t, "apply --server-side", out, "deployment.apps/my-app serverside-applied", "secret/app-secrets serverside-applied", "pod/my-app serverside-applied")
		d1, err := c.Client.AppsV1().Deployments(k.ns).Get(ctx, "my-app", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("server-side applied deployment: %v", err)
		}
		k.run(t, "apply", "--server-side", "-f", testdata(t, "seeds.yaml"))
		d2, err := c.Client.AppsV1().Deployments(k.ns).Get(ctx, "my-app", metav1.GetOptions{})
		if err != nil || d2.ResourceVersion != d1.ResourceVersion {
			t.Errorf("re-applying the same manifest server-side changed the object: %v rv %s -> %s", err, d1.ResourceVersion, d2.ResourceVersion)
		}
		if len(d2.ManagedFields) != 1 || d2.ManagedFields[0].Manager != "kubectl" || d2.ManagedFields[0].Operation != metav1.ManagedFieldsOperationApply {
			t.Errorf("managedFields after server-side apply: %+v", d2.ManagedFields)
		}
		out = k.run(t, "apply", "--server-side", "--dry-run=server", "-f", testdata(t, "seeds-edited.yaml"))
		mustContain(t, "apply --server-side --dry-run=server", out, "(server dry run)")
		if d3, _ := c.Client.AppsV1().Deployments(k.ns).Get(ctx, "my-app", metav1.GetOptions{}); d3 == nil || *d3.Spec.Replicas != 3 {
			t.Errorf("a server dry run changed the deployment")
		}

		// get -w: start it, make a change, see the line.
		watchSeesChange(t, k, func() {
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "watched"}, Data: map[string]string{"x": "1", "y": "2", "z": "3"}}
			if _, err := c.Client.CoreV1().ConfigMaps(k.ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
				t.Errorf("creating watched configmap: %v", err)
			}
		}, "watched", "3")

		// delete with the cascade variants.
		k.run(t, "delete", "configmap", "cm1", "--cascade=background")
		if _, err := c.Client.CoreV1().ConfigMaps(k.ns).Get(ctx, "cm1", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("after delete --cascade=background: %v", err)
		}
		// Orphan and foreground without a garbage collector: the object
		// stays, terminating, with the orphan or foregroundDeletion
		// finalizer the collector would act on (so kubectl must not wait).
		k.run(t, "delete", "secret", "s1", "--cascade=orphan", "--wait=false")
		s, err = c.Client.CoreV1().Secrets(k.ns).Get(ctx, "s1", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("orphan-deleted object without GC: %v", err)
		}
		if s.DeletionTimestamp == nil || len(s.Finalizers) != 1 || s.Finalizers[0] != metav1.FinalizerOrphanDependents {
			t.Errorf("orphan delete: deletionTimestamp=%v finalizers=%v", s.DeletionTimestamp, s.Finalizers)
		}
		k.run(t, "delete", "configmap", "watched", "--cascade=foreground", "--wait=false")
		w, err := c.Client.CoreV1().ConfigMaps(k.ns).Get(ctx, "watched", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("foreground-deleted object without GC: %v", err)
		}
		if w.DeletionTimestamp == nil || len(w.Finalizers) != 1 || w.Finalizers[0] != metav1.FinalizerDeleteDependents {
			t.Errorf("foreground delete: deletionTimestamp=%v finalizers=%v", w.DeletionTimestamp, w.Finalizers)
		}
		if out, err := k.try(t, "", "delete", "configmap", "nope"); err == nil || !strings.Contains(out, "NotFound") {
			t.Errorf("deleting a missing object: err %v\n%s", err, out)
		}
		k.run(t, "delete", "namespace", nsName, "--wait=false")
	})
}

// watchSeesChange runs `kubectl get configmaps -w`, calls change once the
// initial listing is out, and waits for a line holding all of want.
func watchSeesChange(t *testing.T, k *kubectl, change func(), want ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, k.bin, "--kubeconfig", k.c.Kubeconfig, "-n", k.ns, "get", "configmaps", "-w")
	cmd.Env = append(os.Environ(), "KUBECONFIG=", "HOME="+k.c.DataDir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("piping kubectl: %v", err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting kubectl get -w: %v", err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var seen []string
	changed := false
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("kubectl get -w ended early; saw %q", seen)
			}
			seen = append(seen, l)
			// The first line after the header is kube-root-ca.crt or
			// another existing object: the watch is established.
			if !changed && len(seen) >= 2 {
				changed = true
				change()
			}
			all := true
			for _, w := range want {
				all = all && strings.Contains(l, w)
			}
			if all && changed {
				return
			}
		case <-time.After(15 * time.Second):
			if !changed {
				changed = true
				change()
				continue
			}
			t.Fatalf("kubectl get -w did not show %v; saw %q", want, seen)
		}
	}
}
