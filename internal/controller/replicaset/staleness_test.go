package replicaset

import (
	"context"
	"fmt"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	core "k8s.io/client-go/testing"
)

// statusWrites returns the resourceVersion and status of every status
// update the fake API received, in order.
func (f *fixture) statusWrites() (rvs []string, sts []appsv1.ReplicaSetStatus) {
	for _, a := range f.client.Actions() {
		u, ok := a.(core.UpdateAction)
		if !ok || u.GetSubresource() != "status" {
			continue
		}
		switch o := u.GetObject().(type) {
		case *appsv1.ReplicaSet:
			rvs, sts = append(rvs, o.ResourceVersion), append(sts, o.Status)
		case *v1.ReplicationController:
			rvs = append(rvs, o.ResourceVersion)
			sts = append(sts, appsv1.ReplicaSetStatus{Replicas: o.Status.Replicas, ReadyReplicas: o.Status.ReadyReplicas})
		}
	}
	return rvs, sts
}

// TestStatusWriteFromStaleCache: a sync that follows the controller's own
// status write before the informer has delivered it writes on top of that
// write (its resourceVersion), not on the cached copy it replaced, which
// the API server refuses with 409; a sync with nothing new to say writes
// nothing; the write's echo does not queue another sync; a change by
// someone else does.
func TestStatusWriteFromStaleCache(t *testing.T) {
	for _, rc := range []bool{false, true} {
		t.Run(fmt.Sprintf("rc=%v", rc), func(t *testing.T) {
			rs := newRS("web", 2)
			rs.ResourceVersion = "7"
			var owner runtime.Object = rs
			kind, resource := "ReplicaSet", "replicasets"
			if rc {
				owner = &v1.ReplicationController{
					ObjectMeta: rs.ObjectMeta,
					Spec: v1.ReplicationControllerSpec{Replicas: rs.Spec.Replicas, Selector: rs.Spec.Selector.MatchLabels,
						Template: &rs.Spec.Template},
				}
				kind, resource = "ReplicationController", "replicationcontrollers"
			}
			lbl := rs.Spec.Template.Labels
			var pods []*v1.Pod
			objs := []runtime.Object{owner}
			for i := range 2 {
				p := newPod(fmt.Sprintf("web-%d", i), lbl, now, ownedBy(rs))
				p.OwnerReferences[0].Kind = kind
				p.ResourceVersion = "1"
				pods = append(pods, p)
				objs = append(objs, p)
			}
			f := newFixture(t, rc, objs...)
			ctx := context.Background()
			sync := func() {
				t.Helper()
				if err := f.c.Sync(ctx, "default/web"); err != nil {
					t.Fatal(err)
				}
			}

			sync() // status: 2 replicas, none ready
			f.expectActions("update " + resource + "/status")
			rvs, _ := f.statusWrites()
			if rvs[0] != "7" {
				t.Fatalf("first write based on %q, want the cached 7", rvs[0])
			}
			written := f.serverRV(rc)

			// A pod becomes ready; the owner's informer is still at 7.
			cur := pods[0].DeepCopy()
			cur.ResourceVersion = "2"
			running("n1", now)(cur)
			if err := f.factory.Core().V1().Pods().Informer().GetIndexer().Update(cur); err != nil {
				t.Fatal(err)
			}
			f.c.updatePod(pods[0], cur)
			f.client.ClearActions()
			sync()
			f.expectActions("update " + resource + "/status")
			rvs, sts := f.statusWrites()
			if rvs[0] != written || sts[0].ReadyReplicas != 1 || sts[0].Replicas != 2 {
				t.Fatalf("second write based on %q with status %+v, want on our first write %q with 1 of 2 ready", rvs[0], sts[0], written)
			}
			if n := f.conflicts(); n != 0 {
				t.Fatalf("%d writes conflicted", n)
			}
			written = f.serverRV(rc)

			// Nothing new: the cache (still at 7) says 0 replicas, our
			// write says what the pods say.
			f.client.ClearActions()
			sync()
			f.expectActions()

			// The informer delivers our write: its echo queues nothing.
			for f.c.queue.Len() > 0 {
				k, _ := f.c.queue.Get()
				f.c.queue.Done(k)
				f.c.queue.Forget(k)
			}
			oldObj, newObj := f.cachedOwner(rc), f.serverOwner(rc)
			f.ownerIndexer(rc).Update(newObj)
			f.c.updateOwner(oldObj, newObj)
			if n := f.c.queue.Len(); n != 0 {
				t.Fatalf("the echo of our own write queued %d syncs", n)
			}
			if got := newObj.(metav1.Object).GetResourceVersion(); got != written {
				t.Fatalf("server at %s, want our write %s", got, written)
			}

			// Someone else changes the status back: that syncs, from
			// their version, and puts it right.
			other := f.serverOwner(rc)
			f.setServerStatusReplicas(rc, other, 5)
			changed := f.serverOwner(rc)
			f.ownerIndexer(rc).Update(changed)
			f.c.updateOwner(newObj, changed)
			if n := f.c.queue.Len(); n != 1 {
				t.Fatalf("a foreign status change queued %d syncs, want 1", n)
			}
			f.client.ClearActions()
			sync()
			f.expectActions("update " + resource + "/status")
			rvs, sts = f.statusWrites()
			if rvs[0] != changed.(metav1.Object).GetResourceVersion() || sts[0].Replicas != 2 {
				t.Fatalf("repair based on %q with %+v", rvs[0], sts[0])
			}
			if n := f.conflicts(); n != 0 {
				t.Fatalf("%d writes conflicted", n)
			}
		})
	}
}

func (f *fixture) ownerIndexer(rc bool) interface{ Update(any) error } {
	if rc {
		return f.factory.Core().V1().ReplicationControllers().Informer().GetIndexer()
	}
	return f.factory.Apps().V1().ReplicaSets().Informer().GetIndexer()
}

func (f *fixture) serverOwner(rc bool) runtime.Object {
	f.t.Helper()
	ctx := context.Background()
	var o runtime.Object
	var err error
	if rc {
		o, err = f.client.CoreV1().ReplicationControllers("default").Get(ctx, "web", metav1.GetOptions{})
	} else {
		o, err = f.client.AppsV1().ReplicaSets("default").Get(ctx, "web", metav1.GetOptions{})
	}
	if err != nil {
		f.t.Fatal(err)
	}
	return o
}

func (f *fixture) serverRV(rc bool) string {
	return f.serverOwner(rc).(metav1.Object).GetResourceVersion()
}

func (f *fixture) cachedOwner(rc bool) runtime.Object {
	f.t.Helper()
	var o runtime.Object
	var err error
	if rc {
		o, err = f.factory.Core().V1().ReplicationControllers().Lister().ReplicationControllers("default").Get("web")
	} else {
		o, err = f.factory.Apps().V1().ReplicaSets().Lister().ReplicaSets("default").Get("web")
	}
	if err != nil {
		f.t.Fatal(err)
	}
	return o
}

func (f *fixture) setServerStatusReplicas(rc bool, o runtime.Object, n int32) {
	f.t.Helper()
	ctx := context.Background()
	var err error
	if rc {
		cp := o.(*v1.ReplicationController).DeepCopy()
		cp.Status.Replicas = n
		_, err = f.client.CoreV1().ReplicationControllers("default").UpdateStatus(ctx, cp, metav1.UpdateOptions{})
	} else {
		cp := o.(*appsv1.ReplicaSet).DeepCopy()
		cp.Status.Replicas = n
		_, err = f.client.AppsV1().ReplicaSets("default").UpdateStatus(ctx, cp, metav1.UpdateOptions{})
	}
	if err != nil {
		f.t.Fatal(err)
	}
}
