package generic

import (
	"bytes"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/managedfields"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"
	"sigs.k8s.io/structured-merge-diff/v6/typed"

	"skiff.dev/skiff/internal/registry"
)

// A status update cannot change the managedFields entry of a manager that
// owns nothing outside spec and metadata: the status field manager's reset
// fields filter spec and metadata out of the comparison before it takes
// fields away from other managers (structured-merge-diff's Updater.update:
// conflicts and removals come from the filtered comparison, for managers
// of the same API version), so such an entry comes out of the slow path
// as it went in, re-encoded from its decoded set. For a pod that is the
// controller's create entry (all of metadata and spec, the largest entry
// by far, the same bytes in every pod of one template) and any other
// spec-only writer's: decoding, schema-reconciling and re-encoding them
// was most of a kubelet status write's managedFields CPU.
//
// splitForStatus and updateSkipping leave those entries out of the field
// manager's input and put them back, unchanged, into its output, in
// upstream's order. The answer is the slow path's byte for byte when:
//   - an entry's bytes are what re-encoding its decoded set gives (the
//     slow path rewrites every entry it decodes), it is non-empty (the
//     slow path drops empty sets) and schema reconciliation leaves it as
//     it is (the slow path reconciles every entry against the schema
//     before comparing); this is decided once per distinct FieldsV1 bytes
//     and cached (skippableFields);
//   - the entry is not the writing manager's own (its set would be merged
//     with the new one; an empty manager name is upstream's "unknown");
//   - no two entries share a manager identity (the slow path's decode
//     keeps one of them);
//   - the cap on update managers cannot apply (it merges the oldest
//     entries, skipped or not);
//   - the live object has a uid (without one, an update that starts from
//     no managedFields is tracked as a create);
//   - the field manager does not fail, and its output is not empty: a
//     kept entry that does not decode makes the slow path start from no
//     managedFields, which on an update records nothing, so an empty
//     output may mean the slow path would also have dropped the skipped
//     entries. Either falls back to the slow path.
//
// Upstream sorts the entries it writes by a key that is unique per
// manager identity (sortManagedFields), so the merged list sorted the same
// way is the order the slow path gives. TestStatusSkipSameManagedFields
// compares both on random histories.

// statusResetFields are what the status subresource's field manager
// leaves out of every comparison (upstream's status strategies'
// GetResetFields).
var statusResetFields = fieldpath.NewSet(fieldpath.MakePathOrDie("spec"), fieldpath.MakePathOrDie("metadata"))

var statusResetFilter = fieldpath.NewExcludeSetFilter(statusResetFields)

// strippedFields are the fields upstream's field manager never records
// for a manager (its stripMetaManager).
var strippedFields = fieldpath.NewSet(
	fieldpath.MakePathOrDie("apiVersion"),
	fieldpath.MakePathOrDie("kind"),
	fieldpath.MakePathOrDie("metadata"),
	fieldpath.MakePathOrDie("metadata", "name"),
	fieldpath.MakePathOrDie("metadata", "namespace"),
	fieldpath.MakePathOrDie("metadata", "creationTimestamp"),
	fieldpath.MakePathOrDie("metadata", "selfLink"),
	fieldpath.MakePathOrDie("metadata", "uid"),
	fieldpath.MakePathOrDie("metadata", "clusterName"),
	fieldpath.MakePathOrDie("metadata", "generation"),
	fieldpath.MakePathOrDie("metadata", "managedFields"),
	fieldpath.MakePathOrDie("metadata", "resourceVersion"),
)

// maxUpdateManagers is upstream's cap on Update-operation entries
// (DefaultMaxUpdateManagers).
const maxUpdateManagers = 10

// maxCachedSkippable bounds the per-kind cache of FieldsV1 decisions; it
// is emptied when full.
const maxCachedSkippable = 256

// placeholderManager names a managedFields entry with an empty field set
// that stands in for the skipped entries when none is left: with no
// entries at all the field manager would not track the update (upstream's
// skipNonAppliedManager), and an empty set is dropped before the output
// is written.
const placeholderManager = "skiff.dev/skipped-status-managers"

// skippableCache remembers, per object kind, whether FieldsV1 bytes are an
// entry a status update leaves alone (see skippableFields).
type skippableCache struct {
	mu    sync.Mutex
	kinds map[schema.GroupVersionKind]map[string]bool
}

func (c *skippableCache) get(gvk schema.GroupVersionKind, raw []byte) (skip, found bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	skip, found = c.kinds[gvk][string(raw)]
	return skip, found
}

func (c *skippableCache) put(gvk schema.GroupVersionKind, raw []byte, skip bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.kinds == nil {
		c.kinds = map[schema.GroupVersionKind]map[string]bool{}
	}
	m := c.kinds[gvk]
	if m == nil || len(m) >= maxCachedSkippable {
		m = map[string]bool{}
		c.kinds[gvk] = m
	}
	m[string(raw)] = skip
}

// splitForStatus divides the managedFields of tl (trimForStatus's view
// of the live object) for a status update by manager into the entries
// the update cannot change (skipped) and the rest (kept, never empty), or
// returns false when the slow path must run (see the conditions above).
func (f *FieldManagers) splitForStatus(r *registry.Resource, tl runtime.Object, manager string) (kept, skipped []metav1.ManagedFieldsEntry, ok bool) {
	tm, err := meta.Accessor(tl)
	if err != nil || tm.GetUID() == "" {
		return nil, nil, false
	}
	entries := tm.GetManagedFields()
	if len(entries) == 0 {
		return nil, nil, false
	}
	gv := r.GroupVersion.String()
	gvk := r.GroupVersionKind()
	var tv *typed.TypedValue // tl typed, for its schema; only on a cache miss
	updaters := 0
	kept = make([]metav1.ManagedFieldsEntry, 0, len(entries))
	for i := range entries {
		e := &entries[i]
		if e.Operation == metav1.ManagedFieldsOperationUpdate {
			updaters++
		}
		for j := range i {
			if sameManagerIdentity(&entries[j], e) {
				return nil, nil, false
			}
		}
		if e.Manager == manager || e.Manager == "unknown" || e.APIVersion != gv || e.FieldsType != "FieldsV1" || e.FieldsV1 == nil ||
			(e.Operation != metav1.ManagedFieldsOperationUpdate && e.Operation != metav1.ManagedFieldsOperationApply) {
			kept = append(kept, *e)
			continue
		}
		skip, found := f.skippable.get(gvk, e.FieldsV1.GetRawBytes())
		if !found {
			if tv == nil {
				if tv, err = f.converter.ObjectToTyped(tl, typed.AllowDuplicates); err != nil {
					return nil, nil, false
				}
			}
			skip = skippableFields(e.FieldsV1.GetRawBytes(), tv)
			f.skippable.put(gvk, e.FieldsV1.GetRawBytes(), skip)
		}
		if skip {
			skipped = append(skipped, *e)
		} else {
			kept = append(kept, *e)
		}
	}
	if len(skipped) == 0 || updaters >= maxUpdateManagers {
		return nil, nil, false
	}
	if len(kept) == 0 {
		kept = append(kept, metav1.ManagedFieldsEntry{Manager: placeholderManager, Operation: metav1.ManagedFieldsOperationUpdate,
			APIVersion: gv, FieldsType: "FieldsV1", FieldsV1: metav1.NewFieldsV1("{}")})
	}
	return kept, skipped, true
}

// updateSkipping runs fm's update of the trimmed objects tl and to with
// only the kept entries as tl's managedFields (it writes to both copies)
// and returns the managedFields the slow path would write: its output
// with the skipped entries put back in upstream's order.
func (f *FieldManagers) updateSkipping(fm *managedfields.FieldManager, r *registry.Resource, tl, to runtime.Object, manager string, kept, skipped []metav1.ManagedFieldsEntry) ([]metav1.ManagedFieldsEntry, bool) {
	tm, err := meta.Accessor(tl)
	if err != nil {
		return nil, false
	}
	tm.SetManagedFields(kept)
	var written []metav1.ManagedFieldsEntry
	if len(kept) == 1 && kept[0].Manager == placeholderManager {
		e, ok := f.firstStatusEntry(r, tl, to, manager)
		if !ok {
			return nil, false
		}
		written = []metav1.ManagedFieldsEntry{e}
	} else {
		out, err := fm.Update(tl, to, manager)
		if err != nil {
			return nil, false
		}
		om, err := meta.Accessor(out)
		if err != nil {
			return nil, false
		}
		written = om.GetManagedFields()
	}
	if len(written) == 0 {
		return nil, false
	}
	merged := make([]metav1.ManagedFieldsEntry, 0, len(written)+len(skipped))
	for _, e := range written {
		if e.Manager == placeholderManager {
			return nil, false
		}
		merged = append(merged, e)
	}
	for _, e := range skipped {
		// The slow path writes fresh copies; the live object's stay its own.
		if e.Time != nil {
			t := *e.Time
			e.Time = &t
		}
		raw := e.FieldsV1.GetRawBytes()
		e.FieldsV1 = &metav1.FieldsV1{}
		e.FieldsV1.SetRawBytes(raw)
		merged = append(merged, e)
	}
	sortManagedFields(merged)
	return merged, true
}

// firstStatusEntry is the entry the status field manager writes for
// manager when the live object's managedFields are only the placeholder:
// everything upstream's chain does for that case, without decoding,
// identifier JSON, schema reconciliation and encoding of a list. The
// comparison of tl and to (typed as upstream types them, or for the
// common pod statuses its rules applied in Go: fastStatusFields) gives
// the fields that are new or changed; the placeholder owns nothing, so nothing is
// taken from anyone and there is no earlier entry to merge with; the
// reset fields are filtered out and the metadata upstream never records
// is stripped; the entry is stamped now. False when the field manager
// would fail, or records nothing (the slow path then decides).
func (f *FieldManagers) firstStatusEntry(r *registry.Resource, tl, to runtime.Object, manager string) (metav1.ManagedFieldsEntry, bool) {
	gv := r.GroupVersionKind().GroupVersion()
	if om, err := meta.Accessor(to); err == nil {
		om.SetManagedFields(nil) // as upstream's FieldManager.Update
	}
	fields, handled := fastStatusFields(r, tl, to)
	if !handled {
		if raw := f.compareStatusFields(r, tl, to); raw != nil {
			fields = &metav1.FieldsV1{}
			fields.SetRawBytes(raw)
		}
	}
	if fields == nil {
		return metav1.ManagedFieldsEntry{}, false
	}
	if manager == "" {
		manager = "unknown" // as upstream's buildManagerInfoManager
	}
	return metav1.ManagedFieldsEntry{Manager: manager, Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: gv.String(),
		Time: &metav1.Time{Time: time.Now().UTC()}, FieldsType: "FieldsV1", FieldsV1: fields, Subresource: "status"}, true
}

// compareStatusFields is the FieldsV1 of what the status field manager
// records from tl to to for a manager with no earlier entry, by
// structured-merge-diff's comparison: the fields that are new or changed,
// without the reset fields and the metadata upstream never records. Nil
// when that is nothing or the comparison fails.
func (f *FieldManagers) compareStatusFields(r *registry.Resource, tl, to runtime.Object) []byte {
	gv := r.GroupVersionKind().GroupVersion()
	lv, err := f.convertor.ConvertToVersion(tl, gv)
	if err != nil {
		return nil
	}
	nv, err := f.convertor.ConvertToVersion(to, gv)
	if err != nil {
		return nil
	}
	nt, err := f.converter.ObjectToTyped(nv, typed.AllowDuplicates)
	if err != nil {
		return nil
	}
	lt, err := f.converter.ObjectToTyped(lv, typed.AllowDuplicates)
	if err != nil {
		return nil
	}
	cmp, err := lt.Compare(nt)
	if err != nil {
		return nil
	}
	set := statusResetFilter.Filter(cmp.Modified.Union(cmp.Added)).Difference(strippedFields)
	if set.Empty() {
		return nil
	}
	raw, err := set.ToJSON()
	if err != nil {
		return nil
	}
	return raw
}

// skippableFields reports whether raw is an entry's FieldsV1 that a
// status update leaves as it is: it decodes, re-encodes to the same bytes,
// is not empty, owns nothing outside spec and metadata, and schema
// reconciliation against tv's type does not change it.
func skippableFields(raw []byte, tv *typed.TypedValue) bool {
	var set fieldpath.Set
	if err := set.FromJSON(bytes.NewReader(raw)); err != nil || set.Empty() {
		return false
	}
	inside := true
	outsideOnly := func(pe fieldpath.PathElement) {
		if pe.FieldName == nil || (*pe.FieldName != "spec" && *pe.FieldName != "metadata") {
			inside = false
		}
	}
	set.Members.Iterate(outsideOnly)
	set.Children.Iterate(outsideOnly)
	if !inside {
		return false
	}
	again, err := set.ToJSON()
	if err != nil || !bytes.Equal(again, raw) {
		return false
	}
	reconciled, err := typed.ReconcileFieldSetWithSchema(&set, tv)
	return err == nil && reconciled == nil
}

// sameManagerIdentity reports whether a and b are the same manager to the
// field manager (upstream's BuildManagerIdentifier: the API version counts
// for updates only).
func sameManagerIdentity(a, b *metav1.ManagedFieldsEntry) bool {
	if a.Manager != b.Manager || a.Operation != b.Operation || a.Subresource != b.Subresource {
		return false
	}
	return a.Operation == metav1.ManagedFieldsOperationApply || a.APIVersion == b.APIVersion
}

// sortManagedFields orders entries as upstream writes them: by operation,
// then time in whole seconds, manager, API version and subresource.
func sortManagedFields(entries []metav1.ManagedFieldsEntry) {
	seconds := func(t *metav1.Time) int64 {
		if t == nil {
			return 0
		}
		return t.Unix()
	}
	slices.SortFunc(entries, func(p, q metav1.ManagedFieldsEntry) int {
		if p.Operation != q.Operation {
			return strings.Compare(string(p.Operation), string(q.Operation))
		}
		if ps, qs := seconds(p.Time), seconds(q.Time); ps != qs {
			if ps < qs {
				return -1
			}
			return 1
		}
		if p.Manager != q.Manager {
			return strings.Compare(p.Manager, q.Manager)
		}
		if p.APIVersion != q.APIVersion {
			return strings.Compare(p.APIVersion, q.APIVersion)
		}
		return strings.Compare(p.Subresource, q.Subresource)
	})
}
