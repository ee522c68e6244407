// Package volumes holds integration tests for PersistentVolume binding and
// the local-path provisioner on an in-process control plane with hollow
// nodes, driven partly through real kubectl.
package volumes

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"skiff.dev/skiff/internal/hollow"
	"skiff.dev/skiff/test/integration/framework"
)

func start(t *testing.T) *framework.Cluster {
	t.Helper()
	c := framework.Start(t, framework.Options{ControllerManager: true, Scheduler: true})
	ctx, cancel := context.WithCancel(context.Background())
	nodes := hollow.New(c.Client, hollow.Options{Count: 3, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	done := make(chan struct{})
	go func() { defer close(done); _ = nodes.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return c
}

func poll(t *testing.T, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 60*time.Second, true, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

func newestKubectl(t *testing.T) string {
	bins := framework.KubectlBinaries()
	if b, ok := bins["1.33"]; ok {
		return b
	}
	for _, b := range bins {
		return b
	}
	t.Skip("no kubectl binaries installed")
	return ""
}

const staticManifest = `apiVersion: v1
kind: PersistentVolume
metadata:
  name: small
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  storageClassName: manual
  persistentVolumeReclaimPolicy: Retain
  hostPath: {path: /tmp/small}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions:
        - {key: kubernetes.io/hostname, operator: In, values: [hollow-node-2]}
---
apiVersion: v1
kind: PersistentVolume
metadata:
  name: big
spec:
  capacity: {storage: 10Gi}
  accessModes: [ReadWriteOnce]
  storageClassName: manual
  hostPath: {path: /tmp/big}
---
apiVersion: v1
kind: PersistentVolume
metadata:
  name: too-small
spec:
  capacity: {storage: 100Mi}
  accessModes: [ReadWriteOnce]
  storageClassName: manual
  hostPath: {path: /tmp/too-small}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: data
spec:
  storageClassName: manual
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 500Mi}}
`

const podManifest = `apiVersion: v1
kind: Pod
metadata:
  name: user
spec:
  containers:
  - name: c
    image: nginx
  volumes:
  - name: d
    persistentVolumeClaim: {claimName: data}
`

// A pre-created local PV: the claim binds to the smallest matching volume
// and the pod follows the volume's node affinity.
func TestStaticLocalVolumeWithKubectl(t *testing.T) {
	c := start(t)
	kubectl := newestKubectl(t)
	if out, err := c.Kubectl(t, kubectl, staticManifest, "apply", "-f", "-"); err != nil {
		t.Fatalf("apply: %v: %s", err, out)
	}
	poll(t, "claim bound", func(ctx context.Context) (bool, error) {
		out, err := c.Kubectl(t, kubectl, "", "get", "pvc", "data", "-o", "jsonpath={.status.phase}/{.spec.volumeName}")
		return err == nil && out == "Bound/small", nil
	})
	if out, err := c.Kubectl(t, kubectl, podManifest, "apply", "-f", "-"); err != nil {
		t.Fatalf("apply pod: %v: %s", err, out)
	}
	poll(t, "pod scheduled", func(ctx context.Context) (bool, error) {
		out, err := c.Kubectl(t, kubectl, "", "get", "pod", "user", "-o", "jsonpath={.spec.nodeName}")
		return err == nil && out != "", nil
	})
	out, _ := c.Kubectl(t, kubectl, "", "get", "pod", "user", "-o", "jsonpath={.spec.nodeName}")
	if out != "hollow-node-2" {
		t.Errorf("pod on %q, want the volume's node hollow-node-2", out)
	}
	ctx := context.Background()
	pv, err := c.Client.CoreV1().PersistentVolumes().Get(ctx, "small", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pv.Status.Phase != corev1.VolumeBound || pv.Spec.ClaimRef == nil || pv.Spec.ClaimRef.Name != "data" || pv.Annotations["pv.kubernetes.io/bound-by-controller"] != "yes" {
		t.Errorf("volume = %+v %+v", pv.Spec.ClaimRef, pv.Status)
	}
	pvc, err := c.Client.CoreV1().PersistentVolumeClaims("default").Get(ctx, "data", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pvc.Annotations["pv.kubernetes.io/bind-completed"] != "yes" || pvc.Status.Capacity.Storage().String() != "1Gi" {
		t.Errorf("claim = %v %+v", pvc.Annotations, pvc.Status)
	}
	// Retain: deleting the claim leaves the volume Released.
	if out, err := c.Kubectl(t, kubectl, "", "delete", "pod", "user", "--grace-period=0", "--force"); err != nil {
		t.Fatalf("delete pod: %v: %s", err, out)
	}
	if out, err := c.Kubectl(t, kubectl, "", "delete", "pvc", "data"); err != nil {
		t.Fatalf("delete pvc: %v: %s", err, out)
	}
	poll(t, "volume released", func(ctx context.Context) (bool, error) {
		pv, err := c.Client.CoreV1().PersistentVolumes().Get(ctx, "small", metav1.GetOptions{})
		return err == nil && pv.Status.Phase == corev1.VolumeReleased, nil
	})
}

const dynamicManifest = `apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: dyn
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 2Gi}}
---
apiVersion: v1
kind: Pod
metadata:
  name: dyn-user
spec:
  containers:
  - name: c
    image: nginx
  volumes:
  - name: d
    persistentVolumeClaim: {claimName: dyn}
`

// The default local-path class provisions a node-local volume on the node
// the pod was scheduled to; deleting the claim deletes the volume.
func TestDynamicProvisioningWithDefaultClass(t *testing.T) {
	c := start(t)
	kubectl := newestKubectl(t)
	ctx := context.Background()
	if out, err := c.Kubectl(t, kubectl, "", "get", "storageclass"); err != nil || !strings.Contains(out, "local-path (default)") {
		t.Fatalf("get storageclass: %v: %s", err, out)
	}
	if out, err := c.Kubectl(t, kubectl, dynamicManifest, "apply", "-f", "-"); err != nil {
		t.Fatalf("apply: %v: %s", err, out)
	}
	var pvc *corev1.PersistentVolumeClaim
	poll(t, "claim bound", func(ctx context.Context) (bool, error) {
		var err error
		pvc, err = c.Client.CoreV1().PersistentVolumeClaims("default").Get(ctx, "dyn", metav1.GetOptions{})
		return err == nil && pvc.Status.Phase == corev1.ClaimBound, nil
	})
	if pvc.Spec.StorageClassName == nil || *pvc.Spec.StorageClassName != "local-path" {
		t.Errorf("storageClassName = %v, want the default local-path", pvc.Spec.StorageClassName)
	}
	// The claim binds before the pod does (the scheduler's PreBind waits
	// for it), so wait for the pod's node too.
	podNode(t, c, "dyn-user")
	pod, err := c.Client.CoreV1().Pods("default").Get(ctx, "dyn-user", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if node := pvc.Annotations["volume.kubernetes.io/selected-node"]; node == "" || node != pod.Spec.NodeName {
		t.Errorf("selected node %q, pod on %q", node, pod.Spec.NodeName)
	}
	pv, err := c.Client.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantPath := filepath.Join(c.DataDir, "storage", "pvc-"+string(pvc.UID))
	if pv.Spec.HostPath == nil || pv.Spec.HostPath.Path != wantPath {
		t.Errorf("host path = %+v, want %s", pv.Spec.HostPath, wantPath)
	}
	terms := pv.Spec.NodeAffinity.Required.NodeSelectorTerms
	if len(terms) != 1 || terms[0].MatchExpressions[0].Values[0] != pod.Spec.NodeName {
		t.Errorf("node affinity = %+v, want the pod's node %s", terms, pod.Spec.NodeName)
	}
	if pv.Spec.Capacity.Storage().String() != "2Gi" || pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete {
		t.Errorf("volume spec = %+v", pv.Spec)
	}
	zero := int64(0)
	if err := c.Client.CoreV1().Pods("default").Delete(ctx, "dyn-user", metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	if err := c.Client.CoreV1().PersistentVolumeClaims("default").Delete(ctx, "dyn", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, "volume deleted", func(ctx context.Context) (bool, error) {
		_, err := c.Client.CoreV1().PersistentVolumes().Get(ctx, pv.Name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
}
