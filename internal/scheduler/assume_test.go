package scheduler

import (
	"fmt"
	"reflect"
	"testing"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	schedcache "skiff.dev/skiff/internal/scheduler/cache"
	"skiff.dev/skiff/internal/scheduler/framework"
)

// TestAssumeMatchesRecomputedPodInfo: the assumed pod is the queued pod
// with spec.nodeName set (the queued pod untouched), and its PodInfo,
// taken from the queued one, equals one computed afresh for the assumed
// pod (requests, non-zero requests, affinity terms).
func TestAssumeMatchesRecomputedPodInfo(t *testing.T) {
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", UID: "u", Labels: map[string]string{"app": "a"}},
		Spec: v1.PodSpec{
			Containers: []v1.Container{{Name: "c", Resources: v1.ResourceRequirements{Requests: v1.ResourceList{
				v1.ResourceCPU: resource.MustParse("250m"), v1.ResourceMemory: resource.MustParse("64Mi")}}}},
			Affinity: &v1.Affinity{
				PodAntiAffinity: &v1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []v1.PodAffinityTerm{{
					LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "a"}}, TopologyKey: v1.LabelHostname}}},
				PodAffinity: &v1.PodAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []v1.WeightedPodAffinityTerm{{Weight: 5,
					PodAffinityTerm: v1.PodAffinityTerm{LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "b"}}, TopologyKey: "zone"}}}},
			},
		},
	}
	orig := pod.DeepCopy()
	pi := framework.NewPodInfo(pod)
	assumed, api := assume(pi, "n1")
	if assumed.Spec.NodeName != "n1" || api.Pod != assumed {
		t.Fatalf("assumed on %q, PodInfo for %p (assumed %p)", assumed.Spec.NodeName, api.Pod, assumed)
	}
	if !reflect.DeepEqual(pod, orig) || pi.Pod != pod {
		t.Fatalf("queued pod changed: %+v", pod.Spec)
	}
	want := orig.DeepCopy()
	want.Spec.NodeName = "n1"
	if !reflect.DeepEqual(assumed, want) {
		t.Fatalf("assumed pod %+v, want %+v", assumed, want)
	}
	if fresh := framework.NewPodInfo(assumed); !reflect.DeepEqual(api, fresh) {
		t.Fatalf("assumed PodInfo %+v, recomputed %+v", api, fresh)
	}
	if len(api.RequiredAntiAffinityTerms) != 1 || len(api.PreferredAffinityTerms) != 1 {
		t.Fatalf("assumed PodInfo lost its terms: %+v", api)
	}
}

// BenchmarkAssume: placing a scheduled pod in the cache, as ScheduleOne
// did (deep copy, PodInfo recomputed by the cache) and does (assume).
// The pod is shaped like a Deployment's: labels, owner, one container
// with requests.
func BenchmarkAssume(b *testing.B) {
	ctrl := true
	newPod := func(i int) *v1.Pod {
		return &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: fmt.Sprintf("web-5d8f7c9b4-%06d", i), UID: types.UID(fmt.Sprintf("uid-%d", i)),
			Labels:          map[string]string{"app": "web", "pod-template-hash": "5d8f7c9b4"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-5d8f7c9b4", UID: "rs", Controller: &ctrl}}},
			Spec: v1.PodSpec{Containers: []v1.Container{{Name: "app", Image: "localhost/skiff/testapp:v1",
				Env:       []v1.EnvVar{{Name: "A", Value: "1"}, {Name: "B", Value: "2"}},
				Resources: v1.ResourceRequirements{Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("10m"), v1.ResourceMemory: resource.MustParse("16Mi")}}}}}}
	}
	run := func(b *testing.B, place func(*schedcache.Cache, *framework.PodInfo) error) {
		c := schedcache.New(clock.RealClock{}, 0)
		c.AddNode(&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}})
		pis := make([]*framework.PodInfo, b.N)
		for i := range pis {
			pis[i] = framework.NewPodInfo(newPod(i))
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if err := place(c, pis[i]); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("deepcopy", func(b *testing.B) {
		run(b, func(c *schedcache.Cache, pi *framework.PodInfo) error {
			p := pi.Pod.DeepCopy()
			p.Spec.NodeName = "n1"
			return c.AssumePod(p)
		})
	})
	b.Run("assume", func(b *testing.B) {
		run(b, func(c *schedcache.Cache, pi *framework.PodInfo) error {
			_, api := assume(pi, "n1")
			return c.AssumePodInfo(api)
		})
	})
}

// TestSameLabelsIsDeepEqual: sameLabels answers as reflect.DeepEqual did
// for the label maps of pod and node updates, nil versus empty included.
func TestSameLabelsIsDeepEqual(t *testing.T) {
	maps := []map[string]string{nil, {}, {"a": "1"}, {"a": "2"}, {"b": "1"}, {"a": "1", "b": "1"}, {"a": ""}}
	for _, a := range maps {
		for _, b := range maps {
			if got, want := sameLabels(a, b), reflect.DeepEqual(a, b); got != want {
				t.Errorf("sameLabels(%#v, %#v) = %v, DeepEqual %v", a, b, got, want)
			}
		}
	}
}
