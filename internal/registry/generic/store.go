// Package generic implements the verbs every resource shares (create, get,
// list, update, patch targets, delete, watch) on top of storage.Interface,
// driven by a registry.Resource descriptor. It knows Kubernetes object
// semantics (metadata, generation, finalizers, graceful deletion,
// preconditions, dry run) but nothing about HTTP: the API server decodes
// requests, calls a Store and encodes the result.
//
// Errors returned are *apierrors.StatusError values carrying the Status the
// client must see.
package generic

import (
	"context"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apimachinery/pkg/watch"

	"skiff.dev/skiff/internal/registry"
	"skiff.dev/skiff/internal/storage"
)

// Finalizers the API server itself understands.
const (
	FinalizerOrphan     = metav1.FinalizerOrphanDependents // "orphan"
	FinalizerForeground = metav1.FinalizerDeleteDependents // "foregroundDeletion"
	namespaceFinalizer  = "kubernetes"
)

// Hooks let the server add cross-cutting behaviour (admission) without the
// store knowing about it. Each may be nil.
type Hooks struct {
	// Admit runs after defaulting and before validation on create and
	// update (mutating admission). old is nil on create.
	Admit func(ctx context.Context, r *registry.Resource, op Operation, obj, old runtime.Object) error
	// Validate runs after validation (validating admission).
	Validate func(ctx context.Context, r *registry.Resource, op Operation, obj, old runtime.Object) error
	// AfterDelete runs after an object is removed from storage (release of
	// allocated IPs/ports and the like).
	AfterDelete func(ctx context.Context, r *registry.Resource, obj runtime.Object)
}

// Operation is what a request does, for admission.
type Operation string

const (
	OpCreate Operation = "CREATE"
	OpUpdate Operation = "UPDATE"
	OpDelete Operation = "DELETE"
)

// Store serves one resource (one group version) from one storage.
type Store struct {
	R       *registry.Resource
	Storage storage.Interface
	// KeyRoot is the storage prefix without trailing slash, e.g.
	// "/registry/pods".
	KeyRoot string
	Hooks   Hooks
	// Now is the clock (injected for tests).
	Now func() time.Time
	// FieldManagers maintain metadata.managedFields; nil disables tracking.
	FieldManagers *FieldManagers
	// GenerateName appends a random suffix to a generateName prefix
	// (injected for tests; utilrand.String(5) by default).
	GenerateName func(prefix string) string

	hasSpec, hasStatus bool
	// creates remembers create managedFields entries (fieldmanager_create.go).
	creates *createEntries
}

// NewStore builds a Store; keyRoot is the storage prefix.
func NewStore(r *registry.Resource, s storage.Interface, keyRoot string) *Store {
	st := &Store{R: r, Storage: s, KeyRoot: strings.TrimSuffix(keyRoot, "/"), Now: time.Now, creates: newCreateEntries()}
	t := reflect.TypeOf(r.New()).Elem()
	_, st.hasSpec = t.FieldByName("Spec")
	_, st.hasStatus = t.FieldByName("Status")
	return st
}

// HasStatus reports whether the type has a Status field.
func (s *Store) HasStatus() bool { return s.hasStatus }

func (s *Store) key(ns, name string) string {
	if s.R.Namespaced {
		return s.KeyRoot + "/" + ns + "/" + name
	}
	return s.KeyRoot + "/" + name
}

func (s *Store) prefix(ns string) string {
	if s.R.Namespaced && ns != "" {
		return s.KeyRoot + "/" + ns + "/"
	}
	return s.KeyRoot + "/"
}

// toStorage/fromStorage convert at the storage boundary when the resource
// shares storage with another version.
func (s *Store) toStorage(obj runtime.Object) (runtime.Object, error) {
	if s.R.ToStorage == nil {
		return obj, nil
	}
	return s.R.ToStorage(obj)
}

func (s *Store) fromStorage(obj runtime.Object) (runtime.Object, error) {
	if obj == nil {
		return nil, nil
	}
	if s.R.FromStorage == nil {
		return obj, nil
	}
	return s.R.FromStorage(obj)
}

func (s *Store) qualified() (gr string) { return s.R.GroupResource().String() }

// notFound builds the 404 for name.
func (s *Store) notFound(name string) error {
	return apierrors.NewNotFound(s.R.GroupResource(), name)
}

// convertStorageErr maps storage errors to API statuses.
func (s *Store) convertStorageErr(err error, name string) error {
	if err == nil {
		return nil
	}
	if _, ok := err.(apierrors.APIStatus); ok {
		return err
	}
	var se *storage.Error
	if !asStorageErr(err, &se) {
		return apierrors.NewInternalError(err)
	}
	switch se.Code {
	case storage.ErrCodeKeyNotFound:
		return s.notFound(name)
	case storage.ErrCodeKeyExists:
		return apierrors.NewAlreadyExists(s.R.GroupResource(), name)
	case storage.ErrCodeResourceVersionConflicts:
		return apierrors.NewConflict(s.R.GroupResource(), name, fmt.Errorf("the object has been modified; please apply your changes to the latest version and try again"))
	case storage.ErrCodeResourceExpired:
		msg := se.Msg
		if msg == "" {
			msg = "too old resource version"
		}
		return apierrors.NewResourceExpired(msg)
	case storage.ErrCodeTooLargeResourceVersion:
		return tooLargeRV(se)
	case storage.ErrCodeInvalidContinue:
		return apierrors.NewBadRequest(fmt.Sprintf("invalid continue token: %s", se.Msg))
	case storage.ErrCodeTooLarge:
		return apierrors.NewRequestEntityTooLargeError("object exceeds the maximum size stored")
	case storage.ErrCodeUnreachable:
		return apierrors.NewServiceUnavailable(se.Msg)
	}
	return apierrors.NewInternalError(err)
}

func tooLargeRV(se *storage.Error) error {
	e := apierrors.NewTimeoutError(fmt.Sprintf("Too large resource version: %d, current: %s", se.ResourceVersion, se.Msg), 1)
	e.ErrStatus.Details.Causes = []metav1.StatusCause{{Type: metav1.CauseTypeResourceVersionTooLarge, Message: "Too large resource version"}}
	return e
}

// ---------------------------------------------------------------- create

// CreateOptions are the parts of metav1.CreateOptions the store uses.
type CreateOptions struct {
	DryRun       bool
	FieldManager string
	// Body is the request body the object was decoded from, as sent with
	// MediaType (the Content-Type header), or nil. Creates of the same
	// body record the same managedFields entry (fieldmanager_create.go).
	Body      []byte
	MediaType string
}

// Create stores a new object. ns is the namespace from the URL ("" for
// cluster-scoped).
func (s *Store) Create(ctx context.Context, ns string, obj runtime.Object, opts CreateOptions) (runtime.Object, error) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, apierrors.NewBadRequest(err.Error())
	}
	if err := s.checkNamespace(m, ns); err != nil {
		return nil, err
	}
	generated := m.GetName() == "" && m.GetGenerateName() != ""
	if generated {
		m.SetName(s.generateName(m.GetGenerateName()))
	}
	if m.GetResourceVersion() != "" {
		return nil, apierrors.NewBadRequest("resourceVersion should not be set on objects to be created")
	}
	s.prepareCreateMeta(m)
	if s.R.Default != nil {
		s.R.Default(obj)
	}
	if s.R.PrepareForCreate != nil {
		s.R.PrepareForCreate(obj)
	} else if s.hasStatus {
		resetField(obj, "Status")
	}
	// Ownership is recorded for what the client sent (with defaults),
	// before admission mutates the object, as upstream does.
	if s.FieldManagers != nil {
		obj = s.createManagedFields(obj, opts, generated)
		m, _ = meta.Accessor(obj)
	}
	if s.Hooks.Admit != nil {
		if err := s.Hooks.Admit(ctx, s.R, OpCreate, obj, nil); err != nil {
			return nil, err
		}
	}
	if errs := s.validateCreate(obj, m); len(errs) > 0 {
		return nil, apierrors.NewInvalid(s.R.GroupVersionKind().GroupKind(), m.GetName(), errs)
	}
	if s.Hooks.Validate != nil {
		if err := s.Hooks.Validate(ctx, s.R, OpCreate, obj, nil); err != nil {
			return nil, err
		}
	}
	setTypeMeta(obj, s.R)
	if opts.DryRun {
		return obj, nil
	}
	sobj, err := s.toStorage(obj)
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	out, err := s.Storage.Create(ctx, s.key(m.GetNamespace(), m.GetName()), sobj)
	// A generated name can collide with an existing object (5 random
	// characters: ~3 collisions among 10,000 pods of one ReplicaSet).
	// Like upstream (RetryGenerateName), try fresh suffixes before giving
	// up; each attempt re-checks the key atomically in storage. Nothing
	// else in the object depends on the suffix, so only the name changes.
	for attempt := 1; generated && storage.IsExists(err) && attempt < maxGenerateNameAttempts; attempt++ {
		name := s.generateName(m.GetGenerateName())
		m.SetName(name)
		if sm, serr := meta.Accessor(sobj); serr == nil {
			sm.SetName(name)
		}
		out, err = s.Storage.Create(ctx, s.key(m.GetNamespace(), name), sobj)
	}
	if err != nil {
		if storage.IsExists(err) && m.GetGenerateName() != "" {
			// upstream's answer once its retries are used up: the
			// client should retry with a fresh suffix.
			return nil, apierrors.NewServerTimeoutForKind(s.R.GroupVersionKind().GroupKind(), "POST", 0)
		}
		return nil, s.convertStorageErr(err, m.GetName())
	}
	return s.out(out)
}

func (s *Store) generateName(prefix string) string {
	if s.GenerateName != nil {
		return s.GenerateName(prefix)
	}
	return prefix + utilrand.String(5)
}

// maxGenerateNameAttempts is how many names a create with generateName
// tries before answering ServerTimeout (upstream's
// maxNameGenerationCreateAttempts).
const maxGenerateNameAttempts = 8

func (s *Store) out(obj runtime.Object) (runtime.Object, error) {
	o, err := s.fromStorage(obj)
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	setTypeMeta(o, s.R)
	return o, nil
}

func (s *Store) checkNamespace(m metav1.Object, ns string) error {
	if !s.R.Namespaced {
		m.SetNamespace("")
		return nil
	}
	if m.GetNamespace() == "" {
		m.SetNamespace(ns)
	} else if ns != "" && m.GetNamespace() != ns {
		return apierrors.NewBadRequest("the namespace of the provided object does not match the namespace sent on the request")
	}
	return nil
}

func (s *Store) prepareCreateMeta(m metav1.Object) {
	m.SetUID(uuid.NewUUID())
	m.SetCreationTimestamp(metav1.NewTime(s.Now().Truncate(time.Second)))
	m.SetDeletionTimestamp(nil)
	m.SetDeletionGracePeriodSeconds(nil)
	m.SetSelfLink("")
	if s.hasSpec {
		m.SetGeneration(1)
	} else {
		m.SetGeneration(0)
	}
}

func (s *Store) validateCreate(obj runtime.Object, m metav1.Object) field.ErrorList {
	errs := validateObjectMeta(s.R, m)
	if s.R.Validate != nil {
		errs = append(errs, s.R.Validate(obj)...)
	}
	return errs
}

// NameValidator returns the name rule upstream applies to the resource.
func NameValidator(r *registry.Resource) apimachineryvalidation.ValidateNameFunc {
	switch r.GroupResource().String() {
	case "namespaces":
		return apimachineryvalidation.ValidateNamespaceName
	case "services":
		return apimachineryvalidation.NameIsDNS1035Label
	case "roles.rbac.authorization.k8s.io", "rolebindings.rbac.authorization.k8s.io",
		"clusterroles.rbac.authorization.k8s.io", "clusterrolebindings.rbac.authorization.k8s.io",
		"nodes", "serviceaccounts", "certificatesigningrequests.certificates.k8s.io":
		if r.Resource == "serviceaccounts" {
			return apimachineryvalidation.NameIsDNSSubdomain
		}
		return pathSegmentName
	}
	return apimachineryvalidation.NameIsDNSSubdomain
}

func pathSegmentName(name string, prefix bool) []string {
	var errs []string
	for _, illegal := range []string{".", ".."} {
		if name == illegal {
			errs = append(errs, fmt.Sprintf("may not be '%s'", illegal))
		}
	}
	for _, illegal := range []string{"/", "%"} {
		if strings.Contains(name, illegal) {
			errs = append(errs, fmt.Sprintf("may not contain '%s'", illegal))
		}
	}
	return errs
}

// ---------------------------------------------------------------- get/list

// Get returns one object.
func (s *Store) Get(ctx context.Context, ns, name string, opts metav1.GetOptions) (runtime.Object, error) {
	obj, err := s.Storage.Get(ctx, s.key(ns, name), storage.GetOptions{ResourceVersion: opts.ResourceVersion})
	if err != nil {
		return nil, s.convertStorageErr(err, name)
	}
	return s.out(obj)
}

// ListOptions is the parsed list request.
type ListOptions struct {
	Labels               labels.Selector
	Fields               fields.Selector
	ResourceVersion      string
	ResourceVersionMatch metav1.ResourceVersionMatch
	Limit                int64
	Continue             string
}

// Predicate builds the storage predicate for a label and field selector.
func (s *Store) Predicate(lbl labels.Selector, fld fields.Selector) storage.Predicate {
	matchAllLabels := lbl == nil || lbl.Empty()
	matchAllFields := fld == nil || fld.Empty()
	if matchAllLabels && matchAllFields {
		return nil
	}
	return func(obj runtime.Object) bool {
		m, err := meta.Accessor(obj)
		if err != nil {
			return false
		}
		if !matchAllLabels && !lbl.Matches(labels.Set(m.GetLabels())) {
			return false
		}
		if !matchAllFields {
			o, err := s.fromStorage(obj)
			if err != nil {
				return false
			}
			return fld.Matches(s.fieldView(o))
		}
		return true
	}
}

// FieldSet returns the selectable fields of obj.
func (s *Store) FieldSet(obj runtime.Object) fields.Set {
	m, _ := meta.Accessor(obj)
	set := fields.Set{"metadata.name": m.GetName()}
	if s.R.Namespaced {
		set["metadata.namespace"] = m.GetNamespace()
	}
	if s.R.SelectableFields != nil {
		for k, v := range s.R.SelectableFields(obj) {
			set[k] = v
		}
	}
	return set
}

// objectFields is FieldSet(obj) as a fields.Fields view, without merging
// the resource's selectable fields into a new map: watch predicates
// (every node agent selects its pods by spec.nodeName) evaluate it for
// each event. Like FieldSet, the resource's fields win over the metadata
// ones.
type objectFields struct {
	name, namespace string
	namespaced      bool
	extra           fields.Set
}

var _ fields.Fields = objectFields{}

func (f objectFields) Has(field string) bool {
	if _, ok := f.extra[field]; ok {
		return true
	}
	return field == "metadata.name" || (f.namespaced && field == "metadata.namespace")
}

func (f objectFields) Get(field string) string {
	if v, ok := f.extra[field]; ok {
		return v
	}
	switch {
	case field == "metadata.name":
		return f.name
	case f.namespaced && field == "metadata.namespace":
		return f.namespace
	}
	return ""
}

func (s *Store) fieldView(obj runtime.Object) fields.Fields {
	m, _ := meta.Accessor(obj)
	f := objectFields{name: m.GetName(), namespace: m.GetNamespace(), namespaced: s.R.Namespaced}
	if s.R.SelectableFields != nil {
		f.extra = s.R.SelectableFields(obj)
	}
	return f
}

// ValidateFieldSelector checks that every field in sel is selectable.
func (s *Store) ValidateFieldSelector(sel fields.Selector) error {
	if sel == nil || sel.Empty() {
		return nil
	}
	known := s.FieldSet(s.R.New())
	for _, req := range sel.Requirements() {
		if _, ok := known[req.Field]; !ok {
			return apierrors.NewBadRequest(fmt.Sprintf("field label not supported: %s", req.Field))
		}
	}
	return nil
}

// List returns a typed list object.
func (s *Store) List(ctx context.Context, ns string, opts ListOptions) (runtime.Object, error) {
	if err := s.ValidateFieldSelector(opts.Fields); err != nil {
		return nil, err
	}
	pred := s.Predicate(opts.Labels, opts.Fields)
	// A field selector on metadata.name narrows to one key.
	res, err := s.Storage.List(ctx, s.prefix(ns), storage.ListOptions{
		ResourceVersion:      opts.ResourceVersion,
		ResourceVersionMatch: opts.ResourceVersionMatch,
		Limit:                opts.Limit,
		Continue:             opts.Continue,
		Predicate:            pred,
		Recursive:            true,
	})
	if err != nil {
		return nil, s.convertStorageErr(err, "")
	}
	list := s.R.NewList()
	items := make([]runtime.Object, 0, len(res.Items))
	for _, it := range res.Items {
		o, err := s.fromStorage(it)
		if err != nil {
			return nil, apierrors.NewInternalError(err)
		}
		items = append(items, o)
	}
	if err := setListItems(list, items); err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	lm, _ := meta.ListAccessor(list)
	lm.SetResourceVersion(strconv.FormatInt(res.ResourceVersion, 10))
	lm.SetContinue(res.Continue)
	lm.SetRemainingItemCount(res.RemainingItemCount)
	setListTypeMeta(list, s.R)
	return list, nil
}

// itemsFields caches the index of each list type's Items field: an
// admission plugin's list of (usually no) limit ranges, quotas or
// priority classes on every pod create looked it up by name each time.
var itemsFields sync.Map // reflect.Type -> []int (nil: none)

// setListItems fills list.Items with typed values (Items is []T, not []*T).
func setListItems(list runtime.Object, items []runtime.Object) error {
	lv := reflect.ValueOf(list).Elem()
	idx, ok := itemsFields.Load(lv.Type())
	if !ok {
		f, found := lv.Type().FieldByName("Items")
		var index []int
		if found {
			index = f.Index
		}
		itemsFields.Store(lv.Type(), index)
		idx = index
	}
	if idx.([]int) == nil {
		return fmt.Errorf("%T has no Items", list)
	}
	v := lv.FieldByIndex(idx.([]int))
	slice := reflect.MakeSlice(v.Type(), len(items), len(items))
	for i, it := range items {
		slice.Index(i).Set(reflect.ValueOf(it).Elem())
	}
	v.Set(slice)
	return nil
}

// Watch streams changes.
func (s *Store) Watch(ctx context.Context, ns string, opts ListOptions, allowBookmarks bool, sendInitialEvents *bool) (watch.Interface, error) {
	if err := s.ValidateFieldSelector(opts.Fields); err != nil {
		return nil, err
	}
	prefix := s.prefix(ns)
	recursive := true
	// fieldSelector metadata.name=x (what client-go uses for a single
	// object's informer) watches exactly one key.
	if opts.Fields != nil {
		if name, ok := opts.Fields.RequiresExactMatch("metadata.name"); ok && (ns != "" || !s.R.Namespaced) {
			prefix = s.key(ns, name)
			recursive = false
		}
	}
	w, err := s.Storage.Watch(ctx, prefix, storage.WatchOptions{
		ResourceVersion:   opts.ResourceVersion,
		Predicate:         s.Predicate(opts.Labels, opts.Fields),
		Recursive:         recursive,
		AllowBookmarks:    allowBookmarks,
		SendInitialEvents: sendInitialEvents,
	})
	if err != nil {
		return nil, s.convertStorageErr(err, "")
	}
	if s.R.FromStorage == nil {
		return w, nil
	}
	return watch.Filter(w, func(ev watch.Event) (watch.Event, bool) {
		if ev.Type == watch.Error {
			return ev, true
		}
		o, err := s.fromStorage(ev.Object)
		if err != nil {
			return ev, false
		}
		setTypeMeta(o, s.R)
		ev.Object = o
		return ev, true
	}), nil
}

// ---------------------------------------------------------------- update

// UpdateFunc computes the object to store from the current one (a private
// copy, already converted to this resource's version). current is nil when
// the object does not exist and the update may create it.
type UpdateFunc func(ctx context.Context, current runtime.Object) (runtime.Object, error)

// UpdateOptions are the parts of metav1.UpdateOptions/PatchOptions used.
type UpdateOptions struct {
	DryRun       bool
	FieldManager string
	// Subresource is "" for the main resource or "status". Any other
	// value names a server-internal subresource (binding, finalize) whose
	// handler computed the new object itself: the main resource's
	// prepare and validation rules (e.g. pod spec immutability) do not
	// apply to it, only the metadata rules.
	Subresource string
	// AllowCreate lets the update create a missing object (PUT create on
	// update where upstream allows it, and server-side apply).
	AllowCreate bool
	// SkipFieldManager: the UpdateFunc already maintained managedFields
	// (server-side apply).
	SkipFieldManager bool
	// ReadOnlyCurrent: the UpdateFunc does not modify the object it is
	// given, which is then the store's own rather than a private deep copy
	// (a PUT, which only returns the client's object, spares one copy).
	// With Subresource "status" on a resource whose
	// StatusUpdateSharesCurrent is set, the storage may hand the update
	// the watch cache's own object (storage.WithSharedCurrent).
	ReadOnlyCurrent bool
}

// sharesCurrent reports whether an update with opts never modifies the
// stored object it starts from, so the storage need not copy it.
func (s *Store) sharesCurrent(opts UpdateOptions) bool {
	return opts.ReadOnlyCurrent && opts.Subresource == "status" && s.R.StatusUpdateSharesCurrent &&
		!opts.SkipFieldManager && !opts.AllowCreate
}

// Update applies fn to the stored object with optimistic concurrency: if the
// object fn returns carries a resourceVersion different from the stored
// one, the update fails with 409 Conflict.
func (s *Store) Update(ctx context.Context, ns, name string, fn UpdateFunc, opts UpdateOptions) (runtime.Object, bool, error) {
	key := s.key(ns, name)
	created := false
	var result runtime.Object
	var deleteAfter bool
	tryUpdate := func(cur runtime.Object) (runtime.Object, error) {
		created = false
		deleteAfter = false
		var old runtime.Object
		if cur != nil {
			o, err := s.fromStorage(cur)
			if err != nil {
				return nil, apierrors.NewInternalError(err)
			}
			old = o
		}
		oldCopy := old
		if old != nil && !opts.ReadOnlyCurrent {
			oldCopy = old.DeepCopyObject()
		}
		obj, err := fn(ctx, oldCopy)
		if err != nil {
			return nil, err
		}
		if old == nil {
			created = true
			o, err := s.createFromUpdate(ctx, ns, name, obj, opts)
			if err != nil {
				return nil, err
			}
			result = o
			return s.toStorage(o)
		}
		o, del, err := s.prepareUpdate(ctx, ns, name, obj, old, opts)
		if err != nil {
			return nil, err
		}
		deleteAfter = del
		result = o
		if semanticEqual(o, old) {
			return nil, storage.ErrNoChange
		}
		return s.toStorage(o)
	}
	if opts.DryRun {
		cur, err := s.Storage.Get(ctx, key, storage.GetOptions{})
		if err != nil && !storage.IsNotFound(err) {
			return nil, false, s.convertStorageErr(err, name)
		}
		if err != nil {
			if !opts.AllowCreate {
				return nil, false, s.notFound(name)
			}
			cur = nil
		} else {
			cur = cur.DeepCopyObject()
		}
		if _, err := tryUpdate(cur); err != nil && err != storage.ErrNoChange {
			return nil, false, s.convertStorageErr(err, name)
		}
		setTypeMeta(result, s.R)
		return result, created, nil
	}
	sctx := ctx
	if s.sharesCurrent(opts) {
		sctx = storage.WithSharedCurrent(ctx)
	}
	out, err := s.Storage.GuaranteedUpdate(sctx, key, opts.AllowCreate, tryUpdate)
	if err != nil {
		if storage.IsNotFound(err) {
			return nil, false, s.notFound(name)
		}
		return nil, false, s.convertStorageErr(err, name)
	}
	if deleteAfter {
		// The last finalizer of an object being deleted was removed.
		if _, _, err := s.finishDelete(ctx, key, name, out); err != nil {
			return nil, false, err
		}
	}
	o, err := s.out(out)
	return o, created, err
}

func (s *Store) createFromUpdate(ctx context.Context, ns, name string, obj runtime.Object, opts UpdateOptions) (runtime.Object, error) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, apierrors.NewBadRequest(err.Error())
	}
	if m.GetName() != name {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("the name of the object (%s) does not match the name on the URL (%s)", m.GetName(), name))
	}
	if err := s.checkNamespace(m, ns); err != nil {
		return nil, err
	}
	m.SetResourceVersion("")
	s.prepareCreateMeta(m)
	if s.R.Default != nil {
		s.R.Default(obj)
	}
	if opts.Subresource == "" {
		if s.R.PrepareForCreate != nil {
			s.R.PrepareForCreate(obj)
		} else if s.hasStatus {
			resetField(obj, "Status")
		}
	}
	if s.FieldManagers != nil && !opts.SkipFieldManager {
		obj = s.FieldManagers.Update(s.R, opts.Subresource, s.R.New(), obj, opts.FieldManager)
		m, _ = meta.Accessor(obj)
	}
	if s.Hooks.Admit != nil {
		if err := s.Hooks.Admit(ctx, s.R, OpCreate, obj, nil); err != nil {
			return nil, err
		}
	}
	if errs := s.validateCreate(obj, m); len(errs) > 0 {
		return nil, apierrors.NewInvalid(s.R.GroupVersionKind().GroupKind(), name, errs)
	}
	if s.Hooks.Validate != nil {
		if err := s.Hooks.Validate(ctx, s.R, OpCreate, obj, nil); err != nil {
			return nil, err
		}
	}
	setTypeMeta(obj, s.R)
	return obj, nil
}

// prepareUpdate turns the client's object into the object to store. It
// returns del=true when the update removed the last finalizer of an object
// that is being deleted.
func (s *Store) prepareUpdate(ctx context.Context, ns, name string, obj, old runtime.Object, opts UpdateOptions) (runtime.Object, bool, error) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, false, apierrors.NewBadRequest(err.Error())
	}
	om, _ := meta.Accessor(old)
	if m.GetName() == "" {
		m.SetName(name)
	}
	if m.GetName() != name {
		return nil, false, apierrors.NewBadRequest(fmt.Sprintf("the name of the object (%s) does not match the name on the URL (%s)", m.GetName(), name))
	}
	if err := s.checkNamespace(m, ns); err != nil {
		return nil, false, err
	}
	if rv := m.GetResourceVersion(); rv != "" && rv != om.GetResourceVersion() {
		return nil, false, apierrors.NewConflict(s.R.GroupResource(), name, fmt.Errorf("the object has been modified; please apply your changes to the latest version and try again"))
	}
	if uid := m.GetUID(); uid != "" && uid != om.GetUID() {
		return nil, false, apierrors.NewConflict(s.R.GroupResource(), name, fmt.Errorf("Precondition failed: UID in precondition: %s, UID in object meta: %s", om.GetUID(), uid))
	}
	// Server-owned metadata is kept from the stored object.
	m.SetUID(om.GetUID())
	m.SetCreationTimestamp(om.GetCreationTimestamp())
	m.SetDeletionTimestamp(om.GetDeletionTimestamp())
	m.SetDeletionGracePeriodSeconds(om.GetDeletionGracePeriodSeconds())
	m.SetGeneration(om.GetGeneration())
	m.SetResourceVersion(om.GetResourceVersion())
	m.SetSelfLink("")
	if s.R.Default != nil {
		s.R.Default(obj)
	}
	switch opts.Subresource {
	case "status":
		if s.R.PrepareForStatusUpdate != nil {
			s.R.PrepareForStatusUpdate(obj, old)
		} else {
			obj = keepAllButStatus(obj, old)
			m, _ = meta.Accessor(obj)
		}
	case "":
		if s.R.PrepareForUpdate != nil {
			s.R.PrepareForUpdate(obj, old)
		} else if s.hasStatus {
			copyField(obj, old, "Status")
		}
		if s.hasSpec && !fieldEqual(obj, old, "Spec") {
			m.SetGeneration(om.GetGeneration() + 1)
		}
	}
	// A deleting object may only lose finalizers, not gain them.
	if om.GetDeletionTimestamp() != nil {
		if added := newFinalizers(m.GetFinalizers(), om.GetFinalizers()); len(added) > 0 {
			return nil, false, apierrors.NewForbidden(s.R.GroupResource(), name, fmt.Errorf("no new finalizers can be added if the object is being deleted, found new finalizers %q", added))
		}
	}
	if s.FieldManagers != nil && !opts.SkipFieldManager {
		obj = s.FieldManagers.Update(s.R, opts.Subresource, old, obj, opts.FieldManager)
		m, _ = meta.Accessor(obj)
	}
	if s.Hooks.Admit != nil {
		if err := s.Hooks.Admit(ctx, s.R, OpUpdate, obj, old); err != nil {
			return nil, false, err
		}
	}
	errs := validateObjectMetaUpdate(s.R, m, om)
	switch opts.Subresource {
	case "status":
		if s.R.ValidateStatusUpdate != nil {
			errs = append(errs, s.R.ValidateStatusUpdate(obj, old)...)
		}
	case "":
		if s.R.Validate != nil {
			errs = append(errs, s.R.Validate(obj)...)
		}
		if s.R.ValidateUpdate != nil {
			errs = append(errs, s.R.ValidateUpdate(obj, old)...)
		}
	}
	if len(errs) > 0 {
		return nil, false, apierrors.NewInvalid(s.R.GroupVersionKind().GroupKind(), name, errs)
	}
	if s.Hooks.Validate != nil {
		if err := s.Hooks.Validate(ctx, s.R, OpUpdate, obj, old); err != nil {
			return nil, false, err
		}
	}
	setTypeMeta(obj, s.R)
	del := om.GetDeletionTimestamp() != nil && len(m.GetFinalizers()) == 0 && !s.isNamespaceWithSpecFinalizers(obj)
	return obj, del, nil
}

func newFinalizers(now, before []string) []string {
	have := map[string]bool{}
	for _, f := range before {
		have[f] = true
	}
	var added []string
	for _, f := range now {
		if !have[f] {
			added = append(added, f)
		}
	}
	return added
}

// ---------------------------------------------------------------- delete

// Delete deletes one object honouring preconditions, grace periods,
// finalizers and the propagation policy. It returns the object (the last
// state, or the state with deletionTimestamp set) and whether it is gone.
func (s *Store) Delete(ctx context.Context, ns, name string, opts *metav1.DeleteOptions, dryRun bool) (runtime.Object, bool, error) {
	if opts == nil {
		opts = &metav1.DeleteOptions{}
	}
	if err := validateDeleteOptions(opts); err != nil {
		return nil, false, err
	}
	if opts.GracePeriodSeconds != nil && *opts.GracePeriodSeconds < 0 {
		return nil, false, apierrors.NewInvalid(s.R.GroupVersionKind().GroupKind(), name, field.ErrorList{field.Invalid(field.NewPath("gracePeriodSeconds"), *opts.GracePeriodSeconds, "must be greater than or equal to 0")})
	}
	key := s.key(ns, name)
	cur, err := s.Storage.Get(ctx, key, storage.GetOptions{})
	if err != nil {
		return nil, false, s.convertStorageErr(err, name)
	}
	obj, err := s.fromStorage(cur)
	if err != nil {
		return nil, false, apierrors.NewInternalError(err)
	}
	if err := checkPreconditions(s, name, obj, opts.Preconditions); err != nil {
		return nil, false, err
	}
	if s.Hooks.Validate != nil {
		if err := s.Hooks.Validate(ctx, s.R, OpDelete, nil, obj); err != nil {
			return nil, false, err
		}
	}
	m, _ := meta.Accessor(obj)
	policy := propagation(opts)
	grace := s.gracePeriod(obj, opts)
	needsFinalizerUpdate := len(m.GetFinalizers()) > 0 || policy == metav1.DeletePropagationOrphan || policy == metav1.DeletePropagationForeground || s.isNamespaceWithSpecFinalizers(obj)
	if !needsFinalizerUpdate && grace == 0 {
		if dryRun {
			o, err := s.out(cur)
			return o, true, err
		}
		return s.finishDelete(ctx, key, name, nil, opts.Preconditions)
	}
	if dryRun {
		o, err := s.out(cur)
		return o, false, err
	}
	// Graceful or finalizer-blocked: set deletionTimestamp and finalizers.
	var gone bool
	out, err := s.Storage.GuaranteedUpdate(ctx, key, false, func(c runtime.Object) (runtime.Object, error) {
		gone = false
		o, err := s.fromStorage(c)
		if err != nil {
			return nil, err
		}
		if err := checkPreconditions(s, name, o, opts.Preconditions); err != nil {
			return nil, err
		}
		om, _ := meta.Accessor(o)
		now := metav1.NewTime(s.Now())
		changed := false
		if om.GetDeletionTimestamp() == nil {
			ts := metav1.NewTime(now.Add(time.Duration(grace) * time.Second))
			om.SetDeletionTimestamp(&ts)
			g := grace
			om.SetDeletionGracePeriodSeconds(&g)
			changed = true
		} else if cg := om.GetDeletionGracePeriodSeconds(); cg != nil && grace < *cg {
			// A shorter grace period may shorten a pending deletion.
			ts := metav1.NewTime(now.Add(time.Duration(grace) * time.Second))
			om.SetDeletionTimestamp(&ts)
			g := grace
			om.SetDeletionGracePeriodSeconds(&g)
			changed = true
		}
		fins := om.GetFinalizers()
		switch policy {
		case metav1.DeletePropagationOrphan:
			fins = addFinalizer(removeFinalizer(fins, FinalizerForeground), FinalizerOrphan)
		case metav1.DeletePropagationForeground:
			fins = addFinalizer(removeFinalizer(fins, FinalizerOrphan), FinalizerForeground)
		case metav1.DeletePropagationBackground:
			if opts.PropagationPolicy != nil {
				fins = removeFinalizer(removeFinalizer(fins, FinalizerOrphan), FinalizerForeground)
			}
		}
		if !equalStrings(fins, om.GetFinalizers()) {
			om.SetFinalizers(fins)
			changed = true
		}
		s.markTerminating(o)
		if len(fins) == 0 && grace == 0 && !s.isNamespaceWithSpecFinalizers(o) {
			gone = true
		}
		if !changed && !gone {
			return nil, storage.ErrNoChange
		}
		return s.toStorage(o)
	})
	if err != nil {
		return nil, false, s.convertStorageErr(err, name)
	}
	if gone {
		return s.finishDelete(ctx, key, name, out, opts.Preconditions)
	}
	o, err := s.out(out)
	return o, false, err
}

// finishDelete removes the key, checking that it is still the object we
// decided to delete.
func (s *Store) finishDelete(ctx context.Context, key, name string, expect runtime.Object, pre ...*metav1.Preconditions) (runtime.Object, bool, error) {
	var expectRV string
	if expect != nil {
		m, _ := meta.Accessor(expect)
		expectRV = m.GetResourceVersion()
	}
	out, err := s.Storage.Delete(ctx, key, func(cur runtime.Object) error {
		m, _ := meta.Accessor(cur)
		if expectRV != "" && m.GetResourceVersion() != expectRV {
			// Changed since: only delete if it still has no finalizers.
			if len(m.GetFinalizers()) > 0 {
				return apierrors.NewConflict(s.R.GroupResource(), name, fmt.Errorf("the object has been modified; please apply your changes to the latest version and try again"))
			}
		}
		for _, p := range pre {
			o, err := s.fromStorage(cur)
			if err != nil {
				return err
			}
			if err := checkPreconditions(s, name, o, p); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, false, s.convertStorageErr(err, name)
	}
	o, err := s.out(out)
	if err == nil && s.Hooks.AfterDelete != nil {
		s.Hooks.AfterDelete(ctx, s.R, o)
	}
	return o, true, err
}

func checkPreconditions(s *Store, name string, obj runtime.Object, p *metav1.Preconditions) error {
	if p == nil {
		return nil
	}
	m, _ := meta.Accessor(obj)
	if p.UID != nil && *p.UID != m.GetUID() {
		return apierrors.NewConflict(s.R.GroupResource(), name, fmt.Errorf("Precondition failed: UID in precondition: %v, UID in object meta: %v", *p.UID, m.GetUID()))
	}
	if p.ResourceVersion != nil && *p.ResourceVersion != m.GetResourceVersion() {
		return apierrors.NewConflict(s.R.GroupResource(), name, fmt.Errorf("Precondition failed: ResourceVersion in precondition: %v, ResourceVersion in object meta: %v", *p.ResourceVersion, m.GetResourceVersion()))
	}
	return nil
}

// validateDeleteOptions checks the propagation options as upstream does:
// 422 Invalid against DeleteOptions.meta.k8s.io (not the resource), so an
// empty collection cannot hide bad options either.
func validateDeleteOptions(opts *metav1.DeleteOptions) error {
	var errs field.ErrorList
	if opts.OrphanDependents != nil && opts.PropagationPolicy != nil {
		errs = append(errs, field.Invalid(field.NewPath("propagationPolicy"), *opts.PropagationPolicy, "orphanDependents and deletionPropagation cannot be both set"))
	}
	if opts.PropagationPolicy != nil {
		switch *opts.PropagationPolicy {
		case metav1.DeletePropagationBackground, metav1.DeletePropagationForeground, metav1.DeletePropagationOrphan:
		default:
			errs = append(errs, field.NotSupported(field.NewPath("propagationPolicy"), *opts.PropagationPolicy, []string{"Foreground", "Background", "Orphan", "nil"}))
		}
	}
	if len(errs) > 0 {
		return apierrors.NewInvalid(metav1.SchemeGroupVersion.WithKind("DeleteOptions").GroupKind(), "", errs)
	}
	return nil
}

func propagation(opts *metav1.DeleteOptions) metav1.DeletionPropagation {
	if opts.PropagationPolicy != nil {
		return *opts.PropagationPolicy
	}
	if opts.OrphanDependents != nil {
		if *opts.OrphanDependents {
			return metav1.DeletePropagationOrphan
		}
		return metav1.DeletePropagationBackground
	}
	return ""
}

// gracePeriod is 0 for everything but pods that have been scheduled and
// are not terminal (the kubelet finishes those deletions).
func (s *Store) gracePeriod(obj runtime.Object, opts *metav1.DeleteOptions) int64 {
	g, ok := podGracePeriod(obj)
	if !ok {
		return 0
	}
	if opts.GracePeriodSeconds != nil {
		g = *opts.GracePeriodSeconds
	}
	return g
}

func (s *Store) isNamespaceWithSpecFinalizers(obj runtime.Object) bool {
	return namespaceHasSpecFinalizers(obj)
}

func (s *Store) markTerminating(obj runtime.Object) { markNamespaceTerminating(obj) }

func addFinalizer(fins []string, f string) []string {
	for _, x := range fins {
		if x == f {
			return fins
		}
	}
	return append(append([]string(nil), fins...), f)
}

func removeFinalizer(fins []string, f string) []string {
	var out []string
	for _, x := range fins {
		if x != f {
			out = append(out, x)
		}
	}
	return out
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// DeleteCollection deletes every object the options select, one by one
// (so finalizers and grace periods apply), and returns the list of what it
// deleted or marked.
func (s *Store) DeleteCollection(ctx context.Context, ns string, lopts ListOptions, dopts *metav1.DeleteOptions, dryRun bool) (runtime.Object, error) {
	if dopts != nil {
		if err := validateDeleteOptions(dopts); err != nil {
			return nil, err
		}
	}
	lopts.Limit, lopts.Continue = 0, ""
	listObj, err := s.List(ctx, ns, lopts)
	if err != nil {
		return nil, err
	}
	items, _ := meta.ExtractList(listObj)
	var deleted []runtime.Object
	for _, it := range items {
		m, _ := meta.Accessor(it)
		o, _, err := s.Delete(ctx, m.GetNamespace(), m.GetName(), dopts, dryRun)
		if err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return nil, err
		}
		deleted = append(deleted, o)
	}
	out := s.R.NewList()
	if err := setListItems(out, deleted); err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	setListTypeMeta(out, s.R)
	return out, nil
}

// ---------------------------------------------------------------- helpers

func setTypeMeta(obj runtime.Object, r *registry.Resource) {
	if obj == nil {
		return
	}
	obj.GetObjectKind().SetGroupVersionKind(r.GroupVersionKind())
}

func setListTypeMeta(obj runtime.Object, r *registry.Resource) {
	obj.GetObjectKind().SetGroupVersionKind(r.GroupVersion.WithKind(r.ListKind))
}

func resetField(obj runtime.Object, name string) {
	f := reflect.ValueOf(obj).Elem().FieldByName(name)
	if f.IsValid() && f.CanSet() {
		f.Set(reflect.Zero(f.Type()))
	}
}

func copyField(dst, src runtime.Object, name string) {
	d := reflect.ValueOf(dst).Elem().FieldByName(name)
	sv := reflect.ValueOf(src).Elem().FieldByName(name)
	if d.IsValid() && sv.IsValid() && d.CanSet() {
		d.Set(sv)
	}
}

func fieldEqual(a, b runtime.Object, name string) bool {
	av := reflect.ValueOf(a).Elem().FieldByName(name)
	bv := reflect.ValueOf(b).Elem().FieldByName(name)
	if !av.IsValid() || !bv.IsValid() {
		return true
	}
	return apiequality.Semantic.DeepEqual(av.Interface(), bv.Interface())
}

// semanticEqual is apiequality.Semantic.DeepEqual(a, b), comparing the
// top-level fields of an API object in the order an update most likely
// changes them: status, then the other fields but spec and metadata,
// spec, metadata. The object is equal when every field is, in whatever
// order they are compared, but the first difference ends the walk: a
// binding or status update used to walk all of the (equal) metadata and
// most of the spec before reaching what it changed.
func semanticEqual(a, b runtime.Object) bool {
	av, bv := reflect.ValueOf(a), reflect.ValueOf(b)
	if !av.IsValid() || !bv.IsValid() || av.Type() != bv.Type() || av.Kind() != reflect.Pointer || av.IsNil() || bv.IsNil() ||
		av.Elem().Kind() != reflect.Struct {
		return apiequality.Semantic.DeepEqual(a, b)
	}
	ae, be := av.Elem(), bv.Elem()
	t := ae.Type()
	if _, custom := apiequality.Semantic.Equalities[t]; custom {
		return apiequality.Semantic.DeepEqual(a, b)
	}
	rank := func(sf reflect.StructField) int {
		switch {
		case sf.Name == "Status":
			return 0
		case sf.Name == "Spec":
			return 2
		case sf.Anonymous:
			return 3
		}
		return 1
	}
	for r := range 4 {
		for i := range t.NumField() {
			sf := t.Field(i)
			if rank(sf) != r {
				continue
			}
			if !sf.IsExported() {
				return apiequality.Semantic.DeepEqual(a, b)
			}
			if !apiequality.Semantic.DeepEqual(ae.Field(i).Addr().Interface(), be.Field(i).Addr().Interface()) {
				return false
			}
		}
	}
	return true
}

// keepAllButStatus is the default status-subresource rule: everything but
// status (and the managedFields the field manager maintains) comes from
// the stored object.
func keepAllButStatus(obj, old runtime.Object) runtime.Object {
	out := old.DeepCopyObject()
	copyField(out, obj, "Status")
	om, _ := meta.Accessor(out)
	nm, _ := meta.Accessor(obj)
	om.SetManagedFields(nm.GetManagedFields())
	return out
}

// UIDPrecondition builds a Preconditions with a UID.
func UIDPrecondition(uid types.UID) *metav1.Preconditions { return &metav1.Preconditions{UID: &uid} }

func asStorageErr(err error, target **storage.Error) bool {
	for e := err; e != nil; {
		if se, ok := e.(*storage.Error); ok {
			*target = se
			return true
		}
		u, ok := e.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		e = u.Unwrap()
	}
	return false
}
