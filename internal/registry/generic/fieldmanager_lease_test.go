package generic

import (
	"fmt"
	"math/rand"
	"reflect"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"skiff.dev/skiff/internal/registry"
	"skiff.dev/skiff/internal/registry/coordination"
)

func leasesResource(t testing.TB) *registry.Resource {
	t.Helper()
	for _, r := range coordination.Resources() {
		if r.Resource == "leases" {
			return r
		}
	}
	t.Fatal("no leases resource")
	return nil
}

// leaseSpecFields must name every LeaseSpec field: a field added to the
// API would otherwise change unseen by changedLeaseSpec.
func TestLeaseSpecFieldsComplete(t *testing.T) {
	typ := reflect.TypeOf(coordinationv1.LeaseSpec{})
	if typ.NumField() != len(leaseSpecFields) {
		t.Fatalf("LeaseSpec has %d fields, changedLeaseSpec knows %d", typ.NumField(), len(leaseSpecFields))
	}
	for i := range typ.NumField() {
		tag := typ.Field(i).Tag.Get("json")
		found := false
		for _, name := range leaseSpecFields {
			if tag == name+",omitempty" {
				found = true
			}
		}
		if !found {
			t.Errorf("LeaseSpec field %s (json %q) is not in leaseSpecFields", typ.Field(i).Name, tag)
		}
	}
}

// TestOwnedLeaseUpdateMatchesFieldManager runs random Lease histories
// through the reference field managers and the server's (which take
// ownedLeaseUpdate when they can), comparing the managedFields of every
// write: renewals by the holder (the common case), other fields changed,
// added and removed, another writer, labels changed, the client's own
// managedFields sent back or not, and entries as other clients or
// servers may have left them (other managers owning the renewed field,
// Apply entries, future and past times, other API versions, non-canonical
// bytes, empty sets, granular sets under scalars, duplicate identities).
func TestOwnedLeaseUpdateMatchesFieldManager(t *testing.T) {
	p := newManagedFieldsPair()
	leases := leasesResource(t)
	seeds, steps := 16, 60
	if testing.Short() {
		seeds = 4
	}
	fastSteps, total := 0, 0
	str := func(s string) *string { return &s }
	i32 := func(v int32) *int32 { return &v }
	for seed := range seeds {
		rng := rand.New(rand.NewSource(int64(seed)))
		now := metav1.NewMicroTime(time.Now().Add(-time.Minute))
		lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "node-1", Namespace: "kube-node-lease",
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: "node-1", UID: "uid-node"}}},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: str("node-1"), LeaseDurationSeconds: i32(40), RenewTime: &now}}
		setTypeMeta(lease, leases)
		live := p.check(t, "create", leases, "", leases.New(), lease, "kubelet").(*coordinationv1.Lease)
		live.UID, live.ResourceVersion = "u1", "5"
		created := append([]metav1.ManagedFieldsEntry(nil), live.ManagedFields...)
		for step := range steps {
			what := fmt.Sprintf("seed %d step %d", seed, step)
			if len(live.ManagedFields) == 0 || rng.Intn(6) == 0 {
				live.ManagedFields = append([]metav1.ManagedFieldsEntry(nil), created...)
			}
			injectLeaseEntry(rng, live)
			base := time.Now().Add(-time.Hour).Truncate(time.Second)
			for i := range live.ManagedFields {
				e := &live.ManagedFields[i]
				switch {
				case e.Manager == "future":
					e.Time = &metav1.Time{Time: base.Add(2 * time.Hour)}
				case e.Time != nil || rng.Intn(4) != 0:
					e.Time = &metav1.Time{Time: base.Add(time.Duration(rng.Intn(4)) * time.Second)}
				}
			}
			obj := live.DeepCopy()
			renewed := metav1.NewMicroTime(obj.Spec.RenewTime.Add(time.Duration(1+rng.Intn(3)) * time.Second))
			obj.Spec.RenewTime = &renewed
			switch rng.Intn(12) {
			case 0:
				obj.Spec.HolderIdentity = str(fmt.Sprintf("node-%d", rng.Intn(2)))
			case 1:
				if obj.Spec.LeaseTransitions == nil {
					obj.Spec.LeaseTransitions = i32(1)
				} else {
					obj.Spec.LeaseTransitions = nil
				}
			case 2:
				obj.Labels = map[string]string{"l": fmt.Sprint(rng.Intn(2))}
			case 3:
				obj.Spec.RenewTime = live.Spec.RenewTime // nothing changes
			case 4:
				obj.ManagedFields = nil // a client that does not send them
			case 5:
				at := metav1.NewMicroTime(renewed.Time)
				obj.Spec.AcquireTime = &at
			case 6:
				// The same instant to the microsecond: no change to the
				// field manager.
				same := metav1.NewMicroTime(live.Spec.RenewTime.Add(300 * time.Nanosecond))
				obj.Spec.RenewTime = &same
			}
			manager := "kubelet"
			switch rng.Intn(8) {
			case 0:
				manager = "other"
			case 1:
				manager = "leader"
			}
			if _, ok := p.fast.ownedLeaseUpdate(leases, live.DeepCopy(), obj.DeepCopy(), manager); ok {
				fastSteps++
			}
			total++
			live = p.check(t, what, leases, "", live, obj, manager).(*coordinationv1.Lease)
			live.UID, live.ResourceVersion = "u1", "5"
		}
	}
	t.Logf("%d of %d updates took the owned-fields path", fastSteps, total)
	if fastSteps < total/4 || fastSteps == total {
		t.Errorf("%d of %d updates took the owned-fields path: the comparison does not cover both paths", fastSteps, total)
	}
}

// injectLeaseEntry sometimes adds to live an entry that no renewal would
// record.
func injectLeaseEntry(rng *rand.Rand, live *coordinationv1.Lease) {
	entry := func(manager string, op metav1.ManagedFieldsOperationType, version, fields string) metav1.ManagedFieldsEntry {
		return metav1.ManagedFieldsEntry{Manager: manager, Operation: op, APIVersion: version, FieldsType: "FieldsV1",
			FieldsV1: &metav1.FieldsV1{Raw: []byte(fields)}}
	}
	const gv = "coordination.k8s.io/v1"
	var e metav1.ManagedFieldsEntry
	switch rng.Intn(24) {
	case 0:
		e = entry("other", metav1.ManagedFieldsOperationUpdate, gv, `{"f:spec":{"f:holderIdentity":{}}}`)
	case 1:
		e = entry("thief", metav1.ManagedFieldsOperationUpdate, gv, `{"f:spec":{"f:renewTime":{}}}`)
	case 2:
		e = entry("applier", metav1.ManagedFieldsOperationApply, gv, `{"f:spec":{"f:leaseDurationSeconds":{}}}`)
	case 3:
		e = entry("future", metav1.ManagedFieldsOperationUpdate, gv, `{"f:metadata":{"f:labels":{".":{},"f:l":{}}}}`)
	case 4:
		e = entry("old", metav1.ManagedFieldsOperationUpdate, "coordination.k8s.io/v1beta1", `{"f:spec":{"f:strategy":{}}}`)
	case 5:
		e = entry("spaced", metav1.ManagedFieldsOperationUpdate, gv, `{"f:spec": {"f:strategy": {}}}`)
	case 6:
		e = entry("empty", metav1.ManagedFieldsOperationUpdate, gv, `{}`)
	case 7:
		e = entry("granular", metav1.ManagedFieldsOperationUpdate, gv, `{"f:spec":{"f:renewTime":{"f:x":{}}}}`)
	case 8:
		if n := len(live.ManagedFields); n > 0 {
			e = live.ManagedFields[rng.Intn(n)]
			e.FieldsV1 = &metav1.FieldsV1{Raw: []byte(`{"f:spec":{"f:strategy":{}}}`)}
		}
	case 9:
		e = entry("whole", metav1.ManagedFieldsOperationUpdate, gv, `{"f:spec":{}}`)
	case 10:
		e = entry("stranger", metav1.ManagedFieldsOperationUpdate, gv, `{"f:status":{"f:x":{}}}`)
	case 11:
		e = entry("kubelet", metav1.ManagedFieldsOperationUpdate, gv, `{"f:spec":{"f:preferredHolder":{}}}`)
		e.Subresource = "status"
	case 12:
		e = entry("broken", metav1.ManagedFieldsOperationUpdate, gv, `{"x:broken":{}}`)
	default:
		return
	}
	if e.Manager != "" {
		live.ManagedFields = append(live.ManagedFields, e)
	}
}

// BenchmarkLeaseRenewalManagedFields is a node agent's Lease renewal.
func BenchmarkLeaseRenewalManagedFields(b *testing.B) {
	p := newManagedFieldsPair()
	leases := leasesResource(b)
	holder, dur := "node-1", int32(40)
	now := metav1.NewMicroTime(time.Now())
	l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "node-1", Namespace: "kube-node-lease"},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &dur, RenewTime: &now}}
	setTypeMeta(l, leases)
	for _, c := range []struct {
		name string
		fms  *FieldManagers
	}{{"fast", p.fast}, {"reference", p.ref}} {
		b.Run(c.name, func(b *testing.B) {
			live := c.fms.Update(leases, "", leases.New(), l.DeepCopy(), "kubelet").(*coordinationv1.Lease)
			live.UID = "u1"
			b.ReportAllocs()
			for b.Loop() {
				n := live.DeepCopy()
				t := metav1.NewMicroTime(n.Spec.RenewTime.Add(time.Second))
				n.Spec.RenewTime = &t
				c.fms.Update(leases, "", live, n, "kubelet")
			}
		})
	}
}
