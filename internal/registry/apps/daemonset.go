package apps

import (
	appsv1 "k8s.io/api/apps/v1"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"skiff.dev/skiff/internal/registry"
	"skiff.dev/skiff/internal/registry/core"
	"skiff.dev/skiff/internal/registry/printing"
)

func daemonSets() *registry.Resource {
	return &registry.Resource{
		GroupVersion: appsv1.SchemeGroupVersion,
		Resource:     "daemonsets", Singular: "daemonset", Kind: "DaemonSet", ListKind: "DaemonSetList",
		Namespaced: true, ShortNames: []string{"ds"}, Categories: []string{"all"},
		New:     func() runtime.Object { return &appsv1.DaemonSet{} },
		NewList: func() runtime.Object { return &appsv1.DaemonSetList{} },
		Default: defaultDaemonSet,
		PrepareForCreate: func(obj runtime.Object) {
			if d, ok := obj.(*appsv1.DaemonSet); ok {
				d.Status = appsv1.DaemonSetStatus{}
			}
		},
		PrepareForUpdate: func(obj, old runtime.Object) {
			n, ok1 := obj.(*appsv1.DaemonSet)
			o, ok2 := old.(*appsv1.DaemonSet)
			if ok1 && ok2 {
				n.Status = o.Status
			}
		},
		PrepareForStatusUpdate: func(obj, old runtime.Object) {
			n, ok1 := obj.(*appsv1.DaemonSet)
			o, ok2 := old.(*appsv1.DaemonSet)
			if ok1 && ok2 {
				n.Spec = o.Spec
			}
		},
		Validate: func(obj runtime.Object) field.ErrorList { return validateDaemonSet(obj.(*appsv1.DaemonSet)) },
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			return apimachineryvalidation.ValidateImmutableField(obj.(*appsv1.DaemonSet).Spec.Selector, old.(*appsv1.DaemonSet).Spec.Selector, field.NewPath("spec", "selector"))
		},
		ValidateStatusUpdate: func(obj, _ runtime.Object) field.ErrorList {
			s := &obj.(*appsv1.DaemonSet).Status
			p := field.NewPath("status")
			errs := nonNegativeAll(p, "currentNumberScheduled", s.CurrentNumberScheduled, "numberMisscheduled", s.NumberMisscheduled,
				"desiredNumberScheduled", s.DesiredNumberScheduled, "numberReady", s.NumberReady,
				"updatedNumberScheduled", s.UpdatedNumberScheduled, "numberAvailable", s.NumberAvailable, "numberUnavailable", s.NumberUnavailable)
			return append(errs, nonNegative(s.ObservedGeneration, p.Child("observedGeneration"))...)
		},
		Subresources: []string{"status"},
		TableColumns: append(append([]metav1.TableColumnDefinition{
			printing.NameColumn(),
			printing.Column("Desired", "integer", "The total number of nodes that should be running the daemon pod."),
			printing.Column("Current", "integer", "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod."),
			printing.Column("Ready", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready."),
			printing.Column("Up-to-date", "integer", "The total number of nodes that are running updated daemon pod"),
			printing.Column("Available", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available."),
			printing.Column("Node Selector", "string", "NodeSelector is a selector which must be true for the pod to fit on a node."),
			printing.AgeColumn(),
		}, printing.ContainerColumns()...), printing.Wide("Selector", "string", "A label query over pods that are managed by the daemon set.")),
		TableRow: func(obj runtime.Object) []interface{} {
			d := obj.(*appsv1.DaemonSet)
			names, images := printing.ContainerCells(d.Spec.Template.Spec.Containers)
			return []interface{}{d.Name, int64(d.Status.DesiredNumberScheduled), int64(d.Status.CurrentNumberScheduled),
				int64(d.Status.NumberReady), int64(d.Status.UpdatedNumberScheduled), int64(d.Status.NumberAvailable),
				labels.FormatLabels(d.Spec.Template.Spec.NodeSelector), printing.Age(d.CreationTimestamp),
				names, images, metav1.FormatLabelSelector(d.Spec.Selector)}
		},
	}
}

func defaultDaemonSet(obj runtime.Object) {
	d, ok := obj.(*appsv1.DaemonSet)
	if !ok {
		return
	}
	us := &d.Spec.UpdateStrategy
	if us.Type == "" {
		us.Type = appsv1.RollingUpdateDaemonSetStrategyType
	}
	if us.Type == appsv1.RollingUpdateDaemonSetStrategyType {
		if us.RollingUpdate == nil {
			us.RollingUpdate = &appsv1.RollingUpdateDaemonSet{}
		}
		if us.RollingUpdate.MaxUnavailable == nil {
			v := intstr.FromInt32(1)
			us.RollingUpdate.MaxUnavailable = &v
		}
		if us.RollingUpdate.MaxSurge == nil {
			v := intstr.FromInt32(0)
			us.RollingUpdate.MaxSurge = &v
		}
	}
	if d.Spec.RevisionHistoryLimit == nil {
		d.Spec.RevisionHistoryLimit = int32Ptr(10)
	}
	core.DefaultPodTemplateSpec(&d.Spec.Template)
}

func validateDaemonSet(d *appsv1.DaemonSet) field.ErrorList {
	spec := &d.Spec
	p := field.NewPath("spec")
	errs := validateSelector(spec.Selector, spec.Template.Labels, "daemonset", p)
	errs = append(errs, validateWorkloadTemplate(&spec.Template, "DaemonSet", p.Child("template"))...)
	errs = append(errs, nonNegative(int64(spec.MinReadySeconds), p.Child("minReadySeconds"))...)
	if spec.RevisionHistoryLimit != nil {
		errs = append(errs, nonNegative(int64(*spec.RevisionHistoryLimit), p.Child("revisionHistoryLimit"))...)
	}
	up := p.Child("updateStrategy")
	switch spec.UpdateStrategy.Type {
	case appsv1.OnDeleteDaemonSetStrategyType:
	case appsv1.RollingUpdateDaemonSetStrategyType:
		ru := spec.UpdateStrategy.RollingUpdate
		if ru == nil {
			errs = append(errs, field.Required(up.Child("rollingUpdate"), ""))
			break
		}
		rp := up.Child("rollingUpdate")
		errs = append(errs, validatePositiveIntOrPercent(ru.MaxUnavailable, rp.Child("maxUnavailable"))...)
		errs = append(errs, validatePositiveIntOrPercent(ru.MaxSurge, rp.Child("maxSurge"))...)
		if isZero(ru.MaxUnavailable) && isZero(ru.MaxSurge) {
			errs = append(errs, field.Invalid(rp.Child("maxUnavailable"), ru.MaxUnavailable.String(), "may not be 0 when `maxSurge` is 0"))
		}
		errs = append(errs, notMoreThan100Percent(ru.MaxUnavailable, rp.Child("maxUnavailable"))...)
		errs = append(errs, notMoreThan100Percent(ru.MaxSurge, rp.Child("maxSurge"))...)
	default:
		errs = append(errs, field.NotSupported(up.Child("type"), spec.UpdateStrategy.Type,
			[]string{string(appsv1.OnDeleteDaemonSetStrategyType), string(appsv1.RollingUpdateDaemonSetStrategyType)}))
	}
	return errs
}
