package generic

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/managedfields"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"
	smdschema "sigs.k8s.io/structured-merge-diff/v6/schema"
	"sigs.k8s.io/structured-merge-diff/v6/typed"
	"sigs.k8s.io/structured-merge-diff/v6/value"

	"skiff.dev/skiff/internal/registry"
)

// FieldManagers keeps one managedfields.FieldManager per resource and
// subresource: they maintain metadata.managedFields on every write and
// implement server-side apply.
type FieldManagers struct {
	scheme    *runtime.Scheme
	converter managedfields.TypeConverter
	// convertor converts objects to the field manager's version.
	convertor runtime.ObjectConvertor

	mu  sync.Mutex
	fms map[string]*managedfields.FieldManager
	// byResource is fms by resource pointer and subresource, read
	// without the lock or building the string key on every write.
	byResource sync.Map // fmKey -> *managedfields.FieldManager

	// creates caches the managedFields entry of creates by content (see
	// createKey): identical objects (the pods of one ReplicaSet) skip
	// the structured-merge-diff comparison.
	createMu sync.Mutex
	creates  map[string]metav1.ManagedFieldsEntry

	// trimEqual leaves the top-level fields that an update does not
	// change out of the comparison (see trimUnchanged).
	trimEqual bool

	// skippable remembers which managedFields entries a status update
	// cannot change (see splitForStatus).
	skippable skippableCache

	// leaseSets holds the decoded managedFields sets of Lease renewals
	// (see ownedLeaseUpdate).
	leaseSets fieldSetCache
}

// NewFieldManagers builds the set from a type converter (for built-in types
// client-go's applyconfigurations.NewTypeConverter(scheme)). Typed Go
// objects are typed without validation (see unvalidatedConverter).
func NewFieldManagers(scheme *runtime.Scheme, tc managedfields.TypeConverter) *FieldManagers {
	f := newFieldManagers(scheme, &unvalidatedConverter{inner: tc})
	f.convertor = sameKindConvertor{scheme}
	f.creates = map[string]metav1.ManagedFieldsEntry{}
	f.trimEqual = true
	return f
}

func newFieldManagers(scheme *runtime.Scheme, tc managedfields.TypeConverter) *FieldManagers {
	return &FieldManagers{scheme: scheme, converter: tc, convertor: scheme, fms: map[string]*managedfields.FieldManager{}}
}

// unvalidatedConverter types built-in Go objects against their schema
// without validating them. The type converter's validation walks the whole
// object to check that it conforms to the schema; a Go struct generated
// from that same schema always does, and the walk was a third of the
// managedFields cost of a create (which is itself most of Store.Create's
// CPU). What the field manager computes from a typed value does not depend
// on whether it was validated, so managedFields stay byte-for-byte the
// same (fieldmanager_test.go compares both on every resource).
// Unstructured objects (server-side apply's patch, which may carry
// anything) are still validated by the inner converter, as is the first
// object of each kind: its typed value gives the schema and type to reuse.
type unvalidatedConverter struct {
	inner managedfields.TypeConverter
	types sync.Map // schema.GroupVersionKind -> parsedType
}

type parsedType struct {
	schema *smdschema.Schema
	ref    smdschema.TypeRef
}

var _ managedfields.TypeConverter = (*unvalidatedConverter)(nil)

func (c *unvalidatedConverter) ObjectToTyped(obj runtime.Object, opts ...typed.ValidationOptions) (*typed.TypedValue, error) {
	if _, ok := obj.(*unstructured.Unstructured); ok {
		return c.inner.ObjectToTyped(obj, opts...)
	}
	gvk := obj.GetObjectKind().GroupVersionKind()
	if t, ok := c.types.Load(gvk); ok {
		v, err := value.NewValueReflect(obj)
		if err != nil {
			return nil, fmt.Errorf("reflecting %v: %w", gvk, err)
		}
		pt := t.(parsedType)
		return typed.AsTypedUnvalidated(v, pt.schema, pt.ref), nil
	}
	tv, err := c.inner.ObjectToTyped(obj, opts...)
	if err != nil {
		return nil, err
	}
	c.types.Store(gvk, parsedType{schema: tv.Schema(), ref: tv.TypeRef()})
	return tv, nil
}

func (c *unvalidatedConverter) TypedToObject(tv *typed.TypedValue) (runtime.Object, error) {
	return c.inner.TypedToObject(tv)
}

// sameKindConvertor converts like the scheme, except that a typed object
// the scheme would only deep-copy (it already is of the kind the target
// version wants, and says so in its TypeMeta) is returned as it is. The
// field manager converts the live and the new object to its version
// before typing them, only to read them: two deep copies of every object
// written, for nothing. What the field manager computes is the same
// (fieldmanager_test.go compares against the scheme on every resource).
type sameKindConvertor struct{ *runtime.Scheme }

func (c sameKindConvertor) ConvertToVersion(in runtime.Object, target runtime.GroupVersioner) (runtime.Object, error) {
	if _, ok := in.(runtime.Unstructured); !ok && in != nil {
		have := in.GetObjectKind().GroupVersionKind()
		if kinds, _, err := c.ObjectKinds(in); err == nil && !have.Empty() && have.Version != runtime.APIVersionInternal {
			if want, ok := target.KindForGroupVersionKinds(kinds); ok && want == have {
				return in, nil
			}
		}
	}
	return c.Scheme.ConvertToVersion(in, target)
}

type defaulter struct{ r *registry.Resource }

func (d defaulter) Default(obj runtime.Object) {
	if d.r.Default != nil {
		d.r.Default(obj)
	}
}

// fmKey names a field manager by the resource's own pointer.
type fmKey struct {
	r   *registry.Resource
	sub string
}

// Get returns the field manager for r and subresource ("" or "status").
func (f *FieldManagers) Get(r *registry.Resource, subresource string) (*managedfields.FieldManager, error) {
	if fm, ok := f.byResource.Load(fmKey{r, subresource}); ok {
		return fm.(*managedfields.FieldManager), nil
	}
	fm, err := f.get(r, subresource)
	if err == nil {
		f.byResource.Store(fmKey{r, subresource}, fm)
	}
	return fm, err
}

// get returns the field manager for r and subresource, building it the
// first time a resource of that group, version and name asks.
func (f *FieldManagers) get(r *registry.Resource, subresource string) (*managedfields.FieldManager, error) {
	key := r.GroupVersion.String() + "/" + r.Resource + "/" + subresource
	f.mu.Lock()
	defer f.mu.Unlock()
	if fm, ok := f.fms[key]; ok {
		return fm, nil
	}
	// The main resource does not own status, the status subresource owns
	// nothing but status: upstream's reset fields.
	reset := map[fieldpath.APIVersion]*fieldpath.Set{}
	av := fieldpath.APIVersion(r.GroupVersion.String())
	switch subresource {
	case "":
		reset[av] = fieldpath.NewSet(fieldpath.MakePathOrDie("status"))
	case "status":
		reset[av] = statusResetFields
	}
	filters := map[fieldpath.APIVersion]fieldpath.Filter{}
	for k, v := range reset {
		filters[k] = fieldpath.NewExcludeSetFilter(v)
	}
	fm, err := managedfields.NewDefaultFieldManager(f.converter, f.convertor, defaulter{r}, f.scheme,
		r.GroupVersionKind(), r.GroupVersion, subresource, filters)
	if err != nil {
		return nil, fmt.Errorf("building field manager for %s: %w", r.GroupResource(), err)
	}
	f.fms[key] = fm
	return fm, nil
}

// Update records manager's ownership of what changed from live to obj. It
// never fails the request (upstream's UpdateNoErrors).
func (f *FieldManagers) Update(r *registry.Resource, subresource string, live, obj runtime.Object, manager string) runtime.Object {
	fm, err := f.Get(r, subresource)
	if err != nil {
		return obj
	}
	if f.trimEqual && subresource == "" {
		if out, ok := f.ownedLeaseUpdate(r, live, obj, manager); ok {
			return out
		}
	}
	key, ok := f.createKey(r, subresource, live, obj, manager)
	if !ok {
		if f.trimEqual {
			var tl, to runtime.Object
			var ok bool
			if subresource == "status" && sameVersionManagers(live, r) {
				tl, to, ok = trimForStatus(live, obj)
				if ok {
					if kept, skipped, split := f.splitForStatus(r, tl, manager); split {
						if mf, done := f.updateSkipping(fm, r, tl, to, manager, kept, skipped); done {
							if om, err := meta.Accessor(obj); err == nil {
								om.SetManagedFields(mf)
								return obj
							}
						}
						// The attempt wrote to the copies.
						tl, to, ok = trimForStatus(live, obj)
					}
				}
			} else {
				tl, to, ok = trimUnchanged(live, obj)
			}
			if ok {
				out := fm.UpdateNoErrors(tl, to, manager)
				om, err := meta.Accessor(obj)
				outm, err2 := meta.Accessor(out)
				if err == nil && err2 == nil {
					om.SetManagedFields(outm.GetManagedFields())
					return obj
				}
			}
		}
		return fm.UpdateNoErrors(live, obj, manager)
	}
	om, _ := meta.Accessor(obj)
	f.createMu.Lock()
	e, hit := f.creates[key]
	f.createMu.Unlock()
	if hit {
		e.Time = &metav1.Time{Time: time.Now().UTC()}
		e.FieldsV1 = &metav1.FieldsV1{Raw: append([]byte(nil), e.FieldsV1.Raw...)}
		om.SetManagedFields([]metav1.ManagedFieldsEntry{e})
		return obj
	}
	out := fm.UpdateNoErrors(live, obj, manager)
	if m, err := meta.Accessor(out); err == nil && len(m.GetManagedFields()) == 1 {
		e := m.GetManagedFields()[0]
		if e.Manager == manager && e.FieldsV1 != nil {
			e.FieldsV1 = &metav1.FieldsV1{Raw: append([]byte(nil), e.FieldsV1.Raw...)}
			f.createMu.Lock()
			if len(f.creates) >= maxCachedCreates {
				clear(f.creates)
			}
			f.creates[key] = e
			f.createMu.Unlock()
		}
	}
	return out
}

// structPair is the structs live and obj point to, when both are non-nil
// pointers to the same struct type.
func structPair(live, obj runtime.Object) (reflect.Value, reflect.Value, bool) {
	lv, ov := reflect.ValueOf(live), reflect.ValueOf(obj)
	if lv.Kind() != reflect.Pointer || lv.Type() != ov.Type() || lv.IsNil() || ov.IsNil() {
		return reflect.Value{}, reflect.Value{}, false
	}
	lv, ov = lv.Elem(), ov.Elem()
	return lv, ov, lv.Kind() == reflect.Struct
}

// trimUnchanged returns shallow copies of live and obj without the
// top-level fields (spec, status, data, ...; never metadata) that are
// identical in both, and whether it left anything out. A status update
// carries the stored spec and a main-resource update the stored status,
// and the field manager's comparison and copies of a pod cost in
// proportion to its size: a pod status update spent half its
// managedFields CPU walking the unchanged spec. Leaving out a field that
// is deep-equal on both sides cannot change the result: the comparison
// finds nothing added, modified or removed under it, so no manager gains
// or loses a field there, and ownership of what is left out is kept as
// recorded (the field sets come from live's managedFields, not from the
// values). TestTrimmedUpdatesSameManagedFields compares both ways.
func trimUnchanged(live, obj runtime.Object) (runtime.Object, runtime.Object, bool) {
	lv, ov, ok := structPair(live, obj)
	if !ok {
		return nil, nil, false
	}
	var tl, to reflect.Value
	t := lv.Type()
	for i := range t.NumField() {
		sf := t.Field(i)
		if sf.Anonymous || sf.Name == "ObjectMeta" || !sf.IsExported() {
			continue
		}
		lf, of := lv.Field(i), ov.Field(i)
		if lf.IsZero() || !reflect.DeepEqual(lf.Interface(), of.Interface()) {
			continue
		}
		if !tl.IsValid() {
			tl, to = reflect.New(t), reflect.New(t)
			tl.Elem().Set(lv)
			to.Elem().Set(ov)
		}
		tl.Elem().Field(i).SetZero()
		to.Elem().Field(i).SetZero()
	}
	if !tl.IsValid() {
		return nil, nil, false
	}
	l, ok1 := tl.Interface().(runtime.Object)
	o, ok2 := to.Interface().(runtime.Object)
	return l, o, ok1 && ok2
}

// trimForStatus returns shallow copies of live and obj reduced to what
// the status subresource's field manager can record: its reset fields
// leave spec and everything under metadata out of the comparison's
// result (upstream's status strategies' GetResetFields), so both copies
// keep only TypeMeta, the metadata the field manager reads itself (uid:
// whether live exists; managedFields: the recorded ownership) and the
// top-level fields other than spec that differ. The comparison is
// path-local: what it finds under status does not depend on spec or
// metadata, and nothing it would find there survives the reset filter
// (the field set of the current operation is filtered; other managers
// only lose fields the filtered comparison reports). A pod status update
// spent most of its managedFields CPU walking metadata (labels, owner
// references, and the stored managedFields themselves, each FieldsV1
// parsed from JSON). Only valid when every manager of live is recorded in
// the resource's own version (sameVersionManagers): another version's
// entry is compared on converted objects, which a trimmed object would
// change. TestStatusTrimSameManagedFields compares both ways.
func trimForStatus(live, obj runtime.Object) (runtime.Object, runtime.Object, bool) {
	if lp, ok := live.(*corev1.Pod); ok && lp != nil {
		if op, ok := obj.(*corev1.Pod); ok && op != nil {
			return trimPodForStatus(lp, op)
		}
	}
	return trimForStatusReflect(live, obj)
}

// trimForStatusReflect is trimForStatus for any struct kind.
func trimForStatusReflect(live, obj runtime.Object) (runtime.Object, runtime.Object, bool) {
	lv, ov, ok := structPair(live, obj)
	if !ok {
		return nil, nil, false
	}
	t := lv.Type()
	tl, to := reflect.New(t), reflect.New(t)
	metaDone := false
	for i := range t.NumField() {
		sf := t.Field(i)
		if !sf.IsExported() {
			return nil, nil, false
		}
		lf, of := lv.Field(i), ov.Field(i)
		switch {
		case sf.Anonymous && sf.Type == reflect.TypeOf(metav1.TypeMeta{}):
			tl.Elem().Field(i).Set(lf)
			to.Elem().Field(i).Set(of)
		case sf.Anonymous && sf.Type == reflect.TypeOf(metav1.ObjectMeta{}):
			lm, om := lf.Addr().Interface().(*metav1.ObjectMeta), of.Addr().Interface().(*metav1.ObjectMeta)
			tl.Elem().Field(i).Set(reflect.ValueOf(statusViewMeta(lm)))
			to.Elem().Field(i).Set(reflect.ValueOf(statusViewMeta(om)))
			metaDone = true
		case sf.Anonymous:
			return nil, nil, false
		case sf.Name == "Spec":
			// left zero on both sides
		case lf.IsZero() || !reflect.DeepEqual(lf.Interface(), of.Interface()):
			tl.Elem().Field(i).Set(lf)
			to.Elem().Field(i).Set(of)
		}
	}
	if !metaDone {
		return nil, nil, false
	}
	l, ok1 := tl.Interface().(runtime.Object)
	o, ok2 := to.Interface().(runtime.Object)
	return l, o, ok1 && ok2
}

// statusViewMeta is the part of m the status field manager reads.
func statusViewMeta(m *metav1.ObjectMeta) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: m.Name, Namespace: m.Namespace, UID: m.UID, ManagedFields: m.ManagedFields}
}

// sameVersionManagers reports whether every managedFields entry of live is
// recorded in r's own group version.
func sameVersionManagers(live runtime.Object, r *registry.Resource) bool {
	m, err := meta.Accessor(live)
	if err != nil {
		return false
	}
	gv := r.GroupVersion.String()
	for _, e := range m.GetManagedFields() {
		if e.APIVersion != gv {
			return false
		}
	}
	return true
}

// maxCachedCreates bounds the create cache; it is emptied when full.
const maxCachedCreates = 512

// createKey returns the cache key of a create (live is a new, empty
// object and obj carries no managedFields of its own) and whether obj is
// one. A create's managedFields entry is the manager's ownership of every
// field of obj, a function of obj's content alone, except for the
// metadata fields the field manager strips (name, namespace, uid,
// creationTimestamp, generation, resourceVersion, selfLink), which are
// left out of the key: the pods a ReplicaSet creates from one template
// share one key. The key is obj's JSON, the same view of the object
// (field names, omitempty, custom marshalers) the structured-merge-diff
// reflection takes, so equal keys mean equal field sets.
func (f *FieldManagers) createKey(r *registry.Resource, subresource string, live, obj runtime.Object, manager string) (string, bool) {
	if f.creates == nil || manager == "" {
		return "", false
	}
	lm, err := meta.Accessor(live)
	if err != nil || lm.GetUID() != "" || lm.GetResourceVersion() != "" || len(lm.GetManagedFields()) > 0 {
		return "", false
	}
	om, err := meta.Accessor(obj)
	if err != nil || len(om.GetManagedFields()) > 0 {
		return "", false
	}
	name, ns, uid, created := om.GetName(), om.GetNamespace(), om.GetUID(), om.GetCreationTimestamp()
	gen, rv, link := om.GetGeneration(), om.GetResourceVersion(), om.GetSelfLink()
	om.SetName("")
	om.SetNamespace("")
	om.SetUID("")
	om.SetCreationTimestamp(metav1.Time{})
	om.SetGeneration(0)
	om.SetResourceVersion("")
	om.SetSelfLink("")
	data, err := json.Marshal(obj)
	om.SetName(name)
	om.SetNamespace(ns)
	om.SetUID(uid)
	om.SetCreationTimestamp(created)
	om.SetGeneration(gen)
	om.SetResourceVersion(rv)
	om.SetSelfLink(link)
	if err != nil {
		return "", false
	}
	return r.GroupVersion.String() + "/" + r.Resource + "/" + subresource + "\x00" + manager + "\x00" + string(data), true
}
