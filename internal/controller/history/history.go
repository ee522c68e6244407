// Package history manages the ControllerRevisions that StatefulSets and
// DaemonSets keep as their rollout history. A revision's Data is the
// strategic merge patch that restores the owner's pod template
// ({"spec":{"template":{...,"$patch":"replace"}}}), which is exactly what
// `kubectl rollout undo` applies; its name is "<owner>-<hash>" and it carries
// the owner's template labels plus controller-revision-hash, so kubectl's
// history listing (label selector + controller reference) finds it.
package history

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"sort"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"

	"skiff.dev/skiff/internal/controller"
)

// TemplatePatch is the revision data of a pod template.
func TemplatePatch(template *v1.PodTemplateSpec) ([]byte, error) {
	raw, err := json.Marshal(template)
	if err != nil {
		return nil, fmt.Errorf("encoding pod template: %w", err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("decoding pod template: %w", err)
	}
	m["$patch"] = "replace"
	out, err := json.Marshal(map[string]any{"spec": map[string]any{"template": m}})
	if err != nil {
		return nil, fmt.Errorf("encoding template patch: %w", err)
	}
	return out, nil
}

// TemplateFrom decodes the pod template stored in a revision.
func TemplateFrom(rev *appsv1.ControllerRevision) (*v1.PodTemplateSpec, error) {
	var p struct {
		Spec struct {
			Template v1.PodTemplateSpec `json:"template"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(rev.Data.Raw, &p); err != nil {
		return nil, fmt.Errorf("decoding revision %s: %w", rev.Name, err)
	}
	return &p.Spec.Template, nil
}

// Hash returns the hash naming a revision with data and collisionCount.
func Hash(data []byte, collisionCount *int32) string {
	h := fnv.New32a()
	h.Write(data)
	if collisionCount != nil {
		var b [4]byte
		c := uint32(*collisionCount)
		b[0], b[1], b[2], b[3] = byte(c), byte(c>>8), byte(c>>16), byte(c>>24)
		h.Write(b[:])
	}
	return rand.SafeEncodeString(strconv.FormatUint(uint64(h.Sum32()), 10))
}

// New builds (without creating) revision number revision of owner holding
// data; the name and hash label depend on collisionCount.
func New(owner metav1.Object, gvk schema.GroupVersionKind, templateLabels map[string]string, data []byte, revision int64, collisionCount *int32) *appsv1.ControllerRevision {
	hash := Hash(data, collisionCount)
	l := map[string]string{}
	for k, v := range templateLabels {
		l[k] = v
	}
	l[appsv1.ControllerRevisionHashLabelKey] = hash
	return &appsv1.ControllerRevision{
		ObjectMeta: metav1.ObjectMeta{
			Name:            owner.GetName() + "-" + hash,
			Namespace:       owner.GetNamespace(),
			Labels:          l,
			OwnerReferences: []metav1.OwnerReference{*controller.NewControllerRef(owner, gvk)},
		},
		Data:     runtime.RawExtension{Raw: data},
		Revision: revision,
	}
}

// HashOf returns the controller-revision-hash of rev.
func HashOf(rev *appsv1.ControllerRevision) string {
	return rev.Labels[appsv1.ControllerRevisionHashLabelKey]
}

// Equal reports whether two revisions hold the same data.
func Equal(a, b *appsv1.ControllerRevision) bool {
	return bytes.Equal(a.Data.Raw, b.Data.Raw)
}

// List returns the revisions controlled by owner (uid) among those matching
// selector, sorted by revision number then name.
func List(lister appslisters.ControllerRevisionLister, ns string, selector labels.Selector, uid types.UID) ([]*appsv1.ControllerRevision, error) {
	all, err := lister.ControllerRevisions(ns).List(selector)
	if err != nil {
		return nil, fmt.Errorf("listing controller revisions: %w", err)
	}
	var out []*appsv1.ControllerRevision
	for _, r := range all {
		if ref := metav1.GetControllerOfNoCopy(r); ref != nil && ref.UID == uid {
			out = append(out, r)
		}
	}
	Sort(out)
	return out, nil
}

// Sort orders revisions by revision number, then name.
func Sort(revs []*appsv1.ControllerRevision) {
	sort.SliceStable(revs, func(i, j int) bool {
		if revs[i].Revision != revs[j].Revision {
			return revs[i].Revision < revs[j].Revision
		}
		return revs[i].Name < revs[j].Name
	})
}

// Next returns the revision number after the newest of revs.
func Next(revs []*appsv1.ControllerRevision) int64 {
	if len(revs) == 0 {
		return 1
	}
	return revs[len(revs)-1].Revision + 1
}

// Create creates rev; when a different revision already has its name (a
// hash collision), it bumps *collisionCount and retries under the new name.
// An existing equal revision is returned as is.
func Create(ctx context.Context, client kubernetes.Interface, owner metav1.Object, gvk schema.GroupVersionKind, templateLabels map[string]string, rev *appsv1.ControllerRevision, collisionCount *int32) (*appsv1.ControllerRevision, error) {
	if collisionCount == nil {
		return nil, fmt.Errorf("creating controller revision: nil collision count")
	}
	for {
		candidate := New(owner, gvk, templateLabels, rev.Data.Raw, rev.Revision, collisionCount)
		created, err := client.AppsV1().ControllerRevisions(candidate.Namespace).Create(ctx, candidate, metav1.CreateOptions{})
		if err == nil {
			return created, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("creating controller revision %s: %w", candidate.Name, err)
		}
		existing, gerr := client.AppsV1().ControllerRevisions(candidate.Namespace).Get(ctx, candidate.Name, metav1.GetOptions{})
		if gerr != nil {
			return nil, fmt.Errorf("getting existing controller revision %s: %w", candidate.Name, gerr)
		}
		if ref := metav1.GetControllerOfNoCopy(existing); ref != nil && ref.UID == owner.GetUID() && Equal(existing, candidate) {
			return existing, nil
		}
		*collisionCount++
	}
}

// Renumber sets rev's revision number (used when an old template comes back).
func Renumber(ctx context.Context, client kubernetes.Interface, rev *appsv1.ControllerRevision, revision int64) (*appsv1.ControllerRevision, error) {
	if rev.Revision == revision {
		return rev, nil
	}
	r := rev.DeepCopy()
	r.Revision = revision
	out, err := client.AppsV1().ControllerRevisions(r.Namespace).Update(ctx, r, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("renumbering controller revision %s: %w", r.Name, err)
	}
	return out, nil
}

// Truncate deletes the oldest revisions not named in live until at most
// limit non-live revisions remain.
func Truncate(ctx context.Context, client kubernetes.Interface, revs []*appsv1.ControllerRevision, live map[string]bool, limit int32) error {
	var old []*appsv1.ControllerRevision
	for _, r := range revs {
		if !live[r.Name] {
			old = append(old, r)
		}
	}
	Sort(old)
	for i := 0; i < len(old)-int(max(limit, 0)); i++ {
		err := client.AppsV1().ControllerRevisions(old[i].Namespace).Delete(ctx, old[i].Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting old controller revision %s: %w", old[i].Name, err)
		}
	}
	return nil
}

// Current finds or creates the revision for data among revs: an equal
// revision is reused (renumbered as newest if it is not), otherwise a new one
// is created. It returns the revision and the (possibly grown) list.
func Current(ctx context.Context, client kubernetes.Interface, owner metav1.Object, gvk schema.GroupVersionKind, templateLabels map[string]string, data []byte, revs []*appsv1.ControllerRevision, collisionCount *int32) (*appsv1.ControllerRevision, []*appsv1.ControllerRevision, error) {
	next := Next(revs)
	probe := New(owner, gvk, templateLabels, data, next, collisionCount)
	var equal []*appsv1.ControllerRevision
	for _, r := range revs {
		if Equal(r, probe) {
			equal = append(equal, r)
		}
	}
	if n := len(equal); n > 0 {
		r := equal[n-1]
		if r == revs[len(revs)-1] {
			return r, revs, nil
		}
		updated, err := Renumber(ctx, client, r, next)
		if err != nil {
			return nil, revs, err
		}
		out := make([]*appsv1.ControllerRevision, 0, len(revs))
		for _, x := range revs {
			if x.Name != r.Name {
				out = append(out, x)
			}
		}
		return updated, append(out, updated), nil
	}
	created, err := Create(ctx, client, owner, gvk, templateLabels, probe, collisionCount)
	if err != nil {
		return nil, revs, err
	}
	return created, append(revs, created), nil
}
