package endpoints

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"
)

// TestServicesOfPod: the services of a pod are those of its namespace
// whose selector labels.SelectorFromValidatedSet would match it (an empty
// selector all, none without a selector), through the namespace index or
// a store without it; a namespace without services costs no allocation.
func TestServicesOfPod(t *testing.T) {
	mk := func(ns, name string, sel map[string]string) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.ServiceSpec{Selector: sel}}
	}
	services := []*corev1.Service{
		mk("ns", "web", map[string]string{"app": "web"}),
		mk("ns", "web-prod", map[string]string{"app": "web", "env": "prod"}),
		mk("ns", "empty", map[string]string{}),
		mk("ns", "manual", nil),
		mk("ns", "empty-value", map[string]string{"tier": ""}),
		mk("other", "web", map[string]string{"app": "web"}),
	}
	indexed := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	plain := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	for _, s := range services {
		_ = indexed.Add(s)
		_ = plain.Add(s)
	}
	for _, podLabels := range []map[string]string{
		nil, {}, {"app": "web"}, {"app": "web", "env": "prod"}, {"app": "api", "env": "prod"}, {"tier": ""}, {"tier": "x"},
	} {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", Labels: podLabels}}
		var want []string
		for _, s := range services {
			if s.Namespace == "ns" && s.Spec.Selector != nil && labels.SelectorFromValidatedSet(s.Spec.Selector).Matches(labels.Set(podLabels)) {
				want = append(want, s.Namespace+"/"+s.Name)
			}
		}
		slices.Sort(want)
		for name, store := range map[string]cache.Indexer{"indexed": indexed, "no index": plain} {
			var got []string
			ServicesOfPod(store, p, func(k string) { got = append(got, k) })
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("%s, pod labels %v: %q, want %q", name, podLabels, got, want)
			}
		}
	}
	lone := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "quiet", Name: "p", Labels: map[string]string{"app": "web"}}}
	h := PodHandlers(indexed, func(k string) { t.Errorf("queued %s for a pod of a namespace without services", k) })
	cur := lone.DeepCopy()
	cur.ResourceVersion = "2"
	if n := testing.AllocsPerRun(50, func() { h.OnUpdate(lone, cur) }); n != 0 {
		t.Fatalf("%v allocations per update of a pod no service can select", n)
	}
}
