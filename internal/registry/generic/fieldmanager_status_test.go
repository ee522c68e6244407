package generic

import (
	"fmt"
	"math/rand"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"skiff.dev/skiff/internal/registry"
	"skiff.dev/skiff/internal/registry/core"
)

func podsResource(t testing.TB) *registry.Resource {
	t.Helper()
	for _, r := range core.Resources() {
		if r.Resource == "pods" && r.StorageResource.Empty() {
			return r
		}
	}
	t.Fatal("no pods resource")
	return nil
}

// TestStatusSkipSameManagedFields runs random pod histories through the
// reference field managers (no trimming, no skipping) and the server's,
// comparing the managedFields of every write: status updates by a pool
// of managers (more than the cap of 10, the same manager writing again,
// fields added, changed and removed, labels changed alongside), main
// resource updates of spec and metadata, and entries injected into the
// live object as clients or older servers may have left them: Apply
// entries (spec only, or with status), entries of another API version,
// entries whose bytes are not in canonical form, empty entries, entries
// that do not decode, duplicate manager identities.
func TestStatusSkipSameManagedFields(t *testing.T) {
	p := newManagedFieldsPair()
	pods := podsResource(t)
	seeds, steps := 12, 60
	if testing.Short() {
		seeds = 4
	}
	skippedSteps, firstSteps := 0, 0
	for seed := range seeds {
		rng := rand.New(rand.NewSource(int64(seed)))
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "default", UID: "u1", ResourceVersion: "3",
			Labels:          map[string]string{"app": "web"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web", UID: "uid-web"}}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "img", Ports: []corev1.ContainerPort{{ContainerPort: 80}}},
				{Name: "sidecar", Image: "side"}}}}
		pods.Default(pod)
		setTypeMeta(pod, pods)
		created := p.check(t, "create", pods, "", pods.New(), pod, "replicaset-controller").(*corev1.Pod)
		created.UID = "u1"
		live := created.DeepCopy()
		for step := range steps {
			what := fmt.Sprintf("seed %d step %d", seed, step)
			if len(live.ManagedFields) == 0 || rng.Intn(5) == 0 {
				// A pod just created from its template (the common
				// case), or an entry that did not decode made the last
				// update start from nothing: only the creator's entry.
				live.ManagedFields = append([]metav1.ManagedFieldsEntry(nil), created.ManagedFields...)
			}
			injectEntry(rng, live)
			agePast(rng, live)
			// Stored objects have a uid; a live object without one is
			// what the field manager takes for a create.
			live.UID = "u1"
			if rng.Intn(8) == 0 {
				live.UID = ""
			}
			obj := live.DeepCopy()
			if rng.Intn(5) == 0 {
				mutateMain(rng, obj)
				what += " main update"
				live = p.check(t, what, pods, "", live, obj, fmt.Sprintf("writer-%d", rng.Intn(4))).(*corev1.Pod)
				continue
			}
			mutateStatus(rng, obj)
			manager := fmt.Sprintf("kubelet-%d", rng.Intn(14))
			if tl, _, ok := trimForStatus(live, obj); ok && sameVersionManagers(live, pods) {
				if kept, _, split := p.fast.splitForStatus(pods, tl, manager); split {
					skippedSteps++
					if len(kept) == 1 && kept[0].Manager == placeholderManager {
						firstSteps++
					}
				}
			}
			live = p.check(t, what+" status update", pods, "status", live, obj, manager).(*corev1.Pod)
		}
	}
	t.Logf("%d status updates left entries out, %d of them all entries", skippedSteps, firstSteps)
	if firstSteps < seeds*steps/20 {
		t.Fatalf("only %d status updates left all entries out: firstStatusEntry was hardly tested", firstSteps)
	}
	if skippedSteps < seeds*steps/4 {
		t.Fatalf("only %d status updates left entries out: the fast path was hardly tested", skippedSteps)
	}
}

// agePast gives every entry of live a time in the past, a few seconds
// apart, some equal: the write being recorded gets the current time, a
// later second than all of them in both runs, and equal times exercise
// the ordering by manager.
func agePast(rng *rand.Rand, live *corev1.Pod) {
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	for i := range live.ManagedFields {
		if live.ManagedFields[i].Time != nil || rng.Intn(4) != 0 {
			live.ManagedFields[i].Time = &metav1.Time{Time: base.Add(time.Duration(rng.Intn(4)) * time.Second)}
		}
	}
}

// injectEntry sometimes adds to live an entry that no write through the
// field manager would record.
func injectEntry(rng *rand.Rand, live *corev1.Pod) {
	entry := func(manager string, op metav1.ManagedFieldsOperationType, version, fields string) metav1.ManagedFieldsEntry {
		return metav1.ManagedFieldsEntry{Manager: manager, Operation: op, APIVersion: version, FieldsType: "FieldsV1",
			FieldsV1: &metav1.FieldsV1{Raw: []byte(fields)}}
	}
	var e metav1.ManagedFieldsEntry
	switch rng.Intn(26) {
	case 0:
		e = entry("applier", metav1.ManagedFieldsOperationApply, "v1", `{"f:spec":{"f:activeDeadlineSeconds":{}}}`)
	case 1:
		e = entry("status-applier", metav1.ManagedFieldsOperationApply, "v1", `{"f:status":{"f:message":{}}}`)
	case 2:
		e = entry("old", metav1.ManagedFieldsOperationUpdate, "v1beta1", `{"f:spec":{"f:hostname":{}}}`)
	case 3:
		e = entry("spaced", metav1.ManagedFieldsOperationUpdate, "v1", `{"f:spec": {"f:hostname": {}}}`)
	case 4:
		e = entry("empty", metav1.ManagedFieldsOperationUpdate, "v1", `{}`)
	case 5:
		e = entry("broken", metav1.ManagedFieldsOperationUpdate, "v1", `{"x:broken":{}}`)
	case 6:
		e = entry("untyped", metav1.ManagedFieldsOperationUpdate, "v1", `{"f:spec":{"f:hostname":{}}}`)
		e.FieldsType = ""
	case 7:
		// The same manager identity twice.
		if n := len(live.ManagedFields); n > 0 {
			e = live.ManagedFields[rng.Intn(n)]
			e.FieldsV1 = &metav1.FieldsV1{Raw: []byte(`{"f:spec":{"f:subdomain":{}}}`)}
		}
	case 8:
		e = entry("labeler", metav1.ManagedFieldsOperationUpdate, "v1", `{"f:metadata":{"f:labels":{"f:team":{}}}}`)
	case 9:
		// The manager of the next status writes, owning only spec.
		e = entry(fmt.Sprintf("kubelet-%d", rng.Intn(14)), metav1.ManagedFieldsOperationUpdate, "v1", `{"f:spec":{"f:priority":{}}}`)
		e.Subresource = "status"
	case 10:
		// A granular set where the schema now has an atomic field:
		// reconciled to the field itself.
		e = entry("granular", metav1.ManagedFieldsOperationUpdate, "v1", `{"f:spec":{"f:affinity":{"f:nodeAffinity":{"f:requiredDuringSchedulingIgnoredDuringExecution":{"f:nodeSelectorTerms":{}}}}}}`)
	case 12:
		e = entry("unsorted", metav1.ManagedFieldsOperationUpdate, "v1", `{"f:spec":{"f:subdomain":{},"f:hostname":{}}}`)
	case 11:
		e = entry("whole", metav1.ManagedFieldsOperationUpdate, "v1", `{"f:spec":{},"f:status":{"f:reason":{}}}`)
	default:
		return
	}
	if e.Manager != "" {
		live.ManagedFields = append(live.ManagedFields, e)
	}
}

// mutateMain changes spec and metadata as a main-resource update.
func mutateMain(rng *rand.Rand, o *corev1.Pod) {
	switch rng.Intn(4) {
	case 0:
		o.Labels = map[string]string{"app": "web", fmt.Sprintf("l%d", rng.Intn(3)): "x"}
	case 1:
		s := int64(rng.Intn(100) + 1)
		o.Spec.ActiveDeadlineSeconds = &s
	case 2:
		o.Spec.Hostname = fmt.Sprintf("h%d", rng.Intn(3))
	case 3:
		o.Spec.Containers[0].Image = fmt.Sprintf("img:%d", rng.Intn(3))
	}
	if rng.Intn(3) == 0 {
		o.Status.Message = "set by a main-resource update"
	}
}

// mutateStatus changes a few random status fields (and sometimes labels
// and spec, which the status subresource does not record).
func mutateStatus(rng *rand.Rand, o *corev1.Pod) {
	now := metav1.NewTime(time.Unix(1700000000+int64(rng.Intn(1000)), 0))
	for range 1 + rng.Intn(3) {
		switch rng.Intn(12) {
		case 0:
			o.Status.Phase = []corev1.PodPhase{corev1.PodPending, corev1.PodRunning, corev1.PodSucceeded, corev1.PodFailed}[rng.Intn(4)]
		case 1:
			o.Status.Message = []string{"", "ok", "evicted"}[rng.Intn(3)]
		case 2:
			o.Status.Reason = []string{"", "Evicted"}[rng.Intn(2)]
		case 3:
			ip := fmt.Sprintf("10.1.0.%d", rng.Intn(4))
			o.Status.PodIP, o.Status.PodIPs = ip, []corev1.PodIP{{IP: ip}}
		case 4:
			o.Status.PodIP, o.Status.PodIPs = "", nil
		case 5:
			typ := corev1.PodConditionType(fmt.Sprintf("C%d", rng.Intn(4)))
			found := false
			for i := range o.Status.Conditions {
				if o.Status.Conditions[i].Type == typ {
					o.Status.Conditions[i].Status = corev1.ConditionStatus([]string{"True", "False"}[rng.Intn(2)])
					found = true
				}
			}
			if !found {
				o.Status.Conditions = append(o.Status.Conditions, corev1.PodCondition{Type: typ, Status: corev1.ConditionTrue, LastTransitionTime: now})
			}
		case 6:
			if n := len(o.Status.Conditions); n > 0 {
				i := rng.Intn(n)
				o.Status.Conditions = append(o.Status.Conditions[:i:i], o.Status.Conditions[i+1:]...)
			}
		case 7:
			o.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "c", Ready: rng.Intn(2) == 0, Image: "img", ImageID: "sha256:abc",
				ContainerID: "containerd://1", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}}}
		case 8:
			o.Status.ContainerStatuses = nil
		case 9:
			o.Status.StartTime = &now
			o.Status.HostIP = fmt.Sprintf("10.0.0.%d", rng.Intn(3))
		case 10:
			o.Labels = map[string]string{"app": "web", "status-label": fmt.Sprint(rng.Intn(2))}
		case 11:
			o.Spec.NodeName = fmt.Sprintf("node-%d", rng.Intn(3))
			o.Status.NominatedNodeName = fmt.Sprintf("node-%d", rng.Intn(3))
		}
	}
}
