package volume

import (
	"context"
	"io"
	"log/slog"
	"testing"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func pv(name, size, class string, mut ...func(*corev1.PersistentVolume)) *corev1.PersistentVolume {
	v := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:         corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)},
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: class,
		},
		Status: corev1.PersistentVolumeStatus{Phase: corev1.VolumeAvailable},
	}
	for _, m := range mut {
		m(v)
	}
	return v
}

func claim(size, class string) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "c", Namespace: "ns", UID: "claim-uid", ResourceVersion: "5"},
		Spec: corev1.PersistentVolumeClaimSpec{
			StorageClassName: &class,
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}},
		},
	}
}

func onNode(n string) func(*corev1.PersistentVolume) {
	return func(v *corev1.PersistentVolume) {
		v.Spec.NodeAffinity = &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
			MatchExpressions: []corev1.NodeSelectorRequirement{{Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{n}}},
		}}}}
	}
}

func TestFindBestMatch(t *testing.T) {
	block := corev1.PersistentVolumeBlock
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{corev1.LabelHostname: "n1"}}}
	tests := []struct {
		name string
		pvs  []*corev1.PersistentVolume
		node *corev1.Node
		want string
	}{
		{"smallest fitting wins", []*corev1.PersistentVolume{pv("big", "10Gi", "fast"), pv("mid", "2Gi", "fast"), pv("tiny", "500Mi", "fast")}, nil, "mid"},
		{"class must match", []*corev1.PersistentVolume{pv("other", "2Gi", "slow")}, nil, ""},
		{"access modes must be offered", []*corev1.PersistentVolume{pv("rox", "2Gi", "fast", func(v *corev1.PersistentVolume) {
			v.Spec.AccessModes = []corev1.PersistentVolumeAccessMode{corev1.ReadOnlyMany}
		})}, nil, ""},
		{"volume mode must match", []*corev1.PersistentVolume{pv("blk", "2Gi", "fast", func(v *corev1.PersistentVolume) { v.Spec.VolumeMode = &block })}, nil, ""},
		{"taken volumes are skipped", []*corev1.PersistentVolume{pv("taken", "2Gi", "fast", func(v *corev1.PersistentVolume) {
			v.Spec.ClaimRef = &corev1.ObjectReference{Namespace: "ns", Name: "other"}
		})}, nil, ""},
		{"pre-bound wins over smaller", []*corev1.PersistentVolume{pv("small", "1Gi", "fast"), pv("mine", "50Gi", "fast", func(v *corev1.PersistentVolume) {
			v.Spec.ClaimRef = &corev1.ObjectReference{Namespace: "ns", Name: "c"}
		})}, nil, "mine"},
		{"released volumes are not reused", []*corev1.PersistentVolume{pv("rel", "2Gi", "fast", func(v *corev1.PersistentVolume) {
			v.Status.Phase = corev1.VolumeReleased
		})}, nil, ""},
		{"node affinity against the selected node", []*corev1.PersistentVolume{pv("elsewhere", "1Gi", "fast", onNode("n2")), pv("here", "5Gi", "fast", onNode("n1"))}, node, "here"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := FindBestMatch(claim("1Gi", "fast"), tt.pvs, tt.node)
			name := ""
			if got != nil {
				name = got.Name
			}
			if name != tt.want {
				t.Errorf("got %q, want %q", name, tt.want)
			}
		})
	}
}

func newBinder(t *testing.T, objs ...runtime.Object) (*Controller, *fake.Clientset) {
	t.Helper()
	client := fake.NewClientset(objs...)
	f := informers.NewSharedInformerFactory(client, 0)
	c, err := New(client, f, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		switch o := o.(type) {
		case *corev1.PersistentVolume:
			_ = f.Core().V1().PersistentVolumes().Informer().GetIndexer().Add(o)
		case *corev1.PersistentVolumeClaim:
			_ = f.Core().V1().PersistentVolumeClaims().Informer().GetIndexer().Add(o)
		case *storagev1.StorageClass:
			_ = f.Storage().V1().StorageClasses().Informer().GetIndexer().Add(o)
		case *corev1.Pod:
			_ = f.Core().V1().Pods().Informer().GetIndexer().Add(o)
		}
	}
	client.ClearActions()
	return c, client
}

func actionStrings(client *fake.Clientset) []string {
	var out []string
	for _, a := range client.Actions() {
		s := a.GetVerb() + " " + a.GetResource().Resource
		if a.GetSubresource() != "" {
			s += "/" + a.GetSubresource()
		}
		out = append(out, s)
	}
	return out
}

func TestBindWritesVolumeThenClaim(t *testing.T) {
	c, client := newBinder(t, pv("v", "2Gi", "fast"), claim("1Gi", "fast"))
	if err := c.Sync(context.Background(), "claim:ns/c"); err != nil {
		t.Fatal(err)
	}
	want := []string{"update persistentvolumes", "update persistentvolumes/status", "update persistentvolumeclaims", "update persistentvolumeclaims/status"}
	if got := actionStrings(client); len(got) != len(want) || got[0] != want[0] || got[2] != want[2] || got[3] != want[3] {
		t.Fatalf("actions = %v, want %v", got, want)
	}
	pvOut := client.Actions()[0].(k8stesting.UpdateAction).GetObject().(*corev1.PersistentVolume)
	if pvOut.Spec.ClaimRef.UID != "claim-uid" || pvOut.Annotations[AnnBoundByController] != "yes" {
		t.Errorf("volume = %+v %v", pvOut.Spec.ClaimRef, pvOut.Annotations)
	}
	pvcOut := client.Actions()[2].(k8stesting.UpdateAction).GetObject().(*corev1.PersistentVolumeClaim)
	if pvcOut.Spec.VolumeName != "v" || pvcOut.Annotations[AnnBindCompleted] != "yes" {
		t.Errorf("claim = %s %v", pvcOut.Spec.VolumeName, pvcOut.Annotations)
	}
}

func TestWaitForFirstConsumer(t *testing.T) {
	wffc := storagev1.VolumeBindingWaitForFirstConsumer
	sc := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "local"}, Provisioner: "skiff.io/local-path", VolumeBindingMode: &wffc}
	pvc := claim("1Gi", "local")
	// No consumer yet: the claim waits, even though no volume exists.
	c, client := newBinder(t, sc, pvc)
	if err := c.Sync(context.Background(), "claim:ns/c"); err != nil {
		t.Fatal(err)
	}
	if got := actionStrings(client); len(got) != 1 || got[0] != "update persistentvolumeclaims/status" {
		t.Fatalf("actions = %v, want only the Pending status", got)
	}
	// A scheduled pod selects the node and asks the provisioner.
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns"}, Spec: corev1.PodSpec{NodeName: "n1", Volumes: []corev1.Volume{{
		Name: "d", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "c"}},
	}}}}
	c, client = newBinder(t, sc, pvc, pod)
	if err := c.Sync(context.Background(), "claim:ns/c"); err != nil {
		t.Fatal(err)
	}
	var last *corev1.PersistentVolumeClaim
	for _, a := range client.Actions() {
		if u, ok := a.(k8stesting.UpdateAction); ok && a.GetSubresource() == "" {
			last = u.GetObject().(*corev1.PersistentVolumeClaim)
		}
	}
	if last == nil || last.Annotations[AnnSelectedNode] != "n1" || last.Annotations[AnnStorageProvisioner] != "skiff.io/local-path" {
		t.Fatalf("claim annotations = %v", last)
	}
}

// The scheduler pre-binds the volume it chose (claimRef) before the pod
// has a node: the binder completes that binding without a consumer pod.
func TestWaitForFirstConsumerPreBoundByScheduler(t *testing.T) {
	wffc := storagev1.VolumeBindingWaitForFirstConsumer
	sc := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "static"}, Provisioner: "kubernetes.io/no-provisioner", VolumeBindingMode: &wffc}
	pvc := claim("1Gi", "static")
	free := pv("free", "1Gi", "static", onNode("n1"))
	chosen := pv("chosen", "5Gi", "static", onNode("n2"), func(v *corev1.PersistentVolume) {
		v.Spec.ClaimRef = &corev1.ObjectReference{Namespace: "ns", Name: "c", UID: "claim-uid"}
	})
	c, client := newBinder(t, sc, pvc, free, chosen)
	if err := c.Sync(context.Background(), "claim:ns/c"); err != nil {
		t.Fatal(err)
	}
	var bound *corev1.PersistentVolumeClaim
	for _, a := range client.Actions() {
		if u, ok := a.(k8stesting.UpdateAction); ok && a.GetSubresource() == "" {
			if c, ok := u.GetObject().(*corev1.PersistentVolumeClaim); ok {
				bound = c
			}
		}
	}
	if bound == nil || bound.Spec.VolumeName != "chosen" || bound.Annotations[AnnBindCompleted] != "yes" {
		t.Fatalf("claim = %+v, want bound to the pre-bound volume (actions %v)", bound, actionStrings(client))
	}
	// Without a pre-bound volume, the free matching one is left alone.
	c, client = newBinder(t, sc, claim("1Gi", "static"), free)
	if err := c.Sync(context.Background(), "claim:ns/c"); err != nil {
		t.Fatal(err)
	}
	if got := actionStrings(client); len(got) != 1 || got[0] != "update persistentvolumeclaims/status" {
		t.Fatalf("actions = %v, want only the Pending status", got)
	}
}

func TestReclaim(t *testing.T) {
	released := func(policy corev1.PersistentVolumeReclaimPolicy) *corev1.PersistentVolume {
		return pv("v", "1Gi", "fast", func(v *corev1.PersistentVolume) {
			v.Spec.PersistentVolumeReclaimPolicy = policy
			v.Spec.ClaimRef = &corev1.ObjectReference{Namespace: "ns", Name: "gone", UID: "old"}
			v.Status.Phase = corev1.VolumeBound
		})
	}
	c, client := newBinder(t, released(corev1.PersistentVolumeReclaimDelete))
	if err := c.Sync(context.Background(), "volume:v"); err != nil {
		t.Fatal(err)
	}
	if got := actionStrings(client); len(got) != 1 || got[0] != "delete persistentvolumes" {
		t.Errorf("Delete policy: actions = %v", got)
	}
	c, client = newBinder(t, released(corev1.PersistentVolumeReclaimRetain))
	if err := c.Sync(context.Background(), "volume:v"); err != nil {
		t.Fatal(err)
	}
	acts := client.Actions()
	if len(acts) != 1 || acts[0].(k8stesting.UpdateAction).GetObject().(*corev1.PersistentVolume).Status.Phase != corev1.VolumeReleased {
		t.Errorf("Retain policy: actions = %v", actionStrings(client))
	}
}
