package admission

// LimitRanger, as upstream's plugin/pkg/admission/limitranger: pods created
// in a namespace with LimitRanges get the Container defaults (default limits,
// defaultRequest requests) for resources they do not set, then pods and
// PersistentVolumeClaims are checked against min, max and
// maxLimitRequestRatio per Container, per Pod (sums over containers) and
// per PersistentVolumeClaim (requests.storage). Violations are 403 Forbidden
// with upstream's messages, e.g. "maximum cpu usage per Container is 1, but
// limit is 2".

import (
	"context"
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
)

// LimitRangeLister lists the LimitRanges of a namespace.
type LimitRangeLister interface {
	ListLimitRanges(ctx context.Context, namespace string) ([]corev1.LimitRange, error)
}

// LimitRanger applies and enforces LimitRanges.
type LimitRanger struct {
	list LimitRangeLister
}

// NewLimitRanger returns the plugin.
func NewLimitRanger(list LimitRangeLister) *LimitRanger { return &LimitRanger{list: list} }

// AdmitPod fills in the Container defaults of the namespace's LimitRanges.
func (l *LimitRanger) AdmitPod(ctx context.Context, pod *corev1.Pod) error {
	ranges, err := l.list.ListLimitRanges(ctx, pod.Namespace)
	if err != nil {
		return apierrors.NewInternalError(fmt.Errorf("listing limit ranges: %w", err))
	}
	for i := range ranges {
		ApplyLimitRangeDefaults(&ranges[i], pod)
	}
	return nil
}

// ValidatePod checks a pod against the namespace's LimitRanges.
func (l *LimitRanger) ValidatePod(ctx context.Context, pod *corev1.Pod) error {
	ranges, err := l.list.ListLimitRanges(ctx, pod.Namespace)
	if err != nil {
		return apierrors.NewInternalError(fmt.Errorf("listing limit ranges: %w", err))
	}
	var errs []error
	for i := range ranges {
		errs = append(errs, ValidatePodLimits(&ranges[i], pod)...)
	}
	if len(errs) > 0 {
		return apierrors.NewForbidden(corev1.Resource("pods"), pod.Name, utilerrors.NewAggregate(errs))
	}
	return nil
}

// ValidateClaim checks a PersistentVolumeClaim against the namespace's
// LimitRanges.
func (l *LimitRanger) ValidateClaim(ctx context.Context, pvc *corev1.PersistentVolumeClaim) error {
	ranges, err := l.list.ListLimitRanges(ctx, pvc.Namespace)
	if err != nil {
		return apierrors.NewInternalError(fmt.Errorf("listing limit ranges: %w", err))
	}
	var errs []error
	for i := range ranges {
		errs = append(errs, ValidateClaimLimits(&ranges[i], pvc)...)
	}
	if len(errs) > 0 {
		return apierrors.NewForbidden(corev1.Resource("persistentvolumeclaims"), pvc.Name, utilerrors.NewAggregate(errs))
	}
	return nil
}

// ApplyLimitRangeDefaults sets, on every container and init container, the
// Container-type default limits and default requests the container does
// not set itself.
func ApplyLimitRangeDefaults(lr *corev1.LimitRange, pod *corev1.Pod) {
	limits, requests := corev1.ResourceList{}, corev1.ResourceList{}
	for _, it := range lr.Spec.Limits {
		if it.Type != corev1.LimitTypeContainer {
			continue
		}
		for k, v := range it.Default {
			limits[k] = v.DeepCopy()
		}
		for k, v := range it.DefaultRequest {
			requests[k] = v.DeepCopy()
		}
	}
	apply := func(c *corev1.Container) {
		for k, v := range limits {
			if _, ok := c.Resources.Limits[k]; !ok {
				if c.Resources.Limits == nil {
					c.Resources.Limits = corev1.ResourceList{}
				}
				c.Resources.Limits[k] = v.DeepCopy()
			}
		}
		for k, v := range requests {
			if _, ok := c.Resources.Requests[k]; !ok {
				if c.Resources.Requests == nil {
					c.Resources.Requests = corev1.ResourceList{}
				}
				c.Resources.Requests[k] = v.DeepCopy()
			}
		}
	}
	for i := range pod.Spec.Containers {
		apply(&pod.Spec.Containers[i])
	}
	for i := range pod.Spec.InitContainers {
		apply(&pod.Spec.InitContainers[i])
	}
}

// ValidatePodLimits returns the violations of lr by pod, Container items
// against each container and Pod items against the pod's totals.
func ValidatePodLimits(lr *corev1.LimitRange, pod *corev1.Pod) []error {
	var errs []error
	for _, it := range lr.Spec.Limits {
		switch it.Type {
		case corev1.LimitTypeContainer:
			for _, c := range append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...) {
				errs = append(errs, checkItem(it, string(it.Type), c.Resources.Requests, c.Resources.Limits)...)
			}
		case corev1.LimitTypePod:
			req, lim := podTotals(pod)
			errs = append(errs, checkItem(it, string(it.Type), req, lim)...)
		}
	}
	return errs
}

// ValidateClaimLimits returns the violations of lr by a claim's storage
// request (min and max against requests.storage).
func ValidateClaimLimits(lr *corev1.LimitRange, pvc *corev1.PersistentVolumeClaim) []error {
	var errs []error
	for _, it := range lr.Spec.Limits {
		if it.Type != corev1.LimitTypePersistentVolumeClaim {
			continue
		}
		kind := string(it.Type)
		for _, k := range sortedNames(it.Min) {
			req, ok := pvc.Spec.Resources.Requests[k]
			min := it.Min[k]
			if !ok {
				errs = append(errs, fmt.Errorf("minimum %s usage per %s is %s.  No request is specified", k, kind, min.String()))
			} else if req.Cmp(min) < 0 {
				errs = append(errs, fmt.Errorf("minimum %s usage per %s is %s, but request is %s", k, kind, min.String(), req.String()))
			}
		}
		for _, k := range sortedNames(it.Max) {
			req, ok := pvc.Spec.Resources.Requests[k]
			max := it.Max[k]
			if !ok {
				errs = append(errs, fmt.Errorf("maximum %s usage per %s is %s.  No request is specified", k, kind, max.String()))
			} else if req.Cmp(max) > 0 {
				errs = append(errs, fmt.Errorf("maximum %s usage per %s is %s, but request is %s", k, kind, max.String(), req.String()))
			}
		}
	}
	return errs
}

// podTotals sums container requests and limits; init containers run one at
// a time, so each resource is the larger of the sum and the biggest init
// container (as upstream's pod resource helpers).
func podTotals(pod *corev1.Pod) (req, lim corev1.ResourceList) {
	req, lim = corev1.ResourceList{}, corev1.ResourceList{}
	add := func(into, from corev1.ResourceList) {
		for k, v := range from {
			q := into[k]
			q.Add(v)
			into[k] = q
		}
	}
	maxOf := func(into, from corev1.ResourceList) {
		for k, v := range from {
			if q, ok := into[k]; !ok || v.Cmp(q) > 0 {
				into[k] = v.DeepCopy()
			}
		}
	}
	for _, c := range pod.Spec.Containers {
		add(req, c.Resources.Requests)
		add(lim, c.Resources.Limits)
	}
	for _, c := range pod.Spec.InitContainers {
		maxOf(req, c.Resources.Requests)
		maxOf(lim, c.Resources.Limits)
	}
	return req, lim
}

func checkItem(it corev1.LimitRangeItem, kind string, req, lim corev1.ResourceList) []error {
	var errs []error
	for _, k := range sortedNames(it.Min) {
		min := it.Min[k]
		r, hasReq := req[k]
		l, hasLim := lim[k]
		switch {
		case !hasReq:
			errs = append(errs, fmt.Errorf("minimum %s usage per %s is %s.  No request is specified", k, kind, min.String()))
		case r.Cmp(min) < 0:
			errs = append(errs, fmt.Errorf("minimum %s usage per %s is %s, but request is %s", k, kind, min.String(), r.String()))
		}
		if hasLim && l.Cmp(min) < 0 {
			errs = append(errs, fmt.Errorf("minimum %s usage per %s is %s, but limit is %s", k, kind, min.String(), l.String()))
		}
	}
	for _, k := range sortedNames(it.Max) {
		max := it.Max[k]
		r, hasReq := req[k]
		l, hasLim := lim[k]
		if !hasLim {
			errs = append(errs, fmt.Errorf("maximum %s usage per %s is %s.  No limit is specified", k, kind, max.String()))
		} else if l.Cmp(max) > 0 {
			errs = append(errs, fmt.Errorf("maximum %s usage per %s is %s, but limit is %s", k, kind, max.String(), l.String()))
		}
		if hasReq && r.Cmp(max) > 0 {
			errs = append(errs, fmt.Errorf("maximum %s usage per %s is %s, but request is %s", k, kind, max.String(), r.String()))
		}
	}
	for _, k := range sortedNames(it.MaxLimitRequestRatio) {
		ratio := it.MaxLimitRequestRatio[k]
		r, hasReq := req[k]
		l, hasLim := lim[k]
		switch {
		case !hasReq || r.IsZero():
			errs = append(errs, fmt.Errorf("%s max limit to request ratio per %s is %s, but no request is specified or request is 0", k, kind, ratio.String()))
		case !hasLim || l.IsZero():
			errs = append(errs, fmt.Errorf("%s max limit to request ratio per %s is %s, but no limit is specified or limit is 0", k, kind, ratio.String()))
		default:
			// Compare in milli-units so fractional CPU works.
			actual := float64(l.MilliValue()) / float64(r.MilliValue())
			if actual > float64(ratio.MilliValue())/1000 {
				errs = append(errs, fmt.Errorf("%s max limit to request ratio per %s is %s, but provided ratio is %f", k, kind, ratio.String(), actual))
			}
		}
	}
	return errs
}

func sortedNames(l corev1.ResourceList) []corev1.ResourceName {
	out := make([]corev1.ResourceName, 0, len(l))
	for k := range l {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}
