package volumes

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"skiff.dev/skiff/internal/controller/localpath"
	"skiff.dev/skiff/test/integration/framework"
)

func wffcClass(t *testing.T, c *framework.Cluster, name, provisioner string, topology []corev1.TopologySelectorTerm) {
	t.Helper()
	mode := storagev1.VolumeBindingWaitForFirstConsumer
	sc := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Provisioner: provisioner,
		VolumeBindingMode: &mode, AllowedTopologies: topology}
	if _, err := c.Client.StorageV1().StorageClasses().Create(context.Background(), sc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating storage class %s: %v", name, err)
	}
}

func localPV(t *testing.T, client kubernetes.Interface, name, class, size, node string) {
	t.Helper()
	pv := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PersistentVolumeSpec{
		Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)},
		AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
		StorageClassName:              class,
		PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
		PersistentVolumeSource:        corev1.PersistentVolumeSource{Local: &corev1.LocalVolumeSource{Path: "/mnt/" + name}},
		NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
			MatchExpressions: []corev1.NodeSelectorRequirement{{Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{node}}},
		}}}},
	}}
	if _, err := client.CoreV1().PersistentVolumes().Create(context.Background(), pv, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating pv %s: %v", name, err)
	}
}

func newClaim(t *testing.T, client kubernetes.Interface, name, class, size string) {
	t.Helper()
	pvc := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}, Spec: corev1.PersistentVolumeClaimSpec{
		StorageClassName: &class,
		AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
		Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}},
	}}
	if _, err := client.CoreV1().PersistentVolumeClaims("default").Create(context.Background(), pvc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating pvc %s: %v", name, err)
	}
}

func claimPod(t *testing.T, client kubernetes.Interface, name string, claims ...string) {
	t.Helper()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "localhost/skiff/testapp:v1"}}}}
	for _, c := range claims {
		pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: c, VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: c}}})
	}
	if _, err := client.CoreV1().Pods("default").Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating pod %s: %v", name, err)
	}
}

func podNode(t *testing.T, c *framework.Cluster, name string) string {
	t.Helper()
	var node string
	poll(t, "pod "+name+" scheduled", func(ctx context.Context) (bool, error) {
		p, err := c.Client.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		node = p.Spec.NodeName
		return node != "", nil
	})
	return node
}

// waitUnschedulable waits until the pod's PodScheduled=False message
// starts with want (the preemption note upstream appends follows it).
func waitUnschedulable(t *testing.T, c *framework.Cluster, pod, want string) {
	t.Helper()
	last := ""
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		p, err := c.Client.CoreV1().Pods("default").Get(ctx, pod, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodScheduled && cond.Status == corev1.ConditionFalse {
				last = cond.Message
				return strings.HasPrefix(cond.Message, want), nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("pod %s: PodScheduled message %q, want it to start with %q", pod, last, want)
	}
}

func boundClaim(t *testing.T, c *framework.Cluster, name string) *corev1.PersistentVolumeClaim {
	t.Helper()
	var pvc *corev1.PersistentVolumeClaim
	poll(t, "claim "+name+" bound", func(ctx context.Context) (bool, error) {
		var err error
		pvc, err = c.Client.CoreV1().PersistentVolumeClaims("default").Get(ctx, name, metav1.GetOptions{})
		return err == nil && pvc.Status.Phase == corev1.ClaimBound, nil
	})
	return pvc
}

// Pre-created local PVs on two hollow nodes: each pod lands on the node of
// the volume its claim can take, no volume goes to two claims, and a pod
// with no volume left gets upstream's FailedScheduling message.
func TestWaitForFirstConsumerPreCreatedLocalVolumes(t *testing.T) {
	c := start(t)
	ctx := context.Background()
	wffcClass(t, c, "local-static", "kubernetes.io/no-provisioner", nil)
	localPV(t, c.Client, "pv-node-2", "local-static", "1Gi", "hollow-node-2")
	localPV(t, c.Client, "pv-node-0", "local-static", "1Gi", "hollow-node-0")
	localPV(t, c.Client, "pv-node-1-small", "local-static", "100Mi", "hollow-node-1")
	for _, n := range []string{"data-a", "data-b", "data-c"} {
		newClaim(t, c.Client, n, "local-static", "500Mi")
	}
	// WaitForFirstConsumer: nothing binds before a pod uses the claim.
	pvc, err := c.Client.CoreV1().PersistentVolumeClaims("default").Get(ctx, "data-a", metav1.GetOptions{})
	if err != nil || pvc.Spec.VolumeName != "" {
		t.Fatalf("claim before any consumer: %v %+v", err, pvc)
	}
	// Two pods at once: the scheduler must not give both the same volume.
	claimPod(t, c.Client, "user-a", "data-a")
	claimPod(t, c.Client, "user-b", "data-b")
	nodes := map[string]string{}
	for _, p := range []string{"a", "b"} {
		node := podNode(t, c, "user-"+p)
		pvc := boundClaim(t, c, "data-"+p)
		want := map[string]string{"pv-node-2": "hollow-node-2", "pv-node-0": "hollow-node-0"}[pvc.Spec.VolumeName]
		if want == "" || node != want {
			t.Errorf("pod user-%s on %s with claim bound to %s", p, node, pvc.Spec.VolumeName)
		}
		if other, dup := nodes[pvc.Spec.VolumeName]; dup {
			t.Errorf("volume %s given to two claims (%s and data-%s)", pvc.Spec.VolumeName, other, p)
		}
		nodes[pvc.Spec.VolumeName] = "data-" + p
	}
	pv, err := c.Client.CoreV1().PersistentVolumes().Get(ctx, "pv-node-2", metav1.GetOptions{})
	if err != nil || pv.Status.Phase != corev1.VolumeBound || pv.Spec.ClaimRef == nil {
		t.Errorf("pv-node-2 = %v %+v", err, pv)
	}
	// The only volume left is too small: the third pod stays Pending.
	claimPod(t, c.Client, "user-c", "data-c")
	waitUnschedulable(t, c, "user-c", "0/3 nodes are available: 3 node(s) didn't find available persistent volumes to bind.")
	// A big enough volume on node 1 appears: the pod follows it.
	localPV(t, c.Client, "pv-node-1", "local-static", "1Gi", "hollow-node-1")
	if node := podNode(t, c, "user-c"); node != "hollow-node-1" {
		t.Errorf("user-c on %s, want hollow-node-1", node)
	}
	if pvc := boundClaim(t, c, "data-c"); pvc.Spec.VolumeName != "pv-node-1" {
		t.Errorf("data-c bound to %s", pvc.Spec.VolumeName)
	}
}

// A bound local volume whose node cannot take the pod: node affinity conflict.
func TestBoundVolumeNodeAffinityConflict(t *testing.T) {
	c := start(t)
	ctx := context.Background()
	wffcClass(t, c, "local-static", "kubernetes.io/no-provisioner", nil)
	localPV(t, c.Client, "pv-gone-node", "local-static", "1Gi", "no-such-node")
	newClaim(t, c.Client, "orphan", "local-static", "1Gi")
	// Pre-bind by hand, as an administrator would.
	pv, err := c.Client.CoreV1().PersistentVolumes().Get(ctx, "pv-gone-node", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pvc, err := c.Client.CoreV1().PersistentVolumeClaims("default").Get(ctx, "orphan", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pvc.Spec.VolumeName = pv.Name
	if _, err := c.Client.CoreV1().PersistentVolumeClaims("default").Update(ctx, pvc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	boundClaim(t, c, "orphan")
	claimPod(t, c.Client, "stuck", "orphan")
	waitUnschedulable(t, c, "stuck", "0/3 nodes are available: 3 node(s) had volume node affinity conflict.")
}

// The local-path provisioner provisions on the node the scheduler chose;
// allowedTopologies limits the choice to one node.
func TestLocalPathProvisioningOnSelectedNode(t *testing.T) {
	c := start(t)
	ctx := context.Background()
	wffcClass(t, c, "local-node-1", localpath.ProvisionerName, []corev1.TopologySelectorTerm{{
		MatchLabelExpressions: []corev1.TopologySelectorLabelRequirement{{Key: corev1.LabelHostname, Values: []string{"hollow-node-1"}}},
	}})
	for i := 0; i < 2; i++ {
		name := fmt.Sprintf("scratch-%d", i)
		newClaim(t, c.Client, name, "local-node-1", "1Gi")
		claimPod(t, c.Client, name, name)
	}
	for i := 0; i < 2; i++ {
		name := fmt.Sprintf("scratch-%d", i)
		if node := podNode(t, c, name); node != "hollow-node-1" {
			t.Errorf("pod %s on %s, want hollow-node-1 (allowedTopologies)", name, node)
		}
		pvc := boundClaim(t, c, name)
		if got := pvc.Annotations["volume.kubernetes.io/selected-node"]; got != "hollow-node-1" {
			t.Errorf("claim %s selected node %q", name, got)
		}
		pv, err := c.Client.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		terms := pv.Spec.NodeAffinity.Required.NodeSelectorTerms
		if len(terms) != 1 || terms[0].MatchExpressions[0].Values[0] != "hollow-node-1" {
			t.Errorf("volume %s node affinity %+v", pv.Name, terms)
		}
	}
}

// A StatefulSet with volumeClaimTemplates of the default WaitForFirstConsumer
// class: each ordinal's claim is provisioned on its pod's node.
func TestStatefulSetVolumeClaimTemplatesWaitForFirstConsumer(t *testing.T) {
	c := start(t)
	ctx := context.Background()
	replicas := int32(3)
	labels := map[string]string{"app": "db"}
	ss := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "default"}, Spec: appsv1.StatefulSetSpec{
		Replicas: &replicas, ServiceName: "db", PodManagementPolicy: appsv1.ParallelPodManagement,
		Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
			// No volumeMounts: skiff's StatefulSet validation does not yet
			// count volumeClaimTemplates as volumes (upstream skips that
			// check), see the report.
			Containers: []corev1.Container{{Name: "c", Image: "localhost/skiff/testapp:v1"}},
		}},
		VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{ObjectMeta: metav1.ObjectMeta{Name: "data"}, Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		}}},
	}}
	if _, err := c.Client.AppsV1().StatefulSets("default").Create(ctx, ss, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, "statefulset ready", func(ctx context.Context) (bool, error) {
		s, err := c.Client.AppsV1().StatefulSets("default").Get(ctx, "db", metav1.GetOptions{})
		return err == nil && s.Status.ReadyReplicas == replicas, nil
	})
	for i := 0; i < int(replicas); i++ {
		pod, err := c.Client.CoreV1().Pods("default").Get(ctx, fmt.Sprintf("db-%d", i), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pvc := boundClaim(t, c, fmt.Sprintf("data-db-%d", i))
		if pvc.Spec.StorageClassName == nil || *pvc.Spec.StorageClassName != "local-path" {
			t.Errorf("claim %s class %v, want the default local-path", pvc.Name, pvc.Spec.StorageClassName)
		}
		if got := pvc.Annotations["volume.kubernetes.io/selected-node"]; got != pod.Spec.NodeName {
			t.Errorf("claim %s selected %q, pod on %q", pvc.Name, got, pod.Spec.NodeName)
		}
		pv, err := c.Client.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(pv.Spec.HostPath.Path, pv.Name) || pv.Spec.NodeAffinity.Required.NodeSelectorTerms[0].MatchExpressions[0].Values[0] != pod.Spec.NodeName {
			t.Errorf("volume %s: path %s affinity %+v, pod on %s", pv.Name, pv.Spec.HostPath.Path, pv.Spec.NodeAffinity, pod.Spec.NodeName)
		}
	}
}
