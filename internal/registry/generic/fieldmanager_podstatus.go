package generic

import (
	"reflect"
	"slices"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"skiff.dev/skiff/internal/registry"
)

// A pod's first status write (firstStatusEntry) records the status fields
// that structured-merge-diff's comparison of the live and the new object
// finds added or modified. That comparison walks both pods by reflection,
// field by field, through its value interfaces; it was almost all of a
// kubelet status write's managedFields CPU. podStatusFieldsV1 computes the
// same FieldsV1 for the pod status shapes kubelets write, straight from the
// Go structs, following the comparison's rules for what the schema says of
// each field (client-go's applyconfigurations schema for core/v1):
//
//   - a field is absent when its json tag says omitempty and it is empty
//     (structured-merge-diff's reflection omits it as encoding/json
//     would); structs are never empty, so a condition's zero
//     lastProbeTime is present (as null);
//   - a scalar, or an atomic list (containerStatuses and the other
//     container status lists, hostIPs), is recorded when it is present in
//     the new object and absent or different in the live one: scalars
//     compare as their JSON values (a time to the second), lists as Go
//     values (reflect.DeepEqual);
//   - a granular struct or associative list present on both sides records
//     what changed inside it; present only in the new object, it records
//     itself ("." in FieldsV1) and everything present inside it;
//   - list items are matched by their keys (conditions by type, podIPs by
//     ip); removals are not recorded.
//
// Paths are written in structured-merge-diff's order (fieldpath.Set's
// JSON: field names, then keys, each sorted). Anything else falls back
// to the comparison: the status fields not modelled here being set on
// either side (resource claims, resources, volume health, ...), duplicate
// keys (the comparison's special handling) and key values whose JSON
// would need escaping. TestPodStatusFieldsSameAsCompare compares both on
// random statuses and TestPodStatusFieldsKnowsEveryField fails when
// k8s.io/api grows a field this file does not know.

// podGVK is the kind podStatusFieldsV1 knows.
var podGVK = corev1.SchemeGroupVersion.WithKind("Pod")

// fastStatusFields is podStatusFieldsV1 of tl's and to's status when r is
// core/v1 pods (whose conversion to the field manager's version is the
// identity) and both are typed pods, nil when nothing changed; false
// otherwise.
func fastStatusFields(r *registry.Resource, tl, to runtime.Object) (*metav1.FieldsV1, bool) {
	if r.GroupVersionKind() != podGVK {
		return nil, false
	}
	lp, ok1 := tl.(*corev1.Pod)
	np, ok2 := to.(*corev1.Pod)
	if !ok1 || !ok2 || lp == nil || np == nil {
		return nil, false
	}
	scratch := fieldsScratch.Get().(*[]byte)
	defer fieldsScratch.Put(scratch)
	raw, ok := podStatusFieldsV1(&lp.Status, &np.Status, (*scratch)[:0])
	if cap(raw) > cap(*scratch) && cap(raw) <= maxFieldsScratch {
		*scratch = raw[:0]
	}
	if !ok || raw == nil {
		return nil, ok
	}
	fields := &metav1.FieldsV1{}
	fields.SetRawBytes(raw) // a copy of its own size
	return fields, true
}

// fieldsScratch holds buffers podStatusFieldsV1 writes into, up to
// maxFieldsScratch bytes.
var fieldsScratch = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

const maxFieldsScratch = 16 << 10

// trimPodForStatus is trimForStatus of two pods without reflection over
// the Pod struct (whose fields TestTrimPodForStatusSameAsReflect checks):
// a status write's most frequent kind.
func trimPodForStatus(live, obj *corev1.Pod) (runtime.Object, runtime.Object, bool) {
	tl := &corev1.Pod{TypeMeta: live.TypeMeta, ObjectMeta: statusViewMeta(&live.ObjectMeta)}
	to := &corev1.Pod{TypeMeta: obj.TypeMeta, ObjectMeta: statusViewMeta(&obj.ObjectMeta)}
	if !reflect.DeepEqual(&live.Status, &obj.Status) {
		tl.Status, to.Status = live.Status, obj.Status
	}
	return tl, to, true
}

// podStatusFieldsV1 appends to buf the FieldsV1 JSON of the status fields
// that changed from l to r as the status field manager records them for a
// manager with no earlier entry and returns it; nil when nothing changed,
// and false when the comparison must decide.
func podStatusFieldsV1(l, r *corev1.PodStatus, buf []byte) ([]byte, bool) {
	if !podStatusModelled(l) || !podStatusModelled(r) {
		return nil, false
	}
	w := fieldsJSON{buf: buf}
	w.buf = append(w.buf, '{')
	status := w.open("f:status", false)
	// In field name order.
	if !podConditionsFields(&w, l.Conditions, r.Conditions) {
		return nil, false
	}
	atomicListField(&w, "f:containerStatuses", l.ContainerStatuses, r.ContainerStatuses)
	atomicListField(&w, "f:ephemeralContainerStatuses", l.EphemeralContainerStatuses, r.EphemeralContainerStatuses)
	stringField(&w, "f:hostIP", l.HostIP, r.HostIP)
	atomicListField(&w, "f:hostIPs", l.HostIPs, r.HostIPs)
	atomicListField(&w, "f:initContainerStatuses", l.InitContainerStatuses, r.InitContainerStatuses)
	stringField(&w, "f:message", l.Message, r.Message)
	stringField(&w, "f:nominatedNodeName", l.NominatedNodeName, r.NominatedNodeName)
	intField(&w, "f:observedGeneration", l.ObservedGeneration, r.ObservedGeneration)
	stringField(&w, "f:phase", string(l.Phase), string(r.Phase))
	stringField(&w, "f:podIP", l.PodIP, r.PodIP)
	if !podIPsFields(&w, l.PodIPs, r.PodIPs) {
		return nil, false
	}
	stringField(&w, "f:qosClass", string(l.QOSClass), string(r.QOSClass))
	stringField(&w, "f:reason", l.Reason, r.Reason)
	stringField(&w, "f:resize", string(l.Resize), string(r.Resize))
	if r.StartTime != nil && (l.StartTime == nil || !sameTimeValue(*l.StartTime, *r.StartTime)) {
		w.leaf("f:startTime")
	}
	if !w.close(status) {
		return nil, true
	}
	w.buf = append(w.buf, '}')
	return w.buf, true
}

// podStatusModelled reports whether every field of s that
// podStatusFieldsV1 does not model is absent.
func podStatusModelled(s *corev1.PodStatus) bool {
	return len(s.ResourceClaimStatuses) == 0 && s.ExtendedResourceClaimStatus == nil && len(s.AllocatedResources) == 0 &&
		s.Resources == nil && len(s.NodeAllocatableResourceClaimStatuses) == 0 && len(s.VolumeHealth) == 0
}

// podConditionsFields writes what changed in the conditions, an
// associative list keyed by type; false when a type repeats or does not
// serialize plainly.
func podConditionsFields(w *fieldsJSON, l, r []corev1.PodCondition) bool {
	if len(r) == 0 {
		return true // absent: nothing added or modified
	}
	for i := range r {
		if !plainKey(string(r[i].Type)) {
			return false
		}
		for j := range i {
			if r[j].Type == r[i].Type {
				return false
			}
		}
	}
	for i := range l {
		for j := range i {
			if l[j].Type == l[i].Type {
				return false
			}
		}
	}
	order := keyOrder(len(r), func(i int) string { return string(r[i].Type) })
	list := w.open("f:conditions", len(l) == 0)
	for _, i := range order {
		rc := &r[i]
		var lc *corev1.PodCondition
		for j := range l {
			if l[j].Type == rc.Type {
				lc = &l[j]
				break
			}
		}
		item := w.openKey("type", string(rc.Type), lc == nil)
		if lc == nil {
			// Everything present in the new item.
			w.leaf("f:lastProbeTime")
			w.leaf("f:lastTransitionTime")
			if rc.Message != "" {
				w.leaf("f:message")
			}
			if rc.ObservedGeneration != 0 {
				w.leaf("f:observedGeneration")
			}
			if rc.Reason != "" {
				w.leaf("f:reason")
			}
			w.leaf("f:status")
			w.leaf("f:type")
		} else {
			if !sameTimeValue(lc.LastProbeTime, rc.LastProbeTime) {
				w.leaf("f:lastProbeTime")
			}
			if !sameTimeValue(lc.LastTransitionTime, rc.LastTransitionTime) {
				w.leaf("f:lastTransitionTime")
			}
			stringField(w, "f:message", lc.Message, rc.Message)
			intField(w, "f:observedGeneration", lc.ObservedGeneration, rc.ObservedGeneration)
			stringField(w, "f:reason", lc.Reason, rc.Reason)
			if lc.Status != rc.Status {
				w.leaf("f:status")
			}
		}
		w.close(item)
	}
	w.close(list)
	return true
}

// podIPsFields writes what changed in podIPs, an associative list keyed
// by ip (its only field).
func podIPsFields(w *fieldsJSON, l, r []corev1.PodIP) bool {
	if len(r) == 0 {
		return true
	}
	for i := range r {
		if !plainKey(r[i].IP) {
			return false
		}
		for j := range i {
			if r[j].IP == r[i].IP {
				return false
			}
		}
	}
	for i := range l {
		for j := range i {
			if l[j].IP == l[i].IP {
				return false
			}
		}
	}
	order := keyOrder(len(r), func(i int) string { return r[i].IP })
	list := w.open("f:podIPs", len(l) == 0)
	for _, i := range order {
		if slices.ContainsFunc(l, func(p corev1.PodIP) bool { return p.IP == r[i].IP }) {
			continue // the key is the whole item: unchanged
		}
		item := w.openKey("ip", r[i].IP, true)
		w.leaf("f:ip")
		w.close(item)
	}
	w.close(list)
	return true
}

// stringField writes name when the omitempty string r is present and l
// is absent or different.
func stringField(w *fieldsJSON, name, l, r string) {
	if r != "" && l != r {
		w.leaf(name)
	}
}

// intField is stringField for an omitempty integer.
func intField(w *fieldsJSON, name string, l, r int64) {
	if r != 0 && l != r {
		w.leaf(name)
	}
}

// atomicListField writes name when the omitempty atomic list r is present
// and l is absent or different. The comparison's equality of two lists
// read from Go values is reflect.DeepEqual (structured-merge-diff's
// listReflect.Equals), stricter than that of their JSON forms: a nil
// and an empty slice, or times a fraction of a second apart, inside an
// item differ.
func atomicListField[T any](w *fieldsJSON, name string, l, r []T) {
	if len(r) != 0 && (len(l) == 0 || !reflect.DeepEqual(l, r)) {
		w.leaf(name)
	}
}

// sameTimeValue reports whether a and b are the same value to the
// comparison: metav1.Time is a scalar, null when zero and otherwise its
// RFC 3339 form in UTC, whole seconds.
func sameTimeValue(a, b metav1.Time) bool {
	if a.IsZero() || b.IsZero() {
		return a.IsZero() == b.IsZero()
	}
	return a.Unix() == b.Unix()
}

// plainKey reports whether s serializes in a key path element as it is
// (no JSON escaping, at either of the two levels).
func plainKey(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c > 0x7e, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}

// keyOrder returns the indexes 0..n-1 sorted by key(i), the order of
// single-field keys in a field set.
func keyOrder(n int, key func(int) string) []int {
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return strings.Compare(key(a), key(b)) })
	return order
}

// fieldsJSON writes a FieldsV1 object: each path element a JSON member
// whose value holds its children, with "." first when the path itself is
// in the set. The caller writes members in the set's order.
type fieldsJSON struct {
	buf []byte
	// comma: the object being written already has a member.
	comma bool
}

// fieldsMark is where an open member began, to take it back when it
// turns out empty.
type fieldsMark struct {
	start, body int
	comma, self bool
}

func (w *fieldsJSON) sep() {
	if w.comma {
		w.buf = append(w.buf, ',')
	}
	w.comma = true
}

// leaf writes a member that is in the set and has no children.
func (w *fieldsJSON) leaf(name string) {
	w.sep()
	w.buf = append(w.buf, '"')
	w.buf = append(w.buf, name...)
	w.buf = append(w.buf, `":{}`...)
}

// open starts a member with children; self: the path itself is in the
// set.
func (w *fieldsJSON) open(name string, self bool) fieldsMark {
	m := fieldsMark{start: len(w.buf), comma: w.comma, self: self}
	w.sep()
	w.buf = append(w.buf, '"')
	w.buf = append(w.buf, name...)
	w.buf = append(w.buf, `":{`...)
	return w.body(m)
}

// openKey starts the member of a list item keyed by one field, whose
// value plainKey accepted.
func (w *fieldsJSON) openKey(field, value string, self bool) fieldsMark {
	m := fieldsMark{start: len(w.buf), comma: w.comma, self: self}
	w.sep()
	w.buf = append(w.buf, `"k:{\"`...)
	w.buf = append(w.buf, field...)
	w.buf = append(w.buf, `\":\"`...)
	w.buf = append(w.buf, value...)
	w.buf = append(w.buf, `\"}":{`...)
	return w.body(m)
}

func (w *fieldsJSON) body(m fieldsMark) fieldsMark {
	w.comma = false
	if m.self {
		w.buf = append(w.buf, `".":{}`...)
		w.comma = true
	}
	m.body = len(w.buf)
	return m
}

// close ends the member m began and reports whether it was kept: a
// member that is not itself in the set and got no children is taken
// back, one that is in the set without children has no ".".
func (w *fieldsJSON) close(m fieldsMark) bool {
	if len(w.buf) == m.body {
		if !m.self {
			w.buf = w.buf[:m.start]
			w.comma = m.comma
			return false
		}
		w.buf = w.buf[:m.body-len(`".":{}`)]
	}
	w.buf = append(w.buf, '}')
	w.comma = true
	return true
}
