package deployment

import (
	"math"
	"sort"
	"strconv"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Annotations shared with kubectl.
const (
	RevisionAnnotation        = "deployment.kubernetes.io/revision"
	RevisionHistoryAnnotation = "deployment.kubernetes.io/revision-history"
	DesiredReplicasAnnotation = "deployment.kubernetes.io/desired-replicas"
	MaxReplicasAnnotation     = "deployment.kubernetes.io/max-replicas"
	rollbackToAnnotation      = "deprecated.deployment.rollback.to"
	changeCauseAnnotation     = "kubernetes.io/change-cause"

	// maxRevHistoryLength bounds the revision-history annotation.
	maxRevHistoryLength = 2000
)

// Condition reasons, as upstream.
const (
	ReasonNewRSCreated     = "NewReplicaSetCreated"
	ReasonFoundNewRS       = "FoundNewReplicaSet"
	ReasonRSUpdated        = "ReplicaSetUpdated"
	ReasonNewRSAvailable   = "NewReplicaSetAvailable"
	ReasonTimedOut         = "ProgressDeadlineExceeded"
	ReasonFailedRSCreate   = "ReplicaSetCreateError"
	ReasonPaused           = "DeploymentPaused"
	ReasonResumed          = "DeploymentResumed"
	ReasonMinAvailable     = "MinimumReplicasAvailable"
	ReasonMinUnavailable   = "MinimumReplicasUnavailable"
	messageMinAvailable    = "Deployment has minimum availability."
	messageMinUnavailable  = "Deployment does not have minimum availability."
	eventScalingReplicaSet = "ScalingReplicaSet"
	eventSelectingAll      = "SelectingAll"
)

// skipCopy lists the Deployment annotations not copied to ReplicaSets.
var skipCopy = map[string]bool{
	v1.LastAppliedConfigAnnotation: true,
	RevisionAnnotation:             true,
	RevisionHistoryAnnotation:      true,
	DesiredReplicasAnnotation:      true,
	MaxReplicasAnnotation:          true,
	rollbackToAnnotation:           true,
}

func replicas(r *int32) int32 {
	if r == nil {
		return 1
	}
	return *r
}

func isRollingUpdate(d *appsv1.Deployment) bool {
	return d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType
}

// ResolveFenceposts turns maxSurge and maxUnavailable into absolute numbers
// for desired replicas: surge rounds up, unavailable rounds down, and if
// both come out 0 unavailable becomes 1 so the rollout can progress.
func ResolveFenceposts(maxSurge, maxUnavailable *intstr.IntOrString, desired int32) (int32, int32, error) {
	def := intstr.FromString("25%")
	if maxSurge == nil {
		maxSurge = &def
	}
	if maxUnavailable == nil {
		maxUnavailable = &def
	}
	surge, err := intstr.GetScaledValueFromIntOrPercent(maxSurge, int(desired), true)
	if err != nil {
		return 0, 0, err
	}
	unavailable, err := intstr.GetScaledValueFromIntOrPercent(maxUnavailable, int(desired), false)
	if err != nil {
		return 0, 0, err
	}
	if surge == 0 && unavailable == 0 {
		unavailable = 1
	}
	return int32(surge), int32(unavailable), nil
}

func rollingParams(d *appsv1.Deployment) (*intstr.IntOrString, *intstr.IntOrString) {
	if ru := d.Spec.Strategy.RollingUpdate; ru != nil {
		return ru.MaxSurge, ru.MaxUnavailable
	}
	return nil, nil
}

// MaxSurge returns the absolute surge of d (0 for Recreate).
func MaxSurge(d *appsv1.Deployment) int32 {
	if !isRollingUpdate(d) {
		return 0
	}
	s, u := rollingParams(d)
	surge, _, _ := ResolveFenceposts(s, u, replicas(d.Spec.Replicas))
	return surge
}

// MaxUnavailable returns the absolute unavailability budget of d, capped at
// its replicas (0 for Recreate or 0 replicas).
func MaxUnavailable(d *appsv1.Deployment) int32 {
	r := replicas(d.Spec.Replicas)
	if !isRollingUpdate(d) || r == 0 {
		return 0
	}
	s, u := rollingParams(d)
	_, unavailable, _ := ResolveFenceposts(s, u, r)
	return min(unavailable, r)
}

// equalIgnoreHash compares templates ignoring the pod-template-hash label
// (and, as apiequality.Semantic does, nil against empty). It runs for
// every ReplicaSet on every sync, so it compares in place: no copies.
func equalIgnoreHash(a, b *v1.PodTemplateSpec) bool {
	if !labelsEqualIgnoreHash(a.Labels, b.Labels) {
		return false
	}
	// Shallow copies share everything with a and b; DeepEqual only reads.
	ac, bc := *a, *b
	ac.Labels, bc.Labels = nil, nil
	return apiequality.Semantic.DeepEqual(&ac, &bc)
}

func labelsEqualIgnoreHash(a, b map[string]string) bool {
	const hash = appsv1.DefaultDeploymentUniqueLabelKey
	n := 0
	for k, v := range a {
		if k == hash {
			continue
		}
		if w, ok := b[k]; !ok || w != v {
			return false
		}
		n++
	}
	m := len(b)
	if _, ok := b[hash]; ok {
		m--
	}
	return n == m
}

// revision returns the revision annotation of obj (0 if absent or invalid).
func revision(obj metav1.Object) int64 {
	v, err := strconv.ParseInt(obj.GetAnnotations()[RevisionAnnotation], 10, 64)
	if err != nil {
		return 0
	}
	return v
}

func maxRevision(rss []*appsv1.ReplicaSet) int64 {
	var m int64
	for _, rs := range rss {
		m = max(m, revision(rs))
	}
	return m
}

func sumSpec(rss []*appsv1.ReplicaSet) int32 {
	var n int32
	for _, rs := range rss {
		if rs != nil {
			n += replicas(rs.Spec.Replicas)
		}
	}
	return n
}

func sumStatus(rss []*appsv1.ReplicaSet, f func(appsv1.ReplicaSetStatus) int32) int32 {
	var n int32
	for _, rs := range rss {
		if rs != nil {
			n += f(rs.Status)
		}
	}
	return n
}

func statusReplicas(s appsv1.ReplicaSetStatus) int32  { return s.Replicas }
func statusReady(s appsv1.ReplicaSetStatus) int32     { return s.ReadyReplicas }
func statusAvailable(s appsv1.ReplicaSetStatus) int32 { return s.AvailableReplicas }

func activeRSs(rss []*appsv1.ReplicaSet) []*appsv1.ReplicaSet {
	var out []*appsv1.ReplicaSet
	for _, rs := range rss {
		if rs != nil && replicas(rs.Spec.Replicas) > 0 {
			out = append(out, rs)
		}
	}
	return out
}

// byCreation sorts oldest first; ties broken by name.
type byCreation []*appsv1.ReplicaSet

func (s byCreation) Len() int      { return len(s) }
func (s byCreation) Swap(i, j int) { s[i], s[j] = s[j], s[i] }
func (s byCreation) Less(i, j int) bool {
	if s[i].CreationTimestamp.Equal(&s[j].CreationTimestamp) {
		return s[i].Name < s[j].Name
	}
	return s[i].CreationTimestamp.Before(&s[j].CreationTimestamp)
}

// bySizeOlder sorts larger first, ties older first.
type bySizeOlder []*appsv1.ReplicaSet

func (s bySizeOlder) Len() int      { return len(s) }
func (s bySizeOlder) Swap(i, j int) { s[i], s[j] = s[j], s[i] }
func (s bySizeOlder) Less(i, j int) bool {
	if replicas(s[i].Spec.Replicas) == replicas(s[j].Spec.Replicas) {
		return byCreation(s).Less(i, j)
	}
	return replicas(s[i].Spec.Replicas) > replicas(s[j].Spec.Replicas)
}

// bySizeNewer sorts larger first, ties newer first.
type bySizeNewer []*appsv1.ReplicaSet

func (s bySizeNewer) Len() int      { return len(s) }
func (s bySizeNewer) Swap(i, j int) { s[i], s[j] = s[j], s[i] }
func (s bySizeNewer) Less(i, j int) bool {
	if replicas(s[i].Spec.Replicas) == replicas(s[j].Spec.Replicas) {
		return byCreation(s).Less(j, i)
	}
	return replicas(s[i].Spec.Replicas) > replicas(s[j].Spec.Replicas)
}

// findNewRS returns the oldest ReplicaSet whose template equals d's.
func findNewRS(d *appsv1.Deployment, rss []*appsv1.ReplicaSet, same func(d *appsv1.Deployment, rs *appsv1.ReplicaSet) bool) *appsv1.ReplicaSet {
	sorted := append([]*appsv1.ReplicaSet(nil), rss...)
	sort.Sort(byCreation(sorted))
	for _, rs := range sorted {
		if same(d, rs) {
			return rs
		}
	}
	return nil
}

// sameTemplate is equalIgnoreHash(rs's template, d's template).
func sameTemplate(d *appsv1.Deployment, rs *appsv1.ReplicaSet) bool {
	return equalIgnoreHash(&rs.Spec.Template, &d.Spec.Template)
}

// templateMemo remembers sameTemplate per ReplicaSet for the generations
// of the ReplicaSet and its Deployment it was computed at: a template
// only changes with its object's spec, which bumps the generation. Every
// sync compares d's template with every ReplicaSet's twice, and each
// comparison (apiequality.Semantic over a PodSpec) costs tens of µs.
type templateMemo struct {
	mu sync.Mutex
	m  map[types.UID]templateMatch // by ReplicaSet UID
}

type templateMatch struct {
	d           types.UID
	dGen, rsGen int64
	same        bool
}

func (t *templateMemo) same(d *appsv1.Deployment, rs *appsv1.ReplicaSet) bool {
	if d.UID == "" || rs.UID == "" || d.Generation == 0 || rs.Generation == 0 {
		// Objects the API server did not write (unit tests' fakes
		// keep generations as given): nothing to key on.
		return sameTemplate(d, rs)
	}
	t.mu.Lock()
	m, ok := t.m[rs.UID]
	t.mu.Unlock()
	if ok && m.d == d.UID && m.dGen == d.Generation && m.rsGen == rs.Generation {
		return m.same
	}
	same := sameTemplate(d, rs)
	t.mu.Lock()
	if t.m == nil {
		t.m = map[types.UID]templateMatch{}
	}
	t.m[rs.UID] = templateMatch{d: d.UID, dGen: d.Generation, rsGen: rs.Generation, same: same}
	t.mu.Unlock()
	return same
}

func (t *templateMemo) forget(rs types.UID) {
	t.mu.Lock()
	delete(t.m, rs)
	t.mu.Unlock()
}

func intAnnotation(rs *appsv1.ReplicaSet, key string) (int32, bool) {
	s, ok := rs.Annotations[key]
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseInt(s, 10, 32)
	if err != nil {
		return 0, false
	}
	return int32(v), true
}

// setReplicasAnnotations records desired and max replicas on rs; it reports
// whether anything changed.
func setReplicasAnnotations(rs *appsv1.ReplicaSet, desired, maxReplicas int32) bool {
	if rs.Annotations == nil {
		rs.Annotations = map[string]string{}
	}
	d, m := strconv.Itoa(int(desired)), strconv.Itoa(int(maxReplicas))
	if rs.Annotations[DesiredReplicasAnnotation] == d && rs.Annotations[MaxReplicasAnnotation] == m {
		return false
	}
	rs.Annotations[DesiredReplicasAnnotation] = d
	rs.Annotations[MaxReplicasAnnotation] = m
	return true
}

func replicasAnnotationsNeedUpdate(rs *appsv1.ReplicaSet, desired, maxReplicas int32) bool {
	return rs.Annotations[DesiredReplicasAnnotation] != strconv.Itoa(int(desired)) ||
		rs.Annotations[MaxReplicasAnnotation] != strconv.Itoa(int(maxReplicas))
}

// deploymentComplete reports whether every replica is updated and available.
func deploymentComplete(d *appsv1.Deployment, st *appsv1.DeploymentStatus) bool {
	r := replicas(d.Spec.Replicas)
	return st.UpdatedReplicas == r && st.Replicas == r && st.AvailableReplicas == r && st.ObservedGeneration >= d.Generation
}

// deploymentProgressing reports whether st moved forward compared to d.Status.
func deploymentProgressing(d *appsv1.Deployment, st *appsv1.DeploymentStatus) bool {
	old := d.Status
	return st.UpdatedReplicas > old.UpdatedReplicas ||
		st.Replicas-st.UpdatedReplicas < old.Replicas-old.UpdatedReplicas ||
		st.ReadyReplicas > old.ReadyReplicas ||
		st.AvailableReplicas > old.AvailableReplicas
}

func hasProgressDeadline(d *appsv1.Deployment) bool {
	return d.Spec.ProgressDeadlineSeconds != nil && *d.Spec.ProgressDeadlineSeconds != math.MaxInt32
}

func getCondition(st appsv1.DeploymentStatus, t appsv1.DeploymentConditionType) *appsv1.DeploymentCondition {
	for i := range st.Conditions {
		if st.Conditions[i].Type == t {
			return &st.Conditions[i]
		}
	}
	return nil
}

// setCondition sets c, keeping the transition time when the status does not
// change and doing nothing when status and reason are unchanged.
func setCondition(st *appsv1.DeploymentStatus, c appsv1.DeploymentCondition) {
	cur := getCondition(*st, c.Type)
	if cur != nil && cur.Status == c.Status && cur.Reason == c.Reason {
		return
	}
	if cur != nil && cur.Status == c.Status {
		c.LastTransitionTime = cur.LastTransitionTime
	}
	removeCondition(st, c.Type)
	st.Conditions = append(st.Conditions, c)
}

func removeCondition(st *appsv1.DeploymentStatus, t appsv1.DeploymentConditionType) {
	var out []appsv1.DeploymentCondition
	for _, c := range st.Conditions {
		if c.Type != t {
			out = append(out, c)
		}
	}
	st.Conditions = out
}

// proportion returns how many replicas rs gains (or loses) when
// toAdd replicas are spread across ReplicaSets, added of which are already
// assigned.
func proportion(rs *appsv1.ReplicaSet, d *appsv1.Deployment, toAdd, added int32) int32 {
	if rs == nil || replicas(rs.Spec.Replicas) == 0 || toAdd == 0 || toAdd == added {
		return 0
	}
	frac := fraction(rs, d)
	allowed := toAdd - added
	if toAdd > 0 {
		return min(frac, allowed)
	}
	return max(frac, allowed)
}

// fraction is rs's share of the new size, based on the size it was given
// for the previous deployment size (its max-replicas annotation).
func fraction(rs *appsv1.ReplicaSet, d *appsv1.Deployment) int32 {
	if replicas(d.Spec.Replicas) == 0 {
		return -replicas(rs.Spec.Replicas)
	}
	total := replicas(d.Spec.Replicas) + MaxSurge(d)
	annotated, ok := intAnnotation(rs, MaxReplicasAnnotation)
	if !ok || annotated == 0 {
		annotated = d.Status.Replicas
	}
	if annotated == 0 {
		return 0
	}
	size := float64(replicas(rs.Spec.Replicas)*total) / float64(annotated)
	return int32(math.Round(size)) - replicas(rs.Spec.Replicas)
}
