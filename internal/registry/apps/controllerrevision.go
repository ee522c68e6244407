package apps

import (
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"skiff.dev/skiff/internal/registry"
	"skiff.dev/skiff/internal/registry/printing"
)

func controllerRevisions() *registry.Resource {
	return &registry.Resource{
		GroupVersion: appsv1.SchemeGroupVersion,
		Resource:     "controllerrevisions", Singular: "controllerrevision", Kind: "ControllerRevision", ListKind: "ControllerRevisionList",
		Namespaced: true,
		New:        func() runtime.Object { return &appsv1.ControllerRevision{} },
		NewList:    func() runtime.Object { return &appsv1.ControllerRevisionList{} },
		Validate: func(obj runtime.Object) field.ErrorList {
			cr := obj.(*appsv1.ControllerRevision)
			var errs field.ErrorList
			if cr.Data.Raw == nil && cr.Data.Object == nil {
				errs = append(errs, field.Required(field.NewPath("data"), "data is mandatory"))
			}
			return append(errs, nonNegative(cr.Revision, field.NewPath("revision"))...)
		},
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			n, o := obj.(*appsv1.ControllerRevision), old.(*appsv1.ControllerRevision)
			return apimachineryvalidation.ValidateImmutableField(n.Data, o.Data, field.NewPath("data"))
		},
		TableColumns: []metav1.TableColumnDefinition{
			printing.NameColumn(),
			printing.Column("Controller", "string", "Controller of the object"),
			printing.Column("Revision", "string", "Revision indicates the revision of the state represented by Data."),
			printing.AgeColumn(),
		},
		TableRow: func(obj runtime.Object) []interface{} {
			cr := obj.(*appsv1.ControllerRevision)
			controller := "<none>"
			if ref := metav1.GetControllerOf(cr); ref != nil {
				gv, _ := schema.ParseGroupVersion(ref.APIVersion)
				controller = strings.ToLower(gv.WithKind(ref.Kind).GroupKind().String()) + "/" + ref.Name
			}
			return []interface{}{cr.Name, controller, cr.Revision, printing.Age(cr.CreationTimestamp)}
		},
	}
}
