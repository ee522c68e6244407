package controller

import (
	"context"
	"sort"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
)

func indexPod(name, ns string, lbls map[string]string, controller types.UID) *v1.Pod {
	p := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, UID: types.UID("uid-" + name), Labels: lbls}}
	if controller != "" {
		t := true
		p.OwnerReferences = []metav1.OwnerReference{
			{APIVersion: "v1", Kind: "ConfigMap", Name: "not-a-controller", UID: "uid-cm"},
			{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "rs", UID: controller, Controller: &t},
		}
	}
	return p
}

func podNames(pods []*v1.Pod) []string {
	var out []string
	for _, p := range pods {
		out = append(out, p.Name)
	}
	sort.Strings(out)
	return out
}

func TestPodsControlledOrOrphaned(t *testing.T) {
	factory := informers.NewSharedInformerFactory(fake.NewClientset(), 0)
	inf := factory.Core().V1().Pods().Informer()
	// Two controllers sharing one informer both ask for the index.
	for range 2 {
		if err := AddControllerUIDIndex(inf); err != nil {
			t.Fatal(err)
		}
	}
	web := map[string]string{"app": "web"}
	for _, p := range []*v1.Pod{
		indexPod("mine-1", "default", web, "uid-a"),
		indexPod("mine-2", "default", map[string]string{"app": "other"}, "uid-a"),
		indexPod("theirs", "default", web, "uid-b"),
		indexPod("orphan", "default", web, ""),
		indexPod("orphan-elsewhere", "kube-system", web, ""),
	} {
		if err := inf.GetIndexer().Add(p); err != nil {
			t.Fatal(err)
		}
	}
	owned, orphans, err := PodsControlledOrOrphaned(inf.GetIndexer(), "default", "uid-a")
	if err != nil {
		t.Fatal(err)
	}
	if got := podNames(owned); len(got) != 2 || got[0] != "mine-1" || got[1] != "mine-2" {
		t.Errorf("owned = %v, want [mine-1 mine-2]", got)
	}
	if got := podNames(orphans); len(got) != 1 || got[0] != "orphan" {
		t.Errorf("orphans = %v, want [orphan]", got)
	}

	// An adoption moves the pod from the orphans to the owned pods.
	adopted := indexPod("orphan", "default", web, "uid-a")
	if err := inf.GetIndexer().Update(adopted); err != nil {
		t.Fatal(err)
	}
	owned, orphans, _ = PodsControlledOrOrphaned(inf.GetIndexer(), "default", "uid-a")
	if len(owned) != 3 || len(orphans) != 0 {
		t.Errorf("after adoption: owned %v orphans %v", podNames(owned), podNames(orphans))
	}
}

type recordingPodControl struct {
	PodControl
	patched []string
}

func (r *recordingPodControl) PatchPod(_ context.Context, _, name string, _ []byte) error {
	r.patched = append(r.patched, name)
	return nil
}

// TestClaimIndexedPods: owned pods that match are kept without a write,
// owned pods that no longer match are released, matching orphans adopted.
func TestClaimIndexedPods(t *testing.T) {
	rs := &metav1.ObjectMeta{Name: "rs", Namespace: "default", UID: "uid-a"}
	web := map[string]string{"app": "web"}
	m := &RefManager{Controller: rs, Kind: schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "ReplicaSet"},
		Selector: labels.SelectorFromSet(web)}
	pc := &recordingPodControl{}
	owned := []*v1.Pod{indexPod("keep", "default", web, "uid-a"), indexPod("release", "default", nil, "uid-a")}
	orphans := []*v1.Pod{indexPod("adopt", "default", web, ""), indexPod("ignore", "default", nil, "")}
	claimed, err := m.ClaimIndexedPods(context.Background(), owned, orphans, pc)
	if err != nil {
		t.Fatal(err)
	}
	if got := podNames(claimed); len(got) != 2 || got[0] != "adopt" || got[1] != "keep" {
		t.Errorf("claimed = %v, want [adopt keep]", got)
	}
	sort.Strings(pc.patched)
	if len(pc.patched) != 2 || pc.patched[0] != "adopt" || pc.patched[1] != "release" {
		t.Errorf("patched = %v, want [adopt release]", pc.patched)
	}
}
