package generic

import (
	"fmt"
	"sync"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/managedfields"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"

	"skiff.dev/skiff/internal/registry"
)

// FieldManagers keeps one managedfields.FieldManager per resource and
// subresource: they maintain metadata.managedFields on every write and
// implement server-side apply.
type FieldManagers struct {
	scheme    *runtime.Scheme
	converter managedfields.TypeConverter

	mu  sync.Mutex
	fms map[string]*managedfields.FieldManager
}

// NewFieldManagers builds the set from a type converter (for built-in types
// client-go's applyconfigurations.NewTypeConverter(scheme)).
func NewFieldManagers(scheme *runtime.Scheme, tc managedfields.TypeConverter) *FieldManagers {
	return &FieldManagers{scheme: scheme, converter: tc, fms: map[string]*managedfields.FieldManager{}}
}

type defaulter struct{ r *registry.Resource }

func (d defaulter) Default(obj runtime.Object) {
	if d.r.Default != nil {
		d.r.Default(obj)
	}
}

// Get returns the field manager for r and subresource ("" or "status").
func (f *FieldManagers) Get(r *registry.Resource, subresource string) (*managedfields.FieldManager, error) {
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
		reset[av] = fieldpath.NewSet(fieldpath.MakePathOrDie("spec"), fieldpath.MakePathOrDie("metadata"))
	}
	filters := map[fieldpath.APIVersion]fieldpath.Filter{}
	for k, v := range reset {
		filters[k] = fieldpath.NewExcludeSetFilter(v)
	}
	fm, err := managedfields.NewDefaultFieldManager(f.converter, f.scheme, defaulter{r}, f.scheme,
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
	return fm.UpdateNoErrors(live, obj, manager)
}
