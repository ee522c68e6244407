package generic

import (
	"bytes"
	"fmt"
	"math/rand"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/apitesting/fuzzer"
	"k8s.io/apimachinery/pkg/api/resource"
	metafuzzer "k8s.io/apimachinery/pkg/apis/meta/fuzzer"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/serializer"

	"skiff.dev/skiff/internal/registry"
)

// TestPodStatusFieldsSameAsCompare compares podStatusFieldsV1 with
// structured-merge-diff's comparison (compareStatusFields, on the
// reference field managers' validating converter) for random pairs of
// pod statuses: conditions added, removed and changed (status, reason,
// message, observed generation, times to the second and below it, zero
// times), podIPs and hostIPs, container statuses in every state, empty
// and nil lists, start times, duplicate keys, keys that need escaping,
// and the fields it does not model, each in a new status that starts
// from nothing, from a random other status, or from the live one with a
// few changes.
func TestPodStatusFieldsSameAsCompare(t *testing.T) {
	p := newManagedFieldsPair()
	pods := podsResource(t)
	rounds := 3000
	if testing.Short() {
		rounds = 600
	}
	rng := rand.New(rand.NewSource(1))
	handled, written, nonEmpty := 0, 0, map[string]int{}
	for round := range rounds {
		l := randomPodStatus(rng)
		var r corev1.PodStatus
		switch rng.Intn(4) {
		case 0:
			r = randomPodStatus(rng)
		case 1:
			r = corev1.PodStatus{}
			l, r = r, l
		default:
			r = *l.DeepCopy()
			for range 1 + rng.Intn(4) {
				mutatePodStatus(rng, &r)
			}
		}
		lp, np := statusPod(pods, l), statusPod(pods, r)
		want := p.ref.compareStatusFields(pods, lp.DeepCopy(), np.DeepCopy())
		got, ok := podStatusFieldsV1(&lp.Status, &np.Status, nil)
		if !ok {
			continue
		}
		handled++
		if !bytes.Equal(got, want) {
			t.Fatalf("round %d: fields differ\nlive:   %+v\nnew:    %+v\ncompare: %s\nfast:    %s", round, l, r, want, got)
		}
		if got != nil {
			written++
			for _, f := range []string{"f:conditions", "f:containerStatuses", "f:hostIPs", "f:podIPs", "f:startTime", `".":{}`, "f:lastProbeTime", "f:phase"} {
				if bytes.Contains(got, []byte(f)) {
					nonEmpty[f]++
				}
			}
		}
	}
	t.Logf("%d of %d pairs handled, %d recorded fields: %v", handled, rounds, written, nonEmpty)
	if handled < rounds/2 || written < rounds/3 {
		t.Fatalf("only %d pairs handled, %d recorded fields: the fast path was hardly tested", handled, written)
	}
	for f, n := range nonEmpty {
		if n < rounds/50 {
			t.Fatalf("only %d outputs with %s", n, f)
		}
	}
}

// TestPodStatusFirstWriteSameManagedFields runs first status writes
// (the live pod's only entry its creator's) with random statuses through
// the reference field managers and the server's, comparing the whole
// managedFields: the fast path as Update uses it.
func TestPodStatusFirstWriteSameManagedFields(t *testing.T) {
	p := newManagedFieldsPair()
	pods := podsResource(t)
	rounds := 400
	if testing.Short() {
		rounds = 100
	}
	rng := rand.New(rand.NewSource(2))
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "default", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "img"}}}}
	pods.Default(pod)
	setTypeMeta(pod, pods)
	created := p.check(t, "create", pods, "", pods.New(), pod, "replicaset-controller").(*corev1.Pod)
	// The creator's entry lies in the past: entries are ordered by time,
	// and the reference and the fast run may stamp the new entry in
	// different seconds, which would order a same-second entry differently.
	for i := range created.ManagedFields {
		created.ManagedFields[i].Time = &metav1.Time{Time: time.Now().Add(-time.Hour).Truncate(time.Second)}
	}
	fast := 0
	for round := range rounds {
		live := created.DeepCopy()
		live.UID, live.ResourceVersion = "u1", "5"
		live.Spec.NodeName = "node-1"
		live.Status = randomPodStatus(rng)
		obj := live.DeepCopy()
		for range 1 + rng.Intn(4) {
			mutatePodStatus(rng, &obj.Status)
		}
		if _, ok := podStatusFieldsV1(&live.Status, &obj.Status, nil); ok {
			fast++
		}
		manager := []string{"kubelet", "", "replicaset-controller"}[rng.Intn(3)]
		out := p.check(t, fmt.Sprintf("round %d", round), pods, "status", live, obj, manager).(*corev1.Pod)
		// And a second write by the same or another manager.
		next := out.DeepCopy()
		mutatePodStatus(rng, &next.Status)
		p.check(t, fmt.Sprintf("round %d again", round), pods, "status", out, next, []string{"kubelet", "other"}[rng.Intn(2)])
	}
	if fast < rounds/2 {
		t.Fatalf("only %d of %d writes took the fast path", fast, rounds)
	}
}

// TestPodStatusFieldsKnowsEveryField fails when k8s.io/api adds a field
// to the types podStatusFieldsV1 reads: it must then learn it, or treat
// it as a field it does not model.
func TestPodStatusFieldsKnowsEveryField(t *testing.T) {
	for _, c := range []struct {
		v    any
		want []string
	}{
		{corev1.PodStatus{}, []string{
			// modelled
			"conditions", "containerStatuses", "ephemeralContainerStatuses", "hostIP", "hostIPs", "initContainerStatuses",
			"message", "nominatedNodeName", "observedGeneration", "phase", "podIP", "podIPs", "qosClass", "reason", "resize", "startTime",
			// podStatusModelled's
			"allocatedResources", "extendedResourceClaimStatus", "nodeAllocatableResourceClaimStatuses", "resourceClaimStatuses",
			"resources", "volumeHealth"}},
		{corev1.PodCondition{}, []string{"lastProbeTime", "lastTransitionTime", "message", "observedGeneration", "reason", "status", "type"}},
		{corev1.PodIP{}, []string{"ip"}},
	} {
		var have []string
		typ := reflect.TypeOf(c.v)
		for i := range typ.NumField() {
			tag := typ.Field(i).Tag.Get("json")
			if strings.Contains(tag, "omitzero") || strings.Contains(tag, "inline") {
				t.Errorf("%v.%s: json tag %q, which podStatusFieldsV1 does not expect", typ, typ.Field(i).Name, tag)
			}
			have = append(have, strings.Split(tag, ",")[0])
		}
		slices.Sort(have)
		want := slices.Sorted(slices.Values(c.want))
		if !slices.Equal(have, want) {
			t.Errorf("%v has fields %v, podStatusFieldsV1 knows %v", typ, have, want)
		}
	}
}

func TestFieldsJSON(t *testing.T) {
	var w fieldsJSON
	w.buf = append(w.buf, '{')
	a := w.open("f:a", true)
	w.close(a) // a member without children: no "."
	b := w.open("f:b", false)
	c := w.open("f:c", false)
	w.close(c) // nothing: taken back
	w.leaf("f:d")
	k := w.openKey("type", "Ready", true)
	w.leaf("f:type")
	w.close(k)
	w.close(b)
	e := w.open("f:e", false)
	w.close(e)
	w.buf = append(w.buf, '}')
	want := `{"f:a":{},"f:b":{"f:d":{},"k:{\"type\":\"Ready\"}":{".":{},"f:type":{}}}}`
	if string(w.buf) != want {
		t.Fatalf("got %s, want %s", w.buf, want)
	}
}

// statusPod is a pod as trimForStatus leaves it, with status s.
func statusPod(pods *registry.Resource, s corev1.PodStatus) *corev1.Pod {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "default", UID: "u1"}, Status: s}
	setTypeMeta(pod, pods)
	return pod
}

var statusBase = time.Date(2026, 11, 22, 20, 0, 0, 0, time.UTC)

// randomTime is a zero time, one of a few whole seconds, or one of them
// with a fraction (equal to the whole second as the comparison sees it).
func randomTime(rng *rand.Rand) metav1.Time {
	switch rng.Intn(5) {
	case 0:
		return metav1.Time{}
	case 1:
		return metav1.NewTime(statusBase.Add(time.Duration(rng.Intn(3))*time.Second + 400*time.Millisecond))
	default:
		return metav1.NewTime(statusBase.Add(time.Duration(rng.Intn(3)) * time.Second))
	}
}

func pickOne[T any](rng *rand.Rand, vs ...T) T { return vs[rng.Intn(len(vs))] }

var conditionTypes = []corev1.PodConditionType{corev1.PodScheduled, corev1.PodReady, corev1.PodInitialized, corev1.ContainersReady,
	"A", "A b", "Ab", "quote\"d", "PodReadyToStartContainers"}

func randomCondition(rng *rand.Rand) corev1.PodCondition {
	c := corev1.PodCondition{Type: pickOne(rng, conditionTypes[:5]...), Status: pickOne[corev1.ConditionStatus](rng, "True", "False", "Unknown", ""),
		LastTransitionTime: randomTime(rng)}
	if rng.Intn(9) == 0 {
		c.Type = pickOne(rng, conditionTypes...)
	}
	if rng.Intn(4) == 0 {
		c.LastProbeTime = randomTime(rng)
	}
	if rng.Intn(3) == 0 {
		c.Reason = pickOne(rng, "", "ContainersNotReady", "PodCompleted")
	}
	if rng.Intn(3) == 0 {
		c.Message = pickOne(rng, "", "containers with unready status: [c]")
	}
	if rng.Intn(4) == 0 {
		c.ObservedGeneration = int64(rng.Intn(3))
	}
	return c
}

func randomConditions(rng *rand.Rand) []corev1.PodCondition {
	switch rng.Intn(6) {
	case 0:
		return nil
	case 1:
		return []corev1.PodCondition{}
	}
	var out []corev1.PodCondition
	for range 1 + rng.Intn(5) {
		c := randomCondition(rng)
		if rng.Intn(12) != 0 && slices.ContainsFunc(out, func(o corev1.PodCondition) bool { return o.Type == c.Type }) {
			continue // duplicates now and then
		}
		out = append(out, c)
	}
	return out
}

func randomIPs(rng *rand.Rand) []string {
	switch rng.Intn(5) {
	case 0:
		return nil
	case 1:
		return []string{}
	}
	var out []string
	for range 1 + rng.Intn(3) {
		ip := pickOne(rng, "10.42.0.5", "10.42.0.6", "fd00::5", "10.42.0.5", "")
		if rng.Intn(15) != 0 && slices.Contains(out, ip) {
			continue
		}
		out = append(out, ip)
	}
	return out
}

func randomContainerStatuses(rng *rand.Rand) []corev1.ContainerStatus {
	switch rng.Intn(4) {
	case 0:
		return nil
	case 1:
		return []corev1.ContainerStatus{}
	}
	var out []corev1.ContainerStatus
	for i := range 1 + rng.Intn(2) {
		cs := corev1.ContainerStatus{Name: fmt.Sprintf("c%d", i), Image: "img", ImageID: pickOne(rng, "", "sha256:abc"),
			ContainerID: pickOne(rng, "", "containerd://1"), Ready: rng.Intn(2) == 0, RestartCount: int32(rng.Intn(2))}
		if rng.Intn(2) == 0 {
			started := rng.Intn(2) == 0
			cs.Started = &started
		}
		switch rng.Intn(4) {
		case 0:
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}
		case 1:
			cs.State.Running = &corev1.ContainerStateRunning{StartedAt: randomTime(rng)}
		case 2:
			cs.State.Terminated = &corev1.ContainerStateTerminated{ExitCode: int32(rng.Intn(2)), StartedAt: randomTime(rng), FinishedAt: randomTime(rng)}
		}
		if rng.Intn(5) == 0 {
			cs.AllocatedResources = corev1.ResourceList{corev1.ResourceCPU: pickOne(rng, resource.MustParse("100m"), resource.MustParse("0.1"))}
		}
		if rng.Intn(6) == 0 {
			cs.VolumeMounts = []corev1.VolumeMountStatus{}
		}
		out = append(out, cs)
	}
	return out
}

func randomPodStatus(rng *rand.Rand) corev1.PodStatus {
	var s corev1.PodStatus
	for range 2 + rng.Intn(8) {
		mutatePodStatus(rng, &s)
	}
	return s
}

// mutatePodStatus sets one random field of s to a random value, empty
// included.
func mutatePodStatus(rng *rand.Rand, s *corev1.PodStatus) {
	switch rng.Intn(24) {
	case 0, 1:
		s.Phase = pickOne[corev1.PodPhase](rng, "", corev1.PodPending, corev1.PodRunning, corev1.PodFailed)
	case 2:
		s.Message = pickOne(rng, "", "ok", "evicted")
		s.Reason = pickOne(rng, "", "Evicted")
	case 3:
		s.NominatedNodeName = pickOne(rng, "", "node-1", "node-2")
	case 4:
		s.HostIP = pickOne(rng, "", "10.0.0.1", "10.0.0.2")
	case 5:
		s.HostIPs = nil
		for _, ip := range randomIPs(rng) {
			s.HostIPs = append(s.HostIPs, corev1.HostIP{IP: ip})
		}
	case 6:
		s.PodIP = pickOne(rng, "", "10.42.0.5", "10.42.0.6")
	case 7, 8:
		ips := randomIPs(rng)
		s.PodIPs = nil
		if ips != nil {
			s.PodIPs = []corev1.PodIP{}
		}
		for _, ip := range ips {
			s.PodIPs = append(s.PodIPs, corev1.PodIP{IP: ip})
		}
	case 9:
		switch rng.Intn(4) {
		case 0:
			s.StartTime = nil
		case 1:
			s.StartTime = &metav1.Time{}
		default:
			t := randomTime(rng)
			s.StartTime = &t
		}
	case 10, 11:
		s.Conditions = randomConditions(rng)
	case 12, 13:
		// One condition changed, added or removed.
		c := randomCondition(rng)
		if i := slices.IndexFunc(s.Conditions, func(o corev1.PodCondition) bool { return o.Type == c.Type }); i >= 0 {
			if rng.Intn(3) == 0 {
				s.Conditions = slices.Delete(slices.Clone(s.Conditions), i, i+1)
			} else {
				s.Conditions = slices.Clone(s.Conditions)
				s.Conditions[i] = c
			}
		} else {
			s.Conditions = append(slices.Clone(s.Conditions), c)
		}
	case 14, 15:
		s.ContainerStatuses = randomContainerStatuses(rng)
	case 16:
		if len(s.ContainerStatuses) > 0 {
			s.ContainerStatuses = slices.Clone(s.ContainerStatuses)
			s.ContainerStatuses[0].Ready = !s.ContainerStatuses[0].Ready
		}
	case 17:
		s.InitContainerStatuses = randomContainerStatuses(rng)
	case 18:
		s.EphemeralContainerStatuses = randomContainerStatuses(rng)
	case 19:
		s.QOSClass = pickOne[corev1.PodQOSClass](rng, "", corev1.PodQOSBestEffort, corev1.PodQOSBurstable)
		s.Resize = pickOne[corev1.PodResizeStatus](rng, "", "", "", corev1.PodResizeStatusInProgress)
	case 20:
		s.ObservedGeneration = int64(rng.Intn(3))
	case 21:
		// A field podStatusFieldsV1 does not model, now and then.
		switch rng.Intn(6) {
		case 0:
			s.Resources = &corev1.ResourceRequirements{}
		case 1:
			s.VolumeHealth = []corev1.PodVolumeHealth{{Name: "v"}}
		case 2:
			s.ResourceClaimStatuses = []corev1.PodResourceClaimStatus{{Name: "claim"}}
		default:
			s.Resources, s.VolumeHealth, s.ResourceClaimStatuses = nil, nil, nil
		}
	case 22:
		// A container status changed below what its Go value shows
		// (same JSON) or only in its JSON.
		if len(s.ContainerStatuses) > 0 {
			s.ContainerStatuses = slices.Clone(s.ContainerStatuses)
			cs := &s.ContainerStatuses[0]
			if cs.State.Running != nil {
				r := *cs.State.Running
				r.StartedAt = metav1.NewTime(r.StartedAt.Add(100 * time.Millisecond))
				cs.State.Running = &r
			} else if cs.VolumeMounts == nil {
				cs.VolumeMounts = []corev1.VolumeMountStatus{}
			} else {
				cs.Image = "img:2"
			}
		}
	case 23:
		// Every modelled field at once.
		s.Phase, s.Message, s.Reason, s.NominatedNodeName = corev1.PodRunning, "m", "r", "n"
		s.HostIP, s.PodIP, s.QOSClass, s.Resize = "10.0.0.1", "10.42.0.5", corev1.PodQOSBurstable, corev1.PodResizeStatusInProgress
		s.ObservedGeneration = 2
		t := randomTime(rng)
		s.StartTime = &t
		s.HostIPs = []corev1.HostIP{{IP: "10.0.0.1"}}
		s.PodIPs = []corev1.PodIP{{IP: "10.42.0.5"}, {IP: "fd00::5"}}
		s.Conditions = randomConditions(rng)
		s.ContainerStatuses = randomContainerStatuses(rng)
		s.InitContainerStatuses = randomContainerStatuses(rng)
		s.EphemeralContainerStatuses = randomContainerStatuses(rng)
	}
}

// TestTrimPodForStatusSameAsReflect compares the pods' trimForStatus with
// the reflective one on random pods: fuzzed ones, and pairs whose status
// is equal, differs or is empty.
func TestTrimPodForStatusSameAsReflect(t *testing.T) {
	var fields []string
	typ := reflect.TypeOf(corev1.Pod{})
	for i := range typ.NumField() {
		fields = append(fields, typ.Field(i).Name)
	}
	if want := []string{"TypeMeta", "ObjectMeta", "Spec", "Status"}; !slices.Equal(fields, want) {
		t.Fatalf("corev1.Pod has fields %v, trimPodForStatus knows %v", fields, want)
	}
	f := fuzzer.FuzzerFor(metafuzzer.Funcs, rand.NewSource(3), serializer.NewCodecFactory(registry.NewScheme()))
	rng := rand.New(rand.NewSource(4))
	differ := 0
	for round := range 300 {
		var live, obj corev1.Pod
		f.Fill(&live)
		switch round % 3 {
		case 0:
			f.Fill(&obj)
		case 1:
			obj = *live.DeepCopy()
		default:
			obj = *live.DeepCopy()
			mutatePodStatus(rng, &obj.Status)
			obj.Labels = map[string]string{"changed": "yes"}
		}
		if rng.Intn(5) == 0 {
			live.Status = corev1.PodStatus{}
		}
		wl, wo, wok := trimForStatusReflect(&live, &obj)
		gl, gn, gok := trimPodForStatus(&live, &obj)
		if wok != gok || !reflect.DeepEqual(wl, gl) || !reflect.DeepEqual(wo, gn) {
			t.Fatalf("round %d: trimmed pods differ\nreflect: %v %+v %+v\npods:    %v %+v %+v", round, wok, wl, wo, gok, gl, gn)
		}
		if !reflect.DeepEqual(gl.(*corev1.Pod).Status, corev1.PodStatus{}) {
			differ++
		}
	}
	if differ < 100 {
		t.Fatalf("only %d pairs kept a status", differ)
	}
}
