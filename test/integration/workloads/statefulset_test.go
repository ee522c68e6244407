package workloads

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"skiff.dev/skiff/test/integration/framework"
)

const webSet = `apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  clusterIP: None
  selector:
    app: web
  ports:
  - port: 80
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: web
  replicas: 3
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: c
        image: nginx:1
  volumeClaimTemplates:
  - metadata:
      name: data
    spec:
      accessModes: ["ReadWriteOnce"]
      resources:
        requests:
          storage: 1Gi
`

// podEvents records the order in which pods of ns are added and deleted.
type podEvents struct {
	mu             sync.Mutex
	added, deleted []string
}

func watchPods(ctx context.Context, t *testing.T, client kubernetes.Interface, ns string) *podEvents {
	t.Helper()
	w, err := client.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("watching pods: %v", err)
	}
	ev := &podEvents{}
	go func() {
		defer w.Stop()
		for e := range w.ResultChan() {
			p, ok := e.Object.(*v1.Pod)
			if !ok {
				continue
			}
			ev.mu.Lock()
			switch e.Type {
			case watch.Added:
				ev.added = append(ev.added, p.Name)
			case watch.Deleted:
				ev.deleted = append(ev.deleted, p.Name)
			}
			ev.mu.Unlock()
		}
	}()
	return ev
}

func (e *podEvents) snapshot() (added, deleted []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.added), slices.Clone(e.deleted)
}

func TestKubectlStatefulSetScaleOrderAndUndo(t *testing.T) {
	bins := framework.KubectlBinaries()
	if len(bins) == 0 {
		t.Skip("no kubectl binaries installed")
	}
	c, _, ctx := start(t, 2)
	for v, bin := range bins {
		t.Run(v, func(t *testing.T) {
			ns := "sts-" + strings.ReplaceAll(v, ".", "-")
			kubectl := func(stdin string, args ...string) string {
				t.Helper()
				out, err := c.Kubectl(t, bin, stdin, append([]string{"-n", ns}, args...)...)
				if err != nil {
					t.Fatalf("kubectl %v: %v\n%s", args, err, out)
				}
				return out
			}
			if out, err := c.Kubectl(t, bin, "", "create", "namespace", ns); err != nil {
				t.Fatalf("create namespace: %v\n%s", err, out)
			}
			ev := watchPods(ctx, t, c.Client, ns)
			kubectl(webSet, "apply", "-f", "-")
			kubectl("", "rollout", "status", "statefulset/web", "--timeout=60s")
			added, _ := ev.snapshot()
			if strings.Join(added, ",") != "web-0,web-1,web-2" {
				t.Fatalf("creation order %v", added)
			}
			for i, name := range []string{"web-0", "web-1", "web-2"} {
				p, err := c.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if p.Spec.Hostname != name || p.Spec.Subdomain != "web" || p.Labels["apps.kubernetes.io/pod-index"] != []string{"0", "1", "2"}[i] {
					t.Fatalf("pod %s: hostname %q subdomain %q labels %v", name, p.Spec.Hostname, p.Spec.Subdomain, p.Labels)
				}
				if _, err := c.Client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "data-"+name, metav1.GetOptions{}); err != nil {
					t.Fatalf("claim of %s: %v", name, err)
				}
			}
			kubectl("", "scale", "statefulset/web", "--replicas=1")
			waitFor(t, 60*time.Second, "scale down to 1", func() (bool, error) {
				_, deleted := ev.snapshot()
				return len(deleted) == 2, nil
			})
			if _, deleted := ev.snapshot(); strings.Join(deleted, ",") != "web-2,web-1" {
				t.Fatalf("deletion order %v", deleted)
			}
			// Claims survive their pods.
			if _, err := c.Client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "data-web-2", metav1.GetOptions{}); err != nil {
				t.Fatalf("claim of a scaled-away pod: %v", err)
			}

			// History and rollback through kubectl.
			kubectl("", "set", "image", "statefulset/web", "c=nginx:2")
			kubectl("", "rollout", "status", "statefulset/web", "--timeout=60s")
			if img := podImage(ctx, t, c.Client, ns, "web-0"); img != "nginx:2" {
				t.Fatalf("after set image: %s", img)
			}
			hist := kubectl("", "rollout", "history", "statefulset/web")
			if !strings.Contains(hist, "1 ") || !strings.Contains(hist, "2 ") {
				t.Fatalf("rollout history:\n%s", hist)
			}
			kubectl("", "rollout", "undo", "statefulset/web")
			waitFor(t, 60*time.Second, "rollback to nginx:1", func() (bool, error) {
				return podImage(ctx, t, c.Client, ns, "web-0") == "nginx:1", nil
			})
			kubectl("", "rollout", "status", "statefulset/web", "--timeout=60s")
		})
	}
}

func podImage(ctx context.Context, t *testing.T, client kubernetes.Interface, ns, name string) string {
	p, err := client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return ""
	}
	return p.Spec.Containers[0].Image
}
