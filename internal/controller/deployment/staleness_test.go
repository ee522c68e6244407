package deployment

import (
	"context"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	core "k8s.io/client-go/testing"
)

// refreshReplicaSets brings only the ReplicaSet cache up to the fake
// API's contents: the Deployment cache stays where it was.
func (f *fixture) refreshReplicaSets() {
	f.t.Helper()
	rss, _ := f.client.AppsV1().ReplicaSets("").List(context.Background(), metav1.ListOptions{})
	var o []any
	for i := range rss.Items {
		o = append(o, &rss.Items[i])
	}
	if err := f.factory.Apps().V1().ReplicaSets().Informer().GetIndexer().Replace(o, ""); err != nil {
		f.t.Fatal(err)
	}
	f.client.ClearActions()
}

// setAvailable plays the ReplicaSet controller: status of every
// ReplicaSet says n of its replicas are available.
func (f *fixture) setAvailable(n int32) {
	f.t.Helper()
	for _, rs := range f.replicaSets() {
		rs.Status.Replicas = *rs.Spec.Replicas
		rs.Status.ReadyReplicas, rs.Status.AvailableReplicas = n, n
		rs.Status.ObservedGeneration = rs.Generation
		if _, err := f.client.AppsV1().ReplicaSets("default").UpdateStatus(context.Background(), rs, metav1.UpdateOptions{}); err != nil {
			f.t.Fatal(err)
		}
	}
}

func (f *fixture) statusWrite() *appsv1.Deployment {
	f.t.Helper()
	for _, a := range f.client.Actions() {
		if u, ok := a.(core.UpdateAction); ok && u.GetSubresource() == "status" {
			return u.GetObject().(*appsv1.Deployment)
		}
	}
	f.t.Fatal("no status write")
	return nil
}

// TestStatusWriteFromStaleCache: ReplicaSet status changes arrive faster
// than the Deployment informer delivers the controller's own status
// writes (a scale-up): each sync writes on top of its previous write, not
// on the cached Deployment that write replaced (409 from the API server),
// and a sync with nothing new writes nothing.
func TestStatusWriteFromStaleCache(t *testing.T) {
	d := newDeployment(4, intstr.FromInt32(1), intstr.FromInt32(0))
	d.ResourceVersion = "5"
	f := newFixture(t, d)
	f.sync()
	f.refresh()

	f.setAvailable(1)
	f.refreshReplicaSets()
	f.sync()
	f.expectActions("update deployments/status")
	if got := f.statusWrite(); got.ResourceVersion != f.cachedRV() || got.Status.AvailableReplicas != 1 {
		t.Fatalf("first write based on %s (cache at %s), available %d", got.ResourceVersion, f.cachedRV(), got.Status.AvailableReplicas)
	}
	written := f.deployment().ResourceVersion

	for n := int32(2); n <= 4; n++ {
		f.setAvailable(n)
		f.refreshReplicaSets()
		f.sync()
		f.expectActions("update deployments/status")
		got := f.statusWrite()
		if got.ResourceVersion != written || got.Status.AvailableReplicas != n {
			t.Fatalf("write %d based on %s with %d available, want our previous write %s with %d", n, got.ResourceVersion, got.Status.AvailableReplicas, written, n)
		}
		written = f.deployment().ResourceVersion
	}
	if n := f.conflicts(); n != 0 {
		t.Fatalf("%d writes conflicted", n)
	}
	f.client.ClearActions()
	f.sync()
	f.expectActions()

	// The cache catches up: the status it shows is the truth, and a
	// sync has nothing to write.
	f.refresh()
	if got := f.deployment().Status; got.AvailableReplicas != 4 || got.UpdatedReplicas != 4 || got.ReadyReplicas != 4 {
		t.Fatalf("final status %+v", got)
	}
	f.sync()
	f.expectActions()
}

func (f *fixture) cachedRV() string {
	d, err := f.factory.Apps().V1().Deployments().Lister().Deployments("default").Get("web")
	if err != nil {
		f.t.Fatal(err)
	}
	return d.ResourceVersion
}
