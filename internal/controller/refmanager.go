package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// RefManager decides which objects a controller owns, as upstream's
// ControllerRefManager: objects it controls that still match its selector
// are kept; ones that no longer match are released (their controller
// reference removed); orphans that match are adopted (a controller
// reference added) unless the controller is being deleted. Objects
// controlled by someone else are never touched.
type RefManager struct {
	Controller metav1.Object
	Kind       schema.GroupVersionKind
	Selector   labels.Selector
	// CanAdopt is called at most once, before the first adoption. It must
	// re-read the controller from the API server (not a cache) and fail if it
	// is gone, has a different UID or is being deleted, so that a stale cache
	// never adopts objects for a controller that no longer exists.
	CanAdopt func(ctx context.Context) error

	once        sync.Once
	canAdoptErr error
}

// FreshCanAdopt builds a CanAdopt function from a fresh getter.
func FreshCanAdopt(uid types.UID, get func(ctx context.Context) (metav1.Object, error)) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		fresh, err := get(ctx)
		if err != nil {
			return fmt.Errorf("re-reading controller before adoption: %w", err)
		}
		if fresh.GetUID() != uid {
			return fmt.Errorf("controller %s/%s was recreated (uid %s, want %s)", fresh.GetNamespace(), fresh.GetName(), fresh.GetUID(), uid)
		}
		if fresh.GetDeletionTimestamp() != nil {
			return fmt.Errorf("controller %s/%s is being deleted", fresh.GetNamespace(), fresh.GetName())
		}
		return nil
	}
}

func (m *RefManager) canAdopt(ctx context.Context) error {
	m.once.Do(func() {
		if m.CanAdopt != nil {
			m.canAdoptErr = m.CanAdopt(ctx)
		}
	})
	return m.canAdoptErr
}

// claim applies the ownership rules to obj and reports whether the
// controller owns it afterwards.
func (m *RefManager) claim(ctx context.Context, obj metav1.Object, adopt, release func(context.Context, metav1.Object) error) (bool, error) {
	if ref := metav1.GetControllerOfNoCopy(obj); ref != nil {
		if ref.UID != m.Controller.GetUID() {
			return false, nil
		}
		if m.Selector.Matches(labels.Set(obj.GetLabels())) {
			return true, nil
		}
		if m.Controller.GetDeletionTimestamp() != nil {
			return false, nil
		}
		if err := release(ctx, obj); err != nil {
			if apierrors.IsNotFound(err) {
				return false, nil
			}
			return false, err
		}
		return false, nil
	}
	if m.Controller.GetDeletionTimestamp() != nil || !m.Selector.Matches(labels.Set(obj.GetLabels())) {
		return false, nil
	}
	if obj.GetDeletionTimestamp() != nil || obj.GetNamespace() != m.Controller.GetNamespace() {
		return false, nil
	}
	if err := m.canAdopt(ctx); err != nil {
		return false, err
	}
	if err := adopt(ctx, obj); err != nil {
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return false, err
	}
	return true, nil
}

// AdoptPatch is the strategic merge patch that makes ref the controller of
// the object with uid (the uid precondition stops a patch of a recreated
// object).
func AdoptPatch(ref *metav1.OwnerReference, uid types.UID) []byte {
	b, _ := json.Marshal(map[string]any{
		"metadata": map[string]any{
			"ownerReferences": []metav1.OwnerReference{*ref},
			"uid":             uid,
		},
	})
	return b
}

// ReleasePatch is the strategic merge patch that removes the owner reference
// to ownerUID from the object with uid.
func ReleasePatch(ownerUID, uid types.UID) []byte {
	b, _ := json.Marshal(map[string]any{
		"metadata": map[string]any{
			"ownerReferences": []map[string]any{{"$patch": "delete", "uid": ownerUID}},
			"uid":             uid,
		},
	})
	return b
}

// ClaimPods returns the pods the controller owns after adopting and
// releasing as needed. Errors of individual adoptions are joined; the pods
// successfully claimed are returned regardless.
func (m *RefManager) ClaimPods(ctx context.Context, pods []*v1.Pod, pc PodControl) ([]*v1.Pod, error) {
	ref := NewControllerRef(m.Controller, m.Kind)
	adopt := func(ctx context.Context, o metav1.Object) error {
		return pc.PatchPod(ctx, o.GetNamespace(), o.GetName(), AdoptPatch(ref, o.GetUID()))
	}
	release := func(ctx context.Context, o metav1.Object) error {
		return pc.PatchPod(ctx, o.GetNamespace(), o.GetName(), ReleasePatch(m.Controller.GetUID(), o.GetUID()))
	}
	var claimed []*v1.Pod
	var errs []error
	for _, p := range pods {
		ok, err := m.claim(ctx, p, adopt, release)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if ok {
			claimed = append(claimed, p)
		}
	}
	return claimed, errors.Join(errs...)
}

// ClaimIndexedPods is ClaimPods for pods already split by
// PodsControlledOrOrphaned: owned are known to be controlled by
// m.Controller, so only the selector is checked for them (release when it
// no longer matches); orphans go through the adoption rules.
func (m *RefManager) ClaimIndexedPods(ctx context.Context, owned, orphans []*v1.Pod, pc PodControl) ([]*v1.Pod, error) {
	claimed := make([]*v1.Pod, 0, len(owned))
	var mismatched []*v1.Pod
	for _, p := range owned {
		if m.Selector.Matches(labels.Set(p.Labels)) {
			claimed = append(claimed, p)
		} else {
			mismatched = append(mismatched, p)
		}
	}
	if len(mismatched) == 0 && len(orphans) == 0 {
		return claimed, nil
	}
	more, err := m.ClaimPods(ctx, append(mismatched, orphans...), pc)
	return append(claimed, more...), err
}

// ClaimReplicaSets is ClaimPods for ReplicaSets (used by Deployments).
func (m *RefManager) ClaimReplicaSets(ctx context.Context, rss []*appsv1.ReplicaSet, client kubernetes.Interface) ([]*appsv1.ReplicaSet, error) {
	ref := NewControllerRef(m.Controller, m.Kind)
	patch := func(ctx context.Context, o metav1.Object, p []byte) error {
		_, err := client.AppsV1().ReplicaSets(o.GetNamespace()).Patch(ctx, o.GetName(), types.StrategicMergePatchType, p, metav1.PatchOptions{})
		if err != nil {
			return fmt.Errorf("patching replicaset %s/%s: %w", o.GetNamespace(), o.GetName(), err)
		}
		return nil
	}
	adopt := func(ctx context.Context, o metav1.Object) error { return patch(ctx, o, AdoptPatch(ref, o.GetUID())) }
	release := func(ctx context.Context, o metav1.Object) error {
		return patch(ctx, o, ReleasePatch(m.Controller.GetUID(), o.GetUID()))
	}
	var claimed []*appsv1.ReplicaSet
	var errs []error
	for _, rs := range rss {
		ok, err := m.claim(ctx, rs, adopt, release)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if ok {
			claimed = append(claimed, rs)
		}
	}
	return claimed, errors.Join(errs...)
}
