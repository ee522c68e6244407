package replicaset

import (
	"maps"
	"math"
	"reflect"
	"slices"
	"sort"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"skiff.dev/skiff/internal/controller"
)

// podTally is the controller's own view of the pods, kept from the pod
// informer's events by this controller's handlers: for every controller
// (namespace and controller UID; orphans under the empty UID) the facts
// about its pods that a sync needs, and running counts of them. A sync
// whose ReplicaSet needs no adoption, release or deletion then reads its
// replicas, fullyLabeledReplicas, readyReplicas and availableReplicas
// (a binary search of the ready times under minReadySeconds) instead of
// walking all its pods: a 10,000-pod scale-up syncs ~300 times, and each
// walk cost ~1 µs per pod (selector match, ready condition, index copy).
//
// The view is that of the events delivered so far: each handler updates
// the tally before it touches expectations or enqueues a sync, so a sync
// sees every creation or deletion its expectations have observed, and any
// later event syncs again. The fast path decides everything from this one
// view (the orphans it could adopt included); whenever the view is not
// enough, the sync falls back to the informer's indexer for everything.
type podTally struct {
	mu     sync.Mutex
	owners map[ownerKey]*ownerPods
	where  map[podRef]ownerKey
}

// ownerKey names a controller's pods; uid "" holds the namespace's orphans.
type ownerKey struct {
	namespace string
	uid       types.UID
}

type podRef struct{ namespace, name string }

// podFacts is what the tally keeps of one pod. matches and labeled are
// valid only while the owner's selector is set.
type podFacts struct {
	labels  map[string]string // the informer's map, never modified
	active  bool              // controller.IsPodActive
	ready   bool              // controller.IsPodReady
	matches bool              // the owner's selector matches labels
	labeled bool              // labels carry every template label
	// readySince is the ready condition's lastTransitionTime in Unix
	// nanoseconds when ready and set (hasReadySince).
	readySince    int64
	hasReadySince bool
}

// tallyCounts are counts over a controller's active pods.
type tallyCounts struct {
	replicas     int32 // matching the selector: what the sync claims
	fullyLabeled int32 // of those, carrying every template label
	ready        int32 // of those, ready
	mismatched   int32 // not matching the selector: to be released
}

type ownerPods struct {
	pods map[string]podFacts // by pod name
	// What matches and labeled were computed against; sel nil: not yet.
	selSpec    *metav1.LabelSelector
	tplLabels  map[string]string
	sel, tpl   labels.Selector
	allLabeled bool
	counts     tallyCounts
	// readySince of the counted ready pods, sorted: how many are
	// available under minReadySeconds, and when the next one will be.
	readySince []int64
}

func newPodTally() *podTally {
	return &podTally{owners: map[ownerKey]*ownerPods{}, where: map[podRef]ownerKey{}}
}

func ownerOf(p *v1.Pod) ownerKey {
	k := ownerKey{namespace: p.Namespace}
	if ref := metav1.GetControllerOfNoCopy(p); ref != nil {
		k.uid = ref.UID
	}
	return k
}

// observe records p's current state (an add or an update).
func (t *podTally) observe(p *v1.Pod) {
	ref := podRef{p.Namespace, p.Name}
	key := ownerOf(p)
	t.mu.Lock()
	defer t.mu.Unlock()
	if prev, ok := t.where[ref]; ok && prev != key {
		t.removeLocked(ref, prev)
	}
	o := t.owners[key]
	if o == nil {
		o = &ownerPods{pods: map[string]podFacts{}}
		t.owners[key] = o
	}
	f := podFacts{labels: p.Labels, active: controller.IsPodActive(p), ready: controller.IsPodReady(p)}
	if t := controller.ReadySince(p); !t.IsZero() {
		f.readySince, f.hasReadySince = unixNano(t), true
	}
	if old, ok := o.pods[p.Name]; ok {
		o.count(old, -1)
	}
	o.classify(&f)
	o.pods[p.Name] = f
	o.count(f, 1)
	t.where[ref] = key
}

// sameTallyFacts reports whether the tally would record the same facts
// for cur as for old, labels aside (the caller compares those): most pod
// updates (bound to a node, container states) change none of them, and
// observing costs several map operations under the tally's lock.
func sameTallyFacts(old, cur *v1.Pod) bool {
	return old.Namespace == cur.Namespace && old.Name == cur.Name && ownerOf(old) == ownerOf(cur) &&
		controller.IsPodActive(old) == controller.IsPodActive(cur) &&
		controller.IsPodReady(old) == controller.IsPodReady(cur) &&
		controller.ReadySince(old).Equal(controller.ReadySince(cur))
}

// forget removes p (a delete event; p may be a stale final state).
func (t *podTally) forget(p *v1.Pod) {
	ref := podRef{p.Namespace, p.Name}
	t.mu.Lock()
	defer t.mu.Unlock()
	if key, ok := t.where[ref]; ok {
		t.removeLocked(ref, key)
	}
}

func (t *podTally) removeLocked(ref podRef, key ownerKey) {
	delete(t.where, ref)
	o := t.owners[key]
	if o == nil {
		return
	}
	if f, ok := o.pods[ref.name]; ok {
		o.count(f, -1)
		delete(o.pods, ref.name)
	}
	if len(o.pods) == 0 {
		delete(t.owners, key)
	}
}

// classify sets f's selector and template flags against o's spec.
func (o *ownerPods) classify(f *podFacts) {
	if o.sel == nil {
		return
	}
	f.matches = o.sel.Matches(labels.Set(f.labels))
	f.labeled = f.matches && (o.allLabeled || o.tpl.Matches(labels.Set(f.labels)))
}

func (o *ownerPods) count(f podFacts, d int32) {
	if !f.active || o.sel == nil {
		return
	}
	if !f.matches {
		o.counts.mismatched += d
		return
	}
	o.counts.replicas += d
	if f.labeled {
		o.counts.fullyLabeled += d
	}
	if f.ready {
		o.counts.ready += d
		if f.hasReadySince {
			i, _ := slices.BinarySearch(o.readySince, f.readySince)
			if d > 0 {
				o.readySince = slices.Insert(o.readySince, i, f.readySince)
			} else {
				o.readySince = slices.Delete(o.readySince, i, i+1)
			}
		}
	}
}

// available returns how many counted pods are available at now under
// minReady (ready at least that long, as controller.IsPodAvailable), and
// the shortest wait until another is (as controller.UntilAvailable).
func (o *ownerPods) available(minReady int32, now time.Time) (n int32, next time.Duration, ok bool) {
	if minReady == 0 {
		return o.counts.ready, 0, false
	}
	min := time.Duration(minReady) * time.Second
	// Available: readySince + min <= now.
	limit := unixNano(now) - min.Nanoseconds()
	i := sort.Search(len(o.readySince), func(j int) bool { return o.readySince[j] > limit })
	if i < len(o.readySince) {
		next, ok = time.Unix(0, o.readySince[i]).Add(min).Sub(now), true
	}
	return int32(i), next, ok
}

// setSpec reclassifies o's pods if rs's selector or template labels are
// not the ones they were classified against (the first sync of rs, or a
// ReplicationController whose selector changed).
func (o *ownerPods) setSpec(rs *appsv1.ReplicaSet, sel labels.Selector) {
	if o.sel != nil && reflect.DeepEqual(o.selSpec, rs.Spec.Selector) && maps.Equal(o.tplLabels, rs.Spec.Template.Labels) {
		return
	}
	o.selSpec = rs.Spec.Selector.DeepCopy()
	o.tplLabels = maps.Clone(rs.Spec.Template.Labels)
	o.sel = sel
	o.tpl = labels.Set(o.tplLabels).AsSelectorPreValidated()
	o.allLabeled = selectorRequiresTemplate(rs)
	o.counts = tallyCounts{}
	o.readySince = o.readySince[:0]
	for name, f := range o.pods {
		o.classify(&f)
		o.pods[name] = f
		o.count(f, 1)
	}
}

// summary returns the counts of rs's pods (sel is rs's parsed selector),
// how many are available at now, the wait until the next one is (ok
// false: none is waiting), and whether the namespace has an active orphan
// sel matches, which rs would adopt.
func (t *podTally) summary(rs *appsv1.ReplicaSet, sel labels.Selector, now time.Time) (c tallyCounts, avail avail, adoptable bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if o := t.owners[ownerKey{rs.Namespace, rs.UID}]; o != nil {
		o.setSpec(rs, sel)
		c = o.counts
		avail.n, avail.next, avail.waiting = o.available(rs.Spec.MinReadySeconds, now)
	}
	if rs.UID == "" {
		// Orphans are filed under the empty UID: an object without a
		// UID (never one from the API server) gets no fast path.
		return c, avail, true
	}
	if orphans := t.owners[ownerKey{namespace: rs.Namespace}]; orphans != nil {
		for _, f := range orphans.pods {
			if f.active && sel.Matches(labels.Set(f.labels)) {
				return c, avail, true
			}
		}
	}
	return c, avail, false
}

// unixNano is t.UnixNano clamped to the years it is defined for (1678 to
// 2262 would overflow): a ready time outside them stays in the far past
// or future, where no now and minReadySeconds reach it.
func unixNano(t time.Time) int64 {
	const far = math.MaxInt64 / 4
	switch {
	case t.Year() < 1700:
		return -far
	case t.Year() > 2200:
		return far
	}
	return t.UnixNano()
}

// avail is the availability part of a summary.
type avail struct {
	n       int32
	next    time.Duration
	waiting bool
}
