package generic

import (
	"bytes"
	"reflect"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"
	"sigs.k8s.io/structured-merge-diff/v6/typed"

	"skiff.dev/skiff/internal/registry"
)

// A Lease renewal (a node agent's or a leader's Update of the lease it
// holds) changes renewTime, which its writer already owns. Upstream's
// field manager decodes every managedFields entry, types both objects,
// compares them, takes the changed fields from whoever owned them and
// gives them to the writer, stamps the writer's entry and encodes every
// entry again: about 260 allocations for an answer that, when the writer
// already owns every changed field alone, is the live entries with the
// writer's time set to now (and upstream's order). ownedLeaseUpdate
// computes that answer directly when it can prove those conditions, and
// reports false otherwise (TestOwnedLeaseUpdateMatchesFieldManager
// compares it with the field manager over random histories).

// leaseSpecFields are the fields of a LeaseSpec, by JSON name.
var leaseSpecFields = []string{"holderIdentity", "leaseDurationSeconds", "acquireTime", "renewTime", "leaseTransitions", "strategy", "preferredHolder"}

// ownedLeaseUpdate returns obj with the managedFields upstream's main
// resource field manager would give it for manager's update of live, when
// both are Leases, nothing but spec fields set on both sides changed,
// and every changed field is owned by manager's Update entry and by no
// other entry. ok is false when any of that does not hold or cannot be
// checked cheaply.
func (f *FieldManagers) ownedLeaseUpdate(r *registry.Resource, live, obj any, manager string) (*coordinationv1.Lease, bool) {
	l, ok1 := live.(*coordinationv1.Lease)
	o, ok2 := obj.(*coordinationv1.Lease)
	if !ok1 || !ok2 || l == nil || o == nil || manager == "" || manager == "unknown" {
		return nil, false
	}
	// The metadata the field manager tracks must not change (the rest is
	// stripped from every entry).
	lm, om := &l.ObjectMeta, &o.ObjectMeta
	if lm.GenerateName != om.GenerateName || !strictEqual(lm.Labels, om.Labels) || !strictEqual(lm.Annotations, om.Annotations) ||
		!strictEqual(lm.OwnerReferences, om.OwnerReferences) || !strictEqual(lm.Finalizers, om.Finalizers) ||
		!equalTimePtr(lm.DeletionTimestamp, om.DeletionTimestamp) || !equalInt64Ptr(lm.DeletionGracePeriodSeconds, om.DeletionGracePeriodSeconds) {
		return nil, false
	}
	// The client may send managedFields; upstream then starts from them.
	if len(om.ManagedFields) > 0 && !strictEqual(om.ManagedFields, lm.ManagedFields) {
		return nil, false
	}
	changed, ok := changedLeaseSpec(&l.Spec, &o.Spec)
	if !ok {
		return nil, false
	}
	gv := r.GroupVersion.String()
	entries := lm.ManagedFields
	self := -1
	updates := 0
	for i := range entries {
		e := &entries[i]
		if e.APIVersion != gv || e.FieldsType != "FieldsV1" || e.FieldsV1 == nil || e.Manager == "" || e.Manager == "unknown" {
			return nil, false
		}
		switch e.Operation {
		case metav1.ManagedFieldsOperationUpdate:
			updates++
		case metav1.ManagedFieldsOperationApply:
		default:
			return nil, false
		}
		for j := range i {
			if sameManagerIdentity(&entries[j], e) {
				return nil, false // upstream refuses duplicates
			}
		}
		if e.Manager == manager && e.Operation == metav1.ManagedFieldsOperationUpdate && e.Subresource == "" {
			self = i
		}
	}
	if self < 0 || updates > maxUpdateManagers {
		return nil, false
	}
	var tv *typed.TypedValue // live typed, for its schema; only on a cache miss
	typedLive := func() (*typed.TypedValue, error) {
		var err error
		if tv == nil {
			tv, err = f.converter.ObjectToTyped(l, typed.AllowDuplicates)
		}
		return tv, err
	}
	for i := range entries {
		set, ok := f.leaseSets.canonical(entries[i].FieldsV1.Raw, typedLive)
		if !ok {
			return nil, false
		}
		for _, name := range changed {
			if set.Has(fieldpath.MakePathOrDie("spec", name)) != (i == self) {
				return nil, false
			}
		}
	}
	out := make([]metav1.ManagedFieldsEntry, len(entries))
	for i, e := range entries {
		if e.Time != nil {
			t := *e.Time
			e.Time = &t
		}
		e.FieldsV1 = &metav1.FieldsV1{Raw: append([]byte(nil), e.FieldsV1.Raw...)}
		if i == self && len(changed) > 0 {
			e.Time = &metav1.Time{Time: time.Now().UTC()}
		}
		out[i] = e
	}
	sortManagedFields(out)
	om.ManagedFields = out
	return o, true
}

// changedLeaseSpec lists the spec fields whose values differ as the field
// manager sees them (their JSON), and is false when a field is set on
// one side only (added or removed fields change other entries too).
func changedLeaseSpec(l, o *coordinationv1.LeaseSpec) ([]string, bool) {
	var changed []string
	check := func(name string, lnil, onil, equal bool) bool {
		if lnil != onil {
			return false
		}
		if !lnil && !equal {
			changed = append(changed, name)
		}
		return true
	}
	ok := check("holderIdentity", l.HolderIdentity == nil, o.HolderIdentity == nil, l.HolderIdentity == nil || o.HolderIdentity == nil || *l.HolderIdentity == *o.HolderIdentity) &&
		check("leaseDurationSeconds", l.LeaseDurationSeconds == nil, o.LeaseDurationSeconds == nil, l.LeaseDurationSeconds == nil || o.LeaseDurationSeconds == nil || *l.LeaseDurationSeconds == *o.LeaseDurationSeconds) &&
		check("acquireTime", l.AcquireTime == nil, o.AcquireTime == nil, l.AcquireTime == nil || o.AcquireTime == nil || microJSON(l.AcquireTime) == microJSON(o.AcquireTime)) &&
		check("renewTime", l.RenewTime == nil, o.RenewTime == nil, l.RenewTime == nil || o.RenewTime == nil || microJSON(l.RenewTime) == microJSON(o.RenewTime)) &&
		check("leaseTransitions", l.LeaseTransitions == nil, o.LeaseTransitions == nil, l.LeaseTransitions == nil || o.LeaseTransitions == nil || *l.LeaseTransitions == *o.LeaseTransitions) &&
		check("strategy", l.Strategy == nil, o.Strategy == nil, l.Strategy == nil || o.Strategy == nil || *l.Strategy == *o.Strategy) &&
		check("preferredHolder", l.PreferredHolder == nil, o.PreferredHolder == nil, l.PreferredHolder == nil || o.PreferredHolder == nil || *l.PreferredHolder == *o.PreferredHolder)
	if !ok {
		return nil, false
	}
	// A zero time is JSON null: the field manager sees no value there.
	for _, t := range []*metav1.MicroTime{l.AcquireTime, o.AcquireTime, l.RenewTime, o.RenewTime} {
		if t != nil && t.IsZero() {
			return nil, false
		}
	}
	return changed, true
}

// microJSON is t as JSON writes it (microseconds, UTC).
func microJSON(t *metav1.MicroTime) string {
	return t.UTC().Format(metav1.RFC3339Micro)
}

func equalTimePtr(a, b *metav1.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Time.Equal(b.Time)
}

func equalInt64Ptr(a, b *int64) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// strictEqual compares metadata values by DeepEqual, so that
// even a nil and an empty value (alike to the field manager) count as a
// change and leave the decision to it.
func strictEqual(a, b any) bool { return reflect.DeepEqual(a, b) }

// fieldSetCache remembers the sets of managedFields entries by their raw
// JSON when the slow path would leave the entry's bytes as they are: the
// JSON is what the field manager writes for the set, the set owns
// nothing outside spec and metadata, and reconciling it with the schema
// changes nothing (see skippableFields). Emptied when full.
type fieldSetCache struct {
	mu sync.Mutex
	m  map[string]*fieldpath.Set // nil: the slow path decides
}

const maxFieldSets = 4096

func (c *fieldSetCache) canonical(raw []byte, typedLive func() (*typed.TypedValue, error)) (*fieldpath.Set, bool) {
	c.mu.Lock()
	set, found := c.m[string(raw)]
	c.mu.Unlock()
	if found {
		return set, set != nil
	}
	tv, err := typedLive()
	if err != nil {
		return nil, false
	}
	var s *fieldpath.Set
	if skippableFields(raw, tv) {
		s = &fieldpath.Set{}
		if err := s.FromJSON(bytes.NewReader(raw)); err != nil {
			s = nil
		}
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxFieldSets {
		c.m = map[string]*fieldpath.Set{}
	}
	c.m[string(raw)] = s
	c.mu.Unlock()
	return s, s != nil
}
