package admission

// ResourceQuota admission, as upstream's plugin/pkg/admission/resourcequota:
// a create in a namespace with ResourceQuotas is charged against every quota
// that tracks it; a create that would take any tracked resource above
// status.hard is refused with 403 Forbidden and upstream's message
// ("exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2").
// The charge is written to status.used before the object is stored; the
// quota controller recomputes status.used from the cluster, which also
// returns charges of creates that failed later (or were dry runs).
//
// Concurrency: skiff runs one API server per cluster, so creates in a
// namespace are serialized by a per-namespace mutex here; each charge is
// still a compare-and-swap on the quota (the store's guaranteed update
// re-checks the limit against the latest status), so the quota controller
// writing status.used concurrently cannot let a create through over the
// limit. With several API servers the CAS alone keeps the invariant, as
// upstream's quota evaluator does.

import (
	"context"
	"fmt"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"skiff.dev/skiff/internal/controller/resourcequota"
)

// QuotaStore reads ResourceQuotas and updates their status atomically.
type QuotaStore interface {
	ListResourceQuotas(ctx context.Context, namespace string) ([]corev1.ResourceQuota, error)
	// UpdateResourceQuotaStatus applies fn to the latest quota and writes
	// its status, retrying fn on conflicts; an error from fn aborts.
	UpdateResourceQuotaStatus(ctx context.Context, namespace, name string, fn func(*corev1.ResourceQuota) error) error
}

// Quota is the ResourceQuota admission plugin.
type Quota struct {
	store QuotaStore

	mu    sync.Mutex
	locks map[string]*sync.Mutex
}

// NewQuota returns the plugin.
func NewQuota(store QuotaStore) *Quota {
	return &Quota{store: store, locks: map[string]*sync.Mutex{}}
}

func (q *Quota) lock(ns string) func() {
	q.mu.Lock()
	l := q.locks[ns]
	if l == nil {
		l = &sync.Mutex{}
		q.locks[ns] = l
	}
	q.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// quotaExceeded is the refusal of one quota.
type quotaExceeded struct {
	name                     string
	requested, used, limited corev1.ResourceList
}

func (e *quotaExceeded) Error() string {
	return fmt.Sprintf("exceeded quota: %s, requested: %s, used: %s, limited: %s", e.name,
		resourcequota.PrettyPrint(e.requested), resourcequota.PrettyPrint(e.used), resourcequota.PrettyPrint(e.limited))
}

// check returns the charge q would take for delta, or why it cannot.
func check(quota *corev1.ResourceQuota, delta corev1.ResourceList, pod *corev1.Pod) (corev1.ResourceList, error) {
	hard := quota.Status.Hard
	if hard == nil {
		hard = quota.Spec.Hard
	}
	if pod != nil {
		if missing := resourcequota.MissingCompute(quota.Spec.Hard, pod); len(missing) > 0 {
			return nil, fmt.Errorf("failed quota: %s: must specify %s", quota.Name, strings.Join(missing, ","))
		}
	}
	charge := resourcequota.Mask(delta, quota.Spec.Hard)
	if len(charge) == 0 {
		return nil, nil
	}
	var unknown []string
	for k := range charge {
		if _, ok := quota.Status.Used[k]; !ok {
			unknown = append(unknown, string(k))
		}
		if _, ok := hard[k]; !ok {
			unknown = append(unknown, string(k))
		}
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("status unknown for quota: %s, resources: %s", quota.Name, strings.Join(sortedStrings(unknown), ","))
	}
	exceeded := corev1.ResourceList{}
	for k, v := range charge {
		after := quota.Status.Used[k].DeepCopy()
		after.Add(v)
		if after.Cmp(hard[k]) > 0 {
			exceeded[k] = v
		}
	}
	if len(exceeded) > 0 {
		return nil, &quotaExceeded{name: quota.Name, requested: exceeded,
			used: resourcequota.Mask(quota.Status.Used, exceeded), limited: resourcequota.Mask(hard, exceeded)}
	}
	return charge, nil
}

// Validate charges a create of obj (a gr) against the namespace's quotas.
func (q *Quota) Validate(ctx context.Context, gr schema.GroupResource, obj runtime.Object) error {
	m, err := meta.Accessor(obj)
	if err != nil || m.GetNamespace() == "" {
		return nil
	}
	ns := m.GetNamespace()
	forbidden := func(err error) error { return apierrors.NewForbidden(gr, m.GetName(), err) }
	quotas, err := q.store.ListResourceQuotas(ctx, ns)
	if err != nil {
		return apierrors.NewInternalError(fmt.Errorf("listing resource quotas: %w", err))
	}
	if len(quotas) == 0 {
		return nil
	}
	delta := resourcequota.Usage(gr, obj)
	pod, _ := obj.(*corev1.Pod)
	if pod != nil && !resourcequota.PodCounts(pod) {
		pod = nil
	}
	unlock := q.lock(ns)
	defer unlock()
	// Check every quota first so a refusal charges none of them.
	var charges []string
	for i := range quotas {
		quota := &quotas[i]
		if !resourcequota.Matches(quota, obj) {
			continue
		}
		charge, err := check(quota, delta, pod)
		if err != nil {
			return forbidden(err)
		}
		if len(charge) > 0 {
			charges = append(charges, quota.Name)
		}
	}
	for _, name := range charges {
		err := q.store.UpdateResourceQuotaStatus(ctx, ns, name, func(cur *corev1.ResourceQuota) error {
			charge, err := check(cur, delta, pod)
			if err != nil {
				return err
			}
			cur.Status.Used = resourcequota.Add(cur.Status.Used, charge)
			return nil
		})
		if apierrors.IsNotFound(err) {
			continue // deleted meanwhile: it limits nothing any more
		}
		if _, isAPI := err.(apierrors.APIStatus); err != nil && !isAPI {
			return forbidden(err) // check refused against the latest status
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func sortedStrings(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}
